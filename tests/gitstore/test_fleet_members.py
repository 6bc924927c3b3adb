"""Several writers, one branch of one remote: each writes only its own folder, a push is a
compare-and-swap of the remote ref, and the loser replays its own commits on the moved tip.

The writers are real stores on real repositories; the remote is a bare repository that, like
a protected branch, refuses any non-fast-forward update. Every writer here commits under the
same identity (kube2git's default), as the members of a fleet do.
"""

from __future__ import annotations

import itertools
import random
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from exporter.gitstore import GitSettings, GitStore, PushRejected, RemoteSettings
from exporter.gitstore.ownership import OutsideOwnership, Ownership
from exporter.messages import Delete
from tests.gitstore.test_push import Git, configmap
from tests.gitstore.test_replay import history_has, purge

LEAK = configmap("leak", "password=hunter2")


def member(
    tmp_path: Path,
    name: str,
    remote: Path,
    *,
    sleep: list[float] | None = None,
    **settings: object,
) -> GitStore:
    """The store of fleet member ``name``: its own local repository, the shared remote."""
    remote_settings = RemoteSettings(
        url=str(remote),
        retry_delays=(),
        operation_timeout=60.0,
        **settings,  # type: ignore[arg-type]
    )
    return GitStore(
        tmp_path / f"{name}.git",
        settings=GitSettings(remote=remote_settings),
        ownership=Ownership.fleet(name),
        cluster=name,
        sleep=(sleep.append if sleep is not None else lambda _: None),
        rng=random.Random(7),  # noqa: S311 - retry jitter, not secrets
    )


@pytest.fixture
def protected_remote(bare_remote: Path, git_cli: Git) -> Path:
    """The shared remote: no non-fast-forward update is accepted, every update is logged."""
    git_cli("--git-dir", str(bare_remote), "config", "receive.denyNonFastForwards", "true")
    git_cli("--git-dir", str(bare_remote), "config", "core.logAllRefUpdates", "always")
    return bare_remote


def assert_never_forced(git: Git, remote: Path) -> None:
    """Every update of the remote branch moved it forward (its reflog, newest first)."""
    updates = git("--git-dir", str(remote), "reflog", "show", "--format=%H", "kube2git").split()
    for newer, older in itertools.pairwise(updates):
        git("--git-dir", str(remote), "merge-base", "--is-ancestor", older, newer)


def test_members_push_in_turn_each_replaying_on_the_others_tip(
    tmp_path: Path, protected_remote: Path, git_cli: Git
) -> None:
    east = member(tmp_path, "east", protected_remote)
    west = member(tmp_path, "west", protected_remote)
    with east, west:
        made = 0
        for round_ in range(3):
            for store in (east, west):
                store.commit([configmap(f"cm-{round_}", value=str(round_))])
                made += 1
            for store in (west, east):  # the second pusher of each round finds the tip moved
                result = store.push()
                assert result.pushed
                # the other member's commits changed nothing of this one's files: no re-diff
                assert not result.rebuilt
        assert east.contention + west.contention >= 5
        # each sees only its own folder, named as the plain layout
        assert set(east.index()) == {configmap(f"cm-{r}").key.path for r in range(3)}
        assert set(west.index()) == set(east.index())
        assert east.read(configmap("cm-0").key.path) == configmap("cm-0", value="0").content
    remote_files = git_cli(
        "--git-dir", str(protected_remote), "ls-tree", "-r", "--name-only", "kube2git"
    )
    assert sorted(remote_files.split()) == sorted(
        f"clusters/{name}/{configmap(f'cm-{r}').key.path}"
        for name in ("east", "west")
        for r in range(3)
    )
    subjects = git_cli("--git-dir", str(protected_remote), "log", "--format=%s", "kube2git").split(
        "\n"
    )
    assert sum(1 for s in subjects if s) == made  # nobody's commit lost
    assert {s.split(":")[0] for s in subjects if s} == {"east", "west"}
    assert (
        git_cli("--git-dir", str(protected_remote), "rev-list", "--min-parents=2", "kube2git") == ""
    )
    assert_never_forced(git_cli, protected_remote)


def test_a_hand_edit_in_a_members_folder_is_re_diffed(
    tmp_path: Path, protected_remote: Path, git_cli: Git
) -> None:
    with member(tmp_path, "east", protected_remote) as east:
        east.commit([configmap("web")])
        assert east.push().pushed
        work = tmp_path / "someone"
        git_cli("clone", "--quiet", "--branch", "kube2git", str(protected_remote), str(work))
        edited = work / "clusters/east" / configmap("web").key.path
        edited.write_text("edited by hand\n")
        git_cli("commit", "--quiet", "-am", "hand edit", cwd=work)
        git_cli("push", "--quiet", "origin", "kube2git", cwd=work)
        east.commit([configmap("other")])
        result = east.push()
        assert result.pushed
        assert result.rebuilt  # east's own file changed under it: the caller re-diffs
        assert east.read(configmap("web").key.path) == b"edited by hand\n"


def test_nothing_outside_the_folder_is_deleted_or_rewritten(
    tmp_path: Path, protected_remote: Path, git_cli: Git
) -> None:
    """The branch holds another member's files, an older single-cluster backup at the root
    and a README: a member that starts from the remote, deletes everything it has and rewrites
    what it knows touches none of them."""
    work = tmp_path / "someone"
    git_cli("init", "--quiet", "-b", "kube2git", str(work))
    foreign = {
        "README.md": "the fleet's backup\n",
        configmap("web").key.path: "an old single-cluster backup\n",
        f"clusters/west/{configmap('web').key.path}": "west's\n",
        "clusters/east-2/" + configmap("web").key.path: "a sibling whose name starts alike\n",
    }
    for path, text in foreign.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git_cli("add", "-A", cwd=work)
    git_cli("commit", "--quiet", "-m", "others", cwd=work)
    git_cli("push", "--quiet", str(protected_remote), "kube2git", cwd=work)

    with member(tmp_path, "east", protected_remote) as east:
        east.catch_up()  # a new member starts from the remote
        assert east.index() == {}  # nothing of the branch is east's yet
        assert east.read("README.md") is None
        assert east.read(configmap("web").key.path) is None
        east.commit([configmap("web", "east's"), Delete(configmap("gone").key, "ConfigMap")])
        assert set(east.index()) == {configmap("web").key.path}
        east.commit([Delete(configmap("web").key, "ConfigMap")])
        assert east.index() == {}
        assert east.push().pushed
    for path, text in foreign.items():
        shown = git_cli("--git-dir", str(protected_remote), "show", f"kube2git:{path}")
        assert shown == text, path
    assert_never_forced(git_cli, protected_remote)


def test_a_replay_after_a_purge_never_brings_back_another_members_files(
    tmp_path: Path, protected_remote: Path, git_cli: Git
) -> None:
    """West leaks a value and an administrator purges it by force-push. East had fetched
    west's commit, which carries the same committer identity as east's own, and no longer
    knows what it last pushed (its tracking ref went with a manual clean-up), so it rebuilds
    every commit of that identity since the histories split: west's leak must not come back
    through east."""
    git_cli("--git-dir", str(protected_remote), "config", "receive.denyNonFastForwards", "false")
    east = member(tmp_path, "east", protected_remote)
    west = member(tmp_path, "west", protected_remote)
    with east, west:
        east.commit([configmap("a")])
        assert east.push().pushed
        west.commit([configmap("b"), LEAK])
        assert west.push().pushed  # replayed on east's commit
        east.commit([configmap("c")])
        assert east.push().pushed  # replayed on west's: east's history now holds the leak
        leaked = f"clusters/west/{LEAK.key.path}"
        purge(git_cli, protected_remote, tmp_path / "admin", leaked)
        east.commit([configmap("d")])
        git_cli("--git-dir", str(east.path), "update-ref", "-d", "refs/remotes/origin/kube2git")
        with capture_logs() as logs:
            result = east.push()
        assert result.pushed
        assert not history_has(git_cli, protected_remote, "hunter2")
        assert set(east.index()) == {configmap(n).key.path for n in ("a", "c", "d")}
    kept_out = [e for e in logs if e["event"] == "gitstore.replay_kept_out"]
    assert kept_out
    assert leaked in kept_out[0]["first_paths"]


def test_a_shard_refuses_to_write_a_type_it_does_not_own(tmp_path: Path) -> None:
    """A writer that owns some types' folders (a shard) cannot commit another type's file;
    the branch does not move."""
    shard = Ownership(types=frozenset({("apps", "deployments")}))
    with GitStore(tmp_path / "shard.git", ownership=shard) as store:
        with pytest.raises(OutsideOwnership, match="configmaps"):
            store.commit([configmap("web")])
        assert store.head() is None


def _moving_remote_hook(local: Path, remote: Path, git: Git, work: Path, times: int) -> None:
    """Each of the next ``times`` fetches into ``local`` is followed at once by another
    writer's push, so the push after it finds the remote moved on again (git runs the
    ``reference-transaction`` hook when the fetch updates the tracking ref)."""
    git("clone", "--quiet", "--branch", "kube2git", str(remote), str(work))
    counter = work.parent / "moves"
    counter.write_text("0")
    hook = local / "hooks" / "reference-transaction"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(
        "#!/bin/sh\n"
        '[ "$1" = committed ] || exit 0\n'
        "grep -q refs/remotes/ || exit 0\n"
        f'n=$(cat "{counter}")\n'
        f'[ "$n" -lt {times} ] || exit 0\n'
        f'echo $((n + 1)) > "{counter}"\n'
        "unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE\n"
        f'cd "{work}" && git pull --quiet --rebase origin kube2git'
        f' && echo "$n" > "move-$n" && git add -A'
        ' && git -c user.name=Other -c user.email=other@example.com commit --quiet -m "move $n"'
        " && git push --quiet origin HEAD:kube2git\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)


def test_a_contended_push_backs_off_with_jitter_and_counts_each_refusal(
    tmp_path: Path, protected_remote: Path, git_cli: Git
) -> None:
    sleeps: list[float] = []
    delays = (0.5, 2.0)
    with member(tmp_path, "east", protected_remote, sleep=sleeps, replay_delays=delays) as east:
        east.commit([configmap("a")])
        assert east.push().pushed
        _moving_remote_hook(east.path, protected_remote, git_cli, tmp_path / "other", times=3)
        git_cli("-C", str(tmp_path / "other"), "commit", "--quiet", "--allow-empty", "-m", "x")
        git_cli("-C", str(tmp_path / "other"), "push", "--quiet", "origin", "HEAD:kube2git")
        east.commit([configmap("b")])
        result = east.push()
        assert result.pushed
        # refused four times: the push found the remote moved, and after each of the first
        # three fetches another writer pushed again
        assert result.contended == 4
        assert east.contention == 4
    # no wait before the first replay; then each delay (the last repeats), spread at random
    # over half to one and a half of itself so that writers who collided fall out of step
    assert len(sleeps) == 3
    for slept, delay in zip(sleeps, (0.5, 2.0, 2.0), strict=True):
        assert delay / 2 <= slept < delay * 1.5
    assert len(set(sleeps)) == 3
    assert_never_forced(git_cli, protected_remote)


def test_a_remote_that_keeps_moving_is_given_up_after_max_replays(
    tmp_path: Path, protected_remote: Path, git_cli: Git
) -> None:
    settings = {"replay_delays": (0.0,), "max_replays": 2}
    with member(tmp_path, "east", protected_remote, **settings) as east:
        east.commit([configmap("a")])
        assert east.push().pushed
        _moving_remote_hook(east.path, protected_remote, git_cli, tmp_path / "other", times=10)
        git_cli("-C", str(tmp_path / "other"), "commit", "--quiet", "--allow-empty", "-m", "x")
        git_cli("-C", str(tmp_path / "other"), "push", "--quiet", "origin", "HEAD:kube2git")
        east.commit([configmap("b")])
        with pytest.raises(PushRejected, match="kept moving on through 2 replays"):
            east.push()
        assert east.contention == 3
    assert_never_forced(git_cli, protected_remote)
