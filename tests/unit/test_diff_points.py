"""``kube2git diff REF1 REF2`` and the branch reader: points of the backup's history.

The repositories are real: commits are made with the git CLI at chosen times, as any writer
of the branch would make them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.diff import diff_points, render_text
from exporter.gitstore import BranchReader, GitSettings, GitStore, PointNotFound
from exporter.scope import Scope

CM = "namespaces/shop/configmaps/settings.yaml"
DEPLOY = "namespaces/shop/deployments.apps/web.yaml"
OTHER_NS = "namespaces/lab/configmaps/probe.yaml"


def _configmap(namespace: str, name: str, colour: str) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
        f"data:\n  colour: {colour}\n  size: large\n"
    )


def _commit(work: Path, when: int, files: dict[str, str | None]) -> str:
    """Write (or, for None, delete) files and commit them at ``when`` (seconds since epoch)."""
    for path, content in files.items():
        target = work / path
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    stamp = f"@{when} +0000"
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "kube2git",
        "GIT_AUTHOR_EMAIL": "kube2git@localhost",
        "GIT_COMMITTER_NAME": "kube2git",
        "GIT_COMMITTER_EMAIL": "kube2git@localhost",
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }
    for args in (["add", "-A"], ["commit", "-q", "-m", f"at {when}"]):
        subprocess.run(["git", "-C", str(work), *args], env=env, check=True)
    return subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, list[str]]:
    """A bare backup repository whose branch ``kube2git`` has three commits, 100 s apart."""
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "kube2git", str(work)], check=True)
    commits = [
        _commit(
            work,
            1_000_000,
            {CM: _configmap("shop", "settings", "blue"), OTHER_NS: _configmap("lab", "probe", "x")},
        ),
        _commit(
            work,
            1_000_100,
            {
                CM: _configmap("shop", "settings", "green"),
                OTHER_NS: _configmap("lab", "probe", "y"),
                DEPLOY: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
            },
        ),
        _commit(work, 1_000_200, {DEPLOY: None}),
    ]
    repo = tmp_path / "backup.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)
    return repo, commits


def test_two_points_show_changed_fields_added_and_removed_objects(
    history: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    code = main(["diff", "--repo", str(repo), commits[0], commits[1]])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert f"changed {CM} (.data.colour)" in lines
    assert f"added {DEPLOY}" in lines
    assert "-  colour: blue" in lines
    assert "+  colour: green" in lines
    assert f"--- {commits[0][:12]}:{CM}" in lines
    assert lines[-1] == (f"2 changed, 1 added, 0 removed ({commits[0][:12]} → {commits[1][:12]})")
    # No colour when the output is not a terminal.
    assert "\x1b[" not in out


def test_json_output_and_a_namespace_scope(
    history: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    code = main(
        ["diff", "--repo", str(repo), "--output", "json", "-n", "shop", commits[0], "kube2git"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(o["path"], o["status"], o["fields"]) for o in report["objects"]] == [
        (CM, "changed", [".data.colour"])
    ]
    assert report["summary"] == {"changed": 1, "added": 0, "removed": 0}
    assert "+  colour: green" in report["objects"][0]["diff"].splitlines()


def test_removed_objects_and_type_scope(
    history: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    assert main(["diff", "--repo", str(repo), "--type", "*.apps", commits[1], commits[2]]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"removed {DEPLOY}" in out
    assert out[-1].startswith("0 changed, 0 added, 1 removed")


def test_the_same_point_twice_is_no_drift(
    history: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    assert main(["diff", "--repo", str(repo), commits[2], "kube2git"]) == 0
    assert capsys.readouterr().out.startswith("0 changed, 0 added, 0 removed")


def test_time_names_the_last_commit_at_or_before_it(history: tuple[Path, list[str]]) -> None:
    repo, commits = history
    with BranchReader(repo, branch="kube2git") as reader:
        assert reader.at_time(datetime.fromtimestamp(1_000_150, UTC)).commit == commits[1]
        assert reader.at_time(datetime.fromtimestamp(1_000_100, UTC)).commit == commits[1]
        assert reader.at_time(datetime.fromtimestamp(2_000_000, UTC)).commit == commits[2]
        with pytest.raises(PointNotFound, match="no commit at or before"):
            reader.at_time(datetime.fromtimestamp(999_999, UTC))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "kube2git"], "no commit named 'nope'"),
        (["kube2git"], "diff takes two points"),
        (["--at", "yesterday"], "--at 'yesterday': not an ISO 8601 time"),
        (["--at", "1970-01-02T00:00:00Z"], "has no commit at or before 1970-01-02"),
    ],
)
def test_bad_points_are_one_line_and_exit_2(
    history: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    repo, _ = history
    assert main(["diff", "--repo", str(repo), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_a_missing_repository_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", "--repo", str(tmp_path / "none.git"), "a", "b"]) == 2
    assert "none.git: no such repository" in capsys.readouterr().err


def test_colour_on_a_terminal_marks_removed_and_added_lines(
    history: tuple[Path, list[str]],
) -> None:
    repo, commits = history
    with BranchReader(repo, branch="kube2git") as reader:
        result = diff_points(
            reader, reader.at_ref(commits[0]), reader.at_ref(commits[1]), scope=Scope(("shop",))
        )
    out = io.StringIO()
    render_text(result, out, colour=True)
    lines = out.getvalue().splitlines()
    assert f"\x1b[1mchanged {CM} (.data.colour)\x1b[0m" in lines
    assert "\x1b[31m-  colour: blue\x1b[0m" in lines
    assert "\x1b[32m+  colour: green\x1b[0m" in lines


def test_reading_needs_no_writer_lock(history: tuple[Path, list[str]]) -> None:
    """``diff`` and ``restore`` work next to a running exporter, which holds the lock."""
    repo, commits = history
    with (
        GitStore(repo, settings=GitSettings(branch="kube2git")),
        BranchReader(repo, branch="kube2git") as reader,
    ):
        tip = reader.at_ref()
        assert tip.commit == commits[2]
        assert reader.read(tip.files[CM]).startswith(b"apiVersion: v1\n")


def test_in_a_fleet_repository_diff_reads_one_clusters_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--cluster-name`` (or ``git.layout: fleet``) reads ``clusters/<name>/`` as the layout:
    the other clusters' files and anything at the root are not part of it."""
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "kube2git", str(work)], check=True)
    first = _commit(
        work,
        1_000_000,
        {
            f"clusters/prod/{CM}": _configmap("shop", "settings", "blue"),
            f"clusters/staging/{CM}": _configmap("shop", "settings", "red"),
            CM: _configmap("shop", "settings", "old"),
        },
    )
    second = _commit(
        work,
        1_000_100,
        {
            f"clusters/prod/{CM}": _configmap("shop", "settings", "green"),
            f"clusters/staging/{CM}": None,
            f"clusters/staging/{OTHER_NS}": _configmap("lab", "probe", "x"),
            CM: None,
        },
    )
    repo = tmp_path / "fleet.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)

    assert main(["diff", "--repo", str(repo), "--cluster-name", "prod", first, second]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"changed {CM} (.data.colour)" in lines
    assert lines[-1].startswith("1 changed, 0 added, 0 removed")

    config = tmp_path / "fleet.yaml"
    config.write_text("git: {layout: fleet}\ncluster: {name: staging}\n")
    assert main(["diff", "--repo", str(repo), "--config", str(config), first, second]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"removed {CM}" in lines
    assert f"added {OTHER_NS}" in lines
    assert lines[-1].startswith("0 changed, 1 added, 1 removed")

    assert main(["diff", "--repo", str(repo), "--cluster-name", "dev", first, second]) == 0
    assert capsys.readouterr().out.startswith("0 changed, 0 added, 0 removed")
