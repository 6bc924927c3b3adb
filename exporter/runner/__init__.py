"""``kube2git run``: continuous capture, one small unit per part of the supervision.

:mod:`~exporter.runner.supervisor` wires the run (:class:`Exporter`, the public name);
:mod:`~exporter.runner.leadership` (the Lease), :mod:`~exporter.runner.watchers` (one watch per
type, discovery), :mod:`~exporter.runner.intake` (the queue into the coalescer),
:mod:`~exporter.runner.pacing` (commit, push, pack) and :mod:`~exporter.runner.shutdown` (the
drain) each own one part. Anything a drain cannot finish is still in the cluster: the next
start records it, since the initial sync diffs the cluster against the branch. Only the CLI
(and benchmarks) may import this package: nothing it supervises may depend on it.
"""

from __future__ import annotations

from exporter.runner.supervisor import Exporter

__all__ = ["Exporter"]
