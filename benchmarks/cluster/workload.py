"""What the harness puts into the cluster and how it changes it.

A unit is one namespace holding 100 objects: 10 Deployments (1 replica, so kwok runs 10 pods
through 10 ReplicaSets), 10 Services, 40 ConfigMaps (one ~64 KB, ten multi-line), 20 Secrets
(values the harness can find again, plain and base64; one per namespace also copies them into
its labels and annotations, as kubectl, kapp and Rancher do), 5 HPAs on half the Deployments
and 15 custom objects of a benchmark CRD, plus a Helm release kept in a ConfigMap (outside the
inventory: nobody should record it). Scale S is 10 units (1,000 objects), M 100, L 1,000.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from benchmarks.cluster.api import JSON, MERGE_PATCH, Api

SCALES = {"S": 10, "M": 100, "L": 1000}
NODES = {"S": 2, "M": 10, "L": 40}
CRD_GROUP, CRD_KIND, CRD_PLURAL = "bench.kube2git.dev", "Widget", "widgets"
DEPLOYMENTS, SERVICES, CONFIGMAPS, SECRETS, HPAS, WIDGETS = 10, 10, 40, 20, 5, 15
SECRET_PREFIX = "bsv-"  # noqa: S105 - a marker, not a password
"""Every planted secret value starts with this; base64 of a value starts with ``YnN2L``."""
MARKER_PREFIX = "bmk-"


@dataclass(frozen=True, slots=True)
class Obj:
    """One object the harness created: API path pieces and the repository identity."""

    group: str
    version: str
    resource: str
    kind: str
    namespace: str
    name: str

    @property
    def collection(self) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{base}/namespaces/{self.namespace}/{self.resource}"

    @property
    def path(self) -> str:
        return f"{self.collection}/{self.name}"


@dataclass
class Inventory:
    """Everything planted: objects by kind, secret values, HPA targets."""

    objects: list[Obj] = field(default_factory=list)
    secret_values: set[str] = field(default_factory=set)
    hpa_targets: list[Obj] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o.kind == kind]


def _labels(ns: str, app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": ns, "tier": "web"}


def _deployment(ns: str, name: str, rng: random.Random) -> JSON:
    labels = _labels(ns, name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": {"description": "Serves the shop's front end.\nOwned by web.\n"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": f"registry.example.com/shop/{name}:1.{rng.randint(0, 40)}",
                            "env": [
                                {"name": "LOG_LEVEL", "value": "info"},
                                {"name": "BENCH_MARKER", "value": "none"},
                            ],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
        },
    }


def _configmap(ns: str, name: str, index: int, rng: random.Random) -> JSON:
    data: dict[str, str] = {"LOG_LEVEL": "info", "bench-marker": "none"}
    if index == 0:  # ~64 KB of text, like a bundled dashboard or CA bundle
        data["large.txt"] = "\n".join(f"line {i:05d} " + secrets.token_hex(24) for i in range(1100))
    elif index <= 10:
        data["config.yaml"] = "".join(
            f"section{i}:\n  key: value-{rng.randint(0, 999)}\n  enabled: true\n" for i in range(20)
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": _labels(ns, name)},
        "data": data,
    }


def _secret_value(values: set[str]) -> str:
    value = SECRET_PREFIX + secrets.token_hex(12)
    values.add(value)
    return value


def _gzip_base64(document: object) -> str:
    return base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()


def _secret(ns: str, name: str, values: set[str], *, side_doors: bool = False) -> JSON:
    plain = {key: _secret_value(values) for key in ("password", "token")}
    metadata: JSON = {"name": name, "namespace": ns, "labels": _labels(ns, name)}
    if side_doors:
        # Where tools and people copy values: applied copies (one still holding a value
        # rotated since), Rancher's gzip+base64 copy, a base64 note, a label.
        applied = {"apiVersion": "v1", "kind": "Secret", "stringData": plain}
        metadata["labels"]["password-copy"] = plain["password"]
        metadata["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                {**applied, "stringData": {"password": _secret_value(values)}}
            ),
            "kapp.k14s.io/original": json.dumps(applied),
            "objectset.rio.cattle.io/applied": _gzip_base64(applied),
            "note": base64.b64encode(plain["token"].encode()).decode(),
        }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()},
    }


def _helm_release_configmap(ns: str, values: set[str]) -> JSON:
    """A Helm 3 release kept in a ConfigMap (``HELM_DRIVER=configmap``): never captured."""
    release = {"name": "shop", "config": {"password": _secret_value(values)}}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "sh.helm.release.v1.shop.v1",
            "namespace": ns,
            "labels": {"owner": "helm", "name": "shop", "status": "deployed", "version": "1"},
        },
        "data": {"release": _gzip_base64(release)},
    }


CLUSTER_IPS = 200
"""Services that get a cluster IP; the rest are headless: tests/cluster's service range is a /24."""


def _service(ns: str, name: str, *, headless: bool) -> JSON:
    spec: JSON = {
        "selector": {"app.kubernetes.io/name": name},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": _labels(ns, name)},
        "spec": spec,
    }


def _hpa(ns: str, target: str) -> JSON:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": target, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1,
            "maxReplicas": 8,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def _widget(ns: str, name: str, rng: random.Random) -> JSON:
    return {
        "apiVersion": f"{CRD_GROUP}/v1",
        "kind": CRD_KIND,
        "metadata": {"name": name, "namespace": ns, "labels": {"bench": "widget"}},
        "spec": {"size": rng.randint(1, 9), "colour": rng.choice(["red", "green", "blue"])},
    }


def plan(scale: str, seed: int = 7) -> tuple[Inventory, list[tuple[str, JSON]], list[JSON]]:
    """The inventory, the namespaced objects to POST, and the Namespaces (POSTed first)."""
    rng = random.Random(seed)
    inv = Inventory()
    namespaces: list[JSON] = []
    posts: list[tuple[str, JSON]] = []

    def add(obj: Obj, body: JSON) -> None:
        inv.objects.append(obj)
        posts.append((obj.collection, body))

    for unit in range(SCALES[scale]):
        ns = f"bench-{unit:04d}"
        namespaces.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        inv.objects.append(Obj("", "v1", "namespaces", "Namespace", "", ns))
        for i in range(DEPLOYMENTS):
            name = f"app-{i:02d}"
            dep = Obj("apps", "v1", "deployments", "Deployment", ns, name)
            add(dep, _deployment(ns, name, rng))
            if i < HPAS:
                add(
                    Obj(
                        "autoscaling",
                        "v2",
                        "horizontalpodautoscalers",
                        "HorizontalPodAutoscaler",
                        ns,
                        name,
                    ),
                    _hpa(ns, name),
                )
                inv.hpa_targets.append(dep)
        for i in range(SERVICES):
            add(
                Obj("", "v1", "services", "Service", ns, f"app-{i:02d}"),
                _service(ns, f"app-{i:02d}", headless=unit * SERVICES + i >= CLUSTER_IPS),
            )
        for i in range(CONFIGMAPS - 1):  # the namespace's kube-root-ca.crt is the 40th
            name = f"config-{i:02d}"
            add(Obj("", "v1", "configmaps", "ConfigMap", ns, name), _configmap(ns, name, i, rng))
        for i in range(SECRETS):
            name = f"secret-{i:02d}"
            body = _secret(ns, name, inv.secret_values, side_doors=i == 0)
            add(Obj("", "v1", "secrets", "Secret", ns, name), body)
        # Not in the inventory: no exporter should record it (katafygio does).
        release = _helm_release_configmap(ns, inv.secret_values)
        posts.append((f"/api/v1/namespaces/{ns}/configmaps", release))
        for i in range(WIDGETS):
            name = f"widget-{i:02d}"
            add(Obj(CRD_GROUP, "v1", CRD_PLURAL, CRD_KIND, ns, name), _widget(ns, name, rng))
    return inv, posts, namespaces


# ---- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edit:
    """One edit the harness made: its marker, target and when the API accepted it."""

    marker: str
    obj: Obj
    how: str
    at: float


def _edit_body(obj: Obj, how: str, marker: str) -> JSON:
    if how == "label":
        return {"metadata": {"labels": {"bench-marker": marker}}}
    if how == "configmap-data":
        return {"data": {"bench-marker": marker}}
    container: JSON = {"name": "main"}
    if how == "deployment-image":
        container["image"] = f"registry.example.com/shop/{obj.name}:{marker}"
    else:  # deployment-env
        container["env"] = [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "BENCH_MARKER", "value": marker},
        ]
    # strategic merge patch: containers merge by name
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


class Editor:
    """Makes ``rate`` edits per second of mixed kinds, each carrying a unique marker."""

    def __init__(self, api: Api, inv: Inventory, *, seed: int = 11) -> None:
        self._api = api
        self._rng = random.Random(seed)
        self._counter = 0
        self._lock = threading.Lock()
        self.edits: list[Edit] = []
        configmaps = [o for o in inv.of_kind("ConfigMap") if not o.name.endswith("00")]
        # Deployments without an HPA: an image/env edit rolls out a new ReplicaSet and pod.
        hpa = set(inv.hpa_targets)
        deployments = [o for o in inv.of_kind("Deployment") if o not in hpa]
        services = inv.of_kind("Service")
        self._choices: list[tuple[str, list[Obj]]] = [
            ("configmap-data", configmaps),
            ("configmap-data", configmaps),
            ("label", services),
            ("label", configmaps),
            ("deployment-env", deployments),
            ("deployment-image", deployments),
        ]

    def _next_marker(self) -> str:
        with self._lock:
            self._counter += 1
            return f"{MARKER_PREFIX}{self._counter:07d}"

    def edit_once(self) -> Edit:
        how, pool = self._rng.choice(self._choices)
        obj = self._rng.choice(pool)
        marker = self._next_marker()
        content_type = (
            MERGE_PATCH if obj.kind != "Deployment" else ("application/strategic-merge-patch+json")
        )
        self._api.ok("PATCH", obj.path, _edit_body(obj, how, marker), content_type=content_type)
        edit = Edit(marker, obj, how, time.time())
        with self._lock:
            self.edits.append(edit)
        return edit

    def run(self, rate: float, seconds: float, *, workers: int = 8) -> int:
        """Start ``rate`` edits per second on a fixed schedule for ``seconds``, on a pool of
        ``workers`` threads so that a slow API answer does not lower the rate; returns the
        number of edits made."""
        start = time.monotonic()
        total = int(rate * seconds)
        with ThreadPoolExecutor(workers) as pool:
            futures = []
            for index in range(total):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self.edit_once))
            for future in futures:
                future.result()
        return total


def storm(
    api: Api, targets: list[Obj], seconds: float, *, period: float = 4.0, seed: int = 13
) -> int:
    """Scale the HPA-targeted Deployments up and down through the scale subresource as the HPA
    controller does (field manager ``kube-controller-manager``), every ``period`` seconds;
    kwok then creates and deletes pods. Returns the number of scale requests."""
    rng = random.Random(seed)
    start = time.monotonic()
    requests = 0
    up = True

    def scale(item: tuple[Obj, int]) -> None:
        obj, replicas = item
        api.ok(
            "PATCH",
            f"{obj.path}/scale?fieldManager=kube-controller-manager",
            {"spec": {"replicas": replicas}},
            content_type=MERGE_PATCH,
        )

    with ThreadPoolExecutor(8) as pool:
        while time.monotonic() - start < seconds:
            tick = time.monotonic()
            batch = [(obj, rng.randint(2, 4) if up else 1) for obj in targets]
            for _ in pool.map(scale, batch):
                requests += 1
            up = not up
            time.sleep(max(0.0, period - (time.monotonic() - tick)))
    return requests


def iter_markers(data: bytes) -> Iterator[str]:
    """Every ``bmk-NNNNNNN`` marker in a blob."""
    prefix = MARKER_PREFIX.encode()
    start = 0
    while (at := data.find(prefix, start)) != -1:
        yield data[at : at + len(prefix) + 7].decode()
        start = at + 1


def crd_body() -> dict[str, Any]:
    return {"group": CRD_GROUP, "kind": CRD_KIND, "plural": CRD_PLURAL}
