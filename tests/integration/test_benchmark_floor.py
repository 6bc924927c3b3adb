"""The snapshot benchmark's floor reads what kube2git reads: every listable type, page by page.

A floor that skipped types or pages would make ``kube2git snapshot`` look slow against it;
one that read more would flatter it. Against the real control plane.
"""

from __future__ import annotations

from benchmarks.cluster import floor
from exporter.cluster import Cluster
from exporter.config import ClusterSettings
from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import ok


async def test_the_floor_lists_every_listable_type_in_pages(
    control_plane: ControlPlane, namespace: str
) -> None:
    for index in range(7):
        body = {"metadata": {"name": f"floor-{index}"}, "data": {"k": str(index)}}
        ok(control_plane.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body))
    kubeconfig = str(control_plane.kubeconfig)
    async with await Cluster.connect(ClusterSettings(kubeconfig=kubeconfig)) as cluster:
        listable = len((await cluster.discover()).resources)
    read = await floor.bare_list(kubeconfig, page=3)
    assert read["types"] == listable
    assert read["objects"] >= 7
    assert read["pages"] >= listable + 2  # the namespace's 7 ConfigMaps alone take 3 pages


def test_the_floor_is_timed_in_a_process_of_its_own(control_plane: ControlPlane) -> None:
    timed = floor.time_floor(control_plane.kubeconfig)
    assert timed["seconds"] > 0
    assert timed["types"] > 0
