"""Real users from the API server's audit webhook: who made each change, not which tool.

kube-apiserver's webhook audit backend (batch mode) POSTs ``audit.k8s.io/v1`` EventLists to
``kube2git run`` over HTTPS. The server verifies the API server's client certificate against
a configured CA (and/or a bearer token), refuses bodies over ``max_request_bytes``, and keeps
the facts of completed, successful mutating requests (user, groups, impersonation, user
agent, verb, objectRef, the response's resourceVersion where the policy level gives it) in a
bounded, time-limited :class:`FactIndex`. A watch event then waits up to ``grace`` seconds
for its fact (:meth:`FactIndex.wait`); a match makes the user the commit's author.

Matching: by object (group, resource, namespace, name) and a verb that can cause the event
(create/patch/update → ADDED; update/patch/delete → MODIFIED; delete/deletecollection →
DELETED); a fact that carries a resourceVersion matches only the event of that version;
otherwise the oldest unused fact of the object wins, so two users' changes to one object
within a second are told apart in order.

Errors: :class:`~exporter.attribution.AuditWebhookError` (a configuration that cannot serve:
exit code 2).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from exporter.attribution import AuditWebhookError, AuditWebhookSettings
from exporter.config import split_listen
from exporter.health import serve
from exporter.messages import AuditUser

log = structlog.get_logger()

Clock = Callable[[], float]
FactKey = tuple[str, str, str | None, str]
"""(group, resource, namespace, name); name ``""`` for a deletecollection."""

_MUTATING = frozenset({"create", "update", "patch", "delete", "deletecollection"})
_CAUSES = {
    "ADDED": frozenset({"create", "update", "patch"}),
    "MODIFIED": frozenset({"update", "patch", "delete"}),
    "DELETED": frozenset({"delete", "deletecollection"}),
}
_SUBRESOURCES = frozenset({"", "scale"})
"""Subresources whose writes change what kube2git records (``status`` is not recorded)."""


@dataclass(frozen=True, slots=True)
class AuditFact:
    """One completed, successful mutating request, as the audit stream tells it."""

    user: AuditUser
    key: FactKey
    uid: str
    resource_version: str
    """The response's resourceVersion (RequestResponse level); ``""`` when not logged."""


# What a fact keeps of the names in an event, so that max_facts bounds memory too (a few KiB
# a fact, whatever an authenticator or a client puts in a name): longer than any real user
# name, group list or user agent (kube-apiserver itself keeps 1 KiB of a user agent).
MAX_NAME = 512
MAX_GROUPS_TEXT = 2048
MAX_USER_AGENT = 1024


def _bounded(text: str, limit: int) -> str:
    """At most ``limit`` characters; a cut one ends with ``…`` so nobody mistakes it."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_groups(groups: tuple[str, ...]) -> tuple[str, ...]:
    """The groups that fit in ``MAX_GROUPS_TEXT`` characters, in order."""
    kept: list[str] = []
    room = MAX_GROUPS_TEXT
    for group in groups:
        if room <= 0:
            break
        cut = _bounded(group, min(MAX_NAME, room))
        kept.append(cut)
        room -= len(cut)
    return tuple(kept)


class _WrongShape(Exception):
    """An audit event whose fields are not the shapes audit.k8s.io/v1 gives them."""


def _map(value: object) -> Mapping[str, Any]:
    """A JSON object, ``{}`` for an absent one; anything else is a wrong shape."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _WrongShape
    return value


def _text(value: object, default: str = "") -> str:
    """A JSON string, ``default`` for an absent one; anything else is a wrong shape."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise _WrongShape
    return value


def _names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _WrongShape
    return tuple(_text(item) for item in value)


def _user(event: Mapping[str, Any]) -> AuditUser:
    user = _map(event.get("user"))
    impersonated = _map(event.get("impersonatedUser"))
    username = _text(user.get("username"))
    effective, by = username, None
    groups = _names(user.get("groups"))
    if impersonated.get("username"):
        effective, by = _text(impersonated["username"]), username
        groups = _names(impersonated.get("groups"))
    return AuditUser(
        username=_bounded(effective, MAX_NAME),
        groups=_bounded_groups(groups),
        impersonated_by=None if by is None else _bounded(by, MAX_NAME),
        user_agent=_bounded(_text(event.get("userAgent")), MAX_USER_AGENT),
        verb=_text(event.get("verb")),
        time=_text(event.get("stageTimestamp")),
    )


def parse_event_list(body: bytes) -> list[AuditFact]:
    """The facts kube2git needs from one ``audit.k8s.io/v1`` EventList; ``ValueError`` if it
    is not one. An event of the wrong shape is skipped, not the batch."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise ValueError(f"not JSON: {reason}") from None
    if not isinstance(data, dict) or data.get("kind") != "EventList":
        raise ValueError("not an audit.k8s.io EventList")
    items = data.get("items") or []
    if not isinstance(items, list):
        raise ValueError("items is not a list")  # noqa: TRY004 - bad input, one error type
    facts = []
    for event in items:
        try:
            fact = _fact(event)
        except _WrongShape:
            continue
        if fact is not None:
            facts.append(fact)
    return facts


def _fact(event: object) -> AuditFact | None:
    """The fact of one event, ``None`` if it is not a recorded mutation (:class:`_WrongShape`
    if its fields are not audit.k8s.io/v1's)."""
    if not isinstance(event, dict) or event.get("stage") != "ResponseComplete":
        return None
    verb, ref = event.get("verb"), _map(event.get("objectRef"))
    if verb not in _MUTATING or not ref.get("resource"):
        return None
    if _text(ref.get("subresource")) not in _SUBRESOURCES:
        return None
    code = _map(event.get("responseStatus")).get("code", 200)
    if not isinstance(code, int) or not 200 <= code < 300:
        return None
    metadata = _map(_map(event.get("responseObject")).get("metadata"))
    namespace = _text(ref.get("namespace"))
    key: FactKey = (
        _text(ref.get("apiGroup")),
        _text(ref["resource"]),
        namespace or None,
        "" if verb == "deletecollection" else _text(ref.get("name")),
    )
    if not key[3] and verb != "deletecollection":
        return None  # a create by generateName at Metadata level: no name to match
    return AuditFact(
        user=_user(event),
        key=key,
        uid=_text(ref.get("uid")),
        resource_version=_text(metadata.get("resourceVersion")),
    )


class _Entry:
    __slots__ = ("fact", "received", "used")

    def __init__(self, fact: AuditFact, received: float) -> None:
        self.fact = fact
        self.received = received
        self.used = False


class FactIndex:
    """Recent facts by object, bounded in count and age; watch events wait here for theirs."""

    def __init__(self, *, ttl: float, max_facts: int, clock: Clock = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max(max_facts, 1)
        self._clock = clock
        self._by_key: dict[FactKey, deque[_Entry]] = {}
        self._order: deque[_Entry] = deque()
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        """Facts not yet used (and not expired)."""
        return sum(len(entries) for entries in self._by_key.values())

    def add(self, facts: Iterable[AuditFact]) -> None:
        now = self._clock()
        for fact in facts:
            entry = _Entry(fact, now)
            self._order.append(entry)
            self._by_key.setdefault(fact.key, deque()).append(entry)
        self._expire(now)
        self._arrived.set()
        self._arrived = asyncio.Event()

    def _expire(self, now: float) -> None:
        while self._order and (
            len(self._order) > self._max or self._order[0].received < now - self._ttl
        ):
            entry = self._order.popleft()
            entries = self._by_key.get(entry.fact.key)
            if entries is None:
                continue
            if entry in entries:
                entries.remove(entry)
            if not entries:
                del self._by_key[entry.fact.key]

    def take(self, key: FactKey, event: str, resource_version: str | None) -> AuditFact | None:
        """The fact of the watch ``event`` (``ADDED``/``MODIFIED``/``DELETED``) on ``key``."""
        self._expire(self._clock())
        causes = _CAUSES[event]
        for entry in self._by_key.get(key, ()):
            fact = entry.fact
            if entry.used or fact.user.verb not in causes:
                continue
            if fact.resource_version and resource_version != fact.resource_version:
                continue  # another event's fact (only when the policy logs versions)
            entry.used = True
            self._by_key[key].remove(entry)
            return fact
        if event == "DELETED":  # a deletecollection names no object: it covers them all
            for entry in self._by_key.get((key[0], key[1], key[2], ""), ()):
                return entry.fact
        return None

    async def wait(
        self, key: FactKey, event: str, resource_version: str | None, *, deadline: float
    ) -> AuditFact | None:
        """:meth:`take`, waiting for facts to arrive until ``deadline`` (of the clock)."""
        while True:
            fact = self.take(key, event, resource_version)
            remaining = deadline - self._clock()
            if fact is not None or remaining <= 0:
                return fact
            arrived = self._arrived
            try:
                async with asyncio.timeout(remaining):
                    await arrived.wait()
            except TimeoutError:
                return self.take(key, event, resource_version)


def server_ssl_context(settings: AuditWebhookSettings) -> ssl.SSLContext:
    """TLS for the endpoint: our certificate, and the API server's verified when configured."""
    if not settings.cert_file or not settings.key_file:
        raise AuditWebhookError("audit.webhook: cert_file and key_file are required")
    if not settings.client_ca_file and not settings.token_file:
        raise AuditWebhookError(
            "audit.webhook: set client_ca_file or token_file, so only the API server can "
            "post audit events"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
        if settings.client_ca_file:
            context.load_verify_locations(settings.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as error:
        raise AuditWebhookError(f"audit.webhook: cannot load TLS files: {error}") from None
    return context


def _read_token(path: str) -> bytes:
    try:
        token = Path(path).read_bytes().strip()
    except OSError as error:
        raise AuditWebhookError(
            f"{path}: cannot read the webhook token: {error.strerror}"
        ) from None
    if not token:
        raise AuditWebhookError(f"{path}: the webhook token file is empty")
    return token


def check_settings(settings: AuditWebhookSettings) -> None:
    """Refuse, before anything starts, a webhook that could not serve or that anyone could
    post to (:class:`~exporter.attribution.AuditWebhookError`)."""
    server_ssl_context(settings)
    if settings.token_file:
        _read_token(settings.token_file)
    try:
        split_listen(settings.listen)
    except ValueError as error:
        raise AuditWebhookError(f"audit.webhook.listen: {error}") from None


class AuditWebhookServer:
    """The HTTPS endpoint: EventLists in, facts into the index."""

    def __init__(
        self,
        settings: AuditWebhookSettings,
        *,
        index: FactIndex,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._index = index
        self._on_batch = on_batch
        self._ssl = server_ssl_context(settings)
        self._token = _read_token(settings.token_file) if settings.token_file else None
        host, port = split_listen(settings.listen)
        self._host = host or "0.0.0.0"  # noqa: S104 - the API server calls in from outside
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=self._settings.max_request_bytes)
        app.router.add_post("/{tail:.*}", self._receive)
        runner = web.AppRunner(app, access_log=None)
        self.port = await serve(
            runner, self._host, self.port, setting="audit.webhook.listen", ssl_context=self._ssl
        )
        self._runner = runner
        log.info("audit_webhook.listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        if self._token is not None:
            header = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(header, b"Bearer " + self._token):
                log.warning("audit_webhook.unauthorized", peer=request.remote)
                return web.json_response({"error": "unauthorized"}, status=401)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("audit_webhook.too_large", limit=self._settings.max_request_bytes)
            raise
        try:
            facts = parse_event_list(body)
        except ValueError as error:
            log.warning("audit_webhook.bad_request", error=str(error))
            return web.json_response({"error": str(error)}, status=400)
        self._index.add(facts)
        if self._on_batch is not None:
            self._on_batch(len(facts))
        return web.json_response({})
