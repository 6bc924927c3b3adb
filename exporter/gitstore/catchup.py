"""Catching up: a new or returning replica starts from the remote's branch.

Owns the one fetch made before the first commit, and the fast-forward of a missing or older
local branch to the remote tip. It must never move the branch backwards or drop a local commit:
a branch that diverged is handed to the pusher, which replays it on top.
"""

from __future__ import annotations

import structlog

from exporter.gitstore.branch import Branch, git_errors
from exporter.gitstore.errors import GitStoreError
from exporter.gitstore.push import Pusher

log = structlog.get_logger()


@git_errors("catching up with the remote")
def catch_up(branch: Branch, pusher: Pusher) -> str | None:
    """Start from the remote's branch, so a new or returning replica diffs against it.

    A missing or older local branch moves to the remote tip (a fast-forward, never a
    loss: the local branch has nothing the remote lacks); a diverged one is pushed,
    which replays its commits on top. Returns the local tip afterwards.
    """
    if not branch.settings.remote.url:
        return branch.head()
    transport = pusher.remote()
    with pusher.lock, branch.gc_lock:
        found = transport.fetch(branch.settings.branch, branch.tracking)
    if not found:
        return branch.head()
    with branch.lock:
        local, remote = branch.tip(), branch.tracked()
        if remote is None:  # never an assert: it must hold under ``python -O`` too
            raise GitStoreError(
                f"catching up in {branch.path} failed: the remote's branch "
                f"{branch.settings.branch} does not point to a commit"
            )
        if local is None or (
            local.id != remote.id and branch.repo.descendant_of(remote.id, local.id)
        ):
            branch.repo.references.create(branch.ref, remote.id, force=True)
            log.info("gitstore.caught_up", tip=str(remote.id)[:12])
            return str(remote.id)
        diverged = local.id != remote.id and not branch.repo.descendant_of(local.id, remote.id)
    if diverged:
        pusher.push()
    return branch.head()
