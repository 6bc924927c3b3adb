"""Replay on a remote that moved: only our unpushed commits, and a purge stays purged."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest
from structlog.testing import capture_logs

from exporter.gitstore import GitStore, GitStoreError
from tests.gitstore.test_push import Git, configmap, open_store, remote_tip

LEAK = configmap("leak", "password=hunter2")


def history_has(git: Git, repo: Path, needle: str) -> bool:
    """Whether any commit reachable from the remote branch holds ``needle`` in a file."""
    revs = git("--git-dir", str(repo), "rev-list", "kube2git").split()
    return any(_grep(git, repo, needle, rev) for rev in revs)


def _grep(git: Git, repo: Path, needle: str, rev: str) -> bool:
    files = git("--git-dir", str(repo), "ls-tree", "-r", "--name-only", rev).split()
    return any(needle in git("--git-dir", str(repo), "show", f"{rev}:{f}") for f in files)


def purge(git: Git, remote: Path, work: Path, path: str, *, rewind_to: str | None = None) -> str:
    """An admin rewrites the branch without ``path`` and force-pushes it; returns the new tip."""
    git("clone", "--quiet", "--branch", "kube2git", str(remote), str(work))
    if rewind_to is not None:
        git("reset", "--quiet", "--hard", rewind_to, cwd=work)
    else:
        git("checkout", "--quiet", "--orphan", "purged", cwd=work)
        git("rm", "--quiet", "--cached", path, cwd=work)
        (work / path).unlink()
        git("commit", "--quiet", "-m", "purge a leaked value", cwd=work)
    git("push", "--quiet", "--force", "origin", "HEAD:kube2git", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_a_force_pushed_purge_is_not_undone_by_the_next_push(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        store.commit([configmap("a"), LEAK])
        store.push()
        store.commit([configmap("b")])
        store.push()
        purged = purge(git_cli, bare_remote, tmp_path / "admin", LEAK.key.path)
        store.commit([configmap("c")])
        with capture_logs() as logs:
            result = store.push()
        assert result.pushed
        assert result.replayed == 1  # c only: a, leak and b were pushed before
        assert result.rebuilt
        tip = remote_tip(git_cli, bare_remote)
        assert tip == store.head()
        git_cli("--git-dir", str(bare_remote), "merge-base", "--is-ancestor", purged, tip)
        assert not history_has(git_cli, bare_remote, "hunter2")
        assert set(store.index()) == {configmap(n).key.path for n in ("a", "b", "c")}
        rewritten = [e for e in logs if e["event"] == "gitstore.remote_rewritten"]
        assert rewritten
        assert rewritten[0]["log_level"] == "warning"


def test_a_branch_rewound_by_force_is_not_fast_forwarded_back(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        store.commit([configmap("a")])
        store.push()
        before_leak = store.head()
        assert before_leak is not None
        store.commit([LEAK])
        store.push()
        purge(git_cli, bare_remote, tmp_path / "admin", "", rewind_to=before_leak)
        store.commit([configmap("c")])
        result = store.push()
        assert result.pushed
        assert result.rebuilt
        assert result.replayed == 1
        assert remote_tip(git_cli, bare_remote) == store.head()
        assert not history_has(git_cli, bare_remote, "hunter2")
        assert set(store.index()) == {configmap("a").key.path, configmap("c").key.path}


def test_a_remote_that_moved_on_reports_a_rebuilt_branch(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        store.commit([configmap("a")])
        assert not store.push().rebuilt
        work = tmp_path / "someone"
        git_cli("clone", "--quiet", "--branch", "kube2git", str(bare_remote), str(work))
        (work / "README.md").write_text("hand-written\n")
        git_cli("add", "-A", cwd=work)
        git_cli("commit", "--quiet", "-m", "readme", cwd=work)
        git_cli("push", "--quiet", "origin", "kube2git", cwd=work)
        store.commit([configmap("b")])
        result = store.push()
        assert result.rebuilt
        assert result.replayed == 1
        store.commit([configmap("c")])
        assert not store.push().rebuilt


def test_git_errors_become_one_line_store_errors(tmp_path: Path) -> None:
    with GitStore(tmp_path / "local.git") as store:
        store.commit([configmap("a")])
        tip = store.head()
        assert tip is not None
    # a disk that lost the tip's tree: every read fails inside libgit2
    repo = pygit2.Repository(str(tmp_path / "local.git"))
    tree = repo[tip].peel(pygit2.Commit).tree_id
    repo.free()
    (tmp_path / "local.git" / "objects" / str(tree)[:2] / str(tree)[2:]).unlink()
    with GitStore(tmp_path / "local.git") as store:
        for call in (store.index, lambda: store.read("x"), lambda: store.commit([configmap("b")])):
            with pytest.raises(GitStoreError) as caught:
                call()
            assert "\n" not in str(caught.value)
            assert str(tmp_path / "local.git") in str(caught.value)
