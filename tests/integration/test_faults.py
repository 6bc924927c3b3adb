"""Faults on the cluster side, injected into the real control plane while kube2git runs.

For each: what ``/readyz`` and the metrics say while it happens, and that the branch ends
equal to a fresh ``kube2git snapshot`` of the cluster (nothing lost, nothing left over).
The exporter runs as the restricted identity where a fault must hit it alone (APF, RBAC).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main
from tests.cluster.control_plane import ControlPlane
from tests.integration.conftest import RBAC
from tests.integration.helpers import (
    ExporterProcess,
    converges_to_snapshot,
    create_config_maps,
    eventually,
    ok,
    tree,
)
from tests.integration.proxy import proxied_kubeconfig

pytestmark = pytest.mark.cluster
READ = ["get", "list", "watch"]


def _bind(control_plane: ControlPlane, name: str, rules: list[dict[str, Any]]) -> None:
    """A ClusterRole with ``rules``, bound to the restricted identity."""
    ok(control_plane.request("POST", f"{RBAC}/clusterroles", {"metadata": {"name": name}, "rules": rules}))  # fmt: skip
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [
            {
                "kind": "User",
                "name": control_plane.restricted_user,
                "apiGroup": "rbac.authorization.k8s.io",
            }
        ],
    }
    ok(control_plane.request("POST", f"{RBAC}/clusterrolebindings", binding))


def _unbind(control_plane: ControlPlane, name: str) -> None:
    control_plane.request("DELETE", f"{RBAC}/clusterrolebindings/{name}")
    control_plane.request("DELETE", f"{RBAC}/clusterroles/{name}")


def _read_all_but(control_plane: ControlPlane, excluded: str) -> list[dict[str, Any]]:
    """Read rules for every served type except the core type ``excluded`` (RBAC cannot deny,
    so everything else is named)."""
    paths = ["/api/v1"] + [
        f"/apis/{group['preferredVersion']['groupVersion']}"
        for group in ok(control_plane.request("GET", "/apis"))["groups"]
    ]
    rules = []
    for path in paths:
        group = path.removeprefix("/api/v1").removeprefix("/apis/").rpartition("/")[0]
        names = [
            r["name"]
            for r in ok(control_plane.request("GET", path))["resources"]
            if "/" not in r["name"] and not (group == "" and r["name"] == excluded)
        ]
        if names:
            rules.append({"apiGroups": [group], "resources": names, "verbs": READ})
    return rules


@pytest.fixture
def restricted_without_configmaps(control_plane: ControlPlane) -> Iterator[Path]:
    name = f"kube2git-test-no-cm-{secrets.token_hex(3)}"
    _bind(control_plane, name, _read_all_but(control_plane, "configmaps"))
    try:
        yield control_plane.restricted_kubeconfig
    finally:
        _unbind(control_plane, name)


class ReadinessLog:
    """Polls ``/readyz`` in the background, keeping every distinct answer."""

    def __init__(self, exporter: ExporterProcess) -> None:
        self._exporter = exporter
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            answer = self._exporter.http("/readyz")
            if not self.answers or self.answers[-1] != answer:
                self.answers.append(answer)

    def __enter__(self) -> ReadinessLog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def saw(self, status: int, text: str) -> bool:
        return any(s == status and text in body for s, body in self.answers)


def test_a_first_list_throttled_by_apf_is_retried_until_the_type_is_followed(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, restricted_reads_everything: Path
) -> None:
    exporter = ExporterProcess(tmp_path, restricted_reads_everything)
    try:
        with control_plane.apf_reject(resources=["configmaps"]):
            exporter.start(wait_ready=False)
            eventually(
                "/readyz to name configmaps as never synced",
                lambda: (
                    (status := exporter.http("/readyz"))[0] == 503
                    and "types never synced: configmaps (throttled (429)" in status[1]
                ),
                within=120,
            )
            assert exporter.metric("kube2git_types", state="retrying") >= 1
            assert exporter.metric("kube2git_api_throttled_total") >= 1
            create_config_maps(control_plane, namespace, "made-while-throttled")
        exporter.wait_ready()
        assert exporter.metric("kube2git_relists_total", reason="failed-list") >= 1
        assert exporter.metric("kube2git_type_state", resource="configmaps", state="synced") == 1
        converges_to_snapshot(exporter.repo, tmp_path, restricted_reads_everything)
        assert f"namespaces/{namespace}/configmaps/made-while-throttled.yaml" in tree(exporter.repo)
    finally:
        exporter.stop()


def test_a_type_denied_by_rbac_is_reported_and_followed_once_granted(
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    restricted_without_configmaps: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_config_maps(control_plane, namespace, "before-grant")
    snapshot_repo = tmp_path / "denied-snapshot.git"
    kubeconfig = str(restricted_without_configmaps)
    # A denied type is not a failure: the snapshot says so and exits 0.
    assert main(["snapshot", "--repo", str(snapshot_repo), "--kubeconfig", kubeconfig]) == 0
    assert "kube2git: not read: configmaps: forbidden" in capsys.readouterr().err
    exporter = ExporterProcess(
        tmp_path, restricted_without_configmaps, cluster_config="  forbidden_retry: [2.0]\n"
    ).start()  # ready: a denied type does not block readiness
    grant = f"kube2git-test-cm-{secrets.token_hex(3)}"
    try:
        status, body = exporter.http("/readyz")
        assert status == 200
        assert "not permitted by RBAC, not recorded: configmaps" in body
        assert exporter.metric("kube2git_types", state="denied") == 1
        assert exporter.metric("kube2git_type_denied", resource="configmaps") == 1
        assert exporter.metric("kube2git_type_state", resource="configmaps", state="denied") == 1
        _bind(
            control_plane, grant, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": READ}]
        )
        eventually(
            "configmaps to be followed once granted",
            lambda: (
                exporter.metric("kube2git_type_state", resource="configmaps", state="synced") == 1
            ),
            within=60,
        )
        assert exporter.http("/readyz") == (200, "ok\n")
        create_config_maps(control_plane, namespace, "after-grant")
        converges_to_snapshot(exporter.repo, tmp_path, restricted_without_configmaps)
        assert f"namespaces/{namespace}/configmaps/before-grant.yaml" in tree(exporter.repo)
        assert f"namespaces/{namespace}/configmaps/after-grant.yaml" in tree(exporter.repo)
    finally:
        exporter.stop()
        _unbind(control_plane, grant)


@pytest.fixture
def unavailable_api_service(control_plane: ControlPlane) -> Iterator[str]:
    """An aggregated API whose backing service does not exist: its discovery fails (503)."""
    group = f"broken{secrets.token_hex(3)}.kube2git.test"
    name = f"v1.{group}"
    body = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "version": "v1",
            "service": {"namespace": "default", "name": "nowhere", "port": 443},
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 100,
            "versionPriority": 10,
        },
    }
    ok(control_plane.request("POST", "/apis/apiregistration.k8s.io/v1/apiservices", body))
    try:
        eventually(
            "the broken group to be listed in discovery",
            lambda: group in str(control_plane.request("GET", "/apis").body),
            within=30,
        )
        yield f"{group}/v1"
    finally:
        control_plane.request("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")


def test_run_survives_an_unavailable_aggregated_api(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, unavailable_api_service: str
) -> None:
    exporter = ExporterProcess(tmp_path, control_plane.kubeconfig).start()
    try:
        create_config_maps(control_plane, namespace, "still-recorded")
        eventually(
            "the change to be committed",
            lambda: f"namespaces/{namespace}/configmaps/still-recorded.yaml" in tree(exporter.repo),
        )
        status, body = exporter.http("/readyz")
        assert status == 200
        assert f"discovery failed (retrying): {unavailable_api_service}" in body
    finally:
        assert exporter.stop() == 0


def test_repeated_410_after_compaction_relists_and_converges(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    exporter = ExporterProcess(tmp_path, control_plane.kubeconfig).start()
    try:
        with ReadinessLog(exporter) as readiness:
            for cycle in range(2):
                before = exporter.metric("kube2git_relists_total", reason="gone")
                create_config_maps(control_plane, namespace, *(f"c{cycle}-{i}" for i in range(5)))
                control_plane.compact_etcd()
                control_plane.restart_apiserver()
                create_config_maps(control_plane, namespace, f"c{cycle}-after")
                eventually(
                    "a relist after 410",
                    lambda b=before: exporter.metric("kube2git_relists_total", reason="gone") > b,
                    within=120,
                )
                exporter.wait_ready()
        assert readiness.saw(503, "types retrying: "), (
            readiness.answers
        )  # while the API server was away
        converges_to_snapshot(exporter.repo, tmp_path, control_plane.kubeconfig)
    finally:
        exporter.stop()


def test_a_half_open_connection_is_noticed_once_the_watch_should_have_ended(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A watch the server should have closed (its timeoutSeconds, randomised 40 to 80 s here)
    that is still silent ``watch_idle_timeout`` (30 s) later is a dead line: reconnected, and
    the change made behind it arrives. Silence alone proves nothing before that: the API server
    sends no bookmark for a type that has not changed since it started."""
    kubeconfig, proxy = proxied_kubeconfig(control_plane.kubeconfig, tmp_path / "proxied")
    exporter = ExporterProcess(tmp_path, kubeconfig, watch_timeout=40).start()
    try:
        create_config_maps(control_plane, namespace, "before")
        eventually(
            "the first change",
            lambda: f"namespaces/{namespace}/configmaps/before.yaml" in tree(exporter.repo),
        )
        assert proxy.freeze() > 0
        frozen_at = time.monotonic()
        create_config_maps(control_plane, namespace, "during")
        eventually(
            "the change made behind the dead connection",
            lambda: f"namespaces/{namespace}/configmaps/during.yaml" in tree(exporter.repo),
            within=150,
        )
        assert time.monotonic() - frozen_at < 80 + 30 + 20  # the longest watch, the grace, slack
        converges_to_snapshot(exporter.repo, tmp_path, control_plane.kubeconfig)
    finally:
        exporter.stop()
        proxy.close()


def test_each_type_is_watched_as_soon_as_its_own_list_is_done(
    control_plane: ControlPlane, tmp_path: Path, restricted_reads_everything: Path
) -> None:
    """Not after the whole sync: the first types' watches start while others are listed."""
    started = time.time()
    exporter = ExporterProcess(tmp_path, restricted_reads_everything).start()
    exporter.stop()
    lists: list[str] = []
    watches: list[str] = []
    for line in control_plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event["user"]["username"] != control_plane.restricted_user:
            continue
        received = event["requestReceivedTimestamp"]
        if received < _rfc3339(started):
            continue
        # A streaming request is logged when its response starts, any other when complete.
        if event["verb"] == "watch" and event["stage"] == "ResponseStarted":
            initial = "sendInitialEvents=true" in event["requestURI"]
            (lists if initial else watches).append(received)
        elif event["verb"] == "list" and event["stage"] == "ResponseComplete":
            lists.append(received)
    assert len(lists) > 10
    assert min(watches) < max(lists), "the first watch waited for the last list"


def _rfc3339(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
