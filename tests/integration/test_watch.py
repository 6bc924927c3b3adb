"""The watch loop under the faults it exists for: 410 after a restart, 429 storms, idleness.

The exporter runs as the restricted identity (bound to a read-everything role for the test),
so API Priority and Fairness can throttle it alone and the audit log tells its requests apart.
"""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import (
    ExporterProcess,
    converges_to_snapshot,
    create_config_maps,
    eventually,
    ok,
    tree,
)

pytestmark = pytest.mark.cluster


def test_apiserver_restart_with_compaction_relists_and_loses_nothing(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    exporter = ExporterProcess(tmp_path, control_plane.kubeconfig).start()
    try:
        ns = f"/api/v1/namespaces/{namespace}"
        create_config_maps(control_plane, namespace, *(f"before-{index}" for index in range(10)))
        eventually(
            "the first changes",
            lambda: f"namespaces/{namespace}/configmaps/before-9.yaml" in tree(exporter.repo),
        )
        for index in range(5):
            control_plane.request("DELETE", f"{ns}/configmaps/before-{index}")
            ok(
                control_plane.request(
                    "POST", f"{ns}/configmaps", {"metadata": {"name": f"during-{index}"}}
                )
            )
        control_plane.compact_etcd()
        control_plane.restart_apiserver()
        create_config_maps(control_plane, namespace, *(f"after-{index}" for index in range(5)))
        eventually(
            "a 410 Gone and a relist",
            lambda: exporter.metric("kube2git_watch_gone_total") >= 1,
            within=120,
        )
        eventually("watches back", exporter.ready, within=120)
        converges_to_snapshot(exporter.repo, tmp_path, control_plane.kubeconfig)
    finally:
        exporter.stop()


def test_a_429_storm_is_waited_out_without_losing_an_event(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, restricted_reads_everything: Path
) -> None:
    # Short server-side watch timeouts make the exporter renew its watches during the storm.
    exporter = ExporterProcess(tmp_path, restricted_reads_everything, watch_timeout=3).start()
    try:
        with control_plane.apf_reject():
            for index in range(10):
                create_config_maps(control_plane, namespace, f"storm-{index}")
                time.sleep(0.5)
            eventually(
                "429s seen by the exporter",
                lambda: exporter.metric("kube2git_api_throttled_total") >= 1,
                within=60,
            )
        converges_to_snapshot(exporter.repo, tmp_path, restricted_reads_everything)
        assert f"namespaces/{namespace}/configmaps/storm-9.yaml" in tree(exporter.repo)
    finally:
        exporter.stop()


def test_steady_state_requests_are_only_watch_renewals(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, restricted_reads_everything: Path
) -> None:
    exporter = ExporterProcess(tmp_path, restricted_reads_everything, watch_timeout=5).start()
    try:
        time.sleep(2)  # let the start-up requests (discovery, lists, first watches) finish
        start = time.time()
        time.sleep(25)
        end = time.time()
    finally:
        exporter.stop()
    verbs: dict[str, int] = {}
    seen: set[str] = set()
    for line in control_plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event["user"]["username"] != control_plane.restricted_user or event["auditID"] in seen:
            continue
        received = event["requestReceivedTimestamp"]
        stamp = calendar.timegm(time.strptime(received[:19], "%Y-%m-%dT%H:%M:%S"))
        if start + 1 <= stamp <= end:
            seen.add(event["auditID"])
            verbs[event["verb"]] = verbs.get(event["verb"], 0) + 1
    assert verbs.get("watch", 0) > 0, verbs
    assert set(verbs) == {"watch"}, verbs


def test_a_quiet_type_keeps_its_watch_until_the_server_ends_it(
    control_plane: ControlPlane, tmp_path: Path, restricted_reads_everything: Path
) -> None:
    """Most types change rarely, and the API server sends no bookmark for a type that has not
    changed since it started: silence is not a dead line. Only silence past the watch's own
    timeoutSeconds (the server closes it then) is. Before, a quiet type's watch was dropped
    with a warning every ``watch_idle_timeout`` and reopened: one request each time."""
    exporter = ExporterProcess(
        tmp_path,
        restricted_reads_everything,
        watch_timeout=30,
        cluster_config="  watch_idle_timeout: 3\n",
    ).start()
    try:
        time.sleep(15)
    finally:
        exporter.stop()
    failed = [line for line in exporter.logs().splitlines() if '"watch.failed"' in line]
    assert failed == []
