"""The ``kube2git`` command line: parses flags, loads settings, wires the stages.

Exit codes: 0 success; 2 user error (bad flag, bad config, unreadable or malformed input),
with one line on stderr naming what is wrong; 1 runtime failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from exporter import __version__
from exporter.config import ConfigError, Settings, load_settings
from exporter.logs import configure_logging
from exporter.normalize import InputError, normalize, write_stream, write_tree
from filters import HpaIndex, Pipeline, build_pipeline

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kube2git",
        description=(
            "Continuously capture the state of a Kubernetes cluster into Git: one normalized "
            "YAML file per object, no status, no server bookkeeping, no secret values."
        ),
        epilog="Every flag can also be set with an environment variable KUBE2GIT_<FLAG>.",
    )
    parser.add_argument("--version", action="version", version=f"kube2git {__version__}")
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
    return parser


def make_pipeline(settings: Settings, *, hpa_index: HpaIndex) -> Pipeline:
    """The filter pipeline of the settings; bad patterns are a configuration error."""
    key = b""
    key_file = settings.filters.secrets.fingerprint_key_file
    if key_file:
        try:
            key = Path(key_file).read_bytes().strip()
        except OSError as error:
            raise ConfigError(
                f"{key_file}: cannot read fingerprint key: {error.strerror}"
            ) from None
    try:
        return build_pipeline(settings.filters, hpa_index=hpa_index, fingerprint_key=key)
    except ValueError as error:
        raise ConfigError(f"filters: {error}") from None


def _normalize(args: argparse.Namespace, settings: Settings) -> int:
    hpa_index = HpaIndex()
    pipeline = make_pipeline(settings, hpa_index=hpa_index)
    results, summary = normalize(args.files or ["-"], pipeline=pipeline, hpa_index=hpa_index)
    if args.out:
        write_tree(results, Path(args.out))
        print(f"kube2git: {summary}; written to {args.out}", file=sys.stderr)  # noqa: T201
    else:
        write_stream(results, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    return EXIT_OK


Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.log)
        handler: Handler = args.handler
        return handler(args, settings)
    except (ConfigError, InputError, UserError) as error:
        print(f"kube2git: error: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`kube2git normalize | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
