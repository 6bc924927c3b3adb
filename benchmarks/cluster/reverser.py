"""What gitops-reverser needs in the cluster before it writes anything, as the benchmark sets it up.

gitops-reverser (``ConfigButler/gitops-reverser``) is an operator configured by its own custom
resources (``docs/configuration.md`` of its source): a ``ClusterProvider`` names the source
cluster (``default``, without a kubeconfig Secret: the operator's own connection), a namespaced
``GitProvider`` the repository, a ``GitTarget`` the branch and folder, and ``WatchRule`` /
``ClusterWatchRule`` objects the types. The benchmark runs it outside a cluster against a
kubeconfig, with ``-author-attribution=false`` and no Redis, pushing over ``file://`` to a bare
repository the harness reads like any other.

Coverage is kube2git's for everything the harness creates: every namespace (the target admits all
of them, ``allowedSourceNamespaces.selector: {}``), the six namespaced types of the inventory and
Namespaces. Secrets are in scope, so they go through its SOPS+age path with an age key the harness
generates (``sops`` from ``tests/deploy/tools``, found on ``PATH``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pygit2
import pyrage
import yaml

from benchmarks.cluster.api import JSON, Api, ApiError
from benchmarks.cluster.workload import CRD_GROUP, CRD_PLURAL, Obj

GROUP = "configbutler.ai"
VERSION = "v1alpha3"
NAMESPACE = "gitops-reverser"
"""Where its GitProvider, GitTarget, WatchRule and Secrets live (no benchmark object is here)."""
BRANCH = "main"
REF = f"refs/heads/{BRANCH}"
TARGET = "bench"
AGE_SECRET = "sops-age-key"  # noqa: S105 - the Secret's name, not a value

NAMESPACED_TYPES: tuple[tuple[str, str], ...] = (
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("apps", "deployments"),
    ("autoscaling", "horizontalpodautoscalers"),
    (CRD_GROUP, CRD_PLURAL),
)
"""(API group, resource) of every namespaced type the harness creates and edits."""
CLUSTER_TYPES: tuple[tuple[str, str], ...] = (("", "namespaces"),)


def path_of(obj: Obj) -> str:
    """Its built-in canonical path (``docs/configuration.md``, "resolution ladder" step 4):
    ``{namespace}/{group}/{resource}/{name}.yaml``, the group left out for core types,
    ``_cluster`` for cluster-scoped objects, ``.sops.yaml`` for Secrets."""
    suffix = ".sops.yaml" if obj.kind == "Secret" else ".yaml"
    parts = [obj.namespace or "_cluster", obj.group, obj.resource, obj.name + suffix]
    return "/".join(p for p in parts if p)


def captures(obj: Obj) -> bool:
    """Whether the watch rules below select the object's type."""
    kinds = CLUSTER_TYPES if not obj.namespace else NAMESPACED_TYPES
    return (obj.group, obj.resource) in kinds


def _rules(types: tuple[tuple[str, str], ...], **extra: str) -> list[JSON]:
    return [
        {
            "operations": ["*"],
            "apiGroups": [group],
            "resources": [resource],
            **extra,
        }
        for group, resource in types
    ]


def manifests(repo_url: str, age_identity: str) -> list[JSON]:
    """The objects to create, in order: namespace, age key Secret, ClusterProvider,
    GitProvider (anonymous: a ``file://`` URL needs no credentials), GitTarget (repository root,
    every source namespace, SOPS+age for Secrets, deletes mirrored), WatchRule, ClusterWatchRule."""

    def meta(name: str, *, namespaced: bool = True) -> JSON:
        return {"name": name, "namespace": NAMESPACE} if namespaced else {"name": name}

    def obj(kind: str, name: str, spec: JSON, *, namespaced: bool = True) -> JSON:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": meta(name, namespaced=namespaced),
            "spec": spec,
        }

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta(AGE_SECRET),
            "stringData": {"identity.agekey": age_identity + "\n"},
        },
        obj(
            "ClusterProvider",
            "default",
            {"allowedNamespaces": {"names": [NAMESPACE]}, "allowSourceNamespaceOverride": True},
            namespaced=False,
        ),
        obj("GitProvider", TARGET, {"url": repo_url, "allowedBranches": [BRANCH]}),
        obj(
            "GitTarget",
            TARGET,
            {
                "providerRef": {"name": TARGET},
                "branch": BRANCH,
                "path": ".",
                "allowedSourceNamespaces": {"selector": {}},
                "prune": {"mode": "OnEvent"},
                "encryption": {
                    "provider": "sops",
                    "secretRef": {"name": AGE_SECRET},
                    "age": {"enabled": True, "recipients": {"extractFromSecret": True}},
                },
            },
        ),
        obj(
            "WatchRule",
            TARGET,
            {
                "targetRef": {"name": TARGET},
                "rules": _rules(NAMESPACED_TYPES, sourceNamespace="*"),
            },
        ),
        obj(
            "ClusterWatchRule",
            TARGET,
            {
                "targetRef": {"name": TARGET, "namespace": NAMESPACE},
                "rules": _rules(CLUSTER_TYPES),
            },
            namespaced=False,
        ),
    ]


def _collection(body: JSON) -> str:
    api_version: str = body["apiVersion"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = {"Namespace": "namespaces", "Secret": "secrets"}.get(
        body["kind"], body["kind"].lower() + "s"
    )
    namespace = body["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def install_crds(api: Api, source: Path, *, timeout: float = 120.0) -> list[str]:
    """Create (or replace) its CRDs from ``config/crd/bases/`` of the unmodified source and wait
    until each is Established. Returns their names."""
    names: list[str] = []
    for path in sorted((source / "config" / "crd" / "bases").glob("*.yaml")):
        crd: JSON = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        reply = api.request("POST", collection, crd)
        if reply.status == 409:
            current = api.ok("GET", f"{collection}/{name}")
            crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            api.ok("PUT", f"{collection}/{name}", crd)
        elif reply.status >= 300:
            raise ApiError(f"CRD {name}: {reply.status} {str(reply.body)[:300]}")
        names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            got = api.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = got.get("status", {}).get("conditions", [])
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise ApiError(f"CRD {name} not Established after {timeout:.0f}s")
            time.sleep(0.5)
    return names


def _create_after_delete(api: Api, collection: str, body: JSON, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        reply = api.request("POST", collection, body)
        if reply.status != 409 or time.monotonic() > deadline:
            return reply
        time.sleep(0.5)  # finalizers still running


def prepare(api: Api, source: Path, repo: Path) -> dict[str, Any]:
    """Everything before its first start: a bare repository at ``repo``, the CRDs and the
    objects of :func:`manifests` with a fresh age key. Returns the age recipient (public)."""
    pygit2.init_repository(str(repo), bare=True, initial_head=BRANCH)
    install_crds(api, source)
    identity = pyrage.x25519.Identity.generate()
    for body in manifests(repo.resolve().as_uri(), str(identity)):
        reply = api.request("POST", _collection(body), body)
        if reply.status == 409 and body["kind"] != "Namespace":  # a rerun on a kept cluster:
            # the GitProvider's URL is immutable and the age key must be this run's
            path = f"{_collection(body)}/{body['metadata']['name']}"
            api.ok("DELETE", path)
            reply = _create_after_delete(api, _collection(body), body)
        if reply.status not in (201, 409):
            raise ApiError(
                f"{body['kind']} {body['metadata']['name']}: {reply.status} {str(reply.body)[:300]}"
            )
    return {"age_recipient": str(identity.to_public())}
