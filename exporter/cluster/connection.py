"""The connection: the only module that talks to the Kubernetes API through kubernetes_asyncio.

kubernetes_asyncio (through :mod:`~exporter.cluster.k8slib`) provides configuration
(kubeconfig, context, in-cluster service account) and authentication; responses are read as raw
JSON with orjson (the generated model classes are far too slow for large lists). Owns sending
one request through the rate limit, counting it, and mapping a failed answer to its
:mod:`~exporter.cluster.errors` type (honouring ``Retry-After``). It must never retry on its
own (callers own retry policy) nor let a request skip the token bucket.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import os
import time
from collections.abc import Mapping
from typing import Any, Self

import aiohttp
import orjson

from exporter import jsonparse
from exporter.cluster import k8slib
from exporter.cluster.errors import (
    STATUS_ERRORS,
    ApiError,
    InvalidResponse,
    KubeconfigError,
    NotFound,
    TooManyRequests,
    Unreachable,
    one_line,
    preview,
)
from exporter.cluster.ratelimit import Clock, TokenBucket
from exporter.cluster.resource import Json
from exporter.config import ClusterSettings, kubeconfig_path

ApiClient = k8slib.ApiClient
"""The library's client that holds the configuration and the HTTP session."""


class Connection:
    """An authenticated connection to one API server; use as an async context manager."""

    def __init__(
        self, api: ApiClient, *, settings: ClusterSettings, clock: Clock = time.monotonic
    ) -> None:
        self._api = api
        self._settings = settings
        self._bucket = TokenBucket(settings.qps, settings.burst, clock=clock)
        self.requests = 0
        """Requests sent so far (for metrics and the steady-state check)."""

    @classmethod
    async def connect(cls, settings: ClusterSettings) -> Self:
        """Load kubeconfig (or the in-cluster service account) and return a client."""
        configuration = k8slib.Configuration()
        kubeconfig = settings.kubeconfig or os.environ.get("KUBECONFIG", "")
        in_cluster = not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST")
        path = kubeconfig_path(kubeconfig)
        if not in_cluster and not path.is_file():
            raise KubeconfigError(f"{path}: kubeconfig not found")
        try:
            if in_cluster:
                k8slib.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await k8slib.load_kube_config(
                    config_file=str(path),
                    context=settings.context or None,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (k8slib.ConfigException, OSError, ValueError, KeyError, TypeError) as error:
            where = settings.kubeconfig or kubeconfig or "kubeconfig"
            raise KubeconfigError(f"{where}: {one_line(error)}") from None
        return cls(k8slib.ApiClient(configuration), settings=settings)

    @property
    def server(self) -> str:
        return str(self._api.configuration.host)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._api.close()

    async def _send(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        *,
        limits: aiohttp.ClientTimeout,
        method: str = "GET",
        body: Json | None = None,
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse:
        """Send a request; raise the mapped error for any non-2xx status."""
        await self._bucket.acquire()
        self.requests += 1
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=list((params or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=limits,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise Unreachable(f"{self.server}: {one_line(error)}") from None
        if response.status >= 300:
            await _raise_for(response, path)
        return response

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Json:
        """GET a JSON document."""
        return await self.call("GET", path, params)

    async def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Json | None = None,
        *,
        content_type: str = "application/json",
    ) -> Json:
        """One request with a JSON answer (the exporter writes its leader Lease; restore
        applies and prunes objects)."""
        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout)
        response = await self._send(
            path, params, limits=timeout, method=method, body=body, content_type=content_type
        )
        try:
            async with response:
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unreachable(f"{self.server}: {one_line(error)}") from None
        try:
            data = jsonparse.loads(raw)  # a list page: up to MiBs of objects
        except jsonparse.JSONDecodeError:
            what = response.headers.get("Content-Type", "") or "no content type"
            raise InvalidResponse(f"{path}: not JSON ({what}): {preview(raw)}") from None
        if not isinstance(data, dict):
            raise InvalidResponse(f"{path}: not a JSON object: {preview(raw)}")
        return data

    async def get_object(self, path: str) -> Json | None:
        """One object by its URL path, or ``None`` when it does not exist."""
        try:
            return await self.get(path)
        except NotFound:
            return None

    async def apply(
        self, path: str, body: Json, *, field_manager: str, force: bool, dry_run: bool
    ) -> Json:
        """Server-side apply ``body`` to the object at ``path`` (created when missing);
        returns the object as stored (or as it would be, with ``dry_run``). A field another
        manager owns with a different value raises :class:`Conflict` unless ``force``."""
        params = {"fieldManager": field_manager}
        if force:
            params["force"] = "true"
        if dry_run:
            params["dryRun"] = "All"
        return await self.call(
            "PATCH", path, params, body, content_type="application/apply-patch+yaml"
        )

    async def delete(self, path: str, *, dry_run: bool) -> None:
        """Delete the object at ``path`` (its dependents in the background); gone is fine."""
        params = {"propagationPolicy": "Background"}
        if dry_run:
            params["dryRun"] = "All"
        with contextlib.suppress(NotFound):
            await self.call("DELETE", path, params)


async def _raise_for(response: aiohttp.ClientResponse, path: str) -> None:
    async with response:
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
    message = response.reason or ""
    try:
        status_body = orjson.loads(raw)
        if isinstance(status_body, dict) and status_body.get("message"):
            message = str(status_body["message"])
    except orjson.JSONDecodeError:
        # API Priority and Fairness answers 429 with plain text.
        message = raw.decode("utf-8", "replace").strip()[:200] or message
    if response.status == 429:
        raise TooManyRequests(
            429, message, path=path, retry_after=_retry_after(response.headers.get("Retry-After"))
        )
    raise STATUS_ERRORS.get(response.status, ApiError)(response.status, message, path=path)


def _retry_after(header: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or ``None``; not yet clamped."""
    if not header:
        return None
    with contextlib.suppress(ValueError):  # not a number: an HTTP date, perhaps
        return float(header)
    try:
        moment = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return (moment - datetime.datetime.now(datetime.UTC)).total_seconds()
