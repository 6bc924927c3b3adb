"""Replay on a remote that moved on: only our unpushed commits, on top of the remote's tip.

"Ours" means the exporter's own commits after the last commit the remote was known to hold
(the tracking ref before the fetch): commits it pushed before are the remote's business now.
If the remote no longer holds that commit, its history was rewritten (an administrator
purged a leaked value with a force-push); the purged commits are not brought back, only the
unpushed ones are rebuilt on the new tip. Either way the local branch then holds commits the
exporter did not write, so its caller reloads what it believes is committed and re-diffs it
against the cluster (:attr:`ReplayOutcome.rebuilt`).

On a branch shared by several writers (a fleet, shards) only the part of each commit the
writer owns (:class:`~exporter.gitstore.ownership.Ownership`) is rebuilt: every writer of a
fleet may commit under the same identity, so after a rewrite a commit of another writer that
we had fetched can look like ours, and its files must not come back through us. The other
writers' commits on the remote are kept as they are: ours go on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pygit2
import structlog

from exporter.gitstore.ownership import Ownership
from exporter.gitstore.signing import SshSigner, create_commit
from exporter.gitstore.trees import apply_delta, tree_delta

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What one replay did to the local branch."""

    replayed: int
    """Commits rebuilt on the remote tip."""
    conflicts: tuple[str, ...]
    """Paths both sides changed; the replayed (cluster) content won."""
    rebuilt: bool
    """The local branch moved onto commits the exporter did not write that changed its own
    files (in a fleet, other clusters' commits alone do not count)."""
    rewritten: bool
    """The remote no longer holds the last commit it was known to hold (a force-push)."""


def is_rewritten(
    repo: pygit2.Repository, known: pygit2.Commit | None, remote: pygit2.Commit | None
) -> bool:
    """Whether ``remote`` dropped ``known``, the last commit the remote was known to hold."""
    if known is None or remote is None or known.id == remote.id:
        return False
    return not repo.descendant_of(remote.id, known.id)


def replay(
    repo: pygit2.Repository,
    *,
    ref: str,
    local: pygit2.Commit,
    remote: pygit2.Commit,
    known: pygit2.Commit | None,
    committer: pygit2.Signature,
    signer: SshSigner | None = None,
    ownership: Ownership | None = None,
) -> ReplayOutcome:
    """Move ``ref`` (at ``local``) onto ``remote``, rebuilding the part of our commits after
    ``known`` that ``ownership`` owns (default: the whole branch)."""
    owner = ownership or Ownership()
    rewritten = is_rewritten(repo, known, remote)
    if not rewritten:
        if local.id == remote.id or repo.descendant_of(local.id, remote.id):
            return ReplayOutcome(0, (), rebuilt=False, rewritten=False)  # a fast-forward now
        if repo.descendant_of(remote.id, local.id):
            repo.references.create(ref, remote.id, force=True)
            log.info("gitstore.fast_forwarded", onto=str(remote.id)[:12])
            moved = _touches(owner, tree_delta(local.tree, remote.tree))
            return ReplayOutcome(0, (), rebuilt=moved, rewritten=False)
    ours = _own_unpushed(repo, local, remote, known, committer.email)
    base_tree = ours[0].parents[0].tree if ours and ours[0].parents else None
    theirs = tree_delta(base_tree, remote.tree)
    new_tip = remote
    conflicts: list[str] = []
    kept_out: list[str] = []
    replayed = 0
    for commit in ours:
        parent_tree = commit.parents[0].tree if commit.parents else None
        delta = tree_delta(parent_tree, commit.tree)
        if not owner.everything:
            kept_out += [p for p in delta if not owner.owns(p)]
            delta = {p: oid for p, oid in delta.items() if owner.owns(p)}
        conflicts += [p for p in delta if p in theirs and theirs[p] != delta[p]]
        new_tree, _ = apply_delta(repo, new_tip.tree, delta)
        if new_tree == new_tip.tree.id:
            continue
        oid = create_commit(
            repo,
            signer,
            author=commit.author,
            committer=committer,
            message=commit.message,
            tree=new_tree,
            parents=[new_tip.id],
        )
        new_tip = repo[oid].peel(pygit2.Commit)
        replayed += 1
    repo.references.create(ref, new_tip.id, force=True)
    if kept_out:
        log.warning(
            "gitstore.replay_kept_out",
            paths=len(kept_out),
            first_paths=kept_out[:20],
            owner=owner.describe(),
            action="changes outside this writer's files were not replayed",
        )
    if rewritten:
        assert known is not None
        log.warning(
            "gitstore.remote_rewritten",
            previously=str(known.id)[:12],
            now=str(remote.id)[:12],
            replayed=replayed,
            action="rebuilt from the remote tip and the cluster; purged commits not replayed",
        )
    log.warning(
        "gitstore.replayed",
        onto=str(remote.id)[:12],
        commits=replayed,
        skipped=len(ours) - replayed,
        conflicts=len(conflicts),
        conflict_paths=conflicts[:20],
        resolution="cluster state wins" if conflicts else None,
    )
    rebuilt = rewritten or _touches(owner, theirs)
    return ReplayOutcome(replayed, tuple(conflicts), rebuilt=rebuilt, rewritten=rewritten)


def _touches(owner: Ownership, delta: Mapping[str, object]) -> bool:
    """Whether the files ``owner`` owns changed: another fleet member's commits leave this
    writer's view of the branch as it was, so there is nothing to re-diff."""
    return owner.everything or any(owner.owns(path) for path in delta)


def _own_unpushed(
    repo: pygit2.Repository,
    local: pygit2.Commit,
    remote: pygit2.Commit,
    known: pygit2.Commit | None,
    email: str,
) -> list[pygit2.Commit]:
    """Our commits after the last pushed one (after the merge base when none is known), oldest
    first. Commits somebody else wrote are never ours to replay."""
    if known is not None and (known.id == local.id or repo.descendant_of(local.id, known.id)):
        stop: pygit2.Oid | None = known.id
    else:
        stop = repo.merge_base(local.id, remote.id)
    ours: list[pygit2.Commit] = []
    cursor: pygit2.Commit | None = local
    while cursor is not None and cursor.id != stop:
        if cursor.committer.email == email:
            ours.append(cursor)
        cursor = cursor.parents[0] if cursor.parents else None
    ours.reverse()
    return ours
