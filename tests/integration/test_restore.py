"""The round trip: ``snapshot`` cluster A, ``restore`` into an empty cluster B, ``snapshot`` B.

A is the session's control plane (controllers and kwok); B is a second real control plane with
controllers (so that what controllers create in B can be checked) and without kwok (no node
runs pods: that changes nothing a snapshot records). The two trees must be byte-identical
except the policy exceptions listed in ``expected_exceptions``, each asserted exactly.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pty
import secrets
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main
from tests.cluster.build import ensure_built
from tests.cluster.control_plane import ControlPlane, start
from tests.integration.helpers import (
    create_deployment,
    create_hpa,
    eventually,
    ok,
    show,
    tree,
)

pytestmark = pytest.mark.cluster

FAST_CLIENT = "cluster:\n  qps: 200\n  burst: 200\n"
"""The restore's client limit for the test (the default 20 QPS is for production)."""


@pytest.fixture(scope="module")
def cluster_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """An empty second cluster with controllers, for the module."""
    cluster = start(tmp_path_factory.mktemp("cluster-b"), ensure_built(), controllers=True)
    try:
        yield cluster
    finally:
        cluster.stop()


def _post(cluster: ControlPlane, path: str, body: dict[str, Any]) -> None:
    ok(cluster.request("POST", path, body))


def build_workload(cluster: ControlPlane, ns: str, suffix: str) -> str:
    """The varied workload of the issue in namespace ``ns``; returns the CRD group."""
    api = f"/api/v1/namespaces/{ns}"
    apps = f"/apis/apps/v1/namespaces/{ns}"
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    labels = {"app": "db"}
    create_deployment(cluster, ns, "web", replicas=2)
    create_hpa(cluster, ns, "web", max_replicas=4)
    create_deployment(cluster, ns, "api", replicas=1)
    pod_spec = {
        "containers": [{"name": "main", "image": "nginx:1.27"}],
        "tolerations": [{"operator": "Exists"}],
    }
    _post(cluster, f"{apps}/statefulsets", {
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }],
        },
    })  # fmt: skip
    agent = {"app": "agent"}
    _post(cluster, f"{apps}/daemonsets", {
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": agent},
            "template": {"metadata": {"labels": agent}, "spec": pod_spec},
        },
    })  # fmt: skip
    _post(cluster, f"/apis/batch/v1/namespaces/{ns}/cronjobs", {
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {**pod_spec, "restartPolicy": "Never"}}}},
        },
    })  # fmt: skip
    _post(cluster, f"/apis/batch/v1/namespaces/{ns}/jobs", {
        "metadata": {"name": "migrate"},
        "spec": {"template": {"spec": {**pod_spec, "restartPolicy": "Never"}}},
    })  # fmt: skip
    _post(cluster, f"{api}/services", {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    })  # fmt: skip
    _post(cluster, f"{api}/services", {
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 5432}]},
    })  # fmt: skip
    _post(cluster, f"{api}/services", {
        "metadata": {"name": "web-nodeport"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    })  # fmt: skip
    _post(cluster, f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", {
        "metadata": {"name": "web"},
        "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}},
        }]}}]},
    })  # fmt: skip
    _post(cluster, f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", {
        "metadata": {"name": "egress-anywhere"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    })  # fmt: skip
    _post(cluster, f"{api}/serviceaccounts", {"metadata": {"name": "app"}})
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
    _post(cluster, f"{rbac}/namespaces/{ns}/roles", {
        "metadata": {"name": "reader"}, "rules": [rule],
    })  # fmt: skip
    subject = {"kind": "ServiceAccount", "name": "app", "namespace": ns}
    _post(cluster, f"{rbac}/namespaces/{ns}/rolebindings", {
        "metadata": {"name": "app-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [subject],
    })  # fmt: skip
    _post(cluster, f"{rbac}/clusterroles", {
        "metadata": {"name": f"rt-{suffix}-viewer"}, "rules": [rule],
    })  # fmt: skip
    _post(cluster, f"{rbac}/clusterrolebindings", {
        "metadata": {"name": f"rt-{suffix}-app-views"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"rt-{suffix}-viewer",
        },
        "subjects": [subject],
    })  # fmt: skip
    _post(cluster, f"{api}/resourcequotas", {
        "metadata": {"name": "quota"}, "spec": {"hard": {"pods": "50"}},
    })  # fmt: skip
    _post(cluster, f"{api}/limitranges", {
        "metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "10m"}}]},
    })  # fmt: skip
    _post(cluster, "/apis/scheduling.k8s.io/v1/priorityclasses", {
        "metadata": {"name": f"rt-{suffix}-high"}, "value": 1000, "description": "round trip",
    })  # fmt: skip
    _post(cluster, f"{api}/persistentvolumeclaims", {
        "metadata": {"name": "scratch"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    settings = ok(cluster.request("POST", f"{api}/configmaps", {
        "metadata": {"name": "settings"},
        "data": {"colour": "blue", "nginx.conf": "server {\n  listen 80;\n}\n"},
    }))  # fmt: skip
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "settings",
             "uid": settings["metadata"]["uid"]}  # fmt: skip
    _post(cluster, f"{api}/configmaps", {
        "metadata": {"name": "derived", "ownerReferences": [owner]}, "data": {"from": "settings"},
    })  # fmt: skip
    _post(cluster, f"{api}/configmaps", {
        "metadata": {"name": "blob"}, "binaryData": {"logo.png": base64.b64encode(b"\x89PNG").decode()},
    })  # fmt: skip
    _post(cluster, f"{api}/secrets", {
        "metadata": {"name": "db-credentials"},
        "data": {"password": base64.b64encode(secrets.token_bytes(12)).decode()},
    })  # fmt: skip
    group = f"rt{suffix}.kube2git.test"
    cluster.create_crd(group, "Widget", "widgets")
    for name, size in (("small", 1), ("large", 9)):
        _post(cluster, f"/apis/{group}/v1/namespaces/{ns}/widgets", {
            "apiVersion": f"{group}/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": size},
        })  # fmt: skip
    return group


def _snapshot(repo: Path, cluster: ControlPlane) -> None:
    assert (
        _kube2git("snapshot", "--repo", str(repo), "--kubeconfig", str(cluster.kubeconfig))[0] == 0
    )


def _kube2git(*argv: str) -> tuple[int, list[str]]:
    """Run the command line; the exit code and stdout's lines, then stderr's after a ``!``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue().splitlines() + [f"! {x}" for x in err.getvalue().splitlines()]


@dataclass(frozen=True)
class RoundTrip:
    repo_a: Path
    repo_b: Path
    config: Path
    namespace: str
    group: str
    restore_output: list[str]
    b: ControlPlane = field(repr=False)
    """Cluster B."""

    def restore(self, repo: Path, *extra: str) -> tuple[int, list[str]]:
        return _kube2git(
            "restore", "--repo", str(repo), "--kubeconfig", str(self.b.kubeconfig),
            "--config", str(self.config), *extra,
        )  # fmt: skip

    def diff(self, repo: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        code, out = _kube2git(
            "diff", "--repo", str(repo), "--kubeconfig", str(self.b.kubeconfig),
            "--output", "json", *extra,
        )  # fmt: skip
        return code, json.loads("\n".join(line for line in out if not line.startswith("!")))


def _items(cluster: ControlPlane, path: str) -> list[dict[str, Any]]:
    return list(ok(cluster.request("GET", path))["items"])


@pytest.fixture(scope="module")
def round_trip(
    control_plane: ControlPlane, cluster_b: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RoundTrip]:
    """The workload built in A, A snapshotted, restored into B, B snapshotted."""
    namespace = f"rt-{secrets.token_hex(3)}"
    _post(control_plane, "/api/v1/namespaces", {"metadata": {"name": namespace}})
    suffix = secrets.token_hex(3)
    group = build_workload(control_plane, namespace, suffix)
    # The StatefulSet controller creates its claim: let it, so that A's tree holds it.
    claim = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-db-0"
    eventually("the StatefulSet's claim", lambda: control_plane.request("GET", claim).status == 200)
    work = tmp_path_factory.mktemp("round-trip")
    config = work / "fast.yaml"
    config.write_text(FAST_CLIENT)
    trip = RoundTrip(work / "a.git", work / "b.git", config, namespace, group, [], cluster_b)
    _snapshot(trip.repo_a, control_plane)
    code, out = trip.restore(trip.repo_a)
    assert code == 0, out
    trip.restore_output.extend(out)
    # Controllers in B create the children; give them the time to.
    replica_sets = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
    eventually("B's ReplicaSets", lambda: len(_items(cluster_b, replica_sets)) == 2)
    _snapshot(trip.repo_b, cluster_b)
    yield trip
    for leftover in (
        f"/api/v1/namespaces/{namespace}",
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/rt-{suffix}-viewer",
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rt-{suffix}-app-views",
        f"/apis/scheduling.k8s.io/v1/priorityclasses/rt-{suffix}-high",
    ):
        control_plane.request("DELETE", leftover)
    # Gone before the next module starts: its snapshots must not see a deletion in progress.
    for leftover in (
        f"/api/v1/namespaces/{namespace}",
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}",
    ):
        eventually(
            f"{leftover} to be deleted",
            lambda path=leftover: control_plane.request("GET", path).status == 404,
            within=120,
        )


def expected_exceptions(repo_a: Path) -> tuple[set[str], set[str]]:
    """(paths only A has, paths whose content differs), by the documented restore policy."""
    only_a: set[str] = set()
    for path in tree(repo_a):
        body = show(repo_a, path)
        if path.startswith("cluster/nodes/"):
            only_a.add(path)  # a Node is registered by its kubelet: not restored
        elif "/secrets/" in path and body.get("data"):
            only_a.add(path)  # the values were redacted: not restorable
        elif "/configmaps/" in path and body.get("binaryData"):
            only_a.add(path)  # binaryData kept as fingerprints: not restorable
    differs = {  # written by each API server for itself: its client CAs, its port
        "namespaces/kube-system/configmaps/extension-apiserver-authentication.yaml",
        "namespaces/default/services/kubernetes.yaml",
    }
    # A Job's generated selector names its uid, which each cluster assigns anew.
    differs |= {path for path in tree(repo_a) if "/jobs.batch/" in path}
    # Owner references name their owners by uid, which each cluster assigns anew.
    differs |= {
        path
        for path in tree(repo_a)
        if path not in only_a and (show(repo_a, path).get("metadata") or {}).get("ownerReferences")
    }
    return only_a, differs


def test_restore_reports_what_it_cannot_restore_by_name(round_trip: RoundTrip) -> None:
    ours, out = f"namespaces/{round_trip.namespace}", round_trip.restore_output
    redacted = "Secret values were redacted in the backup"
    assert f"skipped {ours}/secrets/db-credentials.yaml: {redacted}" in out
    fingerprints = "binaryData was kept as fingerprints in the backup"
    assert f"skipped {ours}/configmaps/blob.yaml: {fingerprints}" in out
    assert f"created {ours}/widgets.{round_trip.group}/large.yaml" in out
    # The owner reference points at the owner in B, so B's garbage collector keeps the object.
    configmaps = f"/api/v1/namespaces/{round_trip.namespace}/configmaps"
    settings = ok(round_trip.b.request("GET", f"{configmaps}/settings"))
    derived = ok(round_trip.b.request("GET", f"{configmaps}/derived"))
    assert [o["uid"] for o in derived["metadata"]["ownerReferences"]] == [
        settings["metadata"]["uid"]
    ]
    assert " 0 failed" in out[-1]


def test_the_trees_are_identical_but_for_the_policy_exceptions(round_trip: RoundTrip) -> None:
    a, b = tree(round_trip.repo_a), tree(round_trip.repo_b)
    only_a, differs = expected_exceptions(round_trip.repo_a)
    assert f"namespaces/{round_trip.namespace}/secrets/db-credentials.yaml" in only_a
    assert f"namespaces/{round_trip.namespace}/configmaps/derived.yaml" in differs
    assert f"namespaces/{round_trip.namespace}/jobs.batch/migrate.yaml" in differs
    assert {p for p in a if p not in b} == only_a
    assert {p for p in b if p not in a} == set()
    assert {p for p in a if p in b and a[p] != b[p]} == differs


def test_controllers_in_b_own_every_child(round_trip: RoundTrip) -> None:
    cluster, namespace = round_trip.b, round_trip.namespace
    owners = {
        obj["metadata"]["uid"]
        for path in (
            "/apis/apps/v1/deployments",
            "/apis/apps/v1/replicasets",
            "/apis/apps/v1/statefulsets",
            "/apis/apps/v1/daemonsets",
            "/apis/batch/v1/cronjobs",
            "/apis/batch/v1/jobs",
            "/api/v1/services",
        )
        for obj in _items(cluster, path)
    }
    children = [
        (kind, obj)
        for kind, path in (
            ("ReplicaSet", "/apis/apps/v1/replicasets"),
            ("Pod", "/api/v1/pods"),
            ("Job", "/apis/batch/v1/jobs"),
            ("EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices"),
        )
        for obj in _items(cluster, path)
    ]
    # The restored workloads have their children in B (no node runs the DaemonSet's pods);
    # the Job is the one the backup holds (it has no owner), its Pod is the controller's.
    assert {k for k, c in children if c["metadata"]["namespace"] == namespace} == {
        "ReplicaSet",
        "Pod",
        "Job",
        "EndpointSlice",
    }
    restored = set(tree(round_trip.repo_a))
    for _, child in children:
        meta = child["metadata"]
        controllers = [o["uid"] for o in meta.get("ownerReferences", []) if o.get("controller")]
        if not controllers:  # only an uncontrolled object of the backup may lack one
            assert any(p.endswith(f"/{meta['name']}.yaml") for p in restored), meta["name"]
            continue
        managers = {m["manager"] for m in meta.get("managedFields", [])}
        assert "kube2git-restore" not in managers, meta["name"]
        assert len(controllers) == 1, meta["name"]
        assert controllers[0] in owners, meta["name"]
    replica_sets = _items(cluster, f"/apis/apps/v1/namespaces/{namespace}/replicasets")
    for deployment in _items(cluster, f"/apis/apps/v1/namespaces/{namespace}/deployments"):
        uid = deployment["metadata"]["uid"]
        owned = [rs for rs in replica_sets if rs["metadata"]["ownerReferences"][0]["uid"] == uid]
        assert len(owned) == 1, deployment["metadata"]["name"]


def test_restoring_twice_changes_nothing(round_trip: RoundTrip) -> None:
    cluster = round_trip.b
    before = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"]
              for o in _items(cluster, "/api/v1/configmaps")}  # fmt: skip
    code, out = round_trip.restore(round_trip.repo_a)
    assert code == 0, out
    assert " 0 created, 0 changed," in out[-1]
    after = {o["metadata"]["uid"]: o["metadata"]["resourceVersion"]
             for o in _items(cluster, "/api/v1/configmaps")}  # fmt: skip
    assert after == before


def test_diff_and_a_restore_to_a_point_in_time(round_trip: RoundTrip) -> None:
    cluster, namespace = round_trip.b, round_trip.namespace
    repo, ours = round_trip.repo_b, f"namespaces/{namespace}"
    code, report = round_trip.diff(repo)
    assert (code, report["objects"]) == (0, []), report
    time.sleep(1.1)  # commit times have a resolution of one second
    between = datetime.now(UTC).isoformat()
    time.sleep(1.1)
    kubectl_edit(cluster, namespace, "configmap/settings", "s/colour: blue/colour: red/")
    code, report = round_trip.diff(repo)
    assert code == 1
    assert [(o["path"], o["status"], o["fields"]) for o in report["objects"]] == [
        (f"{ours}/configmaps/settings.yaml", "changed", [".data.colour"])
    ]
    _snapshot(repo, cluster)  # the edit is now the branch tip

    # The edit made kubectl-edit the owner of the field: a plain restore reports the conflict.
    scope = ("--at", between, "--namespace", namespace, "--type", "configmaps")
    code, out = round_trip.restore(repo, *scope)
    assert code == 1
    conflict = [line for line in out if line.startswith(f"failed {ours}/configmaps/settings.yaml")]
    assert len(conflict) == 1, out
    assert "conflict" in conflict[0]
    assert "kubectl-edit" in conflict[0]
    code, out = round_trip.restore(repo, *scope, "--dry-run", "--force-conflicts")
    assert code == 0, out
    assert f"changed {ours}/configmaps/settings.yaml (.data.colour)" in out
    assert "-  colour: red" in out
    assert "+  colour: blue" in out
    assert _colour(cluster, namespace) == "red"  # a dry run writes nothing
    code, out = round_trip.restore(repo, *scope, "--force-conflicts")
    assert code == 0, out
    assert _colour(cluster, namespace) == "blue"
    code, report = round_trip.diff(repo, "--at", between, "--namespace", namespace)
    assert (code, report["objects"]) == (0, []), report


def test_no_false_drift_from_scaling_and_exit_3_when_types_cannot_be_read(
    round_trip: RoundTrip, tmp_path: Path
) -> None:
    cluster, namespace = round_trip.b, round_trip.namespace
    repo = tmp_path / "fresh.git"
    _snapshot(repo, cluster)
    # An autoscaler's work (the HPA targets web) is not drift.
    scale = f"/apis/apps/v1/namespaces/{namespace}/deployments/web/scale"
    body = {"spec": {"replicas": 3}}
    ok(cluster.request("PATCH", scale, body, content_type="application/merge-patch+json"))
    code, report = round_trip.diff(repo)
    assert (code, report["objects"], report["unread"]) == (0, [], {}), report

    # A user who may read ConfigMaps only: drift is partial, and says so.
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    name = f"configmap-reader-{secrets.token_hex(3)}"
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}
    _post(cluster, f"{rbac}/clusterroles", {"metadata": {"name": name}, "rules": [rule]})
    _post(cluster, f"{rbac}/clusterrolebindings", {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "User", "name": cluster.restricted_user}],
    })  # fmt: skip
    code, out = _kube2git(
        "diff", "--repo", str(repo), "--kubeconfig", str(cluster.restricted_kubeconfig),
        "--namespace", namespace,
    )  # fmt: skip
    assert code == 3, out
    assert "not read: deployments.apps: forbidden" in out
    stdout = [line for line in out if not line.startswith("! ")]
    assert stdout[-1].startswith("0 changed, 0 added, 0 removed; ")


def _colour(cluster: ControlPlane, namespace: str) -> str:
    body = ok(cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/settings"))
    return str(body["data"]["colour"])


def kubectl_edit(cluster: ControlPlane, namespace: str, target: str, sed: str) -> None:
    """A person's ``kubectl edit``: the editor is sed, the rest is the real kubectl."""
    env = {**os.environ, "KUBE_EDITOR": f"sed -i '{sed}'", "KUBECONFIG": str(cluster.kubeconfig)}
    subprocess.run(
        ["kubectl", "edit", "-n", namespace, target], env=env, check=True, capture_output=True
    )


def test_prune_deletes_only_what_the_point_lacks_in_scope(
    cluster_b: ControlPlane, tmp_path: Path
) -> None:
    config = tmp_path / "fast.yaml"
    config.write_text(FAST_CLIENT)
    namespaces = [f"prune-{secrets.token_hex(3)}" for _ in range(2)]
    for ns in namespaces:
        _post(cluster_b, "/api/v1/namespaces", {"metadata": {"name": ns}})
        _post(cluster_b, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "kept"}})
    repo = tmp_path / "b.git"
    _snapshot(repo, cluster_b)
    for ns in namespaces:
        _post(cluster_b, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "stray"}})
    argv = ("restore", "--repo", str(repo), "--kubeconfig", str(cluster_b.kubeconfig),
            "--config", str(config), "--namespace", namespaces[0], "--prune")  # fmt: skip
    stray = f"namespaces/{namespaces[0]}/configmaps/stray.yaml"

    code, out = _kube2git(*argv)
    assert code == 2  # not a terminal and no --yes: nothing is done
    assert out[-1] == (
        "! kube2git: error: --prune would delete 1 objects: confirm on a terminal or pass --yes"
    )
    code, out = _kube2git(*argv, "--yes", "--dry-run")
    assert code == 0, out
    assert f"would delete {stray}" in out
    assert out[-1].endswith(" (dry run: nothing was written)")
    path = f"/api/v1/namespaces/{namespaces[0]}/configmaps/stray"
    assert cluster_b.request("GET", path).status == 200
    code, out = _kube2git(*argv, "--yes")
    assert code == 0, out
    assert [line for line in out if line.startswith(("deleted", "would delete"))] == [
        f"would delete {stray}",
        f"deleted {stray}",
    ]
    assert cluster_b.request("GET", path).status == 404
    # The other namespace is out of scope: its stray object stays.
    other = f"/api/v1/namespaces/{namespaces[1]}/configmaps/stray"
    assert cluster_b.request("GET", other).status == 200


def test_restore_waits_out_429s_and_then_applies(cluster_b: ControlPlane, tmp_path: Path) -> None:
    config = tmp_path / "fast.yaml"
    config.write_text(FAST_CLIENT)
    ns = f"retry-{secrets.token_hex(3)}"
    _post(cluster_b, "/api/v1/namespaces", {"metadata": {"name": ns}})
    _post(cluster_b, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "back"}})
    repo = tmp_path / "b.git"
    _snapshot(repo, cluster_b)
    path = f"/api/v1/namespaces/{ns}/configmaps/back"
    ok(cluster_b.request("DELETE", path))
    binding = f"restore-admin-{secrets.token_hex(3)}"
    _post(cluster_b, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": binding},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"
        },
        "subjects": [{"kind": "User", "name": cluster_b.restricted_user}],
    })  # fmt: skip
    argv = ("restore", "--repo", str(repo), "--config", str(config), "--namespace", ns,
            "--kubeconfig", str(cluster_b.restricted_kubeconfig))  # fmt: skip
    outcome: list[tuple[int, list[str]]] = []
    with cluster_b.apf_reject(cluster_b.restricted_user):
        worker = threading.Thread(target=lambda: outcome.append(_kube2git(*argv)))
        worker.start()
        eventually("the restore to be answered 429", lambda: _throttled(cluster_b) > 0, within=30)
    worker.join(timeout=120)
    code, out = outcome[0]
    assert code == 0, out
    assert f"created namespaces/{ns}/configmaps/back.yaml" in out
    assert cluster_b.request("GET", path).status == 200


def _throttled(cluster: ControlPlane) -> int:
    """Requests of the restricted user the API server answered with 429."""
    count = 0
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        if (
            event["user"]["username"] == cluster.restricted_user
            and event.get("stage") == "ResponseComplete"
            and (event.get("responseStatus") or {}).get("code") == 429
        ):
            count += 1
    return count


def _on_a_terminal(argv: Sequence[str], answer: str) -> str:
    """Run the command line on a pseudo-terminal, as a person would; answer its question.

    Returns everything it wrote (stdout and stderr share the terminal)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", *argv],
        stdin=terminal, stdout=terminal, stderr=terminal, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    os.close(terminal)
    seen = b""
    answered = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            seen += chunk
            if not answered and b"[y/N] " in seen:
                os.write(controller, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(controller)
    return seen.decode(errors="replace")


def test_on_a_terminal_prune_asks_and_restore_shows_its_progress(
    cluster_b: ControlPlane, tmp_path: Path
) -> None:
    config = tmp_path / "fast.yaml"
    config.write_text(FAST_CLIENT)
    ns = f"ask-{secrets.token_hex(3)}"
    _post(cluster_b, "/api/v1/namespaces", {"metadata": {"name": ns}})
    _post(cluster_b, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "kept"}})
    repo = tmp_path / "b.git"
    _snapshot(repo, cluster_b)
    _post(cluster_b, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "stray"}})
    ok(cluster_b.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/kept"))
    argv = ["restore", "--repo", str(repo), "--kubeconfig", str(cluster_b.kubeconfig),
            "--config", str(config), "--namespace", ns, "--prune"]  # fmt: skip
    stray = f"/api/v1/namespaces/{ns}/configmaps/stray"

    said = _on_a_terminal(argv, "n")
    assert f"would delete namespaces/{ns}/configmaps/stray.yaml" in said
    assert "Delete these 1 objects? [y/N] " in said
    assert "restoring config maps: 1/1" in said  # the progress line
    assert f"created namespaces/{ns}/configmaps/kept.yaml" in said
    assert cluster_b.request("GET", stray).status == 200  # "n": nothing deleted

    said = _on_a_terminal(argv, "y")
    assert f"deleted namespaces/{ns}/configmaps/stray.yaml" in said
    assert cluster_b.request("GET", stray).status == 404
