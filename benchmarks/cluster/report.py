"""Results as JSON, a markdown table and a PNG plot under benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


ROWS: list[tuple[str, tuple[str, ...], int]] = [
    ("initial capture: seconds to a commit with the whole cluster", ("initial", "seconds"), 1),
    ("initial capture: CPU seconds", ("initial", "cpu_seconds"), 1),
    ("initial capture: peak RSS (MiB)", ("initial", "peak_rss_mib"), 1),
    ("initial capture: commits", ("initial", "commits"), 0),
    ("initial capture: repository size (bytes)", ("initial", "repo_bytes"), 0),
    ("idle 30 s: CPU seconds", ("idle", "cpu_seconds"), 2),
    ("idle 30 s: commits", ("idle", "commits"), 0),
    ("steady change: edits", ("steady", "edits"), 0),
    ("steady change: change-to-commit p50 (s)", ("steady", "latency_p50"), 2),
    ("steady change: change-to-commit p99 (s)", ("steady", "latency_p99"), 2),
    ("steady change: edits superseded before a commit", ("steady", "superseded"), 0),
    ("steady change: objects whose last edit never landed", ("steady", "lost"), 0),
    (
        "steady change: seconds after the last edit until all landed",
        ("steady", "caught_up_seconds"),
        1,
    ),
    ("steady change: commits", ("steady", "commits"), 0),
    ("steady change: CPU seconds", ("steady", "cpu_seconds"), 1),
    ("steady change: peak RSS (MiB)", ("steady", "peak_rss_mib"), 1),
    ("autoscaling storm: scale requests", ("storm", "scale_requests"), 0),
    ("autoscaling storm: commits", ("storm", "commits"), 0),
    ("restart during change: objects edited", ("restart", "objects_edited"), 0),
    ("restart during change: final state lost", ("restart", "lost"), 0),
    (
        "restart during change: seconds after the last edit until all landed",
        ("restart", "caught_up_seconds"),
        1,
    ),
    (
        "after restart: objects differing from a fresh capture",
        ("restart", "versus_fresh_capture", "different"),
        0,
    ),
    (
        "after restart: objects missing (vs a fresh capture)",
        ("restart", "versus_fresh_capture", "missing"),
        0,
    ),
    ("API requests: total", ("api", "total"), 0),
    ("API requests: during steady change", ("api", "windows", "steady"), 0),
    ("API requests: idle 30 s", ("api", "windows", "idle"), 0),
    ("repository: files at the end", ("census", "files"), 0),
    ("repository: owned children (ReplicaSets, Pods...)", ("census", "owned_children"), 0),
    ("repository: blobs holding planted secret values", ("secrets", "blobs_with_values"), 0),
    ("repository: distinct secret values leaked", ("secrets", "distinct_values_leaked"), 0),
    ("repository: size at the end (bytes)", ("repo_bytes_final",), 0),
    ("whole run: CPU seconds", ("cpu_seconds_total",), 1),
    ("whole run: peak RSS (MiB)", ("peak_rss_mib",), 1),
]


def _get(results: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = results
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def markdown(info: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    m = info["machine"]
    pop = info.get("population", {})
    lines = [
        f"# Cluster benchmark, scale {info['scale']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']},"
        f" Python {m['python']}. Started {info['started']}.",
        f"Cluster: {pop.get('objects')} objects created by the harness "
        f"in {pop.get('populate_seconds')} s, {pop.get('nodes')} kwok nodes, "
        f"{pop.get('pods_running')} pods running; control plane started in "
        f"{info.get('cluster_start_seconds')} s.",
        f"kube2git at {info.get('kube2git_commit', 'unknown')}; "
        + "; ".join(
            f"{name} {peer['upstream']} ({peer['upstream_commit'][:12]}), built unchanged, "
            f"binary sha256 {peer['binary_sha256'][:12]}"
            for name, peer in info.get("peers", {}).items()
        )
        + ". Exporters ran side by side on the same cluster and the same edits.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, keys, digits in ROWS:
        cells = [_fmt(_get(results[n], keys), digits) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    errors = [
        f"- {n}: initial capture {results[n]['initial']['error']}"
        for n in names
        if "error" in results[n].get("initial", {})
    ]
    if errors:
        lines += ["", "Errors:", *errors]
    lines.append("")
    return "\n".join(lines)


def plot(path: Path, info: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    import matplotlib  # noqa: PLC0415 - optional, heavy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name, res in results.items():
        points = res.get("_latency_points") or []
        if points:
            top.scatter([p[0] for p in points], [p[1] for p in points], s=4, label=name)
        times = res.get("_commit_times", [])
        bottom.step(times, range(1, len(times) + 1), where="post", label=name)
    zero = info.get("steady_start", 0.0)
    for name, colour in (("steady", "0.92"), ("storm", "#fde0c5"), ("restart", "#dbe9f6")):
        window = info.get("windows", {}).get(name)
        if window:
            for axis in (top, bottom):
                axis.axvspan(window[0] - zero, window[1] - zero, color=colour, zorder=0)
            bottom.text(window[0] - zero, 0.5, name, fontsize=8)
    top.set_yscale("log")
    top.set_ylabel("change-to-commit latency (s)")
    top.set_title(f"Scale {info['scale']}: steady change, autoscaling storm, restart")
    top.legend()
    bottom.set_ylabel("commits (cumulative)")
    bottom.set_xlabel("seconds since the start of steady change")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, info: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cluster-{info['scale']}"
    public = {n: {k: v for k, v in r.items() if not k.startswith("_")} for n, r in results.items()}
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps({"info": info, "results": public}, indent=2) + "\n")
    md_path = out / f"{stem}.md"
    md_path.write_text(markdown(info, results))
    png_path = out / f"{stem}.png"
    plot(png_path, info, results)
    return [json_path, md_path, png_path]
