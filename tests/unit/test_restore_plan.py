"""The restore's plan: which stage each object is applied in, and which Secrets can be."""

from __future__ import annotations

import pytest

from exporter.cli import build_parser
from exporter.layout import ObjectKey
from exporter.restore import Stage, stage_of, values_not_in_backup
from exporter.scope import Scope

CUSTOM = frozenset({("example.com", "widgets")})


def _stage(path: str) -> Stage:
    return stage_of(ObjectKey.from_path(path), CUSTOM)


def test_dependencies_come_before_what_uses_them() -> None:
    order = [
        "cluster/customresourcedefinitions.apiextensions.k8s.io/widgets.example.com.yaml",
        "cluster/namespaces/shop.yaml",
        "cluster/priorityclasses.scheduling.k8s.io/high.yaml",
        "cluster/clusterroles.rbac.authorization.k8s.io/viewer.yaml",
        "namespaces/shop/resourcequotas/quota.yaml",
        "namespaces/shop/serviceaccounts/app.yaml",
        "namespaces/shop/configmaps/settings.yaml",
        "namespaces/shop/secrets/db.yaml",
        "namespaces/shop/rolebindings.rbac.authorization.k8s.io/app-reads.yaml",
        "namespaces/shop/persistentvolumeclaims/scratch.yaml",
        "namespaces/shop/services/web.yaml",
        "namespaces/shop/deployments.apps/web.yaml",
        "namespaces/shop/widgets.example.com/large.yaml",
        "cluster/validatingwebhookconfigurations.admissionregistration.k8s.io/policy.yaml",
    ]
    stages = [_stage(path) for path in order]
    assert stages == sorted(stages)
    assert len(set(stages)) == len(stages) - 1  # PriorityClasses and ClusterRoles share one
    assert _stage("cluster/clusterrolebindings.rbac.authorization.k8s.io/b.yaml") is Stage.RBAC
    assert _stage("namespaces/shop/ingresses.networking.k8s.io/web.yaml") is Stage.WORKLOADS


def test_secrets_without_their_values_are_not_restorable() -> None:
    def secret(mode: str | None, data: dict[str, str]) -> dict[str, object]:
        annotations = {"kube2git.io/secret-values": mode} if mode else {}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop", "annotations": annotations},
            "data": data,
        }

    assert values_not_in_backup(secret("redact", {"password": ""})) == (
        "Secret values were redacted in the backup"
    )
    assert values_not_in_backup(secret("fingerprint", {"password": "hmac-sha256:00"})) == (
        "Secret values were kept as fingerprints in the backup"
    )
    empty = secret("redact", {})
    assert values_not_in_backup(empty) is empty  # nothing was withheld: restorable as is


def test_a_namespace_scope_keeps_the_namespace_itself_and_nothing_else_cluster_wide() -> None:
    scope = Scope(namespaces=("shop",), types=("configmaps", "namespaces", "*.apps"))
    assert scope.selects_path("namespaces/shop/configmaps/settings.yaml")
    assert scope.selects_path("cluster/namespaces/shop.yaml")
    assert scope.selects_path("namespaces/shop/deployments.apps/web.yaml")
    assert not scope.selects_path("namespaces/shop/secrets/db.yaml")
    assert not scope.selects_path("namespaces/lab/configmaps/settings.yaml")
    assert not scope.selects_path("cluster/clusterroles.rbac.authorization.k8s.io/x.yaml")
    assert not scope.selects_path("README.md")


def test_restore_flags_have_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE2GIT_NAMESPACE", "shop, lab")
    monkeypatch.setenv("KUBE2GIT_TYPE", "configmaps")
    monkeypatch.setenv("KUBE2GIT_DRY_RUN", "true")
    monkeypatch.setenv("KUBE2GIT_PRUNE", "0")
    args = build_parser().parse_args(["restore", "--type", "secrets"])
    assert args.namespace == ["shop", "lab"]
    assert args.type == ["configmaps", "secrets"]
    assert (args.dry_run, args.prune, args.yes, args.force_conflicts) == (True, False, False, False)
