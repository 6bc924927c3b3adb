"""``kube2git log`` and ``kube2git who`` on a real repository written by the git store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.gitstore import GitStore
from exporter.gitstore.ownership import Ownership
from exporter.history import parse_when
from exporter.layout import ObjectKey
from exporter.messages import AuditUser, Delete, FieldManager, Gap, Upsert, observed_after_gap

WEB = "namespaces/shop/deployments.apps/web.yaml"


def deployment(image: str, replicas: int, manager: str, time: str, user: str = "") -> Upsert:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}},
    }
    owner = FieldManager(manager, "Update", time, "", {"f:spec": {"f:replicas": {}}})
    audit = AuditUser(user, ("devs",), time=time) if user else None
    content = yaml.safe_dump(body, sort_keys=False).encode()
    key = ObjectKey("apps", "deployments", "shop", "web")
    return Upsert(key, "Deployment", content, body, (owner,), user=audit)


def configmap(name: str, manager: str, time: str, namespace: str = "shop") -> Upsert:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}
    owner = FieldManager(manager, "Update", time, "", {"f:data": {}})
    content = yaml.safe_dump(body).encode()
    key = ObjectKey("", "configmaps", namespace, name)
    return Upsert(key, "ConfigMap", content, body, (owner,))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "backup.git"
    with GitStore(path) as store:
        store.commit(observed_after_gap([deployment("nginx:1", 1, "helm", "")], Gap.RESTART))
        store.commit([deployment("nginx:1", 3, "kubectl-scale", "2024-05-01T10:00:00Z")])
        store.commit([deployment("nginx:1", 4, "kubectl-edit", "2024-05-02T10:00:00Z", "alice")])
        store.commit(
            [
                configmap("a", "kubectl-create", "2024-05-03T10:00:00Z"),
                configmap("b", "helm", "2024-05-03T10:00:00Z", namespace="web"),
                Delete(ObjectKey("apps", "deployments", "shop", "web"), "Deployment"),
            ]
        )
        store.pack(full=True)  # writes the commit-graph that git log's path filter uses
    assert (path / "objects" / "info" / "commit-graph").is_file()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_log_lists_each_change_newest_first_with_who_and_how_sure(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "log", "--repo", str(repo), "apps/Deployment/shop/web")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("deleted   unknown  (none, unknown)")
    assert lines[1].endswith("modified  alice  (audit, manual, field manager kubectl-edit)")
    assert lines[1].startswith("2024-05-02T10:00:00+00:00")
    assert lines[2] == "    .spec.replicas"
    assert lines[3].endswith("modified  kubectl-scale  (field-manager, manual)")
    assert lines[5].endswith(
        "added     kube2git  (none, unknown, field manager helm, observed after a gap: restart)"
    )
    assert len(lines) == 6


def test_log_as_json_with_patches_and_a_time_window(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "log", "--repo", str(repo), "Deployment/shop/web", "--output", "json",
        "--patch", "--since", "2024-05-01T12:00:00Z", "--until", "2024-05-02T12:00:00+00:00",
    )  # fmt: skip
    assert code == 0
    (entry,) = json.loads(out)
    assert entry["author"] == "alice"
    assert (entry["attribution"], entry["change_kind"]) == ("audit", "manual")
    assert entry["fields"] == [".spec.replicas"]
    assert "-  replicas: 3\n+  replicas: 4\n" in entry["patch"]
    assert entry["patch"].startswith(f"--- a/{WEB}\n+++ b/{WEB}\n")


def test_log_takes_a_path_and_reads_beside_a_running_writer(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with GitStore(repo):  # holds the writer lock, as kube2git run does
        code, out, _ = run(capsys, "log", "--repo", str(repo), WEB, "--output", "json")
    assert code == 0
    assert [e["action"] for e in json.loads(out)] == ["deleted", "modified", "modified", "added"]


@pytest.mark.parametrize(
    "spec", ["shop/web", "Deployment", "apps/Deployment/a/b/c", "namespaces/x.yaml", "/x//y"]
)
def test_a_malformed_object_is_a_one_line_user_error(
    repo: Path, capsys: pytest.CaptureFixture[str], spec: str
) -> None:
    code, out, err = run(capsys, "log", "--repo", str(repo), spec)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert repr(spec) in err


@pytest.mark.parametrize("command", [["log", "ConfigMap/shop/web"], ["who"]])
@pytest.mark.parametrize("made", ["not-a-repository", "no-backup-branch"])
def test_a_repository_that_is_not_a_backup_is_a_one_line_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], made: str
) -> None:
    """Pointing --repo at the wrong directory, or at a repository without the branch, is the
    user's mistake (exit 2, as diff and restore say), and nothing is written there."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    if made == "no-backup-branch":
        GitStore(target).close()
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    code, out, err = run(capsys, command[0], "--repo", str(target), *command[1:])
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert str(target) in err
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


def test_who_counts_changes_per_actor_namespace_and_type(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "who", "--repo", str(repo), "--output", "json")
    assert code == 0
    rows = {(r["actor"], r["namespace"], r["type"]): r for r in json.loads(out)}
    assert rows["alice", "shop", "deployments.apps"]["changes"] == 1
    assert rows["unknown", "shop", "deployments.apps"]["attribution"] == "none"
    assert rows["helm", "web", "configmaps"]["change_kind"] == "automation"
    assert rows["kube2git", "shop", "deployments.apps"]["changes"] == 1
    code, out, _ = run(capsys, "who", "--repo", str(repo), "--manual", "--since", "2024-05-02")
    assert code == 0
    table = [line.split() for line in out.splitlines()]
    assert table[0] == ["ACTOR", "ATTRIBUTION", "KIND", "NAMESPACE", "TYPE", "CHANGES"]
    assert sorted(table[1:]) == [
        ["alice", "audit", "manual", "shop", "deployments.apps", "1"],
        ["kubectl-create", "field-manager", "manual", "shop", "configmaps", "1"],
    ]


def test_log_and_who_read_one_cluster_of_a_fleet_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a fleet repository (``git.layout: fleet``) each cluster's files live under
    ``clusters/<name>/``: ``who`` counted none of them and ``log`` found no object."""
    path = tmp_path / "fleet.git"
    for name, manager in (("prod", "kubectl-edit"), ("staging", "helm")):
        with GitStore(path, ownership=Ownership.fleet(name)) as store:
            store.commit([deployment("nginx:1", 3, manager, "2024-05-01T10:00:00Z")])
            store.commit([configmap("a", manager, "2024-05-02T10:00:00Z")])
    code, out, err = run(
        capsys, "who", "--repo", str(path), "--cluster-name", "prod", "--output", "json"
    )
    assert code == 0, err
    rows = {(r["actor"], r["namespace"], r["type"]): r["changes"] for r in json.loads(out)}
    assert rows == {
        ("kubectl-edit", "shop", "deployments.apps"): 1,
        ("kubectl-edit", "shop", "configmaps"): 1,
    }
    code, out, err = run(
        capsys, "log", "Deployment/shop/web", "--repo", str(path), "--cluster-name", "staging",
        "--output", "json",
    )  # fmt: skip
    assert code == 0, err
    assert [entry["author"] for entry in json.loads(out)] == ["helm"]
    code, out, err = run(capsys, "who", "--repo", str(path), "--cluster-name", "Prod!")
    assert code == 2
    assert err.count("\n") == 1


def test_durations_and_times() -> None:
    now = parse_when("2024-05-10T00:00:00Z", now=None)  # type: ignore[arg-type]
    assert parse_when("24h", now=now).isoformat() == "2024-05-09T00:00:00+00:00"
    assert parse_when("1w2d", now=now).isoformat() == "2024-05-01T00:00:00+00:00"
    assert parse_when("2024-05-01", now=now).isoformat() == "2024-05-01T00:00:00+00:00"


@pytest.mark.parametrize("since", ["99999999999d", "800000w"])
def test_a_duration_beyond_the_calendar_is_a_one_line_user_error(
    repo: Path, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    code, out, err = run(capsys, "who", "--repo", str(repo), "--since", since)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert repr(since) in err
