"""Realistic Kubernetes objects as a live API server returns them, for benchmarks and tests.

:func:`deployments` is the uniform Deployment load of the pipeline benchmark. :func:`mix` is
what a real cluster holds besides Deployments, in fixed proportions (:data:`MIX`), so that the
normalize benchmark also pays for the work a Deployment never asks of the emitter: large
multi-line ConfigMap data, deeply nested custom resources, strings that must be quoted or
escaped, unicode text and long lists. Both are deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any


def deployment(index: int, rng: random.Random) -> dict[str, Any]:
    """A Deployment as ``kubectl get -o json`` shows it: managedFields, status, annotations."""
    name = f"app-{index:06d}"
    namespace = f"team-{index % 50:02d}"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "shop", "tier": "web"}
    container = {
        "name": "main",
        "image": f"registry.example.com/shop/{name}:1.{rng.randint(0, 40)}.{rng.randint(0, 9)}",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "FEATURE_FLAG", "value": "true"},
            {"name": "PORT", "value": "8080"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "args": ["--config=/etc/app/config.yaml", "--verbose"],
        "resources": {
            "limits": {"cpu": "500m", "memory": "512Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": True}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"6b1f2c3e-{index:04x}-4a5b-9c8d-0e1f2a3b4c5d",
            "resourceVersion": str(100000 + index),
            "generation": 3,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": labels,
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"apps/v1"}\n',
                "description": "Serves the shop's web front end.\nOwned by team web.\n",
            },
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2026-01-02T03:04:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {}}}},
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2026-01-02T03:05:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:replicas": {}}},
                    "subresource": "status",
                },
            ],
        },
        "spec": {
            "replicas": rng.randint(1, 5),
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"creationTimestamp": None, "labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": name, "defaultMode": 420}}
                    ],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "updatedReplicas": 2,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "lastTransitionTime": "2026-01-02T03:05:00Z",
                    "lastUpdateTime": "2026-01-02T03:05:00Z",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                }
            ],
        },
    }


def deployments(count: int, seed: int = 7, start: int = 0) -> list[dict[str, Any]]:
    """``count`` Deployments numbered from ``start`` (names and uids differ across starts)."""
    rng = random.Random(seed)
    return [deployment(index, rng) for index in range(start, start + count)]


def _metadata(name: str, namespace: str | None, rng: random.Random, **extra: Any) -> dict[str, Any]:
    """Metadata as the server returns it: bookkeeping the filters remove, labels they keep."""
    metadata: dict[str, Any] = {
        "name": name,
        "uid": f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4a5b-9c8d-0e1f2a3b4c5d",
        "resourceVersion": str(rng.randint(1000, 9_999_999)),
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "labels": {"app.kubernetes.io/name": name.rsplit("-", 1)[0], "tier": "backend"},
        "managedFields": [
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2026-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}},
            }
        ],
        **extra,
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


_WORDS = (
    "upstream", "server", "listen", "location", "proxy_pass", "timeout", "buffer", "cache",
    "worker", "level", "info", "debug", "retry", "backoff", "endpoint", "region", "bucket",
    "replica", "shard", "queue", "topic", "consumer", "producer", "pool",
)  # fmt: skip


def _config_file(rng: random.Random, lines: int) -> str:
    """An nginx/ini-like configuration file: indentation, comments, trailing newline."""
    out = []
    depth = 0
    for number in range(lines):
        word, other = rng.choice(_WORDS), rng.choice(_WORDS)
        roll = rng.random()
        if roll < 0.08 and depth < 3:
            out.append("    " * depth + f"{word} {other} {{")
            depth += 1
        elif roll < 0.16 and depth:
            depth -= 1
            out.append("    " * depth + "}")
        elif roll < 0.24:
            out.append(
                "    " * depth + f"# {word} {other}: see https://example.com/{word}#{number}"
            )
        elif roll < 0.28:
            out.append("")
        else:
            out.append("    " * depth + f"{word}_{other} {rng.randint(1, 65535)};")
    out.extend("}" for _ in range(depth))
    return "\n".join(out) + "\n"


def _dashboard(rng: random.Random, panels: int) -> str:
    """A Grafana dashboard as JSON, pretty-printed: many short lines full of quotes."""
    return json.dumps(
        {
            "title": f"Service {rng.randint(1, 999)}",
            "panels": [
                {
                    "id": panel,
                    "type": rng.choice(["graph", "stat", "table"]),
                    "title": f"p99 latency ({rng.choice(_WORDS)})",
                    "targets": [
                        {"expr": f'histogram_quantile(0.99, rate(x{{job="{panel}"}}[5m]))'}
                    ],
                    "gridPos": {"h": 8, "w": 12, "x": 0, "y": panel * 8},
                }
                for panel in range(panels)
            ],
        },
        indent=2,
    )


def config_map_large(index: int, rng: random.Random) -> dict[str, Any]:
    """A ConfigMap holding whole files (2-20 KiB): literal blocks, some without a final newline,
    a script with tabs, and now and then a line of blanks, which no literal block can carry."""
    name = f"config-{index:06d}"
    data = {
        "nginx.conf": _config_file(rng, rng.randint(40, 250)),
        "dashboard.json": _dashboard(rng, rng.randint(2, 12)),
        "entrypoint.sh": '#!/bin/sh\nset -eu\nif [ -n "$DEBUG" ]; then\n\tset -x\nfi\n'
        'exec /app/server --port="${PORT:-8080}" "$@"\n',
        "application.properties": "\n".join(
            f"{rng.choice(_WORDS)}.{rng.choice(_WORDS)}={rng.randint(0, 10**6)}"
            for _ in range(rng.randint(10, 60))
        ),
    }
    if rng.random() < 0.2:
        data["notes.txt"] = "Edited by hand.\n  \nKeep the blank line above.\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(name, f"team-{index % 50:02d}", rng),
        "data": data,
    }


def _nested(rng: random.Random, depth: int) -> dict[str, Any]:
    """A custom resource's spec: maps of maps, lists of maps, every JSON scalar type."""
    if depth == 0:
        return {
            "enabled": rng.random() < 0.5,
            "weight": rng.randint(0, 100),
            "ratio": round(rng.random(), 3),
            "mode": rng.choice(["Strict", "Permissive", "Disabled"]),
            "selector": {"matchLabels": {"app": rng.choice(_WORDS)}},
        }
    return {
        "name": f"{rng.choice(_WORDS)}-{depth}",
        "config": _nested(rng, depth - 1),
        "steps": [
            {"name": f"step-{step}", "params": _nested(rng, max(0, depth - 3))}
            for step in range(rng.randint(1, 3))
        ],
        "timeout": f"{rng.randint(1, 90)}s",
        "optional": None if rng.random() < 0.3 else rng.choice(_WORDS),
    }


def custom_resource(index: int, rng: random.Random) -> dict[str, Any]:
    """A custom resource nested 7 levels and more deep, with a status the filters drop."""
    name = f"pipeline-{index:06d}"
    return {
        "apiVersion": "ci.example.com/v1beta1",
        "kind": "Pipeline",
        "metadata": _metadata(name, f"team-{index % 50:02d}", rng, generation=4),
        "spec": {"stages": [_nested(rng, rng.randint(3, 5)) for _ in range(rng.randint(1, 3))]},
        "status": {"phase": "Succeeded", "observedGeneration": 4, "conditions": []},
    }


# Values that a YAML reader would take for something else, or that need quotes or escapes.
_AWKWARD = (
    "true", "yes", "no", "on", "off", "Y", "null", "~", "", "8080", "0.5", "1e3", "0x1F", "012",
    "2026-01-02", "1:30", "- item", "key: value", "#general", "@team", "*.example.com",
    " leading space", "trailing space ", 'say "hi"', "it's", "C:\\Program Files\\app", "a\tb",
    "line\r\nbreak", "[0, 1]", "{a: b}", "%PATH%", "!important", "&anchor", "|pipe", ">fold",
    "ends with colon:", "0.0.0.0/0", "100m", "512Mi", "15s",
)  # fmt: skip


def service_awkward(index: int, rng: random.Random) -> dict[str, Any]:
    """A Service whose annotations (load balancer, monitoring, ingress settings) hold strings
    that must be quoted or escaped."""
    name = f"svc-{index:06d}"
    annotations = {f"example.com/setting-{number}": rng.choice(_AWKWARD) for number in range(12)}
    annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] = "true"
    annotations["prometheus.io/port"] = str(rng.randint(1024, 65535))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, f"team-{index % 50:02d}", rng, annotations=annotations),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": f"10.96.{index % 256}.{rng.randint(1, 254)}",
            "clusterIPs": [f"10.96.{index % 256}.1"],
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
            ],
            "selector": {"app.kubernetes.io/name": name, "on": "yes"},
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    }


# Real text in many scripts: look-alike characters are the point here.
_GREETINGS = (
    "Grüße aus München, schöne Straße",
    "こんにちは世界、今日は良い天気です",
    "你好，世界！欢迎使用",  # noqa: RUF001
    "Привет, мир! Добро пожаловать",
    "مرحبا بالعالم",
    "Γειά σου Κόσμε",  # noqa: RUF001
    "שלום עולם",
    "Olá, ação e coração",
    "नमस्ते दुनिया",
    "안녕하세요 세계",
    "Ça va? Très bien — merci",
    "emoji 🚀✨🎉 done",
    "₿ 1.5 ≈ € 50 000",
    "math: ∀x ∈ ℝ, x² ≥ 0",  # noqa: RUF001
)


def config_map_unicode(index: int, rng: random.Random) -> dict[str, Any]:
    """Translations: single-line and multi-line text in many scripts, unicode label values."""
    name = f"i18n-{index:06d}"
    data = {f"message.{key}": rng.choice(_GREETINGS) for key in range(rng.randint(10, 30))}
    data["about.md"] = "\n".join(rng.choice(_GREETINGS) for _ in range(rng.randint(5, 20))) + "\n"
    metadata = _metadata(
        name, f"team-{index % 50:02d}", rng, annotations={"owner": "Zoë Ångström <zoë@example.com>"}
    )
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def cluster_role(index: int, rng: random.Random) -> dict[str, Any]:
    """An aggregated ClusterRole: dozens of rules, each with lists of groups, resources, verbs."""
    rules = [
        {
            "apiGroups": [rng.choice(["", "apps", "batch", "example.com", "*"])],
            "resources": [f"{rng.choice(_WORDS)}s" for _ in range(rng.randint(1, 12))],
            "verbs": rng.sample(_VERBS, rng.randint(1, len(_VERBS))),
        }
        for _ in range(rng.randint(20, 60))
    ]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _metadata(f"role-{index:06d}", None, rng),
        "rules": rules,
    }


def network_policy(index: int, rng: random.Random) -> dict[str, Any]:
    """An allow-list NetworkPolicy: long lists of CIDR blocks and ports."""
    peers = [
        {"ipBlock": {"cidr": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24"}}
        for _ in range(rng.randint(30, 120))
    ]
    ports = [{"port": 1024 + port, "protocol": "TCP"} for port in range(rng.randint(5, 30))]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(f"allow-{index:06d}", f"team-{index % 50:02d}", rng),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers, "ports": ports}],
            "egress": [{"to": peers[: len(peers) // 2]}],
        },
    }


MIX: tuple[tuple[str, int, Callable[[int, random.Random], dict[str, Any]]], ...] = (
    ("Deployment", 6, deployment),
    ("ConfigMap with large multi-line data", 4, config_map_large),
    ("custom resource nested deeply", 3, custom_resource),
    ("Service with strings to quote or escape", 2, service_awkward),
    ("ConfigMap of unicode text", 2, config_map_unicode),
    ("ClusterRole with long lists", 2, cluster_role),
    ("NetworkPolicy with long lists", 1, network_policy),
)
"""(what, objects in every 20, maker): 30 % Deployments, 20 % large ConfigMaps, 15 % custom
resources, 10 % Services with awkward strings, 10 % unicode ConfigMaps, 15 % long lists."""


def mix(count: int, seed: int = 7, start: int = 0) -> list[dict[str, Any]]:
    """``count`` objects of every kind of :data:`MIX`, in its proportions, interleaved,
    numbered from ``start`` (names and uids differ across starts)."""
    rng = random.Random(seed)
    makers = [maker for _, share, maker in MIX for _ in range(share)]
    return [makers[index % len(makers)](index, rng) for index in range(start, start + count)]
