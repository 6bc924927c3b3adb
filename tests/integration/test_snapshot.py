"""``kube2git snapshot`` against the real control plane (controllers and kwok running).

Each test works in namespaces of its own; the repository is inspected with the git CLI, as a
user would.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.cli import main
from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import commit_count as commits
from tests.integration.helpers import create_deployment, create_hpa, eventually, git, ok, show, tree

pytestmark = pytest.mark.cluster

SECRET_VALUE = "s3cr3t-" + secrets.token_hex(8)


def files(repo: Path, prefix: str = "") -> set[str]:
    return {path for path in tree(repo) if path.startswith(prefix)}


def snapshot(
    repo: Path, kubeconfig: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    code = main(["snapshot", "--repo", str(repo), "--kubeconfig", str(kubeconfig), *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def widgets(control_plane: ControlPlane) -> str:
    """A CRD of our own, installed once for the module."""
    control_plane.create_crd("snap.kube2git.test", "Widget", "widgets")
    return "widgets.snap.kube2git.test"


def test_snapshot_records_what_a_person_wrote_and_nothing_else(
    control_plane: ControlPlane,
    namespace: str,
    widgets: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    control_plane.create_kwok_nodes(1)
    ns = f"/api/v1/namespaces/{namespace}"
    create_deployment(control_plane, namespace, "web", replicas=2)
    create_deployment(control_plane, namespace, "api", replicas=3)
    create_hpa(control_plane, namespace, "api", max_replicas=5)
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    secret = {"metadata": {"name": "db"}, "type": "Opaque", "data": {"password": encoded}}
    ok(control_plane.request("POST", f"{ns}/secrets", secret))
    config_map = {"metadata": {"name": "scripts"}, "data": {"run.sh": "#!/bin/sh\necho hi\n"}}
    ok(control_plane.request("POST", f"{ns}/configmaps", config_map))
    service = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    ok(control_plane.request("POST", f"{ns}/services", service))
    widget = {
        "apiVersion": "snap.kube2git.test/v1",
        "kind": "Widget",
        "metadata": {"name": "blue"},
        "spec": {"size": 3},
    }
    ok(
        control_plane.request(
            "POST", f"/apis/snap.kube2git.test/v1/namespaces/{namespace}/widgets", widget
        )
    )

    def pods_running() -> bool:
        pods = control_plane.request("GET", f"{ns}/pods").body.get("items", [])
        return len(pods) == 5 and all(p.get("status", {}).get("phase") == "Running" for p in pods)

    eventually("5 pods running on kwok", pods_running)
    repo = tmp_path / "backup.git"
    code, out, err = snapshot(repo, control_plane.kubeconfig, capsys)
    assert code == 0, err
    assert "kube2git snapshot:" in out
    assert f"namespaces/{namespace}" in git(repo, "show", "--stat", "kube2git")

    assert files(repo, f"namespaces/{namespace}/") == {
        f"namespaces/{namespace}/{path}"
        for path in (
            "configmaps/scripts.yaml",
            "deployments.apps/api.yaml",
            "deployments.apps/web.yaml",
            "horizontalpodautoscalers.autoscaling/api.yaml",
            "secrets/db.yaml",
            "services/web.yaml",
            "serviceaccounts/default.yaml",
            f"{widgets}/blue.yaml",
        )
    }  # no ReplicaSets, Pods, Endpoints, EndpointSlices, Events or the CA ConfigMap
    assert f"cluster/namespaces/{namespace}.yaml" in files(repo, "cluster/")
    assert f"cluster/customresourcedefinitions.apiextensions.k8s.io/{widgets}.yaml" in files(repo)
    web = show(repo, f"namespaces/{namespace}/deployments.apps/web.yaml")
    assert web["spec"]["replicas"] == 2
    assert set(web["metadata"]) == {"name", "namespace", "labels"}
    assert "status" not in web
    api = show(repo, f"namespaces/{namespace}/deployments.apps/api.yaml")
    assert "replicas" not in api["spec"]  # the HPA owns it
    db = show(repo, f"namespaces/{namespace}/secrets/db.yaml")
    assert db["data"] == {"password": ""}
    service_file = show(repo, f"namespaces/{namespace}/services/web.yaml")
    assert "clusterIP" not in service_file["spec"]
    assert show(repo, f"namespaces/{namespace}/{widgets}/blue.yaml")["spec"] == {"size": 3}
    everything = git(repo, "log", "-p", "--all")
    assert SECRET_VALUE not in everything
    assert encoded not in everything


def test_unchanged_cluster_makes_no_commit_and_changes_make_one(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Earlier tests' namespaces are deleted as they end: let them go first, or the second
    # snapshot would rightly record their deletion.
    eventually(
        "earlier tests' namespaces to be deleted",
        lambda: (
            not any(
                item["status"].get("phase") == "Terminating"
                for item in control_plane.request("GET", "/api/v1/namespaces").body["items"]
            )
        ),
    )
    ns = f"/api/v1/namespaces/{namespace}"
    ok(
        control_plane.request(
            "POST", f"{ns}/configmaps", {"metadata": {"name": "a"}, "data": {"k": "1"}}
        )
    )
    ok(
        control_plane.request(
            "POST", f"{ns}/configmaps", {"metadata": {"name": "b"}, "data": {"k": "1"}}
        )
    )
    repo = tmp_path / "backup.git"
    assert snapshot(repo, control_plane.kubeconfig, capsys)[0] == 0
    first = commits(repo)
    code, out, _ = snapshot(repo, control_plane.kubeconfig, capsys)
    assert code == 0
    assert "no changes, no commit" in out
    assert commits(repo) == first

    control_plane.request("DELETE", f"{ns}/configmaps/a")
    changed = {"metadata": {"name": "b"}, "data": {"k": "2"}}
    current = control_plane.request("GET", f"{ns}/configmaps/b").body
    changed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    ok(control_plane.request("PUT", f"{ns}/configmaps/b", changed))
    assert snapshot(repo, control_plane.kubeconfig, capsys)[0] == 0
    assert commits(repo) == first + 1
    assert f"namespaces/{namespace}/configmaps/a.yaml" not in files(repo)
    assert show(repo, f"namespaces/{namespace}/configmaps/b.yaml")["data"] == {"k": "2"}
    message = git(repo, "log", "-1", "--format=%B", "kube2git")
    assert ".data.k" in message


def test_a_crd_added_later_is_captured(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "backup.git"
    assert snapshot(repo, control_plane.kubeconfig, capsys)[0] == 0
    group = f"g{secrets.token_hex(3)}.kube2git.test"
    control_plane.create_crd(group, "Gadget", "gadgets")
    gadget = {
        "apiVersion": f"{group}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1"},
        "spec": {"x": 1},
    }
    ok(control_plane.request("POST", f"/apis/{group}/v1/namespaces/{namespace}/gadgets", gadget))
    assert snapshot(repo, control_plane.kubeconfig, capsys)[0] == 0
    assert f"namespaces/{namespace}/gadgets.{group}/g1.yaml" in files(repo)


def test_restricted_identity_without_secrets_completes_and_says_so(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RBAC grants read on everything but Secrets: the snapshot skips them and names them."""
    core = control_plane.request("GET", "/api/v1").body["resources"]
    readable = sorted({r["name"] for r in core if "/" not in r["name"] and r["name"] != "secrets"})
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{namespace}-reader"},
        "rules": [
            {"apiGroups": [""], "resources": readable, "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
        ],
    }
    # The second rule's "*" group includes the core group: narrow it to named groups instead.
    groups = [g["name"] for g in control_plane.request("GET", "/apis").body["groups"]]
    role["rules"][1]["apiGroups"] = groups
    ok(control_plane.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role))
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{namespace}-reader"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{namespace}-reader",
        },
        "subjects": [
            {
                "kind": "User",
                "name": control_plane.restricted_user,
                "apiGroup": "rbac.authorization.k8s.io",
            }
        ],
    }
    ok(
        control_plane.request(
            "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding
        )
    )
    ns = f"/api/v1/namespaces/{namespace}"
    ok(control_plane.request("POST", f"{ns}/secrets", {"metadata": {"name": "hidden"}, "data": {}}))
    ok(control_plane.request("POST", f"{ns}/configmaps", {"metadata": {"name": "visible"}}))
    try:
        repo = tmp_path / "backup.git"
        code, out, err = snapshot(repo, control_plane.restricted_kubeconfig, capsys)
        assert code == 0, err  # a type RBAC denies is not a failure, only named
        assert "not read: secrets: forbidden" in err
        assert "1 types denied by RBAC" in out
        assert "types not read" not in out
        assert f"namespaces/{namespace}/configmaps/visible.yaml" in files(repo)
        assert not files(repo, f"namespaces/{namespace}/secrets/")
    finally:
        control_plane.request(
            "DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{namespace}-reader"
        )
        control_plane.request(
            "DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{namespace}-reader"
        )


def test_an_identity_that_can_read_nothing_fails(
    control_plane: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = snapshot(tmp_path / "r.git", control_plane.restricted_kubeconfig, capsys)
    assert code == 1
    assert "no type could be read" in err
    assert err.count("kube2git: error:") == 1


def test_bad_kubeconfig_context_and_unreachable_server(
    control_plane: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = snapshot(tmp_path / "r.git", tmp_path / "missing", capsys)
    assert (code, err) == (2, f"kube2git: error: {tmp_path / 'missing'}: kubeconfig not found\n")

    code, _, err = snapshot(
        tmp_path / "r.git", control_plane.kubeconfig, capsys, "--context", "nope"
    )
    assert code == 2
    assert "nope" in err
    assert err.count("\n") == 1

    unreachable = tmp_path / "unreachable.kubeconfig"
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable.write_text(yaml.safe_dump(config))
    code, _, err = snapshot(tmp_path / "r.git", unreachable, capsys)
    assert code == 1
    assert "127.0.0.1:1" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "r.git" / "refs" / "heads" / "kube2git").exists()


def test_watch_list_and_paginated_list_capture_the_same_state(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    for index in range(7):
        ok(control_plane.request("POST", f"{ns}/configmaps", {"metadata": {"name": f"m{index}"}}))
    trees = []
    for mode in ("watch-list", "paginate"):
        config = tmp_path / f"{mode}.yaml"
        config.write_text(f"cluster:\n  list_mode: {mode}\n  page_size: 3\n")
        repo = tmp_path / f"{mode}.git"
        code, _, err = snapshot(repo, control_plane.kubeconfig, capsys, "--config", str(config))
        assert code == 0, err
        # Other tests' namespaces may still be terminating: compare what this test owns, and
        # the cluster-scoped objects other than namespaces.
        trees.append(
            {
                path: blob
                for path, blob in tree(repo).items()
                if path.startswith(f"namespaces/{namespace}/")
                or (path.startswith("cluster/") and not path.startswith("cluster/namespaces/"))
            }
        )
    assert trees[0] == trees[1]
    assert f"namespaces/{namespace}/configmaps/m6.yaml" in trees[0]


def test_an_aggregated_api_that_fails_discovery_keeps_its_files(
    control_plane: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An API service whose backend is down: its files stay, the rest is committed, and the
    snapshot says it is incomplete (exit 1)."""
    group = f"a{secrets.token_hex(3)}.kube2git.test"
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"v1.{group}"},
        "spec": {
            "group": group,
            "version": "v1",
            "service": {"namespace": "default", "name": "nowhere", "port": 443},
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
        },
    }
    repo = tmp_path / "backup.git"
    # An earlier capture of that API's objects, when it still answered.
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "kube2git", str(work)], check=True)
    planted = work / "namespaces" / "default" / f"things.{group}" / "a.yaml"
    planted.parent.mkdir(parents=True)
    planted.write_text(
        f"apiVersion: {group}/v1\nkind: Thing\nmetadata:\n  name: a\n  namespace: default\n"
    )
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(work),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "earlier",
        ],
        check=True,
    )
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)
    ok(control_plane.request("POST", "/apis/apiregistration.k8s.io/v1/apiservices", api_service))
    try:
        eventually(
            "the API service to be registered",
            lambda: group in str(control_plane.request("GET", "/apis").body),
        )
        code, _, err = snapshot(repo, control_plane.kubeconfig, capsys)
        # Incomplete: exit 1, naming what was not read, after committing everything else.
        assert code == 1, err
        assert f"not read: {group}/v1: discovery failed" in err
        assert f"kube2git: error: incomplete snapshot, not read: {group}/v1" in err
        assert f"namespaces/default/things.{group}/a.yaml" in files(repo)
        assert "cluster/namespaces/default.yaml" in files(repo)
    finally:
        control_plane.request("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/v1.{group}")
