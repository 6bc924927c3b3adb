"""Who the history says made each change, on the real control plane with the real kubectl.

The quickstart showed the bug: a ``kubectl delete`` landing in the same batch as a
``kubectl edit`` was committed as authored by ``kubectl-edit``, and the initial capture by
``kube-apiserver``. Each commit now has one actor, and says how it knows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import (
    ExporterProcess,
    commits,
    create_config_maps,
    eventually,
    kubectl,
    ok,
    show,
    tree,
)
from tests.integration.proxy import proxied_kubeconfig

pytestmark = pytest.mark.cluster


@pytest.fixture
def exporter(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ExporterProcess]:
    # a quiet period long enough that two kubectl commands land in one batch
    process = ExporterProcess(
        tmp_path, control_plane.kubeconfig, quiet_period=3.0, max_delay=8.0
    ).start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def test_an_edit_and_a_delete_in_one_batch_are_two_commits_by_two_actors(
    control_plane: ControlPlane, namespace: str, exporter: ExporterProcess
) -> None:
    for name in ("web-config", "promotion"):
        kubectl(control_plane, "-n", namespace, "create", "configmap", name, "--from-literal=a=1")
    web = f"namespaces/{namespace}/configmaps/web-config.yaml"
    promotion = f"namespaces/{namespace}/configmaps/promotion.yaml"
    eventually(
        "both ConfigMaps on the branch", lambda: {web, promotion} <= tree(exporter.repo).keys()
    )

    kubectl(
        control_plane, "-n", namespace, "edit", "configmap", "web-config",
        editor="""sed -i 's/a: "1"/a: "2"/'""",
    )  # fmt: skip
    kubectl(control_plane, "-n", namespace, "delete", "configmap", "promotion")
    eventually(
        "the edit and the deletion on the branch",
        lambda: (
            promotion not in tree(exporter.repo) and show(exporter.repo, web)["data"]["a"] == "2"
        ),
    )

    edit, created = commits(exporter.repo, web)[:2]
    deletion = commits(exporter.repo, promotion)[0]
    assert edit["author"] == "kubectl-edit <kubectl-edit@field-manager.kube2git.invalid>"
    assert edit["subject"] == f"{namespace}: ConfigMap web-config modified"
    assert (edit["Attribution"], edit["Field-Manager"]) == ("field-manager", "kubectl-edit")
    assert edit["Change-Kind"] == "manual"
    assert deletion["author"] == "unknown <unknown@kube2git.invalid>"
    assert deletion["subject"] == f"{namespace}: ConfigMap promotion deleted"
    assert (deletion["Attribution"], deletion["Change-Kind"]) == ("none", "unknown")
    assert "Field-Manager" not in deletion
    assert created["author"].startswith("kubectl-create ")
    _, metrics = exporter.http("/metrics")
    lines = metrics.splitlines()
    for actor, count in (("kubectl-create", 2), ("kubectl-edit", 1)):
        labels = f'actor="{actor}",namespace="{namespace}"'
        assert f"kube2git_manual_changes_total{{{labels}}} {count}.0" in lines
    events = [json.loads(line) for line in exporter.logs().splitlines() if "change.manual" in line]
    assert {(e["actor"], e["action"], e["name"]) for e in events} == {
        ("kubectl-create", "added", "web-config"),
        ("kubectl-create", "added", "promotion"),
        ("kubectl-edit", "modified", "web-config"),
    }  # the deletion's actor is unknown: not counted as manual


def test_the_initial_capture_is_authored_by_kube2git_after_a_gap(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    ok(
        control_plane.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/configmaps?fieldManager=kubectl-create",
            {"metadata": {"name": "before"}, "data": {"a": "1"}},
        )
    )
    process = ExporterProcess(tmp_path, control_plane.kubeconfig).start()
    try:
        first = commits(process.repo)[-1]
        assert first["author"] == "kube2git <kube2git@kube2git.invalid>"
        assert first["Observed-After-Gap"] == "initial-capture"
        assert (first["Attribution"], first["Change-Kind"]) == ("none", "unknown")
        assert process.stop() == 0
        ok(
            control_plane.request(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/configmaps/before?fieldManager=kubectl-edit",
                {"data": {"a": "2"}},
                content_type="application/merge-patch+json",
            )
        )
        process.start()  # what changed while down: observed after a gap, actor unknown
        restart = commits(process.repo, f"namespaces/{namespace}/configmaps/before.yaml")[0]
        assert restart["author"] == "kube2git <kube2git@kube2git.invalid>"
        assert restart["Observed-After-Gap"] == "restart"
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()


def test_what_a_relist_finds_is_authored_by_kube2git_after_a_gap(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A change made while the watch was cut off, found by the relist that a 410 forces."""
    kubeconfig, proxy = proxied_kubeconfig(control_plane.kubeconfig, tmp_path / "proxied")
    exporter = ExporterProcess(tmp_path, kubeconfig, watch_timeout=10)
    text = exporter.config.read_text()  # a silent watch is renewed within 15 s
    grace = "  watch_timeout_seconds: 10\n  watch_idle_timeout: 15\n"
    exporter.config.write_text(text.replace("  watch_timeout_seconds: 10\n", grace))
    exporter.start()
    try:
        before = exporter.metric("kube2git_relists_total", reason="gone")
        create_config_maps(control_plane, namespace, "before")
        path = f"namespaces/{namespace}/configmaps/before.yaml"
        eventually("the first ConfigMap", lambda: path in tree(exporter.repo))
        assert proxy.freeze() > 0  # the watches go silent
        create_config_maps(control_plane, namespace, "during")
        control_plane.compact_etcd()
        control_plane.restart_apiserver()  # the watch resumes from a compacted version: 410
        during = f"namespaces/{namespace}/configmaps/during.yaml"
        eventually(
            "a relist after 410",
            lambda: exporter.metric("kube2git_relists_total", reason="gone") > before,
            within=150,
        )
        eventually("the ConfigMap the relist found", lambda: during in tree(exporter.repo))
        (found,) = commits(exporter.repo, during)
        assert found["author"] == "kube2git <kube2git@kube2git.invalid>"
        assert found["Observed-After-Gap"] == "relist"
        assert (found["Attribution"], found["Change-Kind"]) == ("none", "unknown")
    finally:
        assert exporter.stop() == 0
        proxy.close()
