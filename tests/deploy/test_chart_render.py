"""The Helm chart rendered offline: RBAC shape, configuration, credentials, probes, resources.

The cluster tests (test_chart.py) apply what these check; here each values switch is checked
for what it must and must not produce.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.config import Settings, load_settings
from filters.policy import SecretMode
from tests.deploy.conftest import CHART, Manifest, Render, by_kind, one

READ = ["list", "watch"]
AGGREGATE_LABEL = "kube2git.io/aggregate-to-reader"


def _config(manifests: list[Manifest], tmp_path: Path) -> Settings:
    """The rendered config file, loaded by kube2git's own loader (so it is valid)."""
    text = one(manifests, "ConfigMap")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path)


def _bound_role(manifests: list[Manifest]) -> Manifest:
    """The ClusterRole the ServiceAccount is bound to."""
    name = one(manifests, "ClusterRoleBinding")["roleRef"]["name"]
    return next(m for m in by_kind(manifests, "ClusterRole") if m["metadata"]["name"] == name)


def _cluster_rules(manifests: list[Manifest]) -> list[dict[str, list[str]]]:
    """The rules the bound role holds, or aggregates from the chart's own ClusterRoles."""
    bound = _bound_role(manifests)
    if "aggregationRule" not in bound:
        rules: list[dict[str, list[str]]] = bound["rules"]
        return rules
    selectors = [s["matchLabels"] for s in bound["aggregationRule"]["clusterRoleSelectors"]]
    return [
        rule
        for role in by_kind(manifests, "ClusterRole")
        if any(s.items() <= role["metadata"].get("labels", {}).items() for s in selectors)
        for rule in role["rules"]
    ]


def _container(manifests: list[Manifest]) -> Manifest:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Manifest = containers[0]
    return container


def test_helm_lint(helm: Path) -> None:
    for values in (
        ["ephemeral=true"],
        [
            "captureSecrets=true",
            "git.remote=https://git.example.com/o/r.git",
            "git.auth.type=https",
            "git.auth.httpsToken=t",
            "replicaCount=2",
        ],
    ):
        argv = [str(helm), "lint", "--strict", str(CHART)]
        for item in values:
            argv += ["--set", item]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_default_rbac_is_read_only_and_excludes_secrets(render: Render) -> None:
    manifests = render()
    rules = _cluster_rules(manifests)
    for rule in rules:
        assert rule["verbs"] == READ
        assert "*" not in rule["apiGroups"], "a wildcard group would include core Secrets"
    core = [r for r in rules if r["apiGroups"] == [""]]
    assert len(core) == 1
    assert "secrets" not in core[0]["resources"]
    assert {"configmaps", "namespaces", "services", "serviceaccounts"} <= set(core[0]["resources"])
    named = [r for r in rules if r["apiGroups"] != [""]]
    assert len(named) == 1
    assert named[0]["resources"] == ["*"]
    # Offline: helm's compiled-in groups and the chart's base list (APIServices are not in
    # helm's list, but kube2git reads them).
    assert {
        "apps", "batch", "rbac.authorization.k8s.io", "apiextensions.k8s.io",
        "apiregistration.k8s.io",
    } <= set(named[0]["apiGroups"])  # fmt: skip
    assert "" not in named[0]["apiGroups"]
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "backup-kube2git"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "backup-kube2git", "namespace": "kube2git"}
    ]


def test_api_groups_follow_the_cluster_capabilities(render: Render) -> None:
    manifests = render(
        api_versions=["example.com/v1", "example.com/v1/Widget", "v1/Secret"],
        values=["rbac.extraApiGroups={later.example.org}"],
    )
    named = next(r for r in _cluster_rules(manifests) if r["apiGroups"] != [""])
    assert {"example.com", "later.example.org"} <= set(named["apiGroups"])
    assert "v1" not in named["apiGroups"]
    assert named["apiGroups"] == sorted(set(named["apiGroups"]))
    fixed = render(values=["rbac.apiGroups={apps,batch}"])
    named = next(r for r in _cluster_rules(fixed) if r["apiGroups"] != [""])
    assert named["apiGroups"] == ["apps", "batch"]


def test_default_config_skips_secrets(render: Render, tmp_path: Path) -> None:
    settings = _config(render(), tmp_path)
    assert settings.filters.secrets.mode is SecretMode.SKIP
    assert "secrets" in settings.cluster.skip_types
    assert settings.repo == "/data/kube2git.git"
    assert settings.run.listen == "0.0.0.0:8080"
    assert settings.git.branch == "kube2git"
    assert settings.git.remote.url == ""


def test_capture_secrets_reads_everything_and_redacts(render: Render, tmp_path: Path) -> None:
    manifests = render(values=["captureSecrets=true"])
    assert _cluster_rules(manifests) == [{"apiGroups": ["*"], "resources": ["*"], "verbs": READ}]
    settings = _config(manifests, tmp_path)
    assert settings.filters.secrets.mode is SecretMode.REDACT
    assert "secrets" not in settings.cluster.skip_types


def test_user_config_is_kept_under_the_chart_settings(render: Render, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "cluster": {"qps": 5, "skip_types": ["leases.coordination.k8s.io"]},
                    "filters": {"select": {"exclude_namespaces": ["kube-*"]}},
                    "repo": "/elsewhere.git",
                },
                "git": {"branch": "backup", "remote": "ssh://git@git.example.com/o/r.git"},
            }
        )
    )
    settings = _config(render(values_file=values), tmp_path)
    assert settings.cluster.qps == 5.0
    assert settings.cluster.skip_types == ("leases.coordination.k8s.io", "secrets")
    assert settings.filters.select.exclude_namespaces == ("kube-*",)
    assert settings.repo == "/data/kube2git.git", "the chart owns the repository path"
    assert settings.git.branch == "backup"
    assert settings.git.remote.url == "ssh://git@git.example.com/o/r.git"


SUBRESOURCE_VALUES = [
    [],
    ["captureSecrets=true"],
    ["replicaCount=2", "rbac.extraApiGroups={cert-manager.io}"],
    ["captureSecrets=true", "replicaCount=2"],
    ["rbac.extraRules[0].apiGroups={example.com}", "rbac.extraRules[0].resources={widgets}"],
]


@pytest.mark.parametrize("values", SUBRESOURCE_VALUES)
def test_roles_grant_list_and_watch_and_only_the_lease_beyond(
    render: Render, values: list[str]
) -> None:
    """No get (pods/log, nodes/proxy, services/proxy, the exec websocket), no create, no
    write: every cluster-wide rule is list and watch; the one exception is get and update
    of the chart's own Lease, by name."""
    manifests = render(values=values)
    for role in by_kind(manifests, "ClusterRole"):
        for rule in role.get("rules", []):
            assert rule["verbs"] == READ, (role["metadata"]["name"], rule)
            assert "resourceNames" not in rule
    for role in by_kind(manifests, "Role"):
        assert role["rules"] == [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": ["backup-kube2git"],
                "verbs": ["get", "update"],
            }
        ]


def test_without_secrets_the_bound_role_aggregates_labelled_roles(render: Render) -> None:
    manifests = render(
        values=[
            "rbac.extraRules[0].apiGroups={example.com}",
            "rbac.extraRules[0].resources={widgets,gadgets}",
        ]
    )
    bound = _bound_role(manifests)
    # Filled in by the aggregation controller: a `rules` in the manifest would be reset to
    # the rendered value (and so emptied) by every helm upgrade.
    assert "rules" not in bound
    selectors = [s["matchLabels"] for s in bound["aggregationRule"]["clusterRoleSelectors"]]
    assert {AGGREGATE_LABEL: "true"} in selectors
    # The chart's own rules are aggregated by a label of this release only, so another
    # release's roles (one with captureSecrets=true, say) never widen this one.
    own = next(m for m in by_kind(manifests, "ClusterRole") if m is not bound)
    assert AGGREGATE_LABEL not in own["metadata"]["labels"]
    assert any(s.items() <= own["metadata"]["labels"].items() for s in selectors)
    assert {"apiGroups": ["example.com"], "resources": ["widgets", "gadgets"], "verbs": READ} in (
        own["rules"]
    )
    with_secrets = render(values=["captureSecrets=true"])
    assert "aggregationRule" not in _bound_role(with_secrets)
    assert len(by_kind(with_secrets, "ClusterRole")) == 1


@pytest.mark.parametrize("resource", ["secrets", "*"])
def test_extra_rules_cannot_grant_core_secrets(
    render: Render, tmp_path: Path, resource: str
) -> None:
    values = tmp_path / "values.yaml"
    rule = {"apiGroups": ["apps", ""], "resources": ["configmaps", resource]}
    values.write_text(yaml.safe_dump({"rbac": {"extraRules": [rule]}}))
    with pytest.raises(AssertionError, match="must not grant core Secrets"):
        render(values_file=values)
    assert by_kind(render(values_file=values, values=["captureSecrets=true"]), "ClusterRole")


def test_replicas_turn_on_leader_election(render: Render, tmp_path: Path) -> None:
    single = _config(render(), tmp_path).run.leader_election
    assert single.enabled is False
    election = _config(render(values=["replicaCount=2"]), tmp_path).run.leader_election
    assert election.enabled is True
    assert election.name == "backup-kube2git"
    assert election.namespace == "kube2git"


def test_leader_election_gets_its_own_lease_and_nothing_else(
    render: Render, tmp_path: Path
) -> None:
    """RBAC cannot limit create to one name: the chart creates the Lease, and the Role may
    only get and update that one. One replica has no Lease and no Role at all."""
    for values in (["replicaCount=2"], ["config.run.leader_election.enabled=true"]):
        manifests = render(values=values)
        election = _config(manifests, tmp_path).run.leader_election
        assert election.enabled is True
        lease = one(manifests, "Lease")
        assert lease["apiVersion"] == "coordination.k8s.io/v1"
        assert lease["metadata"]["name"] == election.name == "backup-kube2git"
        assert lease["metadata"]["namespace"] == election.namespace == "kube2git"
        assert "spec" not in lease, "the replicas own the spec; helm upgrade must not reset it"
        role = one(manifests, "Role")
        assert role["metadata"]["namespace"] == "kube2git"
        assert role["rules"][0]["resourceNames"] == [lease["metadata"]["name"]]
        assert role["rules"][0]["verbs"] == ["get", "update"]
        assert one(manifests, "RoleBinding")["roleRef"]["name"] == role["metadata"]["name"]
    single = render()
    assert not by_kind(single, "Role")
    assert not by_kind(single, "Lease")
    external = render(values=["replicaCount=2", "rbac.leaderElection=false"])
    assert not by_kind(external, "Role")
    assert by_kind(external, "Lease")


def test_shards_get_one_lease_each_and_the_role_may_renew_exactly_those(
    render: Render, tmp_path: Path
) -> None:
    """``config.run.shards: 4``: four Leases named as kube2git names them (the chart's lease
    name, ``-shard-<i>``), get and update on those names and nothing else; no create."""
    manifests = render(values=["replicaCount=3", "config.run.shards=4"])
    settings = _config(manifests, tmp_path)
    assert settings.run.shards == 4
    names = [f"{settings.run.leader_election.name}-shard-{shard}" for shard in range(4)]
    leases = by_kind(manifests, "Lease")
    assert [lease["metadata"]["name"] for lease in leases] == names
    assert all(lease["metadata"]["namespace"] == "kube2git" for lease in leases)
    assert all("spec" not in lease for lease in leases)
    (rule,) = one(manifests, "Role")["rules"]
    assert rule["apiGroups"] == ["coordination.k8s.io"]
    assert rule["resources"] == ["leases"]
    assert rule["resourceNames"] == names
    assert rule["verbs"] == ["get", "update"]
    # shards on one replica still take part in the election (a second one can join)
    single = render(values=["config.run.shards=2"])
    assert [lease["metadata"]["name"] for lease in by_kind(single, "Lease")] == names[:2]
    assert one(single, "Role")["rules"][0]["resourceNames"] == names[:2]


def test_deployment_probes_resources_and_security(render: Render) -> None:
    manifests = render()
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "backup-kube2git"
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = _container(manifests)
    assert container["args"] == ["run"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] == "data"
    assert mounts["/tmp"] == "tmp"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBE2GIT_CONFIG"] == "/etc/kube2git/config/config.yaml"
    assert mounts["/etc/kube2git/config"] == "config"
    assert container["image"] == "ghcr.io/kube2git/kube2git:0.1.0"
    assert not by_kind(manifests, "Secret"), "no credentials without git.auth"
    assert not by_kind(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_ssh_credentials_are_mounted_as_files(render: Render, tmp_path: Path) -> None:
    manifests = render(
        values=[
            "git.remote=git@git.example.com:org/backup.git",
            "git.auth.type=ssh",
            "git.auth.sshPrivateKey=KEY",
            "git.auth.sshKnownHosts=git.example.com ssh-ed25519 AAAA",
        ]
    )
    secret = one(manifests, "Secret")
    assert set(secret["stringData"]) == {"ssh-privatekey", "known_hosts"}
    settings = _config(manifests, tmp_path)
    assert settings.git.remote.ssh.private_key_file == "/etc/kube2git/git/ssh-privatekey"
    assert settings.git.remote.ssh.known_hosts_file == "/etc/kube2git/git/known_hosts"
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "git-credentials")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] == 0o440
    mounts = {m["name"]: m for m in _container(manifests)["volumeMounts"]}
    assert mounts["git-credentials"]["mountPath"] == "/etc/kube2git/git"
    assert mounts["git-credentials"]["readOnly"] is True
    # The credentials never appear in the config file or the environment.
    assert "KEY" not in one(manifests, "ConfigMap")["data"]["config.yaml"]


def test_https_token_and_existing_secret(render: Render, tmp_path: Path) -> None:
    manifests = render(
        values=[
            "git.remote=https://git.example.com/org/backup.git",
            "git.auth.type=https",
            "git.auth.existingSecret=my-git-token",
            "git.auth.httpsUsername=bot",
        ]
    )
    assert not by_kind(manifests, "Secret"), "an existing Secret is used, not created"
    settings = _config(manifests, tmp_path)
    assert settings.git.remote.https.token_file == "/etc/kube2git/git/token"
    assert settings.git.remote.https.username == "bot"
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "git-credentials")
    assert volume["secret"]["secretName"] == "my-git-token"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["git.auth.type=ssh", "git.auth.sshPrivateKey=K"], "sshKnownHosts is required"),
        (["git.auth.type=https"], "httpsToken is required"),
        (["git.auth.type=ftp"], "git.auth.type must be none, ssh or https"),
    ],
)
def test_incomplete_credentials_fail_the_render(
    render: Render, values: list[str], message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        render(values=values)


def test_persistence_and_service_monitor(render: Render) -> None:
    manifests = render(
        values=["persistence.enabled=true", "serviceMonitor.enabled=true"],
    )
    claim = one(manifests, "PersistentVolumeClaim")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    selector = monitor["spec"]["selector"]["matchLabels"]
    service = one(manifests, "Service")
    assert selector.items() <= service["metadata"]["labels"].items()


# ---- where the backup goes ------------------------------------------------------------------

EMPTYDIR_ONLY = "would live only in an emptyDir"


def test_an_emptydir_only_backup_is_refused_unless_ephemeral(render: Render) -> None:
    with pytest.raises(AssertionError, match=EMPTYDIR_ONLY):
        render(ephemeral=False)
    with pytest.raises(AssertionError, match=EMPTYDIR_ONLY):
        render(ephemeral=False, values=["captureSecrets=true", "replicaCount=2"])
    for values in (
        ["ephemeral=true"],
        ["git.remote=ssh://git@git.example.com/o/r.git"],
        ["persistence.enabled=true"],
    ):
        volumes = one(render(ephemeral=False, values=values), "Deployment")["spec"]["template"][
            "spec"
        ]["volumes"]
        assert any(v["name"] == "data" for v in volumes)


# ---- credentials never in a ConfigMap ------------------------------------------------------

CREDENTIALS = {
    "git.auth.sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY----- chart-ssh-key-4f1c",
    "git.auth.httpsToken": "chart-https-token-9d2e",
}


@pytest.mark.parametrize("auth", ["ssh", "https"])
@pytest.mark.parametrize("capture_secrets", [False, True])
def test_no_credential_is_rendered_outside_its_secret(
    render: Render, tmp_path: Path, auth: str, capture_secrets: bool
) -> None:
    """Every auth value set at once: the credentials appear in the Secret only, never in the
    ConfigMap (which kube2git itself records) nor anywhere else."""
    remote = {"ssh": "ssh://git@git.example.com/o/r.git", "https": "https://git.example.com/o/r"}
    values = [
        f"git.remote={remote[auth]}",
        f"git.auth.type={auth}",
        "git.auth.sshKnownHosts=git.example.com ssh-ed25519 AAAA",
        "git.auth.httpsUsername=bot",
        f"captureSecrets={str(capture_secrets).lower()}",
        "replicaCount=2",
        "persistence.enabled=true",
        "serviceMonitor.enabled=true",
        *(f"{key}={value}" for key, value in CREDENTIALS.items()),
    ]
    manifests = render(values=values)
    secret = one(manifests, "Secret")
    used = CREDENTIALS["git.auth.sshPrivateKey" if auth == "ssh" else "git.auth.httpsToken"]
    assert used in yaml.safe_dump(secret)
    for manifest in manifests:
        if manifest is secret:
            continue
        text = yaml.safe_dump(manifest)
        for value in CREDENTIALS.values():
            assert value not in text, f"{manifest['kind']} {manifest['metadata']['name']}"
    config_map = one(manifests, "ConfigMap")
    _config(manifests, tmp_path)  # still a valid configuration
    assert "/etc/kube2git/git/" in config_map["data"]["config.yaml"], "files, not values"


@pytest.mark.parametrize(
    "remote",
    [
        "https://bot:chart-url-token@git.example.com/o/r.git",
        "https://:chart-url-token@git.example.com/o/r.git",
        "ssh://git:chart-url-token@git.example.com/o/r.git",
    ],
)
def test_a_remote_url_with_a_password_is_refused(render: Render, remote: str) -> None:
    with pytest.raises(AssertionError, match="must not contain a password") as raised:
        render(values=[f"git.remote={remote}"])
    assert "chart-url-token" not in str(raised.value)
