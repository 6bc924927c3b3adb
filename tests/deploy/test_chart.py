"""The chart against the real control plane: a server-side dry-run apply of everything it
renders, then its RBAC for real: a token of the chart's ServiceAccount captures the whole
cluster with ``kube2git snapshot``, and cannot read Secrets unless the values allow it.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from exporter.config import Settings
from tests.cluster.control_plane import ControlPlane
from tests.deploy.conftest import ROOT, Manifest, Render, one
from tests.integration.helpers import eventually, free_port, tree

pytestmark = pytest.mark.cluster

APPLY = "application/apply-patch+yaml"
SECRET_VALUE = "chart-s3cr3t-" + secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class Served:
    """What the API server serves: group-versions (for helm's --api-versions) and types."""

    group_versions: tuple[str, ...]
    resources: dict[tuple[str, str], tuple[str, bool]]
    """(apiVersion, kind) → (plural, namespaced)."""


def discover(cluster: ControlPlane) -> Served:
    group_versions = ["v1"]
    for group in cluster.request("GET", "/apis").body["groups"]:
        group_versions += [v["groupVersion"] for v in group["versions"]]
    resources: dict[tuple[str, str], tuple[str, bool]] = {}
    for gv in group_versions:
        listing = cluster.request("GET", "/api/v1" if gv == "v1" else f"/apis/{gv}")
        if listing.status != 200:
            continue
        for item in listing.body.get("resources", []):
            if "/" not in item["name"]:
                resources[(gv, item["kind"])] = (item["name"], item["namespaced"])
    return Served(tuple(group_versions), resources)


def object_path(served: Served, manifest: Manifest) -> str:
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    plural, namespaced = served.resources[(api_version, kind)]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    meta = manifest["metadata"]
    where = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{base}{where}/{plural}/{quote(meta['name'])}"


def apply(
    cluster: ControlPlane, served: Served, manifest: Manifest, *, dry_run: bool
) -> tuple[int, Any]:
    query = "?fieldManager=kube2git-tests&force=true" + ("&dryRun=All" if dry_run else "")
    reply = cluster.request(
        "PATCH", object_path(served, manifest) + query, manifest, content_type=APPLY
    )
    return reply.status, reply.body


def built_in_groups(cluster: ControlPlane) -> set[str]:
    """Groups the API server itself serves (not CRDs, not aggregated APIs) that have types to
    list: the APIServices it registers on start."""
    services = cluster.request("GET", "/apis/apiregistration.k8s.io/v1/apiservices").body
    groups = {
        s["spec"]["group"]
        for s in services["items"]
        if s["metadata"].get("labels", {}).get("kube-aggregator.kubernetes.io/automanaged")
        == "onstart"
        and s["spec"].get("group")
    }
    return groups - {"authentication.k8s.io", "authorization.k8s.io"}  # create-only reviews


@pytest.fixture(scope="module")
def served(control_plane: ControlPlane) -> Served:
    return discover(control_plane)


@pytest.fixture
def release_namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"k2g-chart-{secrets.token_hex(3)}"
    created = control_plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert created.status == 201, created.body
    yield name
    control_plane.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["captureSecrets=true", "persistence.enabled=true"],
        [
            "git.remote=git@git.example.com:org/backup.git",
            "git.auth.type=ssh",
            "git.auth.sshPrivateKey=KEY",
            "git.auth.sshKnownHosts=git.example.com ssh-ed25519 AAAA",
        ],
        [
            "git.remote=https://git.example.com/o/r.git",
            "git.auth.type=https",
            "git.auth.httpsToken=T",
        ],
    ],
    ids=["defaults", "secrets-and-pvc", "ssh", "https"],
)
def test_rendered_manifests_pass_server_side_dry_run(
    control_plane: ControlPlane,
    served: Served,
    render: Render,
    release_namespace: str,
    values: list[str],
) -> None:
    manifests = render(
        namespace=release_namespace,
        release=f"dry-{secrets.token_hex(2)}",
        values=values,
        api_versions=served.group_versions,
    )
    assert {m["kind"] for m in manifests} >= {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
        "ConfigMap", "Service", "Deployment",
    }  # fmt: skip
    for manifest in manifests:
        status, body = apply(control_plane, served, manifest, dry_run=True)
        assert status in (200, 201), f"{manifest['kind']} {manifest['metadata']['name']}: {body}"
    # Dry run: nothing was created.
    name = one(manifests, "Deployment")["metadata"]["name"]
    path = f"/apis/apps/v1/namespaces/{release_namespace}/deployments/{name}"
    assert control_plane.request("GET", path).status == 404


def test_sidecar_example_passes_server_side_dry_run(
    control_plane: ControlPlane, served: Served, release_namespace: str
) -> None:
    documents = [
        d for d in yaml.safe_load_all((ROOT / "deploy" / "sidecar-example.yaml").read_text()) if d
    ]
    kinds = {d["kind"] for d in documents}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap"} <= kinds
    for document in documents:
        if served.resources[(document["apiVersion"], document["kind"])][1]:
            document["metadata"]["namespace"] = release_namespace
        for subject in document.get("subjects", []):
            subject["namespace"] = release_namespace
        status, body = apply(control_plane, served, document, dry_run=True)
        assert status in (200, 201), f"{document['kind']} {document['metadata']['name']}: {body}"


def test_sidecar_example_rbac_matches_the_chart_and_the_built_in_groups(
    control_plane: ControlPlane,
) -> None:
    documents = yaml.safe_load_all((ROOT / "deploy" / "sidecar-example.yaml").read_text())
    role = next(d for d in documents if d and d["kind"] == "ClusterRole")
    core = next(r for r in role["rules"] if r["apiGroups"] == [""])
    values = yaml.safe_load((ROOT / "charts" / "kube2git" / "values.yaml").read_text())
    assert core["resources"] == values["rbac"]["coreResources"]
    named = next(r for r in role["rules"] if r["apiGroups"] != [""])
    assert named["resources"] == ["*"]
    assert built_in_groups(control_plane) <= set(named["apiGroups"])
    assert named["apiGroups"] == values["rbac"]["baseApiGroups"]
    # Every core type kube2git would list and watch is in the chart's list, except Secrets.
    listing = control_plane.request("GET", "/api/v1").body["resources"]
    watchable = {
        r["name"]
        for r in listing
        if "/" not in r["name"] and {"list", "watch"} <= set(r.get("verbs", []))
    }
    assert watchable - {"secrets"} == set(values["rbac"]["coreResources"])


# ---- the chart's RBAC, for real ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What the RBAC tests share: the cluster, what it serves, the renderer, a namespace."""

    cluster: ControlPlane
    served: Served
    render: Render
    namespace: str


@pytest.fixture
def ctx(
    control_plane: ControlPlane, served: Served, render: Render, release_namespace: str
) -> Context:
    return Context(control_plane, served, render, release_namespace)


@dataclass
class Installed:
    """The chart's identity objects created in the cluster, and a token of its account."""

    namespace: str
    account: str
    manifests: list[Manifest]
    kubeconfig: Path
    token: str
    granted: set[str] | None
    """Named groups the ClusterRole grants; None: every group (``*``)."""


def _token(cluster: ControlPlane, namespace: str, account: str) -> str:
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    reply = cluster.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request
    )
    assert reply.status == 201, reply.body
    token: str = reply.body["status"]["token"]
    return token


def _kubeconfig(cluster: ControlPlane, token: str, path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.ca_file),
                },
            }
        ],
        "users": [{"name": "kube2git", "user": {"token": token}}],
        "contexts": [{"name": "kube2git", "context": {"cluster": "local", "user": "kube2git"}}],
        "current-context": "kube2git",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _token_request(
    cluster: ControlPlane, token: str, method: str, path: str, body: Any = None
) -> int:
    """One request as the ServiceAccount (bearer token); returns the HTTP status."""
    import http.client
    import json
    import ssl
    from urllib.parse import urlsplit

    url = urlsplit(cluster.server)
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=context, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=headers)
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def install_identity(
    ctx: Context, directory: Path, *, values: list[str], offline: bool = False
) -> Installed:
    """Create the chart's ServiceAccount and RBAC objects, and mint a token for the account.

    ``offline`` renders as ``helm template`` without a cluster does (helm's compiled-in API
    list); otherwise with the cluster's API list, as ``helm install`` sees it.
    """
    cluster, served, namespace = ctx.cluster, ctx.served, ctx.namespace
    release = f"rbac-{secrets.token_hex(2)}"
    manifests = ctx.render(
        namespace=namespace,
        release=release,
        values=values,
        api_versions=() if offline else served.group_versions,
    )
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    for manifest in manifests:
        if manifest["kind"] in kinds:
            status, body = apply(cluster, served, manifest, dry_run=False)
            assert status in (200, 201), body
    account = one(manifests, "ServiceAccount")["metadata"]["name"]
    token = _token(cluster, namespace, account)
    kubeconfig = _kubeconfig(cluster, token, directory / "sa.kubeconfig")
    granted: set[str] | None = set()
    for rule in one(manifests, "ClusterRole")["rules"]:
        if "*" in rule["apiGroups"]:
            granted = None
        elif granted is not None:
            granted |= set(rule["apiGroups"]) - {""}
    return Installed(namespace, account, manifests, kubeconfig, token, granted)


def uninstall_identity(ctx: Context, installed: Installed) -> None:
    """Remove the cluster-scoped objects (the namespace takes the rest with it)."""
    for manifest in installed.manifests:
        if manifest["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            ctx.cluster.request("DELETE", object_path(ctx.served, manifest))


def run_snapshot(installed: Installed, repo: Path, directory: Path) -> tuple[int, str]:
    """``kube2git snapshot`` as the ServiceAccount, with the chart's own config file."""
    config = directory / "config.yaml"
    config.write_text(one(installed.manifests, "ConfigMap")["data"]["config.yaml"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE2GIT_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "exporter.cli", "snapshot", "--repo", str(repo),
            "--kubeconfig", str(installed.kubeconfig), "--config", str(config),
        ],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def not_read(output: str, installed: Installed, built_in: set[str]) -> list[str]:
    """Types reported as not read, except forbidden types of CRD groups the role does not
    grant: other tests share the cluster and create CRDs after the role was rendered (or, for
    an offline render, at any time). A built-in group or the core group must never fail."""
    failures = re.findall(r"kube2git: not read: (\S+): (.*)", output)
    unexpected = []
    for name, reason in failures:
        group = name.split(".", 1)[1] if "." in name else ""
        ungranted = installed.granted is not None and group not in installed.granted
        if reason == "forbidden" and group and group not in built_in and ungranted:
            continue
        unexpected.append(f"{name}: {reason}")
    return unexpected


@pytest.fixture
def secret_in_namespace(control_plane: ControlPlane, release_namespace: str) -> str:
    body = {
        "metadata": {"name": "db-password"},
        "stringData": {"password": SECRET_VALUE},
    }
    reply = control_plane.request("POST", f"/api/v1/namespaces/{release_namespace}/secrets", body)
    assert reply.status == 201, reply.body
    return "db-password"


@pytest.mark.parametrize("offline", [False, True], ids=["install", "template-offline"])
def test_chart_rbac_captures_everything_but_secrets(
    ctx: Context, secret_in_namespace: str, tmp_path: Path, offline: bool
) -> None:
    control_plane, release_namespace = ctx.cluster, ctx.namespace
    installed = install_identity(ctx, tmp_path, values=[], offline=offline)
    try:
        token, ns = installed.token, release_namespace
        # Secrets: no read of any kind, here or cluster-wide.
        assert (
            _token_request(
                control_plane,
                token,
                "GET",
                f"/api/v1/namespaces/{ns}/secrets/{secret_in_namespace}",
            )
            == 403
        )
        assert _token_request(control_plane, token, "GET", "/api/v1/secrets") == 403
        assert (
            _token_request(control_plane, token, "GET", f"/api/v1/namespaces/{ns}/secrets") == 403
        )
        # Read-only everywhere else.
        assert _token_request(control_plane, token, "GET", "/api/v1/configmaps") == 200
        assert _token_request(control_plane, token, "GET", "/apis/apps/v1/deployments") == 200
        config_map = {"metadata": {"name": "nope"}, "data": {}}
        assert (
            _token_request(
                control_plane, token, "POST", f"/api/v1/namespaces/{ns}/configmaps", config_map
            )
            == 403
        )
        # Its Lease, in its own namespace only.
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "kube2git"},
        }
        assert (
            _token_request(
                control_plane,
                token,
                "POST",
                f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                lease,
            )
            == 201
        )
        assert (
            _token_request(
                control_plane,
                token,
                "GET",
                f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/kube2git",
            )
            == 200
        )
        assert (
            _token_request(
                control_plane,
                token,
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/default/leases",
                lease,
            )
            == 403
        )
        assert (
            _token_request(
                control_plane,
                token,
                "DELETE",
                f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/kube2git",
            )
            == 403
        )

        repo = tmp_path / "backup.git"
        code, output = run_snapshot(installed, repo, tmp_path)
        assert code == 0, output
        assert not not_read(output, installed, built_in_groups(control_plane)), output
        paths = tree(repo)
        assert paths, output
        assert not [p for p in paths if "/secrets/" in p], "no Secret folder at all"
        role = one(installed.manifests, "ClusterRole")["metadata"]["name"]
        account = installed.account
        expected = {
            f"cluster/namespaces/{ns}.yaml",
            f"cluster/clusterroles.rbac.authorization.k8s.io/{role}.yaml",
            f"namespaces/{ns}/serviceaccounts/{account}.yaml",
            f"namespaces/{ns}/roles.rbac.authorization.k8s.io/{role}-leader-election.yaml",
        }
        assert expected <= set(paths), sorted(p for p in paths if ns in p or role in p)
        # Cluster-scoped types of several groups were read.
        for folder in (
            "cluster/clusterrolebindings.rbac.authorization.k8s.io/",
            "cluster/priorityclasses.scheduling.k8s.io/",
            "cluster/flowschemas.flowcontrol.apiserver.k8s.io/",
        ):
            assert any(p.startswith(folder) for p in paths), folder
    finally:
        uninstall_identity(ctx, installed)


def test_capture_secrets_grants_secrets_and_keeps_values_out(
    ctx: Context, secret_in_namespace: str, tmp_path: Path
) -> None:
    control_plane, release_namespace = ctx.cluster, ctx.namespace
    installed = install_identity(ctx, tmp_path, values=["captureSecrets=true"])
    try:
        path = f"/api/v1/namespaces/{release_namespace}/secrets/{secret_in_namespace}"
        assert _token_request(control_plane, installed.token, "GET", path) == 200
        repo = tmp_path / "backup.git"
        code, output = run_snapshot(installed, repo, tmp_path)
        assert code == 0, output
        assert not re.findall(r"kube2git: not read: .*", output), output
        secret_file = f"namespaces/{release_namespace}/secrets/{secret_in_namespace}.yaml"
        assert secret_file in tree(repo)
        shown = subprocess.run(
            ["git", "--git-dir", str(repo), "show", f"kube2git:{secret_file}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert SECRET_VALUE not in shown
        assert "password" in shown, "keys are kept, values redacted"
    finally:
        uninstall_identity(ctx, installed)


def test_chart_rbac_is_enough_for_run_with_leader_election(ctx: Context, tmp_path: Path) -> None:
    """``kube2git run`` as the ServiceAccount, with two replicas' configuration (leader
    election on): it takes the Lease with the chart's Role, lists and watches every type with
    its ClusterRole, and becomes ready; SIGTERM drains and exits 0."""
    installed = install_identity(ctx, tmp_path, values=["replicaCount=2"])
    try:
        config = yaml.safe_load(one(installed.manifests, "ConfigMap")["data"]["config.yaml"])
        assert config["run"]["leader_election"]["enabled"] is True
        port = free_port()
        config["run"]["listen"] = f"127.0.0.1:{port}"
        config["run"]["leader_election"]["identity"] = "test-replica"
        # CRDs that concurrent tests create after the render are not in the role: leave them
        # out, as a `helm upgrade` would put them in.
        config.setdefault("filters", {}).setdefault("select", {})["exclude_types"] = [
            *Settings().filters.select.exclude_types,
            "*.kube2git.test/*",
        ]
        config_file = tmp_path / "run.yaml"
        config_file.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE2GIT_")}
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "exporter.cli", "run",
                    "--repo", str(tmp_path / "backup.git"),
                    "--kubeconfig", str(installed.kubeconfig), "--config", str(config_file),
                ],
                stdout=out, stderr=out, env=env, cwd=ROOT,
            )  # fmt: skip
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"kube2git run exited {proc.returncode}: {log.read_text()[-3000:]}")
                return _http(port, "/readyz") == 200

            eventually("kube2git run to be ready as the ServiceAccount", ready, within=120)
            lease = ctx.cluster.request(
                "GET",
                f"/apis/coordination.k8s.io/v1/namespaces/{ctx.namespace}/leases/"
                f"{config['run']['leader_election']['name']}",
            )
            assert lease.status == 200, lease.body
            assert lease.body["spec"]["holderIdentity"] == "test-replica"
            logs = log.read_text()
            assert "forbidden" not in logs, logs[-3000:]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=90)
        assert code == 0, log.read_text()[-3000:]
    finally:
        uninstall_identity(ctx, installed)


def _http(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0
