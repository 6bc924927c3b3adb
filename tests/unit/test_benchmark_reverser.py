"""The benchmark's set-up of gitops-reverser: where it is expected to write each object, and
that its watch rules cover what kube2git captures of the harness's objects, no less.

A wrong path or a missing type would not fail loudly in a run: the harness would wait out its
timeouts and report gitops-reverser as slow or lossy. These checks pin both to its documented
layout (``docs/configuration.md``, canonical path) and to the workload.
"""

from __future__ import annotations

from pathlib import Path

import pyrage

from benchmarks.cluster import reverser
from benchmarks.cluster.exporters import gitops_reverser
from benchmarks.cluster.workload import CRD_GROUP, plan


def test_path_of_follows_its_canonical_layout() -> None:
    inv, _, _ = plan("S")
    first = [o for o in inv.objects if o.name.endswith("00") and "0000" in o.namespace + o.name]
    by_kind = {o.kind: o for o in first}
    assert {kind: reverser.path_of(o) for kind, o in by_kind.items()} == {
        "Namespace": "_cluster/namespaces/bench-0000.yaml",
        "Deployment": "bench-0000/apps/deployments/app-00.yaml",
        "HorizontalPodAutoscaler": "bench-0000/autoscaling/horizontalpodautoscalers/app-00.yaml",
        "Service": "bench-0000/services/app-00.yaml",
        "ConfigMap": "bench-0000/configmaps/config-00.yaml",
        "Secret": "bench-0000/secrets/secret-00.sops.yaml",
        "Widget": f"bench-0000/{CRD_GROUP}/widgets/widget-00.yaml",
    }


def test_every_object_the_harness_creates_is_watched() -> None:
    inv, _, _ = plan("S")
    assert [o for o in inv.objects if not reverser.captures(o)] == []


def _by_kind(manifests: list[dict]) -> dict[str, dict]:  # type: ignore[type-arg]
    return {m["kind"]: m for m in manifests}


def test_manifests_cover_every_namespace_and_type() -> None:
    objects = _by_kind(reverser.manifests("file:///tmp/r.git", "AGE-SECRET-KEY-1X"))
    target = objects["GitTarget"]["spec"]
    assert target["allowedSourceNamespaces"] == {"selector": {}}  # every source namespace
    assert target["branch"] == reverser.BRANCH
    assert target["path"] == "."
    rules = objects["WatchRule"]["spec"]["rules"]
    assert {(r["apiGroups"][0], r["resources"][0]) for r in rules} == set(reverser.NAMESPACED_TYPES)
    assert {r["sourceNamespace"] for r in rules} == {"*"}
    cluster_rules = objects["ClusterWatchRule"]["spec"]["rules"]
    assert [(r["apiGroups"][0], r["resources"][0]) for r in cluster_rules] == [("", "namespaces")]
    assert objects["ClusterWatchRule"]["spec"]["targetRef"]["namespace"] == reverser.NAMESPACE
    provider = objects["ClusterProvider"]["spec"]
    assert provider["allowSourceNamespaceOverride"] is True
    assert provider["allowedNamespaces"] == {"names": [reverser.NAMESPACE]}


def test_the_age_key_is_in_its_secret_only_and_secrets_are_encrypted() -> None:
    identity = str(pyrage.x25519.Identity.generate())
    manifests = reverser.manifests("file:///tmp/r.git", identity)
    holding = [m["kind"] for m in manifests if identity in repr(m)]
    assert holding == ["Secret"]
    objects = _by_kind(manifests)
    assert objects["Secret"]["stringData"] == {"identity.agekey": identity + "\n"}
    encryption = objects["GitTarget"]["spec"]["encryption"]
    assert encryption["provider"] == "sops"
    assert encryption["secretRef"] == {"name": objects["Secret"]["metadata"]["name"]}
    assert objects["GitProvider"]["spec"] == {
        "url": "file:///tmp/r.git",
        "allowedBranches": [reverser.BRANCH],
    }


def test_collections_the_objects_are_posted_to() -> None:
    paths = [reverser._collection(m) for m in reverser.manifests("file:///r", "k")]
    ns = reverser.NAMESPACE
    assert paths == [
        "/api/v1/namespaces",
        f"/api/v1/namespaces/{ns}/secrets",
        "/apis/configbutler.ai/v1alpha3/clusterproviders",
        f"/apis/configbutler.ai/v1alpha3/namespaces/{ns}/gitproviders",
        f"/apis/configbutler.ai/v1alpha3/namespaces/{ns}/gittargets",
        f"/apis/configbutler.ai/v1alpha3/namespaces/{ns}/watchrules",
        "/apis/configbutler.ai/v1alpha3/clusterwatchrules",
    ]


def test_exporter_runs_without_audit_webhook_redis_or_listeners(tmp_path: Path) -> None:
    binary, sops = tmp_path / "gitops-reverser", tmp_path / "tools" / "sops"
    exporter = gitops_reverser(binary, tmp_path / "src", sops)
    argv = exporter.argv(tmp_path / "repo", tmp_path / "kubeconfig")
    assert argv == [
        str(binary),
        f"--kubeconfig={tmp_path / 'kubeconfig'}",
        "--author-attribution=false",
        "--redis-addr=",
        "--health-probe-bind-address=0",
        "--metrics-bind-address=0",
    ]
    assert exporter.env["PATH"].split(":")[0] == str(sops.parent)
    assert exporter.ref == "refs/heads/main"
    assert exporter.prepare is not None
