"""Who made a change: the field manager that owns the changed field most specifically."""

from __future__ import annotations

from exporter.gitstore.message import responsible_for_paths
from exporter.messages import FieldManager


def _manager(
    name: str, time: str, fields: dict[str, object], subresource: str = ""
) -> FieldManager:
    return FieldManager(name, "Update", time, subresource, fields)


def test_the_editor_of_a_key_wins_over_the_creator_of_the_map_in_the_same_second() -> None:
    creator = _manager("kubectl-create", "2026-11-26T16:04:06Z", {"f:data": {}})
    editor = _manager("kubectl-edit", "2026-11-26T16:04:06Z", {"f:data": {"f:mode": {}}})
    for order in ([creator, editor], [editor, creator]):
        assert responsible_for_paths(order, [("data", "mode")]) is editor


def test_newest_time_breaks_ties_and_status_writers_never_author() -> None:
    old = _manager("helm", "2026-01-01T00:00:00Z", {"f:spec": {"f:replicas": {}}})
    new = _manager("kubectl-scale", "2026-02-01T00:00:00Z", {"f:spec": {"f:replicas": {}}})
    status = _manager(
        "kube-controller-manager", "2026-03-01T00:00:00Z", {"f:spec": {"f:replicas": {}}}, "status"
    )
    assert responsible_for_paths([old, new, status], [("spec", "replicas")]) is new


def test_list_items_match_any_index() -> None:
    setter = _manager(
        "kubectl-set",
        "2026-01-01T00:00:00Z",
        {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}},
    )
    assert responsible_for_paths([setter], [("spec", "containers", 0, "image")]) is setter
    assert responsible_for_paths([setter], [("spec", "volumes", 0)]) is None
