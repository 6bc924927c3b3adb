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

READ = ["get", "list", "watch"]


def _config(manifests: list[Manifest], tmp_path: Path) -> Settings:
    """The rendered config file, loaded by kube2git's own loader (so it is valid)."""
    text = one(manifests, "ConfigMap")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path)


def _cluster_rules(manifests: list[Manifest]) -> list[dict[str, list[str]]]:
    rules: list[dict[str, list[str]]] = one(manifests, "ClusterRole")["rules"]
    return rules


def _container(manifests: list[Manifest]) -> Manifest:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Manifest = containers[0]
    return container


def test_helm_lint(helm: Path) -> None:
    for values in ([], ["captureSecrets=true", "git.auth.type=https", "git.auth.httpsToken=t"]):
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
    assert binding["roleRef"]["name"] == one(manifests, "ClusterRole")["metadata"]["name"]
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


def test_replicas_turn_on_leader_election(render: Render, tmp_path: Path) -> None:
    single = _config(render(), tmp_path).run.leader_election
    assert single.enabled is False
    election = _config(render(values=["replicaCount=2"]), tmp_path).run.leader_election
    assert election.enabled is True
    assert election.name == "backup-kube2git"
    assert election.namespace == "kube2git"


def test_leader_election_role_is_namespaced_to_leases(render: Render) -> None:
    manifests = render()
    role = one(manifests, "Role")
    assert role["metadata"]["namespace"] == "kube2git"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]
    assert one(manifests, "RoleBinding")["roleRef"]["name"] == role["metadata"]["name"]
    assert not by_kind(render(values=["rbac.leaderElection=false"]), "Role")


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
