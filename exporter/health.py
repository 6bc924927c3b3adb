"""``/healthz``, ``/readyz`` and ``/metrics`` on one port (aiohttp, already a dependency)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from exporter.config import PortUnavailable, split_listen
from exporter.metrics import Metrics

log = structlog.get_logger()

Readiness = Callable[[], tuple[bool, str]]
"""Returns (ready, detail): why not ready, or what a ready process still reports."""


async def serve(runner: web.AppRunner, host: str, port: int, *, setting: str, **site: Any) -> int:
    """Bind ``runner`` to ``host:port`` and return the bound port. A port that cannot be
    bound is a one-line :class:`PortUnavailable` naming the setting and the port, and
    leaves nothing listening."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, **site).start()
    except OSError as error:
        await runner.cleanup()
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise PortUnavailable(f"{setting}: cannot listen on {host}:{port}: {reason}") from None
    return int(runner.addresses[0][1]) if runner.addresses else port


class HealthServer:
    """Liveness is the event loop answering; readiness is the exporter's own verdict."""

    def __init__(self, listen: str, *, metrics: Metrics, readiness: Readiness) -> None:
        host, port = split_listen(listen)
        self._host = host or "0.0.0.0"  # noqa: S104 - a pod's probes come from outside
        self._port = port
        self._metrics = metrics
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.port = self._port
        """The bound port (differs from the setting when that was 0)."""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        runner = web.AppRunner(app, access_log=None)
        self.port = await serve(runner, self._host, self._port, setting="run.listen")
        self._runner = runner
        log.info("health.listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, detail = self._readiness()
        self._metrics.ready.set(1 if ready else 0)
        text = ("ok\n" + detail if ready else detail).rstrip("\n") + "\n"
        return web.Response(status=200 if ready else 503, text=text)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")
