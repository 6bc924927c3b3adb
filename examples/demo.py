"""The quickstart's main job: a throwaway local cluster, sample workloads, kube2git following it.

    python -m examples.demo [--dir out/demo] [--keep]

Starts etcd, kube-apiserver, controllers and kwok on loopback (tests/cluster), creates a
small shop (Deployments, an HPA, a Service, ConfigMaps, a Secret, a custom resource), runs
``kube2git run`` against it, makes a few changes the way people and controllers do (an edit
by ``kubectl-edit``, autoscaling by the HPA controller, a deletion), stops the exporter with
SIGTERM and prints the backup branch's history. ``--keep`` leaves the cluster running.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.cluster.build import ensure_built
from tests.cluster.control_plane import ControlPlane, start

MERGE = "application/merge-patch+json"


def _deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": name, "image": image}],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
        },
    }


def populate(cluster: ControlPlane) -> None:
    """A small shop, created the way a person would (field manager kubectl-create)."""
    cluster.create_kwok_nodes(2)
    cluster.create_crd("shop.example.com", "Promotion", "promotions")
    posts = [
        ("/api/v1/namespaces", {"metadata": {"name": "shop"}}),
        ("/apis/apps/v1/namespaces/shop/deployments", _deployment("web", "nginx:1.27", 2)),
        ("/apis/apps/v1/namespaces/shop/deployments", _deployment("api", "shop/api:2.3", 2)),
        (
            "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
            {
                "metadata": {"name": "api"},
                "spec": {
                    "minReplicas": 2,
                    "maxReplicas": 10,
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "api",
                    },
                },
            },
        ),
        (
            "/api/v1/namespaces/shop/services",
            {
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            },
        ),
        (
            "/api/v1/namespaces/shop/configmaps",
            {
                "metadata": {"name": "web-config"},
                "data": {"nginx.conf": "server {\n  listen 80;\n}\n"},
            },
        ),
        (
            "/api/v1/namespaces/shop/secrets",
            {
                "metadata": {"name": "db"},
                "data": {"password": base64.b64encode(b"hunter2").decode()},
            },
        ),
        (
            "/apis/shop.example.com/v1/namespaces/shop/promotions",
            {
                "apiVersion": "shop.example.com/v1",
                "kind": "Promotion",
                "metadata": {"name": "black-friday"},
                "spec": {"discount": "30%"},
            },
        ),
    ]
    for path, body in posts:
        reply = cluster.request("POST", f"{path}?fieldManager=kubectl-create", body)
        if reply.status not in (200, 201, 409):
            raise SystemExit(f"demo: creating {path} failed: {reply.status} {reply.body}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("out/demo"))
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    print("demo: starting a local control plane (etcd, kube-apiserver, controllers, kwok)")
    cluster = start(args.dir / "cluster", ensure_built(), controllers=True, kwok=True)
    try:
        populate(cluster)
        repo, port = args.dir / "backup.git", _free_port()
        argv = [
            "kube2git", "run", "--repo", str(repo), "--kubeconfig", str(cluster.kubeconfig),
            "--listen", f"127.0.0.1:{port}",
        ]  # fmt: skip
        print("demo:", " ".join(argv))
        log = (args.dir / "kube2git.log").open("wb")
        exporter = subprocess.Popen(argv, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while not _ready(port):
            if exporter.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: kube2git did not start; see {args.dir / 'kube2git.log'}")
            time.sleep(0.5)
        print("demo: synced; now editing, autoscaling and deleting")
        cluster.request(
            "PATCH",
            "/api/v1/namespaces/shop/configmaps/web-config?fieldManager=kubectl-edit",
            {"data": {"nginx.conf": "server {\n  listen 8080;\n}\n"}},
            content_type=MERGE,
        )
        for replicas in (5, 8, 3):
            cluster.request(
                "PATCH",
                "/apis/apps/v1/namespaces/shop/deployments/api/scale?fieldManager=kube-controller-manager",
                {"spec": {"replicas": replicas}},
                content_type=MERGE,
            )
        cluster.request(
            "DELETE", "/apis/shop.example.com/v1/namespaces/shop/promotions/black-friday"
        )
        time.sleep(8)
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(timeout=60)
        print(f"demo: the backup branch in {repo}:\n")
        git = ["git", "--git-dir", str(repo)]
        how = "%(trailers:key=Attribution,valueonly,separator=)"
        subprocess.run(
            [*git, "log", f"--format=%h  %<(24)%an %<(14){how} %s", "kube2git"], check=True
        )
        print("\ndemo: one actor per commit: the edit by kubectl-edit, the deletion by unknown")
        print("demo: (a deletion carries no field manager; the audit webhook would name the user)")
        print("\ndemo: the last commit:\n")
        subprocess.run([*git, "show", "--stat", "--format=%an <%ae>%n%n%B", "kube2git"], check=True)
        print("demo: kube2git log ConfigMap/shop/web-config:\n")
        subprocess.run(
            ["kube2git", "log", "--repo", str(repo), "ConfigMap/shop/web-config"], check=True
        )
        print("demo: autoscaling made no commit; the Secret's value is not in the repository.")
    finally:
        if args.keep:
            print(
                f"demo: cluster left running; stop it with: python -m tests.cluster down --dir {args.dir / 'cluster'}"
            )
        else:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
