"""``kube2git run`` against the real control plane: what a user of continuous capture sees.

The exporter runs as a real process (as in a pod); changes are made with real API requests
carrying field managers, as kubectl and controllers send them.
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import (
    BRANCH,
    ExporterProcess,
    bare_remote,
    commit_count,
    converges_to_snapshot,
    create_config_maps,
    create_deployment,
    create_hpa,
    eventually,
    git,
    ok,
    show,
    tree,
)
from tests.leaks import find_planted

pytestmark = pytest.mark.cluster

MERGE_PATCH = "application/merge-patch+json"


def commits_touching(repo: Path, prefix: str) -> int:
    out = git(repo, "rev-list", "--count", BRANCH, "--", prefix, check=False).strip()
    return int(out) if out else 0


@pytest.fixture
def exporter(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ExporterProcess]:
    process = ExporterProcess(tmp_path, control_plane.kubeconfig).start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def test_an_edit_is_committed_within_seconds_by_its_field_manager(
    control_plane: ControlPlane, namespace: str, exporter: ExporterProcess
) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    ok(
        control_plane.request(
            "POST",
            f"{ns}/configmaps?fieldManager=kubectl-create",
            {"metadata": {"name": "app"}, "data": {"mode": "blue"}},
        )
    )
    path = f"namespaces/{namespace}/configmaps/app.yaml"
    eventually("the new ConfigMap's commit", lambda: path in tree(exporter.repo), within=15)
    patch = {"data": {"mode": "green"}}
    ok(
        control_plane.request(
            "PATCH",
            f"{ns}/configmaps/app?fieldManager=kubectl-edit",
            patch,
            content_type=MERGE_PATCH,
        )
    )
    eventually(
        "the edit's commit",
        lambda: show(exporter.repo, path)["data"] == {"mode": "green"},
        within=15,
    )
    author = git(exporter.repo, "log", "-1", "--format=%an", BRANCH, "--", path).strip()
    message = git(exporter.repo, "log", "-1", "--format=%B", BRANCH, "--", path)
    assert author == "kubectl-edit"
    assert "data.mode" in message
    assert f"{namespace}: ConfigMap app modified" in message.splitlines()[0]


def test_autoscaling_and_rollouts_make_no_commit_but_an_image_edit_makes_one(
    control_plane: ControlPlane, namespace: str, exporter: ExporterProcess
) -> None:
    control_plane.create_kwok_nodes(1)
    apps = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    create_deployment(control_plane, namespace, "web", replicas=2, image="nginx:1.26")
    create_hpa(control_plane, namespace, "web", max_replicas=60)
    prefix = f"namespaces/{namespace}/"
    web = f"{prefix}deployments.apps/web.yaml"
    eventually(
        "the deployment and its HPA on the branch",
        lambda: (
            {web, f"{prefix}horizontalpodautoscalers.autoscaling/web.yaml"}
            <= tree(exporter.repo).keys()
        ),
    )
    eventually(
        "replicas to leave the file", lambda: "replicas" not in show(exporter.repo, web)["spec"]
    )
    before = commits_touching(exporter.repo, prefix)

    for step in range(50):
        scale = {"spec": {"replicas": 1 + step % 5}}
        ok(
            control_plane.request(
                "PATCH",
                f"{apps}/web/scale?fieldManager=kube-controller-manager",
                scale,
                content_type=MERGE_PATCH,
            )
        )
    pods = control_plane.request("GET", f"/api/v1/namespaces/{namespace}/pods").body["items"]
    for pod in pods:  # a rollout of new pods, without a spec change
        control_plane.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
        )
    # Give the exporter well past its maximum delay to commit anything it would.
    marker = {"metadata": {"name": "marker"}}
    ok(control_plane.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", marker))
    eventually(
        "the marker's commit",
        lambda: f"{prefix}configmaps/marker.yaml" in tree(exporter.repo),
        within=20,
    )
    assert commits_touching(exporter.repo, prefix) == before + 1  # the marker alone

    image = {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    }
    ok(
        control_plane.request(
            "PATCH",
            f"{apps}/web?fieldManager=kubectl-set",
            image,
            content_type="application/strategic-merge-patch+json",
        )
    )
    eventually(
        "the image edit's commit",
        lambda: (
            show(exporter.repo, web)["spec"]["template"]["spec"]["containers"][0]["image"]
            == "nginx:1.27"
        ),
        within=20,
    )
    ok(
        control_plane.request(
            "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "marker-2"}}
        )
    )
    eventually(
        "the second marker",
        lambda: f"{prefix}configmaps/marker-2.yaml" in tree(exporter.repo),
        within=20,
    )
    assert commits_touching(exporter.repo, prefix) == before + 3  # marker, image, marker-2


def test_deletes_and_a_crd_installed_while_running(
    control_plane: ControlPlane, namespace: str, exporter: ExporterProcess
) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    ok(control_plane.request("POST", f"{ns}/configmaps", {"metadata": {"name": "doomed"}}))
    path = f"namespaces/{namespace}/configmaps/doomed.yaml"
    eventually("the ConfigMap's file", lambda: path in tree(exporter.repo), within=15)
    control_plane.request("DELETE", f"{ns}/configmaps/doomed")
    eventually("the file's deletion", lambda: path not in tree(exporter.repo), within=15)

    group = f"r{secrets.token_hex(3)}.kube2git.test"
    control_plane.create_crd(group, "Runner", "runners")
    runner = {
        "apiVersion": f"{group}/v1",
        "kind": "Runner",
        "metadata": {"name": "r1"},
        "spec": {"labels": ["linux"]},
    }
    ok(control_plane.request("POST", f"/apis/{group}/v1/namespaces/{namespace}/runners", runner))
    crd_path = f"cluster/customresourcedefinitions.apiextensions.k8s.io/runners.{group}.yaml"
    object_path = f"namespaces/{namespace}/runners.{group}/r1.yaml"
    eventually(
        "the CRD and its object",
        lambda: {crd_path, object_path} <= tree(exporter.repo).keys(),
        within=30,
    )
    assert show(exporter.repo, object_path)["spec"] == {"labels": ["linux"]}


def test_no_secret_value_reaches_any_commit(
    control_plane: ControlPlane, namespace: str, exporter: ExporterProcess
) -> None:
    values = [f"pw-{secrets.token_hex(8)}" for _ in range(3)]
    ns = f"/api/v1/namespaces/{namespace}"
    for index, value in enumerate(values):
        encoded = base64.b64encode(value.encode()).decode()
        secret = {
            "metadata": {"name": f"s{index}"},
            "data": {"password": encoded},
            "stringData": {"token": value},
        }
        ok(control_plane.request("POST", f"{ns}/secrets", secret))
    # Applied with last-applied-configuration, the way `kubectl apply` leaks values.
    applied = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "applied",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    {"stringData": {"v": values[0]}}
                )
            },
        },
        "stringData": {"v": values[0]},
    }
    ok(control_plane.request("POST", f"{ns}/secrets", applied))
    eventually(
        "the Secrets on the branch",
        lambda: f"namespaces/{namespace}/secrets/applied.yaml" in tree(exporter.repo),
        within=15,
    )
    assert find_planted(every_object(exporter.repo), values) == set()


def every_object(repo: Path) -> bytes:
    """Every object of the repository (blobs, trees, commit messages), concatenated."""
    return subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


def _gzip_base64(document: object) -> str:
    return base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()


def test_no_planted_secret_reaches_git_or_logs_through_a_side_door(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """Helm releases in ConfigMaps and Tiller storage, applied copies, values in metadata, a
    Secret inside a custom resource.

    The exporter runs with the annotation drop list emptied, the way a careless operator
    would configure it: Secrets must still lose every copy.
    """
    exporter = ExporterProcess(tmp_path, control_plane.kubeconfig)
    exporter.config.write_text(
        exporter.config.read_text()
        + "filters:\n  replace_defaults: [drop_annotations]\n  drop_annotations: []\n"
    )
    exporter.start()
    planted = [f"pw-{secrets.token_hex(8)}" for _ in range(9)]
    current, rotated, helm3, tiller_cm, tiller_secret, kapp, rancher, label, embedded = planted
    group = f"o{secrets.token_hex(3)}.kube2git.test"  # like Crossplane's Object
    control_plane.create_crd(group, "Object", "objects")
    ns = f"/api/v1/namespaces/{namespace}"
    manifest = f"apiVersion: v1\nkind: Secret\nstringData:\n  password: {helm3}\n"
    release = _gzip_base64({"name": "shop", "config": {"pw": helm3}, "manifest": manifest})
    posts = [
        ("configmaps", {
            "metadata": {
                "name": "sh.helm.release.v1.shop.v1",
                "labels": {"owner": "helm", "name": "shop", "status": "deployed", "version": "1"},
            },
            "data": {"release": release},
        }),
        ("configmaps", {
            "metadata": {
                "name": "legacy.v4",
                "labels": {"OWNER": "TILLER", "NAME": "legacy", "STATUS": "DEPLOYED", "VERSION": "4"},
            },
            "data": {"release": _gzip_base64({"chart": "legacy", "values": tiller_cm})},
        }),
        ("secrets", {
            "metadata": {"name": "legacy-secret.v2", "labels": {"OWNER": "TILLER", "NAME": "x"}},
            "type": "Opaque",
            "stringData": {"release": _gzip_base64({"values": tiller_secret})},
        }),
        ("secrets", {
            "metadata": {
                "name": "copies",
                "labels": {"app": "shop", "pw-copy": label},
                "annotations": {
                    # An applied copy that still holds the value rotated since:
                    "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                        {"apiVersion": "v1", "kind": "Secret", "stringData": {"pw": rotated}}
                    ),
                    "kapp.k14s.io/original": json.dumps({"stringData": {"token": kapp}}),
                    "objectset.rio.cattle.io/applied": _gzip_base64(
                        {"kind": "Secret", "stringData": {"api": rancher}}
                    ),
                    "note": f"current one, base64: {base64.b64encode(current.encode()).decode()}",
                    "team": "payments",
                },
            },
            "stringData": {"pw": current, "token": kapp, "api": rancher, "label": label},
        }),
    ]  # fmt: skip
    try:
        for resource, body in posts:
            ok(control_plane.request("POST", f"{ns}/{resource}", body))
        wrapper = {
            "apiVersion": f"{group}/v1",
            "kind": "Object",
            "metadata": {"name": "db"},
            "spec": {
                "manifest": {"apiVersion": "v1", "kind": "Secret", "stringData": {"pw": embedded}}
            },
        }
        ok(
            control_plane.request(
                "POST", f"/apis/{group}/v1/namespaces/{namespace}/objects", wrapper
            )
        )
        create_config_maps(control_plane, namespace, "after")
        # Each type's events arrive in order: these two come after every side door.
        last = {
            f"namespaces/{namespace}/configmaps/after.yaml",
            f"namespaces/{namespace}/secrets/copies.yaml",
            f"namespaces/{namespace}/objects.{group}/db.yaml",
        }
        eventually(
            "the objects after the side doors on the branch",
            lambda: last <= tree(exporter.repo).keys(),
            within=30,
        )
        files = tree(exporter.repo)
        kept = show(exporter.repo, f"namespaces/{namespace}/secrets/copies.yaml")
        wrapped = show(exporter.repo, f"namespaces/{namespace}/objects.{group}/db.yaml")
    finally:
        assert exporter.stop() == 0
    ours = {path for path in files if path.startswith(f"namespaces/{namespace}/")}
    assert ours - {f"namespaces/{namespace}/serviceaccounts/default.yaml"} == last
    assert kept["metadata"]["labels"] == {"app": "shop"}
    assert kept["metadata"]["annotations"] == {
        "kube2git.io/secret-values": "redact",
        "team": "payments",
    }
    assert wrapped["spec"]["manifest"]["stringData"] == {"pw": ""}
    assert find_planted(every_object(exporter.repo), planted) == set()
    assert find_planted(exporter.logs().encode(), planted) == set()


def test_kill_9_during_a_burst_then_restart_loses_nothing(
    control_plane: ControlPlane, namespace: str, exporter: ExporterProcess, tmp_path: Path
) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    for index in range(40):
        ok(
            control_plane.request(
                "POST",
                f"{ns}/configmaps",
                {"metadata": {"name": f"c{index}"}, "data": {"i": str(index)}},
            )
        )
        if index == 20:
            exporter.kill()
    for index in range(0, 40, 3):
        control_plane.request("DELETE", f"{ns}/configmaps/c{index}")
    restarted = ExporterProcess(tmp_path, control_plane.kubeconfig, repo=exporter.repo).start()
    try:
        converges_to_snapshot(exporter.repo, tmp_path, control_plane.kubeconfig)
        assert git(exporter.repo, "fsck", "--no-progress", check=True) is not None
    finally:
        restarted.stop()


def test_sigterm_during_a_burst_commits_the_burst(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # Batches that never close by themselves: only the drain can commit the burst.
    exporter = ExporterProcess(
        tmp_path,
        control_plane.kubeconfig,
        quiet_period=300,
        max_delay=600,
        pacing_config="    max_delay_under_load: 600\n",
    ).start()
    try:
        # Nothing commits by itself now, so pending only grows: wait for 15 more.
        baseline = exporter.metric("kube2git_pending_changes")
        create_config_maps(control_plane, namespace, *(f"t{index}" for index in range(15)))
        eventually(
            "the burst to be pending",
            lambda: exporter.metric("kube2git_pending_changes") >= baseline + 15,
            within=30,
        )
        before = tree(exporter.repo)
        assert not any(f"namespaces/{namespace}/configmaps/t" in path for path in before)
        assert exporter.stop(signal.SIGTERM) == 0
    finally:
        if exporter.proc is not None and exporter.proc.poll() is None:
            exporter.kill()
    paths = tree(exporter.repo)
    assert all(f"namespaces/{namespace}/configmaps/t{index}.yaml" in paths for index in range(15))


def test_a_remote_refusing_pushes_then_accepting_gets_every_commit_unforced(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    refuse = tmp_path / "refuse"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nif [ -e {refuse} ]; then echo 'maintenance' >&2; exit 1; fi\n")
    hook.chmod(0o755)
    process = ExporterProcess(tmp_path, control_plane.kubeconfig, remote=str(remote)).start()
    try:
        eventually("the initial push", lambda: commit_count(remote) >= 1, within=30)
        refuse.touch()
        create_config_maps(control_plane, namespace, *(f"p{index}" for index in range(5)))
        eventually(
            "local commits while the remote refuses",
            lambda: f"namespaces/{namespace}/configmaps/p4.yaml" in tree(process.repo),
            within=20,
        )
        eventually(
            "failed pushes",
            lambda: process.metric('kube2git_push_failures_total{reason="rejected"}') >= 1,
            within=30,
        )
        assert f"namespaces/{namespace}/configmaps/p4.yaml" not in tree(remote)
        refuse.unlink()
        local_tip = lambda: git(process.repo, "rev-parse", BRANCH).strip()  # noqa: E731
        eventually(
            "the remote to catch up",
            lambda: git(remote, "rev-parse", BRANCH, check=False).strip() == local_tip(),
            within=60,
        )
        assert commit_count(remote) == commit_count(process.repo)
    finally:
        process.stop()


def test_health_and_metrics(exporter: ExporterProcess) -> None:
    assert exporter.http("/healthz") == (200, "ok\n")
    assert exporter.http("/readyz") == (200, "ok\n")
    _, metrics = exporter.http("/metrics")
    for name in (
        "kube2git_events_total", "kube2git_commits_total", "kube2git_pushes_total",
        "kube2git_change_to_commit_seconds_bucket", "kube2git_watch_restarts_total",
        "kube2git_watch_gone_total", "kube2git_api_throttled_total", "kube2git_api_requests_total",
        "kube2git_queue_depth", "kube2git_objects_skipped_total",
    ):  # fmt: skip
        assert name in metrics, name
