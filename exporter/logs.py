"""structlog set-up: JSON lines in production, a console renderer on a terminal.

Logs go to stderr. No secret value or credential is ever passed to a logger; as a second
line of defence, values of keys that name credentials are masked.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from exporter.config import LogFormat, LogSettings

_SENSITIVE_KEYS = frozenset({"password", "token", "secret", "authorization", "private_key"})


def _mask_credentials(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in event.keys() & _SENSITIVE_KEYS:
        event[key] = "***"
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


CACHE_LOGGERS = True
"""Each logger binds its configuration on first use, for speed. The test suite turns this off
(tests/conftest.py): it runs the CLI in process and then captures logs with
``structlog.testing.capture_logs``, which cannot reach a logger that cached an older setup."""


def configure_logging(settings: LogSettings, *, stream: Any = None) -> None:
    """Configure structlog once for the process."""
    stream = stream or _CurrentStderr()
    level = logging.getLevelNamesMapping()[settings.level.value.upper()]
    use_console = settings.format is LogFormat.CONSOLE or (
        settings.format is LogFormat.AUTO and stream.isatty()
    )
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_credentials,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=CACHE_LOGGERS,
    )
