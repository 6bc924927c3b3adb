"""A small thread-safe API client with keep-alive connections, and exporter identities.

``ControlPlane.request`` opens a TLS connection per call; populating 100,000 objects needs
connection reuse, so each thread keeps its own connection here. Identities: each exporter gets
a client certificate signed by the cluster's CA (``pki/ca.crt``/``ca.key``) and bound to
``cluster-admin`` through a ClusterRoleBinding, so the audit log tells their requests apart and
API Priority and Fairness treats them as ordinary clients (not ``system:masters``).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class ApiError(RuntimeError):
    """An API call answered with an unexpected status."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: JSON


class Api:
    """HTTPS client for one cluster and one client certificate; one connection per thread."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        url = urllib.parse.urlsplit(server)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port
        self._context = ssl.create_default_context(cafile=str(ca))
        self._context.load_cert_chain(cert, key)
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, context=self._context, timeout=60
            )
            self._local.conn = conn
        return conn

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        content_type: str = "application/json",
    ) -> Reply:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, path, body=payload, headers=headers)
                reply = conn.getresponse()
                raw = reply.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
                continue
            if reply.status == 429 and attempt < 2:
                time.sleep(float(reply.getheader("Retry-After") or 1))
                continue
            decoded = json.loads(raw) if raw and raw[:1] == b"{" else {}
            return Reply(reply.status, decoded)
        raise ApiError(f"{method} {path}: retries exhausted")

    def ok(self, method: str, path: str, body: JSON | None = None, **kw: Any) -> JSON:
        reply = self.request(method, path, body, **kw)
        if reply.status >= 300:
            raise ApiError(f"{method} {path}: {reply.status} {str(reply.body)[:300]}")
        return reply.body

    def create_many(
        self, items: Iterable[tuple[str, JSON]], *, threads: int = 16
    ) -> tuple[int, int]:
        """POST every (collection path, body) concurrently; 409 counts as done.
        Returns (created, already existing)."""
        created = existing = 0
        lock = threading.Lock()

        def post(item: tuple[str, JSON]) -> None:
            nonlocal created, existing
            reply = self.request("POST", item[0], item[1])
            if reply.status == 409:
                with lock:
                    existing += 1
                return
            if reply.status >= 300:
                raise ApiError(f"POST {item[0]}: {reply.status} {str(reply.body)[:300]}")
            with lock:
                created += 1

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(post, items))  # drains the map, so a worker's error is raised here
        return created, existing


def admin_api(cluster_dir: Path, server: str) -> Api:
    pki = cluster_dir / "pki"
    return Api(server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")


def mint_identity(cluster_dir: Path, server: str, api: Api, user: str) -> Path:
    """A kubeconfig for ``user`` (client certificate from the cluster CA) bound to
    cluster-admin; returns its path (``<cluster_dir>/bench/<user>.kubeconfig``)."""
    pki = cluster_dir / "pki"
    out = cluster_dir / "bench"
    out.mkdir(exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kube2git:bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, user),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    kubeconfig = out / f"{user}.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: bench\n  cluster:\n    server: {server}\n"
        f"    certificate-authority-data: {b64((pki / 'ca.crt').read_bytes())}\n"
        f"users:\n- name: {user}\n  user:\n"
        f"    client-certificate-data: {b64(cert_pem)}\n"
        f"    client-key-data: {b64(key_pem)}\n"
        f"contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: {user}\n"
        "current-context: bench\n"
    )
    kubeconfig.chmod(0o600)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"bench-{user}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    reply = api.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    if reply.status not in (201, 409):
        raise ApiError(f"ClusterRoleBinding for {user}: {reply.status} {reply.body}")
    return kubeconfig
