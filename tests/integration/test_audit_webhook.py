"""Real users from the API server's audit webhook, on a control plane that sends it.

A control plane of its own (etcd and kube-apiserver only) is started with its webhook audit
backend pointing at kube2git (``start(audit_webhook=True)``, batch mode, the API server's
client certificate verified by kube2git); two client-certificate users, alice and bob, edit,
scale and delete with the real kubectl.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.build import ensure_built
from tests.cluster.control_plane import ControlPlane, start
from tests.integration.helpers import ExporterProcess, commits, eventually, kubectl, ok, tree

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cluster = start(tmp_path_factory.mktemp("audited"), ensure_built(), audit_webhook=True)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def exporter(audited: ControlPlane, tmp_path: Path) -> Iterator[ExporterProcess]:
    process = ExporterProcess(tmp_path, audited.kubeconfig, quiet_period=3.0, max_delay=8.0)
    cert, key, client_ca = audited.audit_webhook_tls
    with process.config.open("a") as config:
        config.write(
            "audit:\n"
            "  webhook:\n"
            f"    listen: 127.0.0.1:{audited.audit_webhook_port}\n"
            f"    cert_file: {cert}\n"
            f"    key_file: {key}\n"
            f"    client_ca_file: {client_ca}\n"
            "    grace: 5.0\n"
        )
    process.start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def test_each_commit_is_authored_by_the_user_who_made_the_change(
    audited: ControlPlane, exporter: ExporterProcess
) -> None:
    alice, bob = audited.user_kubeconfig("alice"), audited.user_kubeconfig("bob")
    ok(audited.request("POST", "/api/v1/namespaces", {"metadata": {"name": "shop"}}))
    web = "namespaces/shop/deployments.apps/web.yaml"
    cfg = "namespaces/shop/configmaps/cfg.yaml"

    kubectl(
        audited, "-n", "shop", "create", "deployment", "web", "--image=nginx:1", kubeconfig=alice
    )
    kubectl(
        audited, "-n", "shop", "create", "configmap", "cfg", "--from-literal=a=1", kubeconfig=bob
    )
    eventually("both objects on the branch", lambda: {web, cfg} <= tree(exporter.repo).keys())
    kubectl(audited, "-n", "shop", "scale", "deployment", "web", "--replicas=3", kubeconfig=bob)
    # two users change one object within a second: two commits, in order
    kubectl(
        audited, "-n", "shop", "patch", "configmap", "cfg", "--type=merge",
        "-p", '{"data":{"a":"2"}}', kubeconfig=alice,
    )  # fmt: skip
    kubectl(
        audited, "-n", "shop", "patch", "configmap", "cfg", "--type=merge",
        "-p", '{"data":{"b":"3"}}', kubeconfig=bob,
    )  # fmt: skip
    eventually("the scale and both edits", lambda: len(commits(exporter.repo, cfg)) == 3)
    kubectl(audited, "-n", "shop", "delete", "deployment", "web", kubeconfig=alice)
    eventually("the deletion", lambda: web not in tree(exporter.repo))

    deleted, scaled, created = commits(exporter.repo, web)
    bob_edit, alice_edit, cfg_created = commits(exporter.repo, cfg)
    assert created["author"] == "alice <alice@user.kube2git.invalid>"
    assert (created["Attribution"], created["Field-Manager"]) == ("audit", "kubectl-create")
    assert created["Change-Kind"] == "manual"
    assert cfg_created["author"] == "bob <bob@user.kube2git.invalid>"
    assert scaled["author"].startswith("bob ")
    assert scaled["Attribution"] == "audit"
    assert alice_edit["author"].startswith("alice ")
    assert bob_edit["author"].startswith("bob ")
    assert deleted["author"] == "alice <alice@user.kube2git.invalid>"
    assert (deleted["Attribution"], deleted["Change-Kind"]) == ("audit", "manual")
    assert "Audit-Fact" not in deleted
    assert exporter.metric("kube2git_audit_facts_total") > 0
