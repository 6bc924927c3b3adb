"""``cluster.name`` and ``git.layout: fleet``: a safe folder name, or one line and exit 2.

The name becomes a folder of a shared branch and the first word of every commit subject, so
a name that could climb out of ``clusters/`` or split a path is refused before anything is
read or written; by default it is the kubeconfig context's name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import fleet_member, load_settings
from exporter.gitstore.ownership import Ownership
from tests.unit.cli import run_cli

_EKS_CONTEXT = "arn:aws:eks:eu-west-1:123456789012:cluster/prod"


def _kubeconfig(path: Path, context: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        f"contexts: [{{name: '{context}', context: {{cluster: c, user: u}}}}]\n"
        f"current-context: '{context}'\n"
    )
    return path


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "-x", "x" * 64, "prod eu", "é"])
def test_an_unsafe_cluster_name_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"cluster: {{name: '{name}'}}\n")
    code, err = run_cli(
        ["snapshot", "--repo", str(tmp_path / "r.git"), "--config", str(cfg)], capsys
    )
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith(f"kube2git: error: {cfg}: cluster.name must be a safe folder name")

    code, err = run_cli(
        ["run", "--repo", str(tmp_path / "r.git"), f"--cluster-name={name}"], capsys
    )
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith("kube2git: error: --cluster-name: cluster.name must be a safe folder")
    assert not (tmp_path / "r.git").exists()


@pytest.mark.parametrize("name", ["prod", "prod-eu-1", "kind-kind", "gke_my.project_x", "A1"])
def test_safe_names_load(tmp_path: Path, name: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"cluster: {{name: '{name}'}}\ngit: {{layout: fleet}}\n")
    settings = load_settings(cfg)
    assert fleet_member(settings) == (Ownership(prefix=f"clusters/{name}/"), name)


def test_an_unknown_layout_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("git: {layout: clusters}\n")
    code, err = run_cli(
        ["snapshot", "--repo", str(tmp_path / "r.git"), "--config", str(cfg)], capsys
    )
    assert (code, err.count("\n")) == (2, 1), err
    assert "git.layout must be one of default, fleet" in err


def test_the_name_defaults_to_the_kubeconfig_context(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", "staging-2")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"git: {{layout: fleet}}\ncluster: {{kubeconfig: '{kubeconfig}'}}\n")
    assert fleet_member(load_settings(cfg)) == (Ownership.fleet("staging-2"), "staging-2")
    # the default layout names no cluster and owns the whole branch, whatever the context
    cfg.write_text(f"cluster: {{kubeconfig: '{kubeconfig}'}}\n")
    assert fleet_member(load_settings(cfg)) == (Ownership(), "")


def test_a_context_that_cannot_be_a_folder_asks_for_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", _EKS_CONTEXT)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("git: {layout: fleet}\n")
    argv = ["snapshot", "--repo", str(tmp_path / "r.git"), "--config", str(cfg)]
    code, err = run_cli([*argv, "--kubeconfig", str(kubeconfig)], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert f"kubeconfig context {_EKS_CONTEXT!r} cannot be the cluster's folder" in err
    assert err.rstrip().endswith("set --cluster-name")
    assert not (tmp_path / "r.git").exists()


def test_in_a_pod_without_a_kubeconfig_the_name_is_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("git: {layout: fleet}\n")
    argv = ["run", "--repo", str(tmp_path / "r.git"), "--config", str(cfg)]
    code, err = run_cli(argv, capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert "git.layout fleet needs the cluster's name" in err
    assert "--cluster-name" in err
