"""The relist benchmark runs end to end against the real control plane.

It drives the run's own intake through internal parts (watcher, queue, coalescer), so a
refactoring of the runner can break it without any other test noticing; this test notices.
No timing or memory figure is asserted (the machine is shared).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cluster.control_plane import ControlPlane


def test_a_relist_of_unchanged_configmaps_leaves_nothing_pending(
    control_plane: ControlPlane, namespace: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_relist", "--kubeconfig",
         str(control_plane.kubeconfig), "--objects", "25", "--namespace", namespace],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["objects"] >= 25  # every ConfigMap of the cluster, these 25 included
    assert report["pending_changes"] == 0  # nothing changed: the relist offers nothing
    assert report["rss_peak_mib"] >= report["rss_before_mib"] > 0
