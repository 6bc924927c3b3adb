"""Prometheus metrics of one exporter process, in a registry of its own (no module globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300)


TYPE_STATES = ("pending", "synced", "retrying", "denied")
"""The values of ``kube2git_types``'s ``state`` label (as exporter.watcher.TypeState)."""


@dataclass(frozen=True, slots=True)
class TypeSample:
    """One followed type as the metrics see it."""

    name: str
    state: str
    idle_seconds: float | None


@dataclass(frozen=True, slots=True)
class Sampled:
    """Values read at scrape time from the stages that own them."""

    api_requests: Callable[[], float]
    watch_restarts: Callable[[], float]
    watch_gone: Callable[[], float]
    throttled: Callable[[], float]
    queue_depth: Callable[[], float]
    pending: Callable[[], float]
    unpushed_commits: Callable[[], float]
    seconds_since_push: Callable[[], float]
    denied_types: Callable[[], Iterable[str]] = tuple
    """Types RBAC does not let kube2git list or watch (``resource[.group]``)."""
    types: Callable[[], Iterable[TypeSample]] = field(default=lambda: ())
    """Each followed type: its name, its state, seconds since its last list, event or
    bookmark (``None``: never read)."""
    relists: Callable[[], Mapping[str, float]] = field(default=dict)
    """Relists by reason."""
    push_contention: Callable[[], float] = field(default=lambda: 0.0)
    """Pushes the remote refused because it had moved on (another writer pushed first)."""


class _SampledCollector(Collector):
    def __init__(self, sampled: Sampled) -> None:
        self._sampled = sampled

    def collect(self) -> Iterator[Metric]:
        s = self._sampled
        yield CounterMetricFamily(
            "kube2git_api_requests", "Requests sent to the Kubernetes API.", value=s.api_requests()
        )
        yield CounterMetricFamily(
            "kube2git_watch_restarts", "Watch requests renewed or re-established.",
            value=s.watch_restarts(),
        )  # fmt: skip
        yield CounterMetricFamily(
            "kube2git_watch_gone", "410 Gone answers that forced a relist.", value=s.watch_gone()
        )
        yield CounterMetricFamily(
            "kube2git_api_throttled", "429 Too Many Requests answers.", value=s.throttled()
        )
        yield GaugeMetricFamily(
            "kube2git_queue_depth", "Events waiting between watches and filters.",
            value=s.queue_depth(),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "kube2git_pending_changes", "Changes waiting for their commit.", value=s.pending()
        )
        denied = GaugeMetricFamily(
            "kube2git_type_denied",
            "1 for each type RBAC does not let kube2git list or watch (not recorded).",
            labels=["resource"],
        )
        for name in s.denied_types():
            denied.add_metric([name], 1)
        yield denied
        samples = list(s.types())
        by_state = GaugeMetricFamily("kube2git_types", "Followed types by state.", labels=["state"])
        per_type = GaugeMetricFamily(
            "kube2git_type_state", "1 for the current state of each followed type.",
            labels=["resource", "state"],
        )  # fmt: skip
        idle = GaugeMetricFamily(
            "kube2git_type_idle_seconds",
            "Seconds since each type's last event, bookmark or completed list.",
            labels=["resource"],
        )
        for state in TYPE_STATES:
            by_state.add_metric([state], sum(1 for t in samples if t.state == state))
        for sample in samples:
            per_type.add_metric([sample.name, sample.state], 1)
            if sample.idle_seconds is not None:
                idle.add_metric([sample.name], sample.idle_seconds)
        yield by_state
        yield per_type
        yield idle
        relists = CounterMetricFamily(
            "kube2git_relists", "Lists of one type by a running watch, by reason.",
            labels=["reason"],
        )  # fmt: skip
        for reason, count in sorted(s.relists().items()):
            relists.add_metric([reason], count)
        yield relists
        yield CounterMetricFamily(
            "kube2git_push_contention",
            "Pushes the remote refused because it had moved on (another writer, such as "
            "another cluster of a fleet, pushed first); each is followed by a fetch and a "
            "replay of kube2git's own commits.",
            value=s.push_contention(),
        )
        yield GaugeMetricFamily(
            "kube2git_unpushed_commits",
            "Commits on the local branch that the remote does not have yet.",
            value=s.unpushed_commits(),
        )
        yield GaugeMetricFamily(
            "kube2git_seconds_since_last_push",
            "Seconds since the last successful push (since the start before the first; 0 "
            "without a remote).",
            value=s.seconds_since_push(),
        )


class Metrics:
    """Every metric kube2git exports; one instance per process, passed to the stages."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "kube2git_events", "Watch events received.", ["resource", "type"], registry=r
        )
        self.skipped = Counter(
            "kube2git_objects_skipped", "Objects the filters skipped.", ["reason"], registry=r
        )
        self.coalesced = Counter(
            "kube2git_changes_coalesced",
            "Changes replaced by a later change of the same object before their commit.",
            registry=r,
        )
        self.flaps = Counter(
            "kube2git_changes_unchanged",
            "Pending changes dropped because the branch already had that content.",
            registry=r,
        )
        self.commits = Counter("kube2git_commits", "Commits made.", registry=r)
        self.manual = Counter(
            "kube2git_manual_changes",
            'Changes by actors outside audit.automation (namespace "" is cluster scope).',
            ["namespace", "actor"],
            registry=r,
        )
        self.audit_facts = Counter(
            "kube2git_audit_facts",
            "Facts of mutating requests received from the audit webhook.",
            registry=r,
        )
        self.audit_matches = Counter(
            "kube2git_audit_matches",
            "Watched changes by whether the audit webhook named their user within the grace.",
            ["result"],
            registry=r,
        )
        self.commit_failures = Counter("kube2git_commit_failures", "Failed commits.", registry=r)
        self.pushes = Counter("kube2git_pushes", "Successful pushes.", registry=r)
        self.push_failures = Counter(
            "kube2git_push_failures",
            "Failed pushes by reason: auth, credentials, host_key, rejected, timeout, "
            "unreachable, not_leading, error.",
            ["reason"],
            registry=r,
        )
        self.leader = Gauge(
            "kube2git_leader",
            "1 while this replica holds the leader lease (always 1 without leader election).",
            registry=r,
        )
        self.shards = Gauge(
            "kube2git_shard",
            "1 for each shard (run.shards) whose types this replica records.",
            ["shard"],
            registry=r,
        )
        self.convergences = Counter(
            "kube2git_branch_convergences",
            "Times the branch moved onto commits kube2git did not write (a replay on a remote "
            "that moved on, a force-push) and was re-diffed against the cluster.",
            registry=r,
        )
        self.latency = Histogram(
            "kube2git_change_to_commit_seconds",
            "Time from a change's arrival to its commit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ready = Gauge("kube2git_ready", "1 when ready (synced, watches healthy).", registry=r)

    def sample(self, sampled: Sampled) -> None:
        self.registry.register(_SampledCollector(sampled))

    def render(self) -> bytes:
        return generate_latest(self.registry)
