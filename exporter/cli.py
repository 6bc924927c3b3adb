"""The ``kube2git`` command line: parses flags, loads settings, wires the stages.

Exit codes: 0 success; 2 user error (bad flag, bad config, unreadable or malformed input),
with one line on stderr naming what is wrong; 1 runtime failure. ``diff``: 0 no drift, 1 drift,
3 could not read everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import structlog

from exporter import __version__
from exporter.attribution import AuditWebhookError
from exporter.config import (
    ConfigError,
    Settings,
    fleet_member,
    load_identities,
    load_settings,
    make_pipeline,
    override,
    plain_http_problem,
    problem_message,
    value_problem,
)
from exporter.gitstore import (
    BranchReader,
    GitStore,
    GitStoreError,
    PointNotFound,
    SigningKeyError,
    TreeAt,
)
from exporter.gitstore.history import HistoryReader
from exporter.history import (
    HistoryError,
    object_history,
    print_log,
    print_who,
    resolve_object,
    who,
    window,
)
from exporter.layout import ObjectKey
from exporter.logs import configure_logging
from exporter.messages import Change, Upsert, capture_gap, observed_after_gap
from exporter.normalize import InputError, normalize, write_stream, write_tree
from exporter.scope import Scope
from exporter.serializer import dump_bytes
from exporter.sops.format import SopsError, parse_recipient
from exporter.sops.sealer import rekey
from exporter.version import build_commit, version_line
from filters import HpaIndex

if TYPE_CHECKING:
    from exporter.cluster import ApiResource
    from exporter.diff import DiffResult
    from exporter.restore import Stage
    from exporter.sync import SyncReport

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
SNAPSHOT_ATTEMPTS = 4
"""Tries per type in ``snapshot`` (waits from the retry policy; 429 honours Retry-After)."""
ENV_PREFIX = "KUBE2GIT_"


class UserError(Exception):
    """Anything the user can fix: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _env_default(flag: str) -> str | None:
    """Every flag can come from ``KUBE2GIT_<FLAG>`` (``--fingerprint-key`` → ``..._KEY``)."""
    return os.environ.get(ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper())


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=_env_default("--config"),
        help="configuration file (YAML); env KUBE2GIT_CONFIG",
    )


# Flags that mirror a configuration key: flag → dotted key.
_SETTING_FLAGS = {
    "--repo": "repo",
    "--branch": "git.branch",
    "--remote": "git.remote.url",
    "--kubeconfig": "cluster.kubeconfig",
    "--context": "cluster.context",
    "--cluster-name": "cluster.name",
    "--listen": "run.listen",
}
_FLAG_HELP = {
    "--repo": "bare Git repository of the backup (created when missing)",
    "--branch": "backup branch (default: kube2git)",
    "--remote": "remote URL to push the branch to",
    "--kubeconfig": "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)",
    "--context": "kubeconfig context (default: the current one)",
    "--cluster-name": (
        "the cluster's folder clusters/NAME/ in a fleet repository (git.layout: fleet; "
        "default: the kubeconfig context's name); diff and restore read that folder "
        "whenever it is given"
    ),
    "--listen": "address of /healthz, /readyz, /metrics (default 0.0.0.0:8080; '' disables)",
}


def _add_setting_flags(parser: argparse.ArgumentParser, *flags: str) -> None:
    for flag in flags:
        env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
        parser.add_argument(
            flag,
            dest=_SETTING_FLAGS[flag].replace(".", "__"),
            metavar=flag.lstrip("-").upper(),
            default=_env_default(flag),
            help=f"{_FLAG_HELP[flag]}; env {env}; config: {_SETTING_FLAGS[flag]}",
        )


def apply_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """Flags (and their environment variables) override the configuration file; each value
    is checked as the file's are, and a bad one is reported under its flag or variable."""
    for flag, dotted in _SETTING_FLAGS.items():
        value = getattr(args, dotted.replace(".", "__"), None)
        if value is None:
            continue
        env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
        source = env if os.environ.get(env) == value else flag
        settings = override(settings, dotted, value)
        problem = value_problem(dotted, value)
        if problem is None and dotted == "git.remote.url":
            problem = plain_http_problem(settings.git.remote)
        if problem is not None:
            raise ConfigError(f"{source}: {problem_message(dotted, problem)}")
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kube2git",
        description=(
            "Continuously capture the state of a Kubernetes cluster into Git: one normalized "
            "YAML file per object, no status, no server bookkeeping, no secret values."
        ),
        epilog="Every flag can also be set with an environment variable KUBE2GIT_<FLAG>.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=version_line(),
        help="print the version and the commit it was built from",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    norm = commands.add_parser(
        "normalize",
        help="print objects from files as normalized YAML (offline)",
        description=(
            "Read Kubernetes objects (JSON or YAML: single objects, multi-document streams, "
            "kind: List) and print them filtered and normalized as multi-document YAML, or "
            "with --out write one file per object in the repository layout."
        ),
    )
    norm.add_argument("files", nargs="*", metavar="FILE", help="input files; '-' or none: stdin")
    _add_config(norm)
    norm.add_argument(
        "--out",
        metavar="DIR",
        default=_env_default("--out"),
        help="write the repository layout under DIR instead of printing; env KUBE2GIT_OUT",
    )
    norm.set_defaults(handler=_normalize)

    snap = commands.add_parser(
        "snapshot",
        help="capture the whole cluster as one commit",
        description=(
            "List every type the API server serves, filter and normalize every object, and "
            "commit the result to the backup branch as one commit (no commit when nothing "
            "changed). Files are deleted only for types whose list completed. Exit code 1 "
            "when a type RBAC permits could not be read (after committing the rest)."
        ),
    )
    _add_setting_flags(snap, "--repo", "--branch", "--kubeconfig", "--context", "--cluster-name")
    _add_config(snap)
    snap.set_defaults(handler=_snapshot)

    run = commands.add_parser(
        "run",
        help="continuous capture: sync, then watch, coalesce, commit and push",
        description=(
            "Sync the cluster into the backup branch (after a restart, what changed while "
            "down becomes one commit), then follow every type's watch: changes are filtered, "
            "coalesced into paced commits and pushed. SIGTERM or SIGINT commit and push what "
            "is pending, then exit 0. Serves /healthz, /readyz and /metrics."
        ),
    )
    _add_setting_flags(
        run,
        *("--repo", "--branch", "--remote", "--kubeconfig", "--context", "--cluster-name"),
        "--listen",
    )
    _add_config(run)
    run.set_defaults(handler=_run)

    diff = commands.add_parser(
        "diff",
        help="drift: the live cluster against the backup, or two points of the backup",
        description=(
            "Compare the live cluster, normalized by the same policy and configuration as a "
            "snapshot, with the backup branch (or --ref, or the last commit at or before "
            "--at); or, given REF1 REF2, two points of the backup. Prints each added, removed "
            "or changed object with a unified YAML diff, then a summary. Exit codes: 0 no "
            "drift, 1 drift, 2 user error, 3 could not read everything."
        ),
    )
    diff.add_argument("refs", nargs="*", metavar="REF", help="REF1 REF2: compare two points")
    _add_setting_flags(diff, "--repo", "--branch", "--kubeconfig", "--context", "--cluster-name")
    _add_config(diff)
    _add_point_flags(diff)
    _add_scope_flags(diff)
    diff.add_argument(
        "--output",
        choices=("text", "json"),
        default=_env_default("--output") or "text",
        help="text (coloured on a terminal) or json; env KUBE2GIT_OUTPUT",
    )
    diff.set_defaults(handler=_diff)

    log_cmd = commands.add_parser(
        "log",
        help="the history of one object: who changed what, when",
        description=(
            "Each change of one object, newest first: time, author, how the author is known "
            "(Attribution), whether it was manual (Change-Kind), and the changed fields. "
            "OBJECT is [group/]Kind/namespace/name, [group/]Kind/name for cluster-scoped "
            "objects, or a path such as namespaces/shop/deployments.apps/web.yaml."
        ),
    )
    log_cmd.add_argument("object", metavar="OBJECT", help="the object (see above)")
    _add_history_flags(log_cmd)
    log_cmd.add_argument("--patch", action="store_true", help="show each change's YAML diff")
    log_cmd.set_defaults(handler=_log)

    who_cmd = commands.add_parser(
        "who",
        help="actors and their changes per namespace and type",
        description="Count the changes on the branch per actor, namespace and type.",
    )
    _add_history_flags(who_cmd)
    who_cmd.add_argument(
        "--manual", action="store_true", help="only manual changes (Change-Kind: manual)"
    )
    who_cmd.set_defaults(handler=_who)

    rekey = commands.add_parser(
        "rekey",
        help="re-encrypt the branch's SOPS Secrets for the configured recipients, one commit",
        description=(
            "Decrypt every SOPS-encrypted Secret on the backup branch with the age identity "
            "(filters.secrets.age_identity_file, else SOPS_AGE_KEY_FILE), check its MAC, and "
            "encrypt it again under a new data key for filters.secrets.age_recipients, all in "
            "one commit. Stop the exporter of that repository first (or rekey a clone and "
            "push: the exporter replays its own commits on top)."
        ),
    )
    _add_setting_flags(rekey, "--repo", "--branch", "--cluster-name")
    _add_config(rekey)
    rekey.set_defaults(handler=_rekey)

    restore = commands.add_parser(
        "restore",
        help="apply a point of the backup to the cluster, in dependency order",
        description=(
            "Server-side apply (field manager kube2git-restore) the objects of the backup "
            "branch (or --ref, or the last commit at or before --at) that differ from the "
            "live cluster: CRDs first (until served), then Namespaces, cluster-scoped "
            "prerequisites, ServiceAccounts, ConfigMaps, Secrets, RBAC, Services, workloads, "
            "custom resources. Nothing is deleted without --prune. Exit codes: 0 every object "
            "restored or reported as not restorable, 1 some failed, 2 user error."
        ),
    )
    _add_setting_flags(restore, "--repo", "--branch", "--kubeconfig", "--context", "--cluster-name")
    _add_config(restore)
    _add_point_flags(restore)
    _add_scope_flags(restore)
    for flag, text in (
        ("--dry-run", "server-side dry run (dryRun=All): print what would change, write nothing"),
        ("--force-conflicts", "take over fields other managers own (default: report them)"),
        (
            "--prune",
            "also delete objects of the scope that a snapshot would record and that are "
            "absent at the point (listed first; asks on a terminal)",
        ),
        ("--yes", "do not ask before pruning"),
    ):
        restore.add_argument(flag, action="store_true", default=_env_switch(flag), help=text)
    restore.set_defaults(handler=_restore)
    return parser


def _add_point_flags(parser: argparse.ArgumentParser) -> None:
    point = parser.add_mutually_exclusive_group()
    point.add_argument(
        "--ref",
        default=_env_default("--ref"),
        help="a commit, tag or branch of the backup (default: the backup branch); env KUBE2GIT_REF",
    )
    point.add_argument(
        "--at",
        metavar="TIME",
        default=_env_default("--at"),
        help=(
            "the backup branch's last commit at or before TIME (ISO 8601, e.g. "
            "2026-05-04T10:30:00Z; no zone means UTC); env KUBE2GIT_AT"
        ),
    )


def _env_switch(flag: str) -> bool:
    """An on/off flag from its environment variable (``1``, ``true`` or ``yes``)."""
    return (_env_default(flag) or "").strip().lower() in ("1", "true", "yes")


def _env_list(flag: str) -> list[str]:
    """A repeatable flag from its environment variable, comma-separated."""
    return [item.strip() for item in (_env_default(flag) or "").split(",") if item.strip()]


def _add_scope_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=_env_list("--namespace"),
        metavar="NS",
        help=(
            "only objects in this namespace (glob; repeatable), and the Namespace itself; "
            "env KUBE2GIT_NAMESPACE (comma-separated)"
        ),
    )
    parser.add_argument(
        "--type",
        action="append",
        default=_env_list("--type"),
        metavar="PATTERN",
        help=(
            "only this type: resource or resource.group as kubectl spells it (glob; "
            "repeatable); env KUBE2GIT_TYPE (comma-separated)"
        ),
    )


def _add_history_flags(parser: argparse.ArgumentParser) -> None:
    _add_setting_flags(parser, "--repo", "--branch", "--cluster-name")
    _add_config(parser)
    parser.add_argument("--since", metavar="WHEN", help="from WHEN: 24h, 7d, 2w ago or a time")
    parser.add_argument("--until", metavar="WHEN", help="up to WHEN (same forms as --since)")
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="text (default) or json"
    )


def _history(settings: Settings, args: argparse.Namespace) -> HistoryReader:
    """The branch's history; in a fleet repository (or when a cluster name is given), only
    that cluster's folder, named as the plain layout."""
    repo = _require_repo(settings)
    if not Path(repo).exists():
        raise UserError(f"{repo}: no such repository")
    given = getattr(args, "cluster__name", None) is not None
    scope, _ = fleet_member(settings, fleet=given)
    return HistoryReader(repo, settings.git.branch, folder=scope.prefix)


def _log(args: argparse.Namespace, settings: Settings) -> int:
    reader = _history(settings, args)
    since, until = window(vars(args), now=datetime.now(UTC))
    path = resolve_object(args.object, reader)
    entries = object_history(reader, path, since=since, until=until, patch=args.patch)
    print_log(entries, sys.stdout, as_json=args.output == "json")
    return EXIT_OK


def _who(args: argparse.Namespace, settings: Settings) -> int:
    reader = _history(settings, args)
    since, until = window(vars(args), now=datetime.now(UTC))
    rows = who(reader, since=since, until=until, manual=args.manual)
    print_who(rows, sys.stdout, as_json=args.output == "json")
    return EXIT_OK


class _BranchFiles:
    """The branch's files, for the SOPS stage to keep unchanged Secrets' bytes; readable once
    the store is open (the pipeline is built first, so a bad config creates no repository)."""

    def __init__(self) -> None:
        self.store: GitStore | None = None

    def __call__(self, path: str) -> bytes | None:
        return None if self.store is None else self.store.read(path)


def _out_files(out: str | None) -> Callable[[str], bytes | None]:
    """``normalize --out DIR``: the files already there play the branch's part."""

    def read(path: str) -> bytes | None:
        target = Path(out or "") / path
        return target.read_bytes() if out and target.is_file() else None

    return read


def _normalize(args: argparse.Namespace, settings: Settings) -> int:
    hpa_index = HpaIndex()
    pipeline = make_pipeline(settings, hpa_index=hpa_index, previous=_out_files(args.out))
    results, summary = normalize(args.files or ["-"], pipeline=pipeline, hpa_index=hpa_index)
    if args.out:
        write_tree(results, Path(args.out))
        print(f"kube2git: {summary}; written to {args.out}", file=sys.stderr)  # noqa: T201
    else:
        write_stream(results, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    return EXIT_OK


class _ProgressLine:
    """One self-rewriting line on a terminal: the type being listed and the totals."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self._last = 0.0

    def __call__(self, resource: ApiResource, count: int, report: SyncReport) -> None:
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        line = (
            f"\r\x1b[Klisting {resource.name}: {count} objects "
            f"(types done {report.types_listed}, objects kept {report.kept})"
        )
        print(line, end="", file=self._stream, flush=True)  # type: ignore[call-overload]

    def done(self) -> None:
        print("\r\x1b[K", end="", file=self._stream, flush=True)  # type: ignore[call-overload]


def _open_store(repo: str, settings: Settings) -> GitStore:
    """The backup branch for writing: in a fleet repository, this cluster's folder only."""
    scope, cluster = fleet_member(settings)
    return GitStore(
        repo, settings=settings.git, audit=settings.audit, ownership=scope, cluster=cluster
    )


def _require_repo(settings: Settings) -> str:
    if not settings.repo:
        raise UserError("--repo is required (or KUBE2GIT_REPO, or repo: in the config file)")
    return settings.repo


def _snapshot(_args: argparse.Namespace, settings: Settings) -> int:
    from exporter.cluster import Cluster  # noqa: PLC0415 - the API client loads slowly
    from exporter.sync import FullSync  # noqa: PLC0415

    repo = _require_repo(settings)
    hpa_index = HpaIndex()
    branch = _BranchFiles()
    pipeline = make_pipeline(settings, hpa_index=hpa_index, previous=branch)
    progress = _ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    store = branch.store = _open_store(repo, settings)
    try:
        index = store.index()

        async def capture() -> tuple[list[Change], SyncReport]:
            async with await Cluster.connect(settings.cluster) as cluster:
                sync = FullSync(
                    cluster,
                    settings=settings,
                    pipeline=pipeline,
                    hpa_index=hpa_index,
                    blob_id=store.blob_id,
                    progress=progress,
                    attempts=SNAPSHOT_ATTEMPTS,
                    stage=store.stage,
                )
                return await sync.run(index)

        changes, report = asyncio.run(capture())
        if progress is not None:
            progress.done()
        info = store.commit(observed_after_gap(changes, capture_gap(index)))
        if info is not None:
            store.pack()
    finally:
        store.close()
    for name, reason in sorted(report.types_failed.items()):
        print(f"kube2git: not read: {name}: {reason}", file=sys.stderr)  # noqa: T201
    outcome = f"commit {info.id[:12]}: {info.subject}" if info else "no changes, no commit"
    print(f"kube2git snapshot: {report.summary()}; {outcome}")  # noqa: T201
    if report.types_unreadable:
        # What could be read is committed; the backup is still incomplete: a runtime failure.
        # Types RBAC denies are someone's choice: named above, not a failure.
        names = ", ".join(sorted(report.types_unreadable))
        print(f"kube2git: error: incomplete snapshot, not read: {names}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILURE
    return EXIT_OK


def _run(_args: argparse.Namespace, settings: Settings) -> int:
    from exporter.cluster import Cluster, ClusterError  # noqa: PLC0415 - loads slowly
    from exporter.runner import Exporter  # noqa: PLC0415

    if settings.audit.webhook.listen:  # a webhook that cannot serve is a user error, up front
        from exporter.auditwebhook import check_settings  # noqa: PLC0415

        check_settings(settings.audit.webhook)

    repo = _require_repo(settings)
    hpa_index = HpaIndex()
    branch = _BranchFiles()
    pipeline = make_pipeline(settings, hpa_index=hpa_index, previous=branch)
    store = branch.store = _open_store(repo, settings)
    structlog.get_logger("kube2git").info("starting", version=__version__, commit=build_commit())

    async def follow() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with await Cluster.connect(settings.cluster) as cluster:
            exporter = Exporter(
                settings,
                cluster=cluster,
                store=store,
                pipeline=pipeline,
                hpa_index=hpa_index,
                stop=stop,
            )
            await exporter.run()

    try:
        asyncio.run(follow())
    except* (ClusterError, GitStoreError, TimeoutError) as group:
        raise _first_leaf(group) from None
    finally:
        store.close()
    return EXIT_OK


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        example = "2026-05-04T10:30:00Z"
        raise UserError(f"--at {text!r}: not an ISO 8601 time (e.g. {example})") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _branch_reader(repo: str, settings: Settings, args: argparse.Namespace) -> BranchReader:
    """The backup branch as ``diff`` and ``restore`` read it: in a fleet repository (or when a
    cluster name is given), only that cluster's folder, named as the plain layout."""
    given = getattr(args, "cluster__name", None) is not None
    scope, _ = fleet_member(settings, fleet=given)
    return BranchReader(repo, branch=settings.git.branch, scope=scope)


def _point(reader: BranchReader, args: argparse.Namespace) -> TreeAt:
    """The backup's tree at --ref, at --at, or at the branch tip."""
    if args.at:
        return reader.at_time(_parse_time(args.at))
    return reader.at_ref(args.ref)


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    from exporter.cluster import (  # noqa: PLC0415 - the API client loads slowly
        Cluster,
        ClusterError,
        KubeconfigError,
        Unauthorized,
    )
    from exporter.diff import (  # noqa: PLC0415
        EXIT_INCOMPLETE,
        diff_live,
        diff_points,
        render_json,
        render_text,
    )

    repo = _require_repo(settings)
    scope = Scope(tuple(args.namespace), tuple(args.type))
    if args.refs and (len(args.refs) != 2 or args.ref or args.at):
        raise UserError("diff takes two points (REF1 REF2), or --ref/--at against the cluster")
    with _branch_reader(repo, settings, args) as reader:
        if args.refs:
            result = diff_points(
                reader, reader.at_ref(args.refs[0]), reader.at_ref(args.refs[1]), scope=scope
            )
        else:
            point = _point(reader, args)
            hpa_index = HpaIndex()
            pipeline = make_pipeline(
                settings, hpa_index=hpa_index, previous=point_files(reader, point)
            )

            async def compare() -> DiffResult:
                async with await Cluster.connect(settings.cluster) as cluster:
                    return await diff_live(
                        cluster,
                        reader,
                        point,
                        settings=settings,
                        pipeline=pipeline,
                        hpa_index=hpa_index,
                        scope=scope,
                    )

            try:
                result = asyncio.run(compare())
            except (KubeconfigError, Unauthorized):
                raise
            except ClusterError as error:
                report_error(error)
                return EXIT_INCOMPLETE
    if args.output == "json":
        print(render_json(result))  # noqa: T201
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        render_text(result, sys.stdout, colour=colour)
    return result.exit_code()


def _rekey(_args: argparse.Namespace, settings: Settings) -> int:
    repo = _require_repo(settings)
    recipients = settings.filters.secrets.age_recipients
    if not recipients:
        raise UserError("filters.secrets.age_recipients: rekey needs the recipients (age1...)")
    for recipient in recipients:
        try:
            parse_recipient(recipient)
        except SopsError as error:
            raise UserError(f"filters.secrets.age_recipients: {error}") from None
    identities = load_identities(settings, required=True)
    if not Path(repo).exists():
        raise UserError(f"{repo}: no such repository")
    store = _open_store(repo, settings)
    try:
        changes: list[Change] = []
        for path in sorted(store.index()):
            key = secret_key(path)
            content = store.read(path) if key is not None else None
            if key is None or content is None:
                continue
            try:
                document = rekey(content, identities=identities, recipients=recipients)
            except SopsError as error:
                raise UserError(f"{path}: {error}") from None
            if document is not None:
                changes.append(Upsert(key, "Secret", dump_bytes(document), document))
        plural = "" if len(recipients) == 1 else "s"
        why = f"rekey (re-encrypted for {len(recipients)} age recipient{plural})"
        infos = store.commit_batch(changes, maintenance=why)
    finally:
        store.close()
    outcome = f"commit {infos[-1].id[:12]}" if infos else "no commit"
    print(  # noqa: T201
        f"kube2git rekey: {len(changes)} Secrets re-encrypted for "
        f"{len(recipients)} recipients; {outcome}"
    )
    return EXIT_OK


class _StageProgress:
    """One self-rewriting line on a terminal: the stage being restored and its count."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, stage: Stage, done: int, total: int) -> None:
        line = f"\r\x1b[Krestoring {stage.label}: {done}/{total}"
        print(line, end="", file=self._stream, flush=True)

    def done(self) -> None:
        print("\r\x1b[K", end="", file=self._stream, flush=True)


def _confirm_prune(keys: Sequence[ObjectKey], *, assume_yes: bool) -> bool:
    for key in keys:
        print(f"would delete {key.path}")  # noqa: T201
    if not keys or assume_yes:
        return True
    if not sys.stdin.isatty():
        raise UserError(
            f"--prune would delete {len(keys)} objects: confirm on a terminal or pass --yes"
        )
    answer = input(f"Delete these {len(keys)} objects? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from exporter.cluster import Cluster  # noqa: PLC0415 - the API client loads slowly
    from exporter.diff import LIVE  # noqa: PLC0415
    from exporter.restore import (  # noqa: PLC0415
        Outcome,
        PruneRefused,
        Restorer,
        RestoreReport,
        describe,
        secret_preparer,
    )

    repo = _require_repo(settings)
    scope = Scope(tuple(args.namespace), tuple(args.type))
    identities = load_identities(settings, required=False)
    progress = _StageProgress(sys.stderr) if sys.stderr.isatty() else None
    with _branch_reader(repo, settings, args) as reader:
        point = _point(reader, args)
        hpa_index = HpaIndex()
        pipeline = make_pipeline(settings, hpa_index=hpa_index, previous=point_files(reader, point))

        async def apply() -> RestoreReport:
            async with await Cluster.connect(settings.cluster) as cluster:
                restorer = Restorer(
                    cluster,
                    reader,
                    point,
                    settings=settings,
                    pipeline=pipeline,
                    hpa_index=hpa_index,
                    scope=scope,
                    dry_run=args.dry_run,
                    force_conflicts=args.force_conflicts,
                    prepare_secret=secret_preparer(identities),
                    progress=progress,
                )
                doomed = await restorer.prune_candidates() if args.prune else []
                confirmed = await asyncio.to_thread(_confirm_prune, doomed, assume_yes=args.yes)
                report = await restorer.run()
                if doomed and confirmed:
                    await restorer.prune(doomed, report)
                return report

        try:
            report = asyncio.run(apply())
        except PruneRefused as error:
            raise UserError(str(error)) from None
        finally:
            if progress is not None:
                progress.done()
    for result in report.results:
        if result.outcome is Outcome.UNCHANGED:
            continue
        print(describe(result))  # noqa: T201
        if args.dry_run and result.diff is not None and result.outcome is Outcome.CHANGED:
            for line in result.diff.unified(LIVE, point.label):
                print(line)  # noqa: T201
    for key in report.pruned:
        print(f"{'would delete' if args.dry_run else 'deleted'} {key.path}")  # noqa: T201
    for key, reason in sorted(report.prune_failed.items()):
        print(f"not deleted {key.path}: {reason}")  # noqa: T201
    print(report.summary())  # noqa: T201
    return EXIT_FAILURE if report.failed else EXIT_OK


def point_files(reader: BranchReader, point: TreeAt) -> Callable[[str], bytes | None]:
    """The files at a point of the backup: what a live Secret is compared with in sops mode
    (an unchanged Secret then encrypts to that very file)."""

    def read(path: str) -> bytes | None:
        blob = point.files.get(path)
        return reader.read(blob) if blob else None

    return read


def secret_key(path: str) -> ObjectKey | None:
    """The key of a Secret's file on the branch; ``None`` for any other path."""
    try:
        key = ObjectKey.from_path(path)
    except ValueError:
        return None
    return key if (key.group, key.resource) == ("", "secrets") else None


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first real error of a task group's failure, to report as one line."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, Exception)
    return first


Handler = Callable[[argparse.Namespace, Settings], int]


class _NeverRaised(Exception):
    """Stands in for the API client's errors in a command that never loaded the client."""


def _api_error(name: str) -> type[Exception]:
    """An error class of :mod:`exporter.cluster`, without loading the slow API client for
    commands that do not talk to the cluster (``log``, ``who``: their start time counts)."""
    module = sys.modules.get("exporter.cluster")
    error: type[Exception] = getattr(module, name) if module is not None else _NeverRaised
    return error


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def report_error(error: object) -> None:
    """``kube2git: error: ...`` on stderr, always one line: control characters that came with
    the input (a key or a name holding a newline) are shown escaped."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(error))
    print(f"kube2git: error: {text}", file=sys.stderr)  # noqa: T201


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = apply_flags(load_settings(args.config), args)
    except (OSError, ValueError) as error:  # ConfigError, and anything else the input raised
        report_error(error)
        return EXIT_USAGE
    try:
        configure_logging(settings.log)
        handler: Handler = args.handler
        return handler(args, settings)
    except (
        ConfigError,
        InputError,
        UserError,
        _api_error("KubeconfigError"),
        SigningKeyError,
        AuditWebhookError,
        PointNotFound,
        HistoryError,
    ) as error:
        report_error(error)
        return EXIT_USAGE
    except _api_error("Unauthorized") as error:
        report_error(f"credentials rejected (expired?): {error}")
        return EXIT_USAGE
    except (_api_error("ClusterError"), GitStoreError) as error:
        report_error(error)
        return EXIT_FAILURE
    except TimeoutError:
        report_error("the drain did not finish in time")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`kube2git normalize | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
