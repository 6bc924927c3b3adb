"""The audit webhook: EventLists in, facts matched to watch events; TLS and limits for real."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.attribution import AuditWebhookError, AuditWebhookSettings
from exporter.auditwebhook import AuditWebhookServer, FactIndex, parse_event_list
from tests.cluster import pki

DEPLOY = ("apps", "deployments", "shop", "web")


def event(
    user: str, verb: str, name: str = "web", *, rv: str = "", code: int = 200, **extra: Any
) -> dict[str, Any]:
    ref = {"apiGroup": "apps", "resource": "deployments", "namespace": "shop", "name": name}
    ref.update(extra.pop("ref", {}))
    out: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user, "groups": ["devs"]},
        "userAgent": "kubectl/v1.35.4",
        "objectRef": ref,
        "responseStatus": {"code": code},
        "stageTimestamp": "2026-05-01T10:00:00.123456Z",
        **extra,
    }
    if rv:
        out["responseObject"] = {"metadata": {"resourceVersion": rv}}
    return out


def event_list(*events: dict[str, Any]) -> bytes:
    return json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}
    ).encode()


def test_only_completed_successful_mutations_of_recorded_fields_are_kept() -> None:
    facts = parse_event_list(
        event_list(
            event("alice", "patch"),
            event("alice", "get"),
            event("alice", "patch", code=409),
            {**event("alice", "patch"), "stage": "ResponseStarted"},
            event("alice", "patch", ref={"subresource": "status"}),
            event("bob", "patch", ref={"subresource": "scale"}, rv="42"),
            event(
                "system:admin", "delete", impersonatedUser={"username": "carol", "groups": ["x"]}
            ),
            event("ci", "deletecollection", name=""),
        )
    )
    assert [(f.user.username, f.user.verb, f.key, f.resource_version) for f in facts] == [
        ("alice", "patch", DEPLOY, ""),
        ("bob", "patch", DEPLOY, "42"),
        ("carol", "delete", DEPLOY, ""),
        ("ci", "deletecollection", ("apps", "deployments", "shop", ""), ""),
    ]
    assert facts[2].user.impersonated_by == "system:admin"
    assert facts[2].user.groups == ("x",)
    assert facts[0].user.user_agent == "kubectl/v1.35.4"


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b'{"kind": "Event"}', b'{"kind":"EventList","items":3}']
)
def test_anything_but_an_event_list_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"not|items"):
        parse_event_list(body)


@pytest.mark.parametrize(
    "odd",
    [
        {"user": "alice"},
        {"user": {"username": {"name": "alice"}}},
        {"user": {"username": "alice", "groups": "devs"}},
        {"impersonatedUser": ["carol"]},
        {"responseStatus": "OK"},
        {"responseObject": {"metadata": "v1"}},
        {"objectRef": {"resource": "deployments", "namespace": {"ns": 1}, "name": "web"}},
        {"userAgent": {"agent": 1}},
    ],
)
def test_an_event_of_the_wrong_shape_is_skipped_and_the_batch_kept(odd: dict[str, Any]) -> None:
    """One malformed event must not cost the batch's other facts (nor raise past the handler,
    which would answer 500 and make the API server resend or drop them all)."""
    facts = parse_event_list(
        event_list({**event("mallory", "patch"), **odd}, event("bob", "patch"))
    )
    assert [f.user.username for f in facts] == ["bob"]


@pytest.mark.parametrize("depth", [100_000])
def test_deeply_nested_json_is_refused_as_bad_input(depth: int) -> None:
    body = b'{"kind": "EventList", "items": [' + b"[" * depth + b"]" * depth + b"]}"
    with pytest.raises(ValueError, match="not JSON"):
        parse_event_list(body)


def test_a_secret_in_a_request_response_event_leaves_nothing_in_the_fact() -> None:
    """At RequestResponse level the API server sends the Secret itself: only who, what object
    and its resourceVersion are kept."""
    secret = {
        "kind": "Secret",
        "metadata": {"name": "db", "resourceVersion": "9", "annotations": {"note": "hunter2x"}},
        "data": {"password": "aHVudGVyMng="},
        "stringData": {"token": "hunter2x"},
    }
    ref = {"apiGroup": "", "resource": "secrets", "name": "db"}
    facts = parse_event_list(
        event_list(event("alice", "update", ref=ref, requestObject=secret, responseObject=secret))
    )
    assert [(f.key, f.resource_version) for f in facts] == [(("", "secrets", "shop", "db"), "9")]
    assert "hunter2" not in repr(facts)
    assert "aHVudGVyMng" not in repr(facts)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_facts_match_in_order_by_object_verb_and_version() -> None:
    index = FactIndex(ttl=60, max_facts=100, clock=Clock())
    index.add(parse_event_list(event_list(event("alice", "patch"), event("bob", "patch"))))
    assert index.take(DEPLOY, "DELETED", "5") is None  # a patch does not delete
    first = index.take(DEPLOY, "MODIFIED", "5")
    second = index.take(DEPLOY, "MODIFIED", "6")
    assert (first and first.user.username, second and second.user.username) == ("alice", "bob")
    assert index.take(DEPLOY, "MODIFIED", "7") is None  # each fact is used once

    index.add(
        parse_event_list(
            event_list(event("alice", "update", rv="9"), event("bob", "update", rv="8"))
        )
    )
    by_version = index.take(DEPLOY, "MODIFIED", "8")
    assert by_version is not None
    assert by_version.user.username == "bob"  # the response's version decides when logged


def test_a_deletecollection_covers_every_deletion_in_its_namespace() -> None:
    index = FactIndex(ttl=60, max_facts=100, clock=Clock())
    index.add(parse_event_list(event_list(event("ci", "deletecollection", name=""))))
    for name in ("a", "b"):
        fact = index.take(("apps", "deployments", "shop", name), "DELETED", None)
        assert fact is not None
        assert fact.user.username == "ci"
    assert index.take(("apps", "deployments", "other", "a"), "DELETED", None) is None


def test_the_index_is_bounded_in_count_and_age() -> None:
    clock = Clock()
    index = FactIndex(ttl=10, max_facts=3, clock=clock)
    index.add(parse_event_list(event_list(*(event(f"u{i}", "patch", f"n{i}") for i in range(5)))))
    assert len(index) == 3
    assert index.take(("apps", "deployments", "shop", "n0"), "MODIFIED", None) is None
    clock.now = 11
    assert index.take(("apps", "deployments", "shop", "n4"), "MODIFIED", None) is None
    assert len(index) == 0


@pytest.mark.looptime
async def test_a_watch_event_waits_a_bounded_grace_for_its_fact() -> None:
    loop = asyncio.get_running_loop()
    index = FactIndex(ttl=60, max_facts=100, clock=loop.time)
    start = loop.time()

    async def later() -> None:
        await asyncio.sleep(1.5)
        index.add(parse_event_list(event_list(event("alice", "patch"))))

    async with asyncio.TaskGroup() as group:
        group.create_task(later())
        fact = await index.wait(DEPLOY, "MODIFIED", None, deadline=start + 3)
    assert fact is not None
    assert loop.time() - start == pytest.approx(1.5)
    missing = await index.wait(DEPLOY, "MODIFIED", None, deadline=loop.time() + 3)
    assert missing is None
    assert loop.time() - start == pytest.approx(4.5)


# -- the HTTPS endpoint, with real certificates -------------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> pki.CertificateAuthority:
    return pki.CertificateAuthority(tmp_path)


def settings(ca: pki.CertificateAuthority, tmp_path: Path, **extra: Any) -> AuditWebhookSettings:
    serving = ca.serving("webhook", dns=["localhost"], ips=["127.0.0.1"])
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "cert_file": str(serving.cert),
        "key_file": str(serving.key),
        "client_ca_file": str(ca.pair.cert),
        "max_request_bytes": 64 * 1024,
        **extra,
    }
    return AuditWebhookSettings(**values)


@pytest.fixture
async def served(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> AsyncIterator[tuple[AuditWebhookServer, FactIndex]]:
    index = FactIndex(ttl=60, max_facts=100)
    server = AuditWebhookServer(settings(ca, tmp_path), index=index)
    await server.start()
    yield server, index
    await server.stop()


def client_context(ca: pki.CertificateAuthority, pair: pki.KeyPair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.pair.cert))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


async def post(port: int, body: bytes, context: ssl.SSLContext, **headers: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{port}/audit", data=body, ssl=context, headers=headers
        ) as reply,
    ):
        return reply.status


async def test_the_api_server_s_certificate_is_required(
    served: tuple[AuditWebhookServer, FactIndex], ca: pki.CertificateAuthority
) -> None:
    server, index = served
    apiserver = ca.client("apiserver-audit", pki.Identity("kube-apiserver"))
    body = event_list(event("alice", "patch"))
    assert await post(server.port, body, client_context(ca, apiserver)) == 200
    assert index.take(DEPLOY, "MODIFIED", None) is not None
    with pytest.raises(aiohttp.ClientError):
        await post(server.port, body, client_context(ca, None))
    (ca.pair.cert.parent / "other").mkdir()
    stranger_ca = pki.CertificateAuthority(ca.pair.cert.parent / "other")
    stranger = stranger_ca.client("x", pki.Identity("x"))
    with pytest.raises(aiohttp.ClientError):
        await post(server.port, body, client_context(ca, stranger))
    assert len(index) == 0


async def test_oversized_and_malformed_requests_are_refused(
    served: tuple[AuditWebhookServer, FactIndex], ca: pki.CertificateAuthority
) -> None:
    server, index = served
    context = client_context(ca, ca.client("apiserver-audit", pki.Identity("kube-apiserver")))
    huge = event_list(*(event("alice", "patch", f"n{i}") for i in range(2000)))
    assert len(huge) > 64 * 1024
    assert await post(server.port, huge, context) == 413
    assert await post(server.port, b"not json", context) == 400
    assert len(index) == 0


async def test_a_bearer_token_can_stand_in_for_the_client_certificate(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    index = FactIndex(ttl=60, max_facts=100)
    server = AuditWebhookServer(
        settings(ca, tmp_path, client_ca_file="", token_file=str(token)), index=index
    )
    await server.start()
    try:
        context = client_context(ca, None)
        body = event_list(event("alice", "patch"))
        assert await post(server.port, body, context) == 401
        assert await post(server.port, body, context, Authorization="Bearer wrong") == 401
        assert await post(server.port, body, context, Authorization="Bearer s3cr\u00e9t") == 401
        assert await post(server.port, body, context, Authorization="Bearer \udcff") == 401
        ok = await post(server.port, body, context, Authorization="Bearer s3cret-token")
        assert ok == 200
        assert len(index) == 1
    finally:
        await server.stop()


def test_an_endpoint_anyone_could_post_to_is_refused(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    with pytest.raises(AuditWebhookError, match="client_ca_file or token_file"):
        AuditWebhookServer(
            settings(ca, tmp_path, client_ca_file=""), index=FactIndex(ttl=1, max_facts=1)
        )


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({}, "cert_file and key_file are required"),
        ({"cert_file": "{crt}", "key_file": "{key}"}, "set client_ca_file or token_file"),
        (
            {"cert_file": "{crt}", "key_file": "{key}", "token_file": "/nonexistent"},
            "/nonexistent: cannot read the webhook token",
        ),
        (
            {"cert_file": "{crt}", "key_file": "{key}", "client_ca_file": "{crt}", "listen": "x"},
            "audit.webhook.listen:",
        ),
    ],
)
def test_a_webhook_that_cannot_serve_safely_is_a_one_line_user_error(
    ca: pki.CertificateAuthority, tmp_path: Path, webhook: dict[str, str], message: str
) -> None:
    serving = ca.serving("webhook", dns=["localhost"], ips=["127.0.0.1"])
    lines = ["audit:", "  webhook:", "    listen: 127.0.0.1:0"]
    for name, template in webhook.items():
        value = template.format(crt=serving.cert, key=serving.key)
        if name == "listen":
            lines[2] = f"    listen: {value}"
        else:
            lines.append(f"    {name}: {value}")
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "run", "--repo", str(tmp_path / "r.git"),
         "--config", str(config), "--kubeconfig", str(tmp_path / "none"), "--listen", ""],
        capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert message in line


def test_a_fact_is_bounded_in_size_whatever_the_names_it_carries() -> None:
    """The index holds up to max_facts facts: each must stay small, however long the user
    name, groups or user agent an authenticator or a client hands the API server."""
    huge = event("u" * 10_000, "patch", userAgent="a" * 10_000)
    huge["user"]["groups"] = [f"g{i}-" + "x" * 100 for i in range(100)]  # 10 KiB in all
    huge["impersonatedUser"] = {"username": "i" * 10_000, "groups": ["y" * 10_000]}
    (fact,) = parse_event_list(event_list(huge))
    user = fact.user
    assert len(user.username) <= 512
    assert user.username.endswith("…")
    assert user.impersonated_by is not None
    assert len(user.impersonated_by) <= 512
    assert len(user.user_agent) <= 1024
    assert sum(len(group) for group in user.groups) <= 2048
    index = FactIndex(ttl=60, max_facts=2_000, clock=Clock())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for batch in range(20):
            items = [huge | {"objectRef": {**huge["objectRef"], "name": f"n{batch}-{i}"}}
                     for i in range(100)]  # fmt: skip
            index.add(parse_event_list(event_list(*items)))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(index) == 2_000
    assert held < 30 * 2**20, f"{held / 2**20:.0f} MiB for 2,000 facts"
