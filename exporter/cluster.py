"""The cluster client: the only module that talks to the Kubernetes API.

kubernetes_asyncio provides configuration (kubeconfig, context, in-cluster service account)
and authentication; responses are read as raw JSON with orjson (the generated model classes
are far too slow for large lists), and the watch stream is parsed here line by line, because
the library's ``Watch`` helper loses ``Retry-After``, yields API Priority and Fairness' plain
text 429 as an event and retries 410 with a stale resourceVersion.

Every request passes a client-side token bucket (QPS and burst, like client-go's).

Errors (all :class:`ClusterError`):
- :class:`KubeconfigError`: no usable kubeconfig or context (a user error);
- :class:`Unreachable`: the API server cannot be reached or timed out;
- :class:`Unauthorized` (401: expired or wrong credentials), :class:`Forbidden` (403);
- :class:`NotFound` (404), :class:`Conflict` (409: someone else wrote first);
- :class:`Gone` (410: the resourceVersion is too old: relist);
- :class:`TooManyRequests` (429, with the server's ``Retry-After``);
- :class:`ApiError`: any other failed response;
- :class:`InvalidResponse`: a 2xx answer that is not the JSON document asked for (an
  aggregated API answering discovery with an HTML page, a list without its keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
import orjson
import structlog
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from exporter.config import ClusterSettings, ListMode, kubeconfig_path
from exporter.layout import ObjectKey

log = structlog.get_logger()

Json = dict[str, Any]
Clock = Callable[[], float]
_FRESH_LIST_ATTEMPTS = 3
"""Times a paginated list starts over after its continue token expired, before giving up."""


class ClusterError(Exception):
    """Talking to the Kubernetes API failed."""


class KubeconfigError(ClusterError):
    """The kubeconfig, its context or the in-cluster configuration is missing or invalid."""


class Unreachable(ClusterError):
    """The API server did not answer (connection refused, DNS, TLS, timeout)."""


class ApiError(ClusterError):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: HTTP {status}: {message}" if path else message)
        self.status = status
        self.path = path


class Unauthorized(ApiError):
    """401: the credentials are wrong or expired."""


class Forbidden(ApiError):
    """403: RBAC denies the request."""


class NotFound(ApiError):
    """404: no such object (or type)."""


class Conflict(ApiError):
    """409: the object exists already, or changed since it was read."""


class Gone(ApiError):
    """410: the requested resourceVersion is no longer in the server's history."""


class WatchListUnsupported(ClusterError):
    """The server streamed no WatchList: use a paginated LIST."""


class InvalidResponse(ClusterError):
    """The server answered 2xx with something that is not the JSON document expected."""


class TooManyRequests(ApiError):
    """429: the server (API Priority and Fairness) asks the client to come back later."""

    def __init__(
        self, status: int, message: str, *, path: str = "", retry_after: float | None
    ) -> None:
        super().__init__(status, message, path=path)
        self.retry_after = retry_after
        """``Retry-After`` in seconds as sent (``None``: absent or unreadable); callers clamp
        it through :class:`exporter.retry.RetryPolicy`."""


_ERRORS: Mapping[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
}


class TokenBucket:
    """Client-side rate limit for every request: ``qps`` on average, bursts up to ``burst``."""

    def __init__(self, qps: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self._rate = qps
        self._capacity = float(max(burst, 1))
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self._rate <= 0:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._rate)
                self._stamp = self._clock()
                self._tokens = 1
            self._tokens -= 1


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One listable and watchable type, in its preferred version."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        """The collection's URL path across all namespaces."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/{self.resource}"

    def object_path(self, namespace: str | None, name: str, *, version: str = "") -> str:
        """The URL path of one object of this type (in ``version``, default the preferred)."""
        group_version = f"{self.group}/{version or self.version}" if self.group else version
        base = f"/apis/{group_version}" if self.group else f"/api/{version or self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{scope}/{self.resource}/{urllib.parse.quote(name, safe=':@')}"

    @property
    def name(self) -> str:
        """``resource[.group]``, as ``kubectl get`` spells it."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def key(self, body: Mapping[str, Any]) -> ObjectKey:
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace") if self.namespaced else None
        return ObjectKey(self.group, self.resource, namespace or None, metadata.get("name", ""))


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the server serves: listable types, and groups whose discovery failed."""

    resources: tuple[ApiResource, ...]
    failed_groups: tuple[str, ...]
    """Group versions (often aggregated APIs) that could not be discovered: their types are
    unknown this time, so nothing of theirs may be deleted."""


@dataclass(frozen=True, slots=True)
class Page:
    """Part of the current state of one type, as :meth:`Cluster.read` yields it."""

    items: list[Json]
    resource_version: str
    """The list's resourceVersion (on the last page; ``""`` before it)."""
    restart: bool = False
    """The list started over (an expired continue token, or WatchList turned out to be
    unsupported): forget what earlier pages of this list said."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch stream: ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: Json

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")


INITIAL_EVENTS_END = "k8s.io/initial-events-end"
"""The annotation on the bookmark that ends a WatchList's initial events."""


class Cluster:
    """An authenticated connection to one API server; use as an async context manager."""

    def __init__(
        self, api: k8s_client.ApiClient, *, settings: ClusterSettings, clock: Clock = time.monotonic
    ) -> None:
        self._api = api
        self._settings = settings
        self._bucket = TokenBucket(settings.qps, settings.burst, clock=clock)
        self._list_mode = settings.list_mode
        """Sticky: ``auto`` becomes ``paginate`` the first time the server lacks WatchList."""
        self.requests = 0
        """Requests sent so far (for metrics and the steady-state check)."""

    @classmethod
    async def connect(cls, settings: ClusterSettings) -> Self:
        """Load kubeconfig (or the in-cluster service account) and return a client."""
        configuration = k8s_client.Configuration()
        kubeconfig = settings.kubeconfig or os.environ.get("KUBECONFIG", "")
        in_cluster = not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST")
        path = kubeconfig_path(kubeconfig)
        if not in_cluster and not path.is_file():
            raise KubeconfigError(f"{path}: kubeconfig not found")
        try:
            if in_cluster:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await k8s_config.load_kube_config(
                    config_file=str(path),
                    context=settings.context or None,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as error:
            where = settings.kubeconfig or kubeconfig or "kubeconfig"
            raise KubeconfigError(f"{where}: {_one_line(error)}") from None
        return cls(k8s_client.ApiClient(configuration), settings=settings)

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
            raise Unreachable(f"{self.server}: {_one_line(error)}") from None
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
            raise Unreachable(f"{self.server}: {_one_line(error)}") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            what = response.headers.get("Content-Type", "") or "no content type"
            raise InvalidResponse(f"{path}: not JSON ({what}): {_preview(raw)}") from None
        if not isinstance(data, dict):
            raise InvalidResponse(f"{path}: not a JSON object: {_preview(raw)}")
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

    async def discover(self) -> Discovery:
        """Every type that supports list and watch, in its group's preferred version.

        A group version whose discovery fails in any way (an error status, a timeout, an
        aggregated API answering HTML, JSON without the expected keys) is reported in
        ``failed_groups``, and its types are left out this time; only the core lists
        (``/api``, ``/apis``) failing is an error.
        """
        core = await self.get("/api")
        versions = core.get("versions")
        first = versions[0] if isinstance(versions, list) and versions else "v1"
        group_versions = [f"/api/{first}"]
        groups = await self.get("/apis")
        listed = groups.get("groups")
        for group in listed if isinstance(listed, list) else ():
            preferred = group.get("preferredVersion") if isinstance(group, dict) else None
            name = preferred.get("groupVersion") if isinstance(preferred, dict) else None
            if isinstance(name, str) and name:
                group_versions.append(f"/apis/{name}")
        resources: list[ApiResource] = []
        failed: list[str] = []
        results = await asyncio.gather(
            *(self.get(path) for path in group_versions), return_exceptions=True
        )
        for path, result in zip(group_versions, results, strict=True):
            group_version = path.removeprefix("/api/").removeprefix("/apis/")
            if isinstance(result, BaseException):
                if not isinstance(result, ClusterError):
                    raise result
                failed.append(group_version)
                continue
            try:
                resources += _listable(group_version, result)
            except (KeyError, TypeError, ValueError, AttributeError):
                failed.append(group_version)
        return Discovery(tuple(resources), tuple(failed))

    async def list_pages(
        self, resource: ApiResource, *, limit: int | None = None
    ) -> AsyncIterator[tuple[list[Json], str]]:
        """A paginated LIST: yields each page's items and the list's resourceVersion.

        When a continue token expires (410) mid-way, :class:`Gone` is raised: the caller starts
        a fresh list (the pages already seen may have changed).
        """
        params: dict[str, Any] = {"limit": limit or self._settings.page_size}
        while True:
            page = await self.get(resource.path, params)
            items = page.get("items") or []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise InvalidResponse(f"{resource.path}: a list whose items are not objects")
            for item in items:
                # Items of a list carry neither kind nor apiVersion: restore them.
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
            metadata = page.get("metadata") or {}
            yield items, str(metadata.get("resourceVersion") or "")
            token = metadata.get("continue")
            if not token:
                return
            params = {"limit": params["limit"], "continue": token}

    async def watch_list(
        self, resource: ApiResource, *, batch: int | None = None
    ) -> AsyncIterator[tuple[list[Json], str]]:
        """The streaming list (WatchList): the state as watch events, served from the API
        server's cache instead of etcd, in batches; ends at the bookmark that closes the
        initial events, with its resourceVersion.

        A server without the feature answers with an error (:class:`ApiError`, 400 or 422)
        or streams no closing bookmark (:class:`WatchListUnsupported`).
        """
        size = batch or self._settings.page_size
        pending: list[Json] = []
        async with self.watch(
            resource,
            resource_version="",
            timeout_seconds=self._settings.watch_timeout_seconds,
            send_initial_events=True,
        ) as events:
            async for event in events:
                if event.type == "BOOKMARK":
                    annotations = (event.object.get("metadata") or {}).get("annotations") or {}
                    if annotations.get(INITIAL_EVENTS_END) == "true":
                        yield pending, event.resource_version
                        return
                    continue
                if event.type != "ADDED":
                    raise WatchListUnsupported(f"{resource.name}: {event.type} before the end")
                pending.append(event.object)
                if len(pending) >= size:
                    yield pending, ""
                    pending = []
        raise WatchListUnsupported(f"{resource.name}: no initial-events-end bookmark")

    async def list_one(self, resource: ApiResource, namespace: str, name: str) -> Json | None:
        """One object by name, read with LIST and a ``metadata.name`` field selector, not GET:
        kube2git's role grants only list and watch (get is the verb that reaches pods/log,
        nodes/proxy and the like). None when it does not exist."""
        base = resource.path.removesuffix(f"/{resource.resource}")
        where = f"/namespaces/{namespace}" if resource.namespaced else ""
        page = await self.get(
            f"{base}{where}/{resource.resource}", {"fieldSelector": f"metadata.name={name}"}
        )
        for item in page.get("items") or []:
            if (item.get("metadata") or {}).get("name") == name:
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                found: Json = item
                return found
        return None

    async def read(self, resource: ApiResource) -> AsyncIterator[Page]:
        """The current state of one type, in pages, by the configured list mode.

        ``auto`` tries the streaming WatchList and, the first time the server lacks it, falls
        back to paginated LISTs for good; a paginated list whose continue token expires (410)
        starts over (a few times, then :class:`Gone`). A page that starts a list over has
        ``restart`` set.
        """
        restart = False
        if self._list_mode is not ListMode.PAGINATE:
            try:
                async for items, version in self.watch_list(resource):
                    yield Page(items, version, restart)
                    restart = False
            except (WatchListUnsupported, ApiError) as error:
                unsupported = isinstance(error, WatchListUnsupported) or error.status in (400, 422)
                if self._list_mode is not ListMode.AUTO or not unsupported:
                    raise
                log.info("cluster.watch_list_unsupported", type=resource.name, error=str(error))
                self._list_mode = ListMode.PAGINATE
                restart = True
            else:
                return
        for attempt in range(1, _FRESH_LIST_ATTEMPTS + 1):
            try:
                async for items, version in self.list_pages(resource):
                    yield Page(items, version, restart)
                    restart = False
            except Gone:
                log.info("cluster.list_restarted", type=resource.name, attempt=attempt)
                if attempt == _FRESH_LIST_ATTEMPTS:
                    raise
                restart = True
            else:
                return

    @contextlib.asynccontextmanager
    async def watch(
        self,
        resource: ApiResource,
        *,
        resource_version: str,
        timeout_seconds: int,
        send_initial_events: bool = False,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Open one watch request; yields an iterator of its events.

        The iterator ends when the server closes the stream (its ``timeoutSeconds``); a read
        that waits longer than ``watch_idle_timeout`` raises :class:`Unreachable` (a
        half-open connection: the server is gone without a FIN). An ERROR event becomes the
        matching :class:`ApiError`.
        """
        params: dict[str, Any] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if send_initial_events:
            params |= {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}
        if resource_version:
            params["resourceVersion"] = resource_version
        # Bookmarks arrive about once a minute: a longer silence is a dead (half-open) line.
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._settings.request_timeout,
            sock_read=self._settings.watch_idle_timeout,
        )
        response = await self._send(resource.path, params, limits=timeout)
        async with response:
            yield self._events(response, resource)

    async def _events(
        self, response: aiohttp.ClientResponse, resource: ApiResource
    ) -> AsyncIterator[WatchEvent]:
        content = response.content
        while True:
            try:
                line = await content.readline()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise Unreachable(
                    f"{self.server}: watch {resource.name}: {_one_line(error)}"
                ) from None
            if not line:
                return
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                # A stream cut mid-line (a dropped connection): reconnect and resume.
                raise Unreachable(
                    f"{self.server}: watch {resource.name}: truncated event"
                ) from None
            kind = event.get("type", "") if isinstance(event, dict) else None
            obj = event.get("object") or {} if isinstance(event, dict) else None
            if not isinstance(kind, str) or not isinstance(obj, dict):
                raise InvalidResponse(f"watch {resource.name}: not an event: {_preview(line)}")
            if kind == "ERROR":
                status = int(obj.get("code") or 500)
                error_type = _ERRORS.get(status, ApiError)
                raise error_type(status, str(obj.get("message", "")), path=resource.path)
            if kind != "BOOKMARK":
                obj.setdefault("apiVersion", resource.api_version)
                obj.setdefault("kind", resource.kind)
            yield WatchEvent(kind, obj)


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
    raise _ERRORS.get(response.status, ApiError)(response.status, message, path=path)


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


def _listable(group_version: str, document: Json) -> list[ApiResource]:
    """The list-and-watch types of one group version's discovery document (strict shape)."""
    served = document.get("groupVersion") or group_version
    group, _, version = str(served).rpartition("/")
    found = []
    for item in document["resources"]:
        name, kind, verbs = item["name"], item["kind"], item["verbs"]
        namespaced = item["namespaced"]
        well_formed = isinstance(name, str) and name and isinstance(kind, str)
        if not well_formed or not isinstance(namespaced, bool) or not isinstance(verbs, list):
            raise TypeError(f"{group_version}: malformed resource {name!r}")
        if "/" in name or not {"list", "watch"} <= set(verbs):
            continue
        found.append(ApiResource(group, version, name, kind, namespaced))
    return found


def _preview(raw: bytes) -> str:
    """The start of an unexpected answer, on one line, for the error message."""
    return " ".join(raw[:120].decode("utf-8", "replace").split()) or "(empty)"


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())
