"""The chart against the real control plane: a server-side dry-run apply of everything it
renders, then its RBAC for real: a token of the chart's ServiceAccount captures the whole
cluster with ``kube2git snapshot``, and cannot read Secrets unless the values allow it.
"""

from __future__ import annotations

import contextlib
import json
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

from exporter.config import Settings, load_settings
from tests.cluster.control_plane import ControlPlane
from tests.deploy.conftest import CHART, ROOT, Manifest, Render, by_kind, one
from tests.integration.helpers import (
    create_deployment,
    create_hpa,
    eventually,
    free_port,
    ok,
    show,
    tree,
)

pytestmark = pytest.mark.cluster

APPLY = "application/apply-patch+yaml"
SECRET_VALUE = "chart-s3cr3t-" + secrets.token_hex(6)
LEASE = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "kube2git"}}


@dataclass(frozen=True, slots=True)
class Served:
    """What the API server serves: group-versions (for helm's --api-versions) and types."""

    group_versions: tuple[str, ...]
    resources: dict[tuple[str, str], tuple[str, bool]]
    """(apiVersion, kind) → (plural, namespaced)."""
    verbs: dict[str, set[str]]
    """``resource[.group]`` → its verbs, for every top-level resource."""


def discover(cluster: ControlPlane) -> Served:
    group_versions = ["v1"]
    for group in cluster.request("GET", "/apis").body["groups"]:
        group_versions += [v["groupVersion"] for v in group["versions"]]
    resources: dict[tuple[str, str], tuple[str, bool]] = {}
    verbs: dict[str, set[str]] = {}
    for gv in group_versions:
        listing = cluster.request("GET", "/api/v1" if gv == "v1" else f"/apis/{gv}")
        if listing.status != 200:
            continue
        group = gv.rpartition("/")[0]
        for item in listing.body.get("resources", []):
            if "/" not in item["name"]:
                resources[(gv, item["kind"])] = (item["name"], item["namespaced"])
                name = f"{item['name']}.{group}" if group else item["name"]
                verbs.setdefault(name, set()).update(item.get("verbs") or ())
    return Served(tuple(group_versions), resources, verbs)


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
            "replicaCount=2",
            "rbac.extraRules[0].apiGroups={example.com}",
            "rbac.extraRules[0].resources={widgets}",
        ],
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
    ids=["defaults", "secrets-and-pvc", "replicas", "ssh", "https"],
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
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service",
        "Deployment",
    }  # fmt: skip
    if "replicaCount=2" in values:
        assert {"Role", "RoleBinding", "Lease"} <= {m["kind"] for m in manifests}
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
    assert all(rule["verbs"] == ["list", "watch"] for rule in role["rules"]), "no get"
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


def test_sidecar_example_serves_the_repository_on_loopback_only(tmp_path: Path) -> None:
    """git daemon has no authentication: the example runs it on the pod's loopback (reached
    with kubectl port-forward, which the API server authenticates), exposes no git port in
    its Service, and admits only the health port through its NetworkPolicy. Its exact
    command, run here, serves clones on 127.0.0.1, nothing on another address, no pushes."""
    documents = [
        d for d in yaml.safe_load_all((ROOT / "deploy" / "sidecar-example.yaml").read_text()) if d
    ]
    service = next(d for d in documents if d["kind"] == "Service")
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    policy = next(d for d in documents if d["kind"] == "NetworkPolicy")
    pod = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    data = next(v for v in pod["spec"]["volumes"] if v["name"] == "data")
    assert "persistentVolumeClaim" in data, "with no remote, the volume is the only copy"
    config_file = tmp_path / "sidecar-config.yaml"
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    config_file.write_text(config_map["data"]["config.yaml"])
    settings = load_settings(config_file)  # valid, and records no Secret
    assert "secrets" in settings.cluster.skip_types
    assert settings.git.remote.url == ""
    daemon = next(c for c in pod["spec"]["containers"] if c["name"] == "git-daemon")
    assert "ports" not in daemon
    assert not any(m.get("readOnly") is not True for m in daemon["volumeMounts"])

    source = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "kube2git", str(source)], check=True)
    (source / "cluster").mkdir()
    (source / "cluster" / "ns.yaml").write_text("kind: Namespace\n")
    subprocess.run(["git", "-C", str(source), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
         "one"],
        check=True,
    )  # fmt: skip
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(source), str(data_dir / "kube2git.git")], check=True
    )
    port = free_port()
    command = [
        f"--port={port}" if arg.startswith("--port=") else arg.replace("/data", str(data_dir))
        for arg in daemon["command"]
    ]
    daemon_proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def cloned() -> bool:
            target = tmp_path / f"clone-{secrets.token_hex(3)}"
            done = subprocess.run(
                ["git", "clone", "-q", f"git://127.0.0.1:{port}/kube2git.git", str(target)],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            return done.returncode == 0 and (target / "cluster" / "ns.yaml").exists()

        eventually("a clone over 127.0.0.1", cloned, within=20)
        elsewhere = subprocess.run(
            ["git", "ls-remote", f"git://127.0.0.2:{port}/kube2git.git"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert elsewhere.returncode != 0, "served on another address than 127.0.0.1"
        pushed = subprocess.run(
            ["git", "-C", str(source), "push", f"git://127.0.0.1:{port}/kube2git.git",
             "kube2git:refs/heads/pushed"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert pushed.returncode != 0, "git daemon accepted a push"
    finally:
        daemon_proc.terminate()
        daemon_proc.wait(timeout=30)


def helm_install_dry_run(
    helm: Path, cluster: ControlPlane, namespace: str, values: list[str]
) -> subprocess.CompletedProcess[str]:
    """``helm install --dry-run=server`` against the control plane: renders everything,
    NOTES included, and installs nothing."""
    argv = [
        str(helm), "install", "backup", str(CHART), "-n", namespace, "--dry-run=server",
        "--kubeconfig", str(cluster.kubeconfig),
    ]  # fmt: skip
    for item in values:
        argv += ["--set", item]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (["ephemeral=true"], "NOWHERE DURABLE"),
        (["persistence.enabled=true"], "only the PersistentVolumeClaim backup-kube2git"),
        (
            ["git.remote=ssh://git@git.example.com/o/r.git"],
            "pushed to ssh://git@git.example.com/o/r.git, the durable copy; in the pod it is on"
            " an emptyDir",
        ),
        (
            ["git.remote=ssh://git@git.example.com/o/r.git", "persistence.enabled=true"],
            "pushed to ssh://git@git.example.com/o/r.git, the durable copy; in the pod it is on"
            " the PersistentVolumeClaim backup-kube2git",
        ),
    ],
    ids=["ephemeral", "volume", "remote", "remote-and-volume"],
)
def test_notes_say_where_the_backup_goes(
    helm: Path, control_plane: ControlPlane, release_namespace: str, values: list[str], says: str
) -> None:
    done = helm_install_dry_run(helm, control_plane, release_namespace, values)
    assert done.returncode == 0, done.stderr
    notes = " ".join(done.stdout.split("NOTES:", 1)[1].split())
    assert "Where the backup goes: " + says in notes, notes


def test_helm_install_refuses_an_emptydir_only_backup(
    helm: Path, control_plane: ControlPlane, release_namespace: str
) -> None:
    done = helm_install_dry_run(helm, control_plane, release_namespace, [])
    assert done.returncode != 0
    assert "would live only in an emptyDir and be lost with the pod" in done.stderr, done.stderr
    assert "ephemeral=true" in done.stderr


def test_helm_upgrade_keeps_the_aggregated_rules_and_the_lease_holder(
    helm: Path, control_plane: ControlPlane, release_namespace: str
) -> None:
    """A real ``helm install`` then ``helm upgrade``: the bound role's rules belong to the
    aggregation controller, and the upgrade must not reset them (not even for a moment, or
    kube2git's watches renewed meanwhile would be denied); the Lease's spec belongs to the
    replicas, and the upgrade must not hand the lease to nobody."""
    release = f"up-{secrets.token_hex(2)}"
    base = [
        str(helm), "--kubeconfig", str(control_plane.kubeconfig), "-n", release_namespace,
    ]  # fmt: skip
    chart = [str(CHART), "--set", "ephemeral=true", "--set", "replicaCount=2"]
    role = f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{release}-kube2git"
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{release_namespace}/leases/{release}-kube2git"

    def helm_run(*args: str) -> None:
        done = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr

    helm_run("install", release, *chart)
    try:
        eventually(
            "the aggregated rules",
            lambda: bool(control_plane.request("GET", role).body.get("rules")),
            within=60,
        )
        held = control_plane.request("GET", lease).body | {
            "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15}
        }
        assert control_plane.request("PUT", lease, held).status == 200
        version = control_plane.request("GET", role).body["metadata"]["resourceVersion"]
        helm_run("upgrade", release, *chart, "--set", "config.log.level=debug")
        events = control_plane.request(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles?watch=true&timeoutSeconds=3"
            f"&fieldSelector=metadata.name={release}-kube2git&resourceVersion={version}",
            timeout=30,
        ).body
        # One event decodes as JSON; several come back raw, one per line; none: {}.
        lines = events["raw"].splitlines() if "raw" in events else [json.dumps(events)]
        seen = [json.loads(line) for line in lines if line.strip() not in ("", "{}")]
        for event in seen:
            assert event.get("type") in ("MODIFIED", "BOOKMARK"), event
            assert event["object"].get("rules"), f"the upgrade emptied the role: {event}"
        assert control_plane.request("GET", role).body.get("rules")
        assert control_plane.request("GET", lease).body["spec"]["holderIdentity"] == "replica-a"
    finally:
        subprocess.run([*base, "uninstall", release], capture_output=True, timeout=180, check=True)


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
    kinds = (
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Lease"
    )  # fmt: skip
    for manifest in manifests:
        if manifest["kind"] in kinds:
            status, body = apply(cluster, served, manifest, dry_run=False)
            assert status in (200, 201), body
    account = one(manifests, "ServiceAccount")["metadata"]["name"]
    token = _token(cluster, namespace, account)
    kubeconfig = _kubeconfig(cluster, token, directory / "sa.kubeconfig")
    granted: set[str] | None = set()
    for role in by_kind(manifests, "ClusterRole"):
        for rule in role.get("rules", []):
            if "*" in rule["apiGroups"]:
                granted = None
            elif granted is not None:
                granted |= set(rule["apiGroups"]) - {""}
    installed = Installed(namespace, account, manifests, kubeconfig, token, granted)
    wait_for_aggregation(ctx, installed)
    return installed


def bound_role(installed: Installed) -> Manifest:
    name = one(installed.manifests, "ClusterRoleBinding")["roleRef"]["name"]
    return next(
        m for m in by_kind(installed.manifests, "ClusterRole") if m["metadata"]["name"] == name
    )


def wait_for_aggregation(ctx: Context, installed: Installed, *, rule: Any = None) -> None:
    """Wait until the controller manager has aggregated the chart's own rules (and ``rule``,
    when given) into the bound ClusterRole."""
    bound = bound_role(installed)
    if "aggregationRule" not in bound:
        return
    own = [
        r for m in by_kind(installed.manifests, "ClusterRole") if m is not bound for r in m["rules"]
    ]
    wanted = own + ([rule] if rule is not None else [])

    def aggregated() -> bool:
        live = ctx.cluster.request("GET", object_path(ctx.served, bound)).body
        return all(r in (live.get("rules") or []) for r in wanted)

    eventually("the ClusterRole aggregation", aggregated, within=60)


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
        # One replica: no leader election, so no Lease rights at all.
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        assert _token_request(control_plane, token, "POST", leases, LEASE) == 403
        assert _token_request(control_plane, token, "GET", f"{leases}/kube2git") == 403

        repo = tmp_path / "backup.git"
        code, output = run_snapshot(installed, repo, tmp_path)
        assert code == 0, output
        assert not not_read(output, installed, built_in_groups(control_plane)), output
        paths = tree(repo)
        assert paths, output
        assert not [p for p in paths if "/secrets/" in p], "no Secret folder at all"
        role = bound_role(installed)["metadata"]["name"]
        account = installed.account
        expected = {
            f"cluster/namespaces/{ns}.yaml",
            f"cluster/clusterroles.rbac.authorization.k8s.io/{role}.yaml",
            f"cluster/clusterroles.rbac.authorization.k8s.io/{role}-base.yaml",
            f"namespaces/{ns}/serviceaccounts/{account}.yaml",
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
        secrets_path = f"/api/v1/namespaces/{release_namespace}/secrets"
        assert _token_request(control_plane, installed.token, "GET", secrets_path) == 200
        path = f"{secrets_path}/{secret_in_namespace}"
        assert _token_request(control_plane, installed.token, "GET", path) == 403, "list only"
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


@contextlib.contextmanager
def running(
    installed: Installed,
    directory: Path,
    port: int,
    *,
    identity: str = "",
    test_crds: bool = False,
    cluster: dict[str, Any] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``kube2git run`` as the ServiceAccount with the chart's config file, listening on
    ``port``; SIGTERM on exit, which must drain and exit 0.

    The CRDs that tests create after the render (``*.kube2git.test``) are not in the role:
    left out unless ``test_crds``, as a ``helm upgrade`` would put them in. ``cluster``:
    settings laid over the chart's ``cluster`` section.
    """
    config = yaml.safe_load(one(installed.manifests, "ConfigMap")["data"]["config.yaml"])
    config["run"]["listen"] = f"127.0.0.1:{port}"
    if identity:
        config["run"]["leader_election"]["identity"] = identity
    config.setdefault("cluster", {}).update(cluster or {})
    if not test_crds:
        config.setdefault("filters", {}).setdefault("select", {})["exclude_types"] = [
            *Settings().filters.select.exclude_types,
            "*.kube2git.test/*",
        ]
    config_file = directory / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE2GIT_")}
    log = directory / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "exporter.cli", "run",
                "--repo", str(directory / "backup.git"),
                "--kubeconfig", str(installed.kubeconfig), "--config", str(config_file),
            ],
            stdout=out, stderr=out, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    assert code == 0, log.read_text()[-3000:]


def _ready(proc: subprocess.Popen[bytes], log: Path, port: int) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"kube2git run exited {proc.returncode}: {log.read_text()[-3000:]}")
    return _get_status(port, "/readyz")[0] == 200


def _log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


@pytest.mark.parametrize("capture_secrets", [False, True], ids=["no-secrets", "secrets"])
def test_chart_rbac_is_enough_for_run_with_leader_election(
    ctx: Context, secret_in_namespace: str, tmp_path: Path, capture_secrets: bool
) -> None:
    """``kube2git run`` as the ServiceAccount, with two replicas' configuration (leader
    election on): it takes the chart's Lease with the chart's Role (get and update, no
    create), lists and watches every type with its ClusterRole (no get: an HPA's target is
    re-read by a LIST), Secrets (redacted) only with captureSecrets, and becomes ready;
    SIGTERM drains and exits 0."""
    values = ["replicaCount=2", f"captureSecrets={str(capture_secrets).lower()}"]
    installed = install_identity(ctx, tmp_path, values=values)
    config = yaml.safe_load(one(installed.manifests, "ConfigMap")["data"]["config.yaml"])
    assert config["run"]["leader_election"]["enabled"] is True
    port = free_port()
    try:
        with running(installed, tmp_path, port, identity="test-replica") as (proc, log):
            eventually(  # a standby is ready too: wait until it leads and is synced
                "kube2git run to lead and be ready as the ServiceAccount",
                lambda: (
                    "kube2git_leader 1.0" in _get_status(port, "/metrics")[1]
                    and _ready(proc, log, port)
                ),
                within=120,
            )
            lease = ctx.cluster.request(
                "GET",
                f"/apis/coordination.k8s.io/v1/namespaces/{ctx.namespace}/leases/"
                f"{config['run']['leader_election']['name']}",
            )
            assert lease.status == 200, lease.body
            assert lease.body["spec"]["holderIdentity"] == "test-replica"
            # An HPA that targets a recorded Deployment: the Deployment is read again (LIST
            # by name) and recorded without its replicas.
            create_deployment(ctx.cluster, ctx.namespace, "web", replicas=2, image="nginx")
            web = f"namespaces/{ctx.namespace}/deployments.apps/web.yaml"
            eventually("the deployment", lambda: web in tree(tmp_path / "backup.git"))
            assert show(tmp_path / "backup.git", web)["spec"]["replicas"] == 2
            create_hpa(ctx.cluster, ctx.namespace, "web", max_replicas=5)
            eventually(
                "replicas to leave the file",
                lambda: "replicas" not in show(tmp_path / "backup.git", web)["spec"],
            )
            secret_file = f"namespaces/{ctx.namespace}/secrets/{secret_in_namespace}.yaml"
            paths = tree(tmp_path / "backup.git")
            assert (secret_file in paths) is capture_secrets
            if capture_secrets:
                shown = show(tmp_path / "backup.git", secret_file)
                assert SECRET_VALUE not in yaml.safe_dump(shown)
            logs = log.read_text()
            assert "forbidden" not in logs, logs[-3000:]
            assert "hpa.target_unreadable" not in logs, logs[-3000:]
            assert SECRET_VALUE not in logs
    finally:
        uninstall_identity(ctx, installed)


def test_chart_rbac_is_enough_for_a_sharded_run(ctx: Context, tmp_path: Path) -> None:
    """``config.run.shards=2``: ``kube2git run`` as the ServiceAccount takes both shard Leases
    the chart created (get and update by name, no create), records a ConfigMap of its shards,
    and drains on SIGTERM; nothing is forbidden."""
    installed = install_identity(ctx, tmp_path, values=["replicaCount=2", "config.run.shards=2"])
    config = yaml.safe_load(one(installed.manifests, "ConfigMap")["data"]["config.yaml"])
    base = config["run"]["leader_election"]["name"]
    assert config["run"]["shards"] == 2
    assert not can_i(installed, "create", "leases", "-n", ctx.namespace)
    port = free_port()
    try:
        with running(installed, tmp_path, port, identity="test-replica") as (proc, log):

            def both_shards() -> bool:
                text = _get_status(port, "/metrics")[1]
                return all(f'kube2git_shard{{shard="{s}"}} 1.0' in text for s in (0, 1))

            # alone, it takes one shard, then the other after its first lease duration
            eventually("both shards taken as the ServiceAccount", both_shards, within=120)
            eventually("ready", lambda: _ready(proc, log, port), within=120)
            for shard in (0, 1):
                lease = ctx.cluster.request(
                    "GET",
                    f"/apis/coordination.k8s.io/v1/namespaces/{ctx.namespace}/leases/"
                    f"{base}-shard-{shard}",
                )
                assert lease.status == 200, lease.body
                assert lease.body["spec"]["holderIdentity"] == "test-replica"
            ok(
                ctx.cluster.request(
                    "POST",
                    f"/api/v1/namespaces/{ctx.namespace}/configmaps",
                    {"metadata": {"name": "sharded"}, "data": {"k": "v"}},
                )
            )
            path = f"namespaces/{ctx.namespace}/configmaps/sharded.yaml"
            eventually("the ConfigMap recorded", lambda: path in tree(tmp_path / "backup.git"))
            logs = log.read_text()
            assert "forbidden" not in logs, logs[-3000:]
    finally:
        uninstall_identity(ctx, installed)


# ---- least privilege: what the ServiceAccount can never do ---------------------------------

REACH_INTO_WORKLOADS = [
    ("get", "nodes", "proxy"),
    ("get", "pods", "log"),
    ("create", "pods", "exec"),
    ("get", "pods", "exec"),
    ("create", "pods", "portforward"),
    ("get", "services", "proxy"),
]


def can_i(installed: Installed, verb: str, resource: str, *flags: str) -> bool:
    """``kubectl auth can-i`` as the ServiceAccount (its TokenRequest token)."""
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(installed.kubeconfig), "auth", "can-i", verb, resource,
         *flags],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    answer = done.stdout.strip()
    assert answer in ("yes", "no"), done.stdout + done.stderr
    return answer == "yes"


@pytest.mark.parametrize("capture_secrets", [False, True], ids=["no-secrets", "secrets"])
def test_service_account_cannot_reach_into_workloads(
    ctx: Context, tmp_path: Path, capture_secrets: bool
) -> None:
    """No get at all, so no logs, exec, port-forward or proxies, whatever captureSecrets says;
    list Secrets only with captureSecrets; list and watch of everything else."""
    values = [f"captureSecrets={str(capture_secrets).lower()}", "replicaCount=2"]
    installed = install_identity(ctx, tmp_path, values=values)
    try:
        for scope in (["--all-namespaces"], ["-n", ctx.namespace]):
            for verb, resource, subresource in REACH_INTO_WORKLOADS:
                assert not can_i(installed, verb, resource, "--subresource", subresource, *scope)
        everywhere = "--all-namespaces"
        for resource in ("pods", "configmaps", "secrets", "nodes", "deployments.apps"):
            readable = resource != "secrets" or capture_secrets
            assert not can_i(installed, "get", resource, everywhere), resource
            assert can_i(installed, "list", resource, everywhere) is readable, resource
            assert can_i(installed, "watch", resource, everywhere) is readable, resource
        for verb in ("create", "update", "patch", "delete", "deletecollection"):
            assert not can_i(installed, verb, "configmaps", everywhere), verb
        assert not can_i(installed, "create", "serviceaccounts", "--subresource", "token",
                         "-n", ctx.namespace)  # fmt: skip
    finally:
        uninstall_identity(ctx, installed)


def test_another_release_never_widens_the_role(ctx: Context, tmp_path: Path) -> None:
    """Two releases, one with captureSecrets: the other's aggregated role picks up only its
    own rules and those labelled for every reader, so it still cannot list Secrets; its
    rbac.extraRules are granted as list and watch."""
    (tmp_path / "wide").mkdir()
    (tmp_path / "narrow").mkdir()
    wide = install_identity(ctx, tmp_path / "wide", values=["captureSecrets=true"])
    narrow = install_identity(
        ctx,
        tmp_path / "narrow",
        values=[
            "rbac.apiGroups={apps}",
            "rbac.extraRules[0].apiGroups={batch}",
            "rbac.extraRules[0].resources={cronjobs}",
        ],
    )
    try:
        assert can_i(wide, "list", "secrets", "--all-namespaces")
        assert not can_i(narrow, "list", "secrets", "--all-namespaces")
        assert can_i(narrow, "watch", "cronjobs.batch", "--all-namespaces")
        assert not can_i(narrow, "list", "jobs.batch", "--all-namespaces")
        assert not can_i(narrow, "get", "cronjobs.batch", "--all-namespaces")
    finally:
        uninstall_identity(ctx, narrow)
        uninstall_identity(ctx, wide)


def test_leader_election_rights_are_its_own_lease_only(ctx: Context, tmp_path: Path) -> None:
    """The chart creates the Lease; the account may get and update that one, nothing else:
    not create one, not read or take another, not delete its own."""
    installed = install_identity(ctx, tmp_path, values=["replicaCount=2"])
    try:
        token, ns = installed.token, ctx.namespace
        name = one(installed.manifests, "Lease")["metadata"]["name"]
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        own = ctx.cluster.request("GET", f"{leases}/{name}")
        assert own.status == 200, own.body
        assert _token_request(ctx.cluster, token, "GET", f"{leases}/{name}") == 200
        taken = own.body | {"spec": {"holderIdentity": "test", "leaseDurationSeconds": 15}}
        assert _token_request(ctx.cluster, token, "PUT", f"{leases}/{name}", taken) == 200
        other = {**LEASE, "metadata": {"name": "someone-else"}}
        assert ctx.cluster.request("POST", leases, other).status == 201
        assert _token_request(ctx.cluster, token, "GET", f"{leases}/someone-else") == 403
        assert _token_request(ctx.cluster, token, "POST", leases, LEASE) == 403
        assert _token_request(ctx.cluster, token, "DELETE", f"{leases}/{name}") == 403
        assert (
            _token_request(
                ctx.cluster, token, "GET",
                f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{name}",
            )
            == 403
        )  # fmt: skip
    finally:
        uninstall_identity(ctx, installed)


def test_types_a_list_and_watch_role_cannot_read_are_documented(served: Served) -> None:
    """Every type the API server serves without list or watch (so kube2git never records it,
    whatever its role) is named in docs/operations.md."""
    unreadable = sorted(
        name for name, verbs in served.verbs.items() if not {"list", "watch"} <= verbs
    )
    assert "componentstatuses" in unreadable
    documented = (ROOT / "docs" / "operations.md").read_text()
    section = documented.split("What a list/watch-only role cannot read", 1)[1].split("\n\n", 1)[0]
    missing = [name for name in unreadable if f"`{name}`" not in section]
    assert not missing, f"not in docs/operations.md: {missing}"


# ---- CRDs installed after the chart ---------------------------------------------------------


def _new_crd(ctx: Context) -> tuple[str, str]:
    """A CRD of a group no role names, created now, with one object in the release namespace;
    returns (its type name, the object's file in the repository)."""
    group = f"later{secrets.token_hex(3)}.kube2git.test"
    ctx.cluster.create_crd(group, "Gizmo", "gizmos")
    body = {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": "g1"}}
    created = ctx.cluster.request(
        "POST", f"/apis/{group}/v1/namespaces/{ctx.namespace}/gizmos", body
    )
    assert created.status == 201, created.body
    return f"gizmos.{group}", f"namespaces/{ctx.namespace}/gizmos.{group}/g1.yaml"


def test_capture_secrets_reads_a_crd_installed_later(ctx: Context, tmp_path: Path) -> None:
    installed = install_identity(ctx, tmp_path, values=["captureSecrets=true"])
    try:
        _, path = _new_crd(ctx)
        code, output = run_snapshot(installed, tmp_path / "backup.git", tmp_path)
        assert code == 0, output
        assert path in tree(tmp_path / "backup.git"), output
    finally:
        uninstall_identity(ctx, installed)


def test_a_labelled_cluster_role_grants_a_crd_installed_later(ctx: Context, tmp_path: Path) -> None:
    """Without captureSecrets the later CRD is reported as denied, and the snapshot goes on;
    a ClusterRole labelled kube2git.io/aggregate-to-reader grants it, with no chart change."""
    installed = install_identity(ctx, tmp_path, values=[])
    name, path = _new_crd(ctx)
    group = name.split(".", 1)[1]
    extra = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": f"kube2git-test-{group}",
            "labels": {"kube2git.io/aggregate-to-reader": "true"},
        },
        "rules": [{"apiGroups": [group], "resources": ["gizmos"], "verbs": ["list", "watch"]}],
    }
    try:
        repo = tmp_path / "backup.git"
        code, output = run_snapshot(installed, repo, tmp_path)
        assert code == 0, output
        assert f"kube2git: not read: {name}: forbidden" in output
        assert path not in tree(repo)

        status, body = apply(ctx.cluster, ctx.served, extra, dry_run=False)
        assert status in (200, 201), body
        wait_for_aggregation(ctx, installed, rule=extra["rules"][0])
        code, output = run_snapshot(installed, repo, tmp_path)
        assert code == 0, output
        assert name not in output
        assert path in tree(repo), output
    finally:
        ctx.cluster.request(
            "DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{extra['metadata']['name']}"
        )
        uninstall_identity(ctx, installed)


def test_run_reports_denied_types_and_keeps_going(ctx: Context, tmp_path: Path) -> None:
    """``kube2git run`` as the ServiceAccount without captureSecrets: a CRD it may not read,
    present at start and another created while it runs, are each reported (log, metric,
    /readyz detail) while it stays ready and records everything else; a ClusterRole
    labelled for aggregation then grants one, and it is recorded with no restart."""
    installed = install_identity(ctx, tmp_path, values=[])
    grant_name = f"kube2git-test-grant-{secrets.token_hex(3)}"
    try:
        early, early_file = _new_crd(ctx)
        port = free_port()
        fast_retry = {"forbidden_retry": [2.0]}
        with running(installed, tmp_path, port, test_crds=True, cluster=fast_retry) as (
            proc,
            log,
        ):
            eventually("ready", lambda: _ready(proc, log, port), within=120)
            late, _ = _new_crd(ctx)

            def both_reported() -> bool:
                _ready(proc, log, port)
                metrics = _get_status(port, "/metrics")[1]
                return all(
                    f'kube2git_type_denied{{resource="{name}"}} 1.0' in metrics
                    for name in (early, late)
                )

            eventually("both types in kube2git_type_denied", both_reported, within=60)
            status, text = _get_status(port, "/readyz")
            assert status == 200, text
            assert text.startswith("ok\n"), text
            assert early in text, text
            assert late in text, text
            reported = {(e.get("event"), e.get("type")) for e in _log_events(log)}
            assert ("sync.forbidden", early) in reported, log.read_text()[-3000:]
            assert ("watch.forbidden", late) in reported, log.read_text()[-3000:]
            # Everything else is still recorded.
            marker = {"metadata": {"name": "after-denial"}}
            made = ctx.cluster.request(
                "POST", f"/api/v1/namespaces/{ctx.namespace}/configmaps", marker
            )
            assert made.status == 201, made.body
            eventually(
                "the marker's commit",
                lambda: (
                    f"namespaces/{ctx.namespace}/configmaps/after-denial.yaml"
                    in tree(tmp_path / "backup.git")
                ),
            )
            # Granted later, without a chart change or a restart.
            group = early.split(".", 1)[1]
            rule = {"apiGroups": [group], "resources": ["gizmos"], "verbs": ["list", "watch"]}
            grant = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": grant_name,
                    "labels": {"kube2git.io/aggregate-to-reader": "true"},
                },
                "rules": [rule],
            }
            status, body = apply(ctx.cluster, ctx.served, grant, dry_run=False)
            assert status in (200, 201), body
            wait_for_aggregation(ctx, installed, rule=rule)
            eventually(
                "the granted type's object on the branch",
                lambda: early_file in tree(tmp_path / "backup.git"),
                within=60,
            )
            metrics = _get_status(port, "/metrics")[1]
            assert f'kube2git_type_denied{{resource="{early}"}}' not in metrics
            assert f'kube2git_type_denied{{resource="{late}"}} 1.0' in metrics
    finally:
        ctx.cluster.request(
            "DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{grant_name}"
        )
        uninstall_identity(ctx, installed)


def _get_status(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of kube2git's health port; (0, "") while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError:
        return 0, ""
