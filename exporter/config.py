"""Configuration: one YAML file of nested settings, validated against typed dataclasses.

Every section is a frozen dataclass with a docstring per attribute (the configuration
reference is generated from them). Unknown keys, values of the wrong type and values out of
range (:func:`check_settings`: numbers never negative, rates and sizes above zero, a listen
address that can be bound, no password in a URL) are rejected with the file, flag or
environment variable and the dotted key named. The file is read by the same guarded reader as
object dumps (size, depth and alias limits). Precedence: command-line flag, then environment
variable, then the file, then the default.

Errors: :class:`ConfigError` (a user error: exit code 2).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from exporter.attribution import AuditSettings
from exporter.gitstore.ownership import Ownership
from exporter.gitstore.settings import GitSettings, Layout, RemoteSettings
from exporter.sops.format import SopsError, SopsKeyError, parse_identities
from exporter.sops.sealer import PreviousFile, SecretSealer
from exporter.untrusted import InputError, json_shaped, load_yaml, read_text
from filters import HpaIndex, Pipeline, build_pipeline
from filters.policy import Policy, SecretMode
from filters.secrets import MIN_FINGERPRINT_KEY

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration (file, flag or environment variable) is invalid."""


class PortUnavailable(ConfigError):
    """A configured listen address cannot be bound (the port is taken, the host is not ours)."""


class LogFormat(enum.Enum):
    """How log lines are written."""

    AUTO = "auto"
    """Console on a terminal, JSON otherwise."""
    JSON = "json"
    """One JSON object a line (for log collectors)."""
    CONSOLE = "console"
    """Human-readable, coloured when the terminal allows."""


class LogLevel(enum.Enum):
    """The lowest level of log lines written."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Structured logging."""

    level: LogLevel = LogLevel.INFO
    """Lowest level written: ``debug``, ``info``, ``warning`` or ``error``."""
    format: LogFormat = LogFormat.AUTO
    """``auto``, ``json`` or ``console``."""


class ListMode(enum.Enum):
    """How the initial state of a type is read."""

    AUTO = "auto"
    """Streaming WatchList where the server supports it, paginated LIST otherwise."""
    PAGINATE = "paginate"
    """Paginated LIST (``limit``/``continue``), then a watch."""
    WATCH_LIST = "watch-list"
    """Streaming WatchList only (``sendInitialEvents``)."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How kube2git reads the cluster."""

    kubeconfig: str = ""
    """Kubeconfig file; empty: ``$KUBECONFIG``, the in-cluster service account inside a pod,
    else ``~/.kube/config``."""
    context: str = ""
    """Kubeconfig context; empty: the current context."""
    name: str = ""
    """This cluster's name in a fleet repository (``git.layout: fleet``): its files live under
    ``clusters/<name>/``, and commit subjects and a ``Cluster:`` trailer name it. Letters,
    digits, ``.``, ``_`` and ``-``, starting and ending with a letter or digit, at most 63
    characters. Empty: the kubeconfig context's name (``cluster.context``, else the current
    context); in a pod, without a kubeconfig, it must be set."""
    qps: float = 20.0
    """Client-side request rate limit (requests per second on average)."""
    burst: int = 30
    """Requests allowed in a burst above ``qps``."""
    page_size: int = 500
    """Objects per LIST page."""
    list_concurrency: int = 4
    """Types listed at once during a full sync (the start of ``run``, ``snapshot``, ``diff``):
    on a slow or busy API server the sync then takes about as long as its slowest types
    rather than the sum of all. Each type still lists its pages one after another."""
    list_mode: ListMode = ListMode.AUTO
    """``auto`` (the streaming WatchList, served from the API server's cache, falling back to
    pages where the server lacks it), ``paginate`` or ``watch-list``."""
    request_timeout: float = 60.0
    """Seconds one ordinary request (discovery, one LIST page) may take."""
    watch_timeout_seconds: int = 300
    """Server-side duration of one watch request, before it is renewed (randomised up to 2x
    per request, as client-go does, so renewals of many types spread out)."""
    watch_idle_timeout: float = 30.0
    """Seconds a watch may stay silent after the time the server was asked to end it at
    (its ``timeoutSeconds``) before its connection is taken for dead (a half-open connection:
    the server or a middlebox vanished without closing it) and re-established. Silence before
    that is normal: the API server sends no bookmark for a type unchanged since it started."""
    backoff: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    """Delays between attempts after a failure (the last one repeats), each with +-20% jitter;
    also the delays of a relist loop (410 Gone again and again)."""
    forbidden_retry: tuple[float, ...] = (10.0, 30.0, 60.0, 120.0, 300.0)
    """Delays between attempts at a type that RBAC denies (the last one repeats): a type
    granted later is picked up within the last delay. Also the delays between rediscoveries
    of an API group whose discovery fails (an aggregated API that is down)."""
    retry_after_max: float = 300.0
    """The longest a 429's ``Retry-After`` is honoured (from 1 s; a missing, negative or
    absurd value waits the backoff step instead), stretched by up to 20% so throttled
    watches do not return together."""
    skip_types: tuple[str, ...] = ()
    """Types (``resource.group`` as ``kubectl get`` spells them) never listed or watched, on
    top of the filter policy's type exclusions, to save API requests."""


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """When pending changes become a commit, and how often the branch is pushed."""

    quiet_period: float = 1.0
    """Seconds without a new change that close a batch on a calm cluster."""
    max_delay: float = 5.0
    """Seconds a change may wait for its commit on a calm cluster, however busy the stream."""
    max_delay_under_load: float = 60.0
    """The longest wait a batch may grow to when the cluster or the remote is under load."""
    busy_change_rate: float = 200.0
    """Changes per second (that differ from the branch; filtered events do not count) at which
    the cluster counts as busy: batches stretch towards ``max_delay_under_load`` with the
    square of the rate's share of this, so ordinary change keeps commits within seconds."""
    push_interval: float = 10.0
    """At most one push per this many seconds (pushes carry every commit made meanwhile)."""
    push_backoff_max: float = 300.0
    """After failed pushes, the next attempt waits the push interval doubled per consecutive
    failure, up to this many seconds (the commits wait on disk meanwhile)."""
    push_unready_after: float = 300.0
    """Seconds of consecutive push failures after which ``/readyz`` reports not ready and
    names the reason."""
    pack_interval: float = 3600.0
    """Seconds between packings of loose objects (a large commit packs at once)."""


@dataclass(frozen=True, slots=True)
class LeaderElectionSettings:
    """Several replicas, one writer: a coordination.k8s.io Lease decides which."""

    enabled: bool = False
    """Take part in leader election; only the leader syncs, commits and pushes."""
    namespace: str = ""
    """Namespace of the Lease; empty: the pod's own namespace, else ``default``."""
    name: str = "kube2git"
    """Name of the Lease."""
    identity: str = ""
    """This replica's name in the Lease; empty: the host name and process id."""
    lease_duration: float = 15.0
    """Seconds a leader's last renewal keeps others off: the longest hand-over time."""
    renew_deadline: float = 10.0
    """Seconds the leader keeps trying to renew before it gives up, stops writing at once and
    exits; each attempt is bounded by what is left of it. Keep it below ``lease_duration``:
    the difference is the margin between the old leader's last write and a new leader's
    first."""
    retry_period: float = 2.0
    """Seconds between renewals (and between attempts of a waiting replica)."""


MAX_SHARDS = 64
"""Each shard is a Lease every replica reads once per retry period: keep the count modest."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The continuous exporter (``kube2git run``)."""

    pacing: PacingSettings = field(default_factory=PacingSettings)
    """Commit and push pacing."""
    queue_size: int = 1000
    """Events buffered between the watches and the filters: a slow writer slows the reads."""
    listen: str = "0.0.0.0:8080"
    """Address of ``/healthz``, ``/readyz`` and ``/metrics``; ``""`` disables the server."""
    drain_timeout: float = 30.0
    """Seconds allowed on SIGTERM to commit what is pending and push it."""
    leader_election: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
    """Leader election between replicas."""
    shards: int = 1
    """Spread the resource types over this many shards, each written by the replica that
    holds its Lease (``<leader_election.name>-shard-<i>``, with leader election's namespace,
    identity and timings): replicas share the work and all commit to the one branch, each
    touching only its own types' files. 1: one writer (leader election decides which when
    enabled). At most 64."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration file."""

    repo: str = ""
    """Path of the bare Git repository the backup branch lives in (created when missing)."""
    filters: Policy = field(default_factory=Policy)
    """What is recorded of each object (the default policy of DESIGN.md)."""
    log: LogSettings = field(default_factory=LogSettings)
    """Logging."""
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    """The Kubernetes API connection."""
    git: GitSettings = field(default_factory=GitSettings)
    """The backup branch, commit identities, packing and push."""
    run: RunSettings = field(default_factory=RunSettings)
    """The continuous exporter."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """Who each commit is attributed to, and which actors are automation (docs/audit.md)."""


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Read and validate a configuration file; ``None`` gives the defaults."""
    if path is None:
        return Settings()
    source = str(path)
    try:
        documents = [
            json_shaped(source, document) for document in load_yaml(source, read_text(source))
        ]
    except InputError as error:
        raise ConfigError(
            str(error).replace(": cannot read:", ": cannot read config file:")
        ) from None
    if len(documents) > 1:
        raise ConfigError(f"{source}: expected one YAML document, found {len(documents)}")
    data = (documents or [None])[0]
    if data is None:
        data = {}
    settings = from_mapping(Settings, data, source=source)
    given = data.get("filters") if isinstance(data, dict) else None
    filters = extend_default_lists(settings.filters, given, source=source)
    return check_settings(dataclasses.replace(settings, filters=filters), source=source)


def default_lists(cls: type, prefix: str = "") -> dict[str, dataclasses.Field[Any]]:
    """The drop lists below ``cls`` that a configured list extends, by dotted name."""
    found: dict[str, dataclasses.Field[Any]] = {}
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            found |= default_lists(hint, f"{prefix}{item.name}.")
        elif item.metadata.get("extends_default"):
            found[f"{prefix}{item.name}"] = item
    return found


def extend_default_lists(policy: Policy, given: object, *, source: str) -> Policy:
    """``policy`` with each drop list the file set added to its default list.

    ``filters.replace_defaults`` names the lists whose value replaces the default instead.
    ``given`` is the file's ``filters`` mapping, already validated into ``policy``.
    """
    lists = default_lists(Policy)
    replaced = set(policy.replace_defaults)
    unknown = sorted(replaced - lists.keys())
    if unknown:
        raise ConfigError(
            f"{source}: filters.replace_defaults: {unknown[0]!r} is not a list with defaults "
            f"(one of: {', '.join(lists)})"
        )
    for dotted, item in lists.items():
        if dotted in replaced or not _is_set(given, dotted):
            continue
        default = item.default
        configured = _get(policy, dotted)
        merged = tuple(dict.fromkeys((*default, *configured)))  # type: ignore[misc]
        policy = override(policy, dotted, merged)
    return policy


def _is_set(data: object, dotted: str) -> bool:
    for key in dotted.split("."):
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def _get(obj: object, dotted: str) -> Any:
    for key in dotted.split("."):
        obj = getattr(obj, key)
    return obj


def override(settings: T, dotted: str, value: object) -> T:
    """A copy of ``settings`` with the attribute at ``dotted`` (``git.remote.url``) replaced."""
    head, _, rest = dotted.partition(".")
    current = getattr(settings, head)
    new = override(current, rest, value) if rest else value
    return dataclasses.replace(settings, **{head: new})  # type: ignore[type-var]


def from_mapping(cls: type[T], data: object, *, source: str, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from parsed YAML, checking keys and types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix.removesuffix('.') or 'the file'} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{source}: unknown key {dotted!r}")
        values[key] = _convert(hints[key], raw, source=source, dotted=dotted)
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        required = (
            item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        )
        if required and item.name not in values:
            where = prefix.removesuffix(".") or "the file"
            raise ConfigError(f"{source}: {where}: missing required key {item.name!r}")
    return cls(**values)


def _convert(hint: Any, raw: object, *, source: str, dotted: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_mapping(hint, raw, source=source, prefix=f"{dotted}.")
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if raw is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        return _convert(inner[0], raw, source=source, dotted=dotted)
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if not isinstance(raw, list):
            raise ConfigError(f"{source}: {dotted} must be a list")
        return tuple(
            _convert(item_hint, item, source=source, dotted=f"{dotted}[{index}]")
            for index, item in enumerate(raw)
        )
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [member.value for member in hint]
        if raw not in allowed:
            raise ConfigError(f"{source}: {dotted} must be one of {', '.join(map(str, allowed))}")
        return hint(raw)
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{source}: {dotted} must be true or false")
        return raw
    if hint is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if hint in (str, int, float):
        if not isinstance(raw, hint) or isinstance(raw, bool):
            raise ConfigError(f"{source}: {dotted} must be a {_TYPE_WORDS[hint]}")
        return raw
    raise ConfigError(f"{source}: {dotted} has an unsupported type")  # pragma: no cover


_TYPE_WORDS = {str: "string", int: "whole number", float: "number"}


# -- ranges and formats ---------------------------------------------------------------------

_POSITIVE = frozenset(
    {
        "cluster.qps",
        "cluster.burst",
        "cluster.page_size",
        "cluster.list_concurrency",
        "cluster.request_timeout",
        "cluster.watch_timeout_seconds",
        "cluster.watch_idle_timeout",
        "cluster.retry_after_max",
        "git.remote.operation_timeout",
        "git.remote.ssh.connect_timeout",
        "git.remote.https.low_speed_time",
        "run.queue_size",
        "run.drain_timeout",
        "run.pacing.max_delay",
        "run.pacing.max_delay_under_load",
        "run.pacing.busy_change_rate",
        "run.pacing.pack_interval",
        "run.leader_election.lease_duration",
        "run.leader_election.renew_deadline",
        "run.leader_election.retry_period",
        "run.shards",
    }
)
"""Numbers that must be above zero (zero would mean no rate, no page limit, no wait...)."""
_NOT_EMPTY = frozenset({"cluster.backoff", "cluster.forbidden_retry"})
_HOST_NAME = re.compile(
    r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
)
_LISTEN_FORMAT = "must be HOST:PORT (0.0.0.0:8080, [::]:8080, :8080), or '' to disable"


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``, IPv6 brackets removed; ``ValueError`` naming what is
    wrong. An empty host means every interface."""
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit():
        raise ValueError(_LISTEN_FORMAT)
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")):
            raise ValueError(_LISTEN_FORMAT)
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(_LISTEN_FORMAT + "; write an IPv6 address in brackets")
    elif host and not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    if int(port) > 65535:
        raise ValueError(f"port {int(port)} is not between 0 and 65535")
    return host, int(port)


def _listen_problem(listen: object) -> str | None:
    if listen == "":
        return None
    try:
        split_listen(str(listen))
    except ValueError as error:
        return str(error)
    return None


def _url_problem(url: object) -> str | None:
    """A password (or token) in a URL would be stored in the process list, the pod spec and
    logs: credentials come from files (``git.remote.https.*_file``) instead."""
    text = str(url)
    if "://" not in text:
        return None  # a local path or scp-like user@host:path, which cannot carry a password
    try:
        password = urlsplit(text).password
    except ValueError:
        return "is not a valid URL"
    if password is None:
        return None
    return (
        "a password in the URL is refused (it would show in logs and process lists); "
        "put it in a file: git.remote.https.password_file or token_file"
    )


def plain_http_problem(remote: RemoteSettings) -> str | None:
    """Credentials for an ``http://`` remote would cross the network in clear text."""
    https = remote.https
    named = (https.password_file, https.password_env, https.token_file, https.token_env)
    if remote.url.lower().startswith("http://") and any(named) and not https.allow_insecure_http:
        return (
            "credentials are not sent over plain http:// (git.remote.https names a password "
            "or token); use https://, or set git.remote.https.allow_insecure_http: true on a "
            "trusted network"
        )
    return None


_CLUSTER_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


def cluster_name_problem(name: object) -> str | None:
    """A cluster name becomes a folder of the branch and a word of every commit subject: one
    safe path segment (no ``/``, no ``..``, nothing a shell or a file system treats apart)."""
    if name == "" or _CLUSTER_NAME.fullmatch(str(name)):
        return None
    return (
        "must be a safe folder name: letters, digits, '.', '_' and '-', starting and ending "
        "with a letter or digit, at most 63 characters"
    )


_FORMATS: dict[str, Callable[[object], str | None]] = {
    "run.listen": _listen_problem,
    "git.remote.url": _url_problem,
    "cluster.name": cluster_name_problem,
}


def value_problem(dotted: str, value: object) -> str | None:
    """What is wrong with ``value`` at ``dotted`` (list indexes as ``[]``), or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if dotted in _POSITIVE and not value > 0:
            return "must be greater than 0"
        if not value >= 0:
            return "must be 0 or more"
        return None
    if isinstance(value, tuple) and dotted in _NOT_EMPTY and not value:
        return "must not be empty"
    check = _FORMATS.get(dotted)
    return check(value) if check is not None else None


def value_rule(dotted: str) -> str | None:
    """The range rule of a numeric setting, for the configuration reference."""
    if dotted in _POSITIVE:
        return "Must be greater than 0."
    if dotted in _NOT_EMPTY:
        return "Must not be empty."
    return None


def _leaves(obj: object, dotted: str, pattern: str) -> Iterator[tuple[str, str, object]]:
    """``(dotted with indexes, dotted with [], value)`` of every setting below ``obj``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for item in dataclasses.fields(obj):
            yield from _leaves(
                getattr(obj, item.name),
                f"{dotted}.{item.name}" if dotted else item.name,
                f"{pattern}.{item.name}" if pattern else item.name,
            )
        return
    yield dotted, pattern, obj
    if isinstance(obj, tuple):
        for index, item in enumerate(obj):
            yield from _leaves(item, f"{dotted}[{index}]", f"{pattern}[]")


def problem_message(dotted: str, problem: str) -> str:
    """``run.listen must be ...`` or ``run.listen: port 70000 is ...``."""
    return f"{dotted} {problem}" if problem.startswith("must") else f"{dotted}: {problem}"


def check_settings(settings: Settings, *, source: str) -> Settings:
    """``settings`` if every value is in range, else a :class:`ConfigError` naming ``source``
    (the file, flag or environment variable) and the first bad key."""
    for dotted, pattern, value in _leaves(settings, "", ""):
        problem = value_problem(pattern, value)
        if problem is not None:
            raise ConfigError(f"{source}: {problem_message(dotted, problem)}")
    problem = plain_http_problem(settings.git.remote)
    if problem is not None:
        raise ConfigError(f"{source}: git.remote.url: {problem}")
    pacing, election = settings.run.pacing, settings.run.leader_election
    if pacing.max_delay_under_load < pacing.max_delay:
        raise ConfigError(
            f"{source}: run.pacing.max_delay_under_load must be at least run.pacing.max_delay "
            f"({pacing.max_delay:g})"
        )
    if election.renew_deadline >= election.lease_duration:
        raise ConfigError(
            f"{source}: run.leader_election.renew_deadline must be less than "
            f"run.leader_election.lease_duration ({election.lease_duration:g})"
        )
    if settings.run.shards > MAX_SHARDS:
        raise ConfigError(f"{source}: run.shards must be at most {MAX_SHARDS}")
    return settings


def kubeconfig_path(kubeconfig: str) -> Path:
    """The first file of a ``KUBECONFIG``-style list, or ``~/.kube/config``."""
    first = kubeconfig.split(os.pathsep, maxsplit=1)[0] if kubeconfig else "~/.kube/config"
    return Path(first).expanduser()


def kubeconfig_context(cluster: ClusterSettings) -> str | None:
    """The name of the kubeconfig context kube2git connects through (``cluster.context``, else
    the file's ``current-context``); ``None`` in a pod without a kubeconfig, or when no file
    or no current context is there."""
    if cluster.context:
        return cluster.context
    kubeconfig = cluster.kubeconfig or os.environ.get("KUBECONFIG", "")
    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    path = kubeconfig_path(kubeconfig)
    if not path.is_file():
        return None
    try:
        documents = list(load_yaml(str(path), read_text(str(path))))
    except InputError as error:
        raise ConfigError(str(error)) from None
    document = documents[0] if documents else None
    current = document.get("current-context") if isinstance(document, Mapping) else None
    return current if isinstance(current, str) and current else None


def fleet_cluster_name(settings: Settings) -> str:
    """The name of this cluster in a fleet repository: ``cluster.name``, else the kubeconfig
    context's name; a :class:`ConfigError` when there is none or it is not a safe folder."""
    if settings.cluster.name:
        return settings.cluster.name
    context = kubeconfig_context(settings.cluster)
    if context is None:
        raise ConfigError(
            "cluster.name: git.layout fleet needs the cluster's name and no kubeconfig "
            "context names it: set --cluster-name (or cluster.name, KUBE2GIT_CLUSTER_NAME)"
        )
    problem = cluster_name_problem(context)
    if problem is not None:
        raise ConfigError(
            f"cluster.name: the kubeconfig context {context!r} cannot be the cluster's folder "
            f"(a cluster name {problem}): set --cluster-name"
        )
    return context


def fleet_member(settings: Settings, *, fleet: bool = False) -> tuple[Ownership, str]:
    """What this instance owns of the branch, and its cluster name for commit messages:
    ``clusters/<name>/`` and the name with ``git.layout: fleet`` (or ``fleet``), else the
    whole branch and ``""``."""
    if settings.git.layout is not Layout.FLEET and not fleet:
        return Ownership(), ""
    name = fleet_cluster_name(settings)
    return Ownership.fleet(name), name


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def make_pipeline(
    settings: Settings, *, hpa_index: HpaIndex, previous: PreviousFile | None = None
) -> Pipeline:
    """The filter pipeline of the settings; bad patterns are a configuration error.

    In ``sops`` mode the SOPS stage ends the pipeline; ``previous`` reads a Secret's file on
    the branch (without it, every Secret is encrypted afresh).
    """
    secrets = settings.filters.secrets
    key = b""
    key_file = secrets.fingerprint_key_file
    if key_file:
        try:
            key = Path(key_file).read_bytes().strip()
        except OSError as error:
            raise ConfigError(
                f"{key_file}: cannot read fingerprint key: {error.strerror}"
            ) from None
        if (
            secrets.mode in (SecretMode.FINGERPRINT, SecretMode.SOPS)
            and len(key) < MIN_FINGERPRINT_KEY
        ):
            raise ConfigError(
                f"{key_file}: the fingerprint key has {len(key)} bytes, "
                f"at least {MIN_FINGERPRINT_KEY} bytes are needed"
            )
    try:
        pipeline = build_pipeline(settings.filters, hpa_index=hpa_index, fingerprint_key=key)
    except ValueError as error:
        raise ConfigError(f"filters: {error}") from None
    if secrets.mode is SecretMode.SOPS:
        pipeline = Pipeline([*pipeline.filters, _sealer(settings, key, previous)])
    return pipeline


def _sealer(settings: Settings, key: bytes, previous: PreviousFile | None) -> SecretSealer:
    secrets = settings.filters.secrets
    if not secrets.age_recipients:
        raise ConfigError(
            "filters.secrets.age_recipients: sops mode needs at least one age recipient (age1...)"
        )
    if not key:
        raise ConfigError(
            "filters.secrets.fingerprint_key_file: sops mode needs a fingerprint key file "
            f"({MIN_FINGERPRINT_KEY}+ random bytes) to tell unchanged Secrets"
        )
    identities = load_identities(settings, required=False)
    try:
        return SecretSealer(
            recipients=secrets.age_recipients,
            fingerprint_key=key,
            previous=previous or _no_previous_file,
            identities=identities,
        )
    except SopsError as error:
        raise ConfigError(f"filters.secrets.age_recipients: {error}") from None


def _no_previous_file(_path: str) -> None:
    return None


def load_identities(settings: Settings, *, required: bool) -> list[Any]:
    """The age identities to decrypt with: ``filters.secrets.age_identity_file``, else the
    file ``$SOPS_AGE_KEY_FILE`` names (as sops reads it); none when neither is set."""
    path = settings.filters.secrets.age_identity_file or os.environ.get("SOPS_AGE_KEY_FILE", "")
    if not path:
        if required:
            raise ConfigError(
                "no age identity to decrypt with: set filters.secrets.age_identity_file "
                "or SOPS_AGE_KEY_FILE"
            )
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read age identity file: {_reason(error)}") from None
    try:
        return parse_identities(text, path)
    except SopsKeyError as error:
        raise ConfigError(str(error)) from None
