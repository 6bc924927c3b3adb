"""Recount API requests of a finished run from its kept cluster directory (``--keep``).

    python -m benchmarks.cluster.recount --cluster-dir DIR benchmarks/results/cluster-L.json

Rewrites the JSON's ``api`` entries and the markdown beside it (the plot is left as it is).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.cluster import measure, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=Path, required=True)
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    info, results = data["info"], data["results"]
    windows = {name: (a, b) for name, (a, b) in info["windows"].items()}
    users = {name: f"bench-{name}" for name in results}
    audit = measure.api_load(args.cluster_dir / "audit.log", set(users.values()), windows)
    for name, user in users.items():
        results[name]["api"] = audit[user]
    args.results.write_text(json.dumps(data, indent=2) + "\n")
    args.results.with_suffix(".md").write_text(report.markdown(info, results))
    print(json.dumps({n: r["api"] for n, r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
