"""Start, drive and stop a real local control plane made of plain processes on loopback.

A cluster lives in one directory: PKI, kubeconfigs, etcd data, one log per component under
``logs/``, one pid file per component under ``pids/`` and ``cluster.json`` (ports, URLs and the
exact command of each component, so another process can restart or stop it). Helpers talk plain
HTTPS with the admin client certificate, so they need no Kubernetes client library.

Errors: ``ClusterError`` (a component did not start, a helper's API call failed or timed out).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster import pki
from tests.cluster.build import KWOK_STAGES

ADMIN = pki.Identity("kube2git-admin", ("system:masters",))
RESTRICTED = pki.Identity("kube2git-restricted", ("kube2git:restricted",))
"""Authenticated but bound to no role: least-privilege tests grant it exactly what they need."""
_CONTROLLER_MANAGER = pki.Identity("system:kube-controller-manager")
_SCHEDULER = pki.Identity("system:kube-scheduler")
_KWOK = pki.Identity("kwok", ("system:masters",))

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.0.0.0/24"
_STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
_AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
# One event per request (plus ResponseStarted for watches): count stage == ResponseComplete.
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""


class ClusterError(RuntimeError):
    """The control plane or one of its helpers failed."""


JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Response:
    """An API reply: status, headers (lower-cased names) and the decoded JSON body if any."""

    status: int
    headers: dict[str, str]
    body: JSON


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for distinct free loopback ports (all bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _pid_runs(pid: int, binary: str) -> bool:
    """Guard against pid reuse: only signal a process that still runs our binary. (Only for
    processes some other command started: right after exec, /proc may not show the binary.)"""
    try:
        exe = Path(f"/proc/{pid}/exe").resolve(strict=True)
    except (FileNotFoundError, PermissionError):
        return False
    return exe == Path(binary).resolve() and _pid_alive(pid)


def _wait_until(
    what: str, check: Callable[[], bool], *, timeout: float, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ControlPlane:
    """Handle on a cluster directory; every method works from a fresh process as well."""

    directory: Path
    server: str
    etcd_url: str
    bin_dir: Path
    commands: dict[str, list[str]]
    audit_webhook_url: str = ""
    """Where the API server posts audit events (``start(audit_webhook=True)``), else ``""``."""
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # ---- paths -------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Cluster-admin kubeconfig (user ``kube2git-admin``, group ``system:masters``)."""
        return self.directory / "kubeconfig"

    @property
    def restricted_kubeconfig(self) -> Path:
        """Kubeconfig of ``kube2git-restricted``, which RBAC grants nothing by default."""
        return self.directory / "restricted.kubeconfig"

    @property
    def restricted_user(self) -> str:
        """User name of the restricted identity, for RoleBindings and ``apf_reject``."""
        return RESTRICTED.user

    @property
    def audit_log(self) -> Path:
        """JSON-lines audit log, Metadata level for every request."""
        return self.directory / "audit.log"

    @property
    def ca_file(self) -> Path:
        """The cluster CA, to verify the API server's certificate."""
        return self.directory / "pki" / "ca.crt"

    @property
    def audit_webhook_port(self) -> int:
        """The port kube2git's audit webhook must listen on (127.0.0.1)."""
        return int(self.audit_webhook_url.rsplit(":", 1)[1].split("/")[0])

    @property
    def audit_webhook_tls(self) -> tuple[Path, Path, Path]:
        """The webhook's serving certificate and key, and the CA of the API server's client
        certificate (the cluster CA)."""
        p = self.directory / "pki"
        return p / "audit-webhook.crt", p / "audit-webhook.key", p / "ca.crt"

    def user_kubeconfig(self, user: str) -> Path:
        """Kubeconfig of a client-certificate user (``alice``, ``bob``: group system:masters),
        written with ``start(audit_webhook=True)``."""
        return self.directory / f"{user}.kubeconfig"

    def log(self, component: str) -> Path:
        """Log file of one component (``etcd``, ``kube-apiserver``, ...)."""
        return self.directory / "logs" / f"{component}.log"

    # ---- persistence -------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> ControlPlane:
        """Attach to a cluster that ``start`` wrote into ``directory``."""
        state = json.loads((directory / "cluster.json").read_text())
        return cls(
            directory=directory,
            server=state["server"],
            etcd_url=state["etcd_url"],
            bin_dir=Path(state["bin_dir"]),
            commands=state["commands"],
            audit_webhook_url=state.get("audit_webhook_url", ""),
        )

    def _save(self) -> None:
        state = {
            "server": self.server,
            "etcd_url": self.etcd_url,
            "bin_dir": str(self.bin_dir),
            "commands": self.commands,
            "audit_webhook_url": self.audit_webhook_url,
        }
        (self.directory / "cluster.json").write_text(json.dumps(state, indent=2) + "\n")

    # ---- processes ---------------------------------------------------------------------------

    def _pid_file(self, component: str) -> Path:
        return self.directory / "pids" / f"{component}.pid"

    def _launch(self, component: str) -> None:
        # Own session: the processes outlive `up` and a Ctrl-C in the caller's terminal.
        with self.log(component).open("ab") as log:
            proc = subprocess.Popen(
                self.commands[component],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[component] = proc
        self._pid_file(component).write_text(f"{proc.pid}\n")

    def _stop(self, component: str, *, timeout: float = 20.0) -> None:
        pid_file = self._pid_file(component)
        proc = self._procs.pop(component, None)
        if proc is not None:
            # Our own child: signal and reap it through Popen (no pid-reuse question).
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        elif pid_file.exists():
            pid = int(pid_file.read_text())
            binary = self.commands[component][0]
            if _pid_runs(pid, binary):
                os.kill(pid, signal.SIGTERM)
                try:
                    _wait_until(
                        f"{component} to exit", lambda: not _pid_alive(pid), timeout=timeout
                    )
                except ClusterError:
                    if _pid_runs(pid, binary):
                        os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)

    def running(self, component: str) -> bool:
        """Whether the component's recorded process is alive."""
        proc = self._procs.get(component)
        if proc is not None:
            return proc.poll() is None
        pid_file = self._pid_file(component)
        if not pid_file.exists():
            return False
        return _pid_runs(int(pid_file.read_text()), self.commands[component][0])

    def stop(self) -> None:
        """Stop every component, newest layer first, so none logs errors about a dead peer."""
        for component in _STOP_ORDER:
            if component in self.commands:
                self._stop(component)

    def _check_alive(self, component: str) -> None:
        if not self.running(component):
            tail = self.log(component).read_text(errors="replace")[-3000:]
            raise ClusterError(f"{component} exited during startup; log tail:\n{tail}")

    # ---- HTTP --------------------------------------------------------------------------------

    def _ssl_context(self, identity: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        pki_dir = self.directory / "pki"
        context.load_cert_chain(pki_dir / f"{identity}.crt", pki_dir / f"{identity}.key")
        return context

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        identity: str = "admin",
        impersonate: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Response:
        """One API call with a client certificate (``admin`` or ``restricted``); never raises on
        an HTTP error status, so callers can assert on 403/409/410/429 directly."""
        conn = self._connection(identity, timeout)
        headers = {"Accept": "application/json"}
        if impersonate is not None:
            headers["Impersonate-User"] = impersonate
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=payload, headers=headers)
            reply = conn.getresponse()
            raw = reply.read()
            response_headers = {name.lower(): value for name, value in reply.getheaders()}
        finally:
            conn.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"raw": raw.decode(errors="replace")}
        return Response(reply.status, response_headers, decoded)

    def _ok(self, response: Response, *expected: int) -> JSON:
        if response.status not in (expected or (200, 201)):
            raise ClusterError(f"API call failed: {response.status} {response.body}")
        return response.body

    def _apply(self, path: str, body: JSON) -> JSON:
        """Create, or replace if it exists, keeping the helper idempotent across reruns."""
        created = self.request("POST", path, body)
        if created.status != 409:
            return self._ok(created)
        name = body["metadata"]["name"]
        current = self._ok(self.request("GET", f"{path}/{name}"))
        body = {**body, "metadata": {**body["metadata"], **_rv(current)}}
        return self._ok(self.request("PUT", f"{path}/{name}", body))

    def ready(self) -> bool:
        """Whether the API server answers ``/readyz`` with 200."""
        try:
            return self.request("GET", "/readyz", timeout=5).status == 200
        except OSError:
            return False

    def _etcd(self, path: str, body: JSON) -> JSON:
        url = urllib.parse.urlsplit(self.etcd_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Accept": "*/*"})
            reply = conn.getresponse()
            decoded: JSON = json.loads(reply.read() or b"{}")
        finally:
            conn.close()
        if reply.status != 200:
            raise ClusterError(f"etcd {path} failed: {reply.status} {decoded}")
        return decoded

    def _etcd_healthy(self) -> bool:
        url = urllib.parse.urlsplit(self.etcd_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=5)
        try:
            conn.request("GET", "/health")
            health: JSON = json.loads(conn.getresponse().read())
            return health.get("health") == "true"
        except (OSError, ValueError):
            return False
        finally:
            conn.close()

    # ---- test helpers ------------------------------------------------------------------------

    def restart_apiserver(self, *, timeout: float = 120.0) -> None:
        """Stop and start kube-apiserver on the same port: every open watch ends, and the new
        watch cache starts at the current revision (old resourceVersions become too old)."""
        # Graceful shutdown waits up to a minute for open watches' connections; past a few
        # seconds the outcome for clients is the same (their watches end), so cut it short.
        self._stop("kube-apiserver", timeout=5.0)
        self._launch("kube-apiserver")
        self._wait_apiserver(timeout)

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision and return it: any resourceVersion older than
        that now gets 410 Gone from etcd (the API server's watch cache may still hold some)."""
        header = self._etcd("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]
        revision = int(header["revision"])
        with contextlib.suppress(ClusterError):  # already compacted at this revision is fine
            self._etcd("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def _connection(self, identity: str, timeout: float | None) -> http.client.HTTPSConnection:
        url = urllib.parse.urlsplit(self.server)
        return http.client.HTTPSConnection(
            url.hostname or "127.0.0.1",
            url.port,
            context=self._ssl_context(identity),
            timeout=timeout,
        )

    @contextlib.contextmanager
    def apf_reject(
        self,
        user: str = RESTRICTED.user,
        *,
        resources: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> Iterator[None]:
        """While active, API Priority and Fairness answers every request of ``user`` with 429
        and ``Retry-After`` (only those on the core-group ``resources`` when given). Entered
        only once a rejection has been observed.

        A FlowSchema sends ``user`` to a priority level with zero seats that rejects instead of
        queueing. APF still admits a request when nothing at all executes at that level (so a
        zero-seat level cannot starve forever), so a second user routed there keeps a request
        executing for the duration (see ``_SeatHolder``).
        """
        name = f"kube2git-test-reject-{secrets.token_hex(4)}"
        holder_user = f"{name}-seat-holder"
        base = "/apis/flowcontrol.apiserver.k8s.io/v1"
        level = {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": name},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 0,
                    "lendablePercent": 0,
                    "borrowingLimitPercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        }
        schema = {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                "matchingPrecedence": 50,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            *([] if resources else [{"kind": "User", "user": {"name": user}}]),
                            {"kind": "User", "user": {"name": holder_user}},
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "clusterScope": True,
                                "namespaces": ["*"],
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    },
                    *(
                        [
                            {
                                "subjects": [{"kind": "User", "user": {"name": user}}],
                                "resourceRules": [
                                    {
                                        "verbs": ["*"],
                                        "apiGroups": [""],
                                        "resources": list(resources),
                                        "clusterScope": True,
                                        "namespaces": ["*"],
                                    }
                                ],
                            }
                        ]
                        if resources
                        else []
                    ),
                ],
            },
        }

        def probe(who: str) -> Response:
            # Admin is exempt from APF; impersonation is resolved before APF classifies.
            rejected = resources[0] if resources and who == user else "pods"
            return self.request("GET", f"/api/v1/namespaces/default/{rejected}", impersonate=who)

        self._ok(self.request("POST", f"{base}/prioritylevelconfigurations", level))
        holder = _SeatHolder(self, holder_user)
        try:
            schema_uid = self._ok(self.request("POST", f"{base}/flowschemas", schema))["metadata"][
                "uid"
            ]
            _wait_until(
                "APF to route requests to the new FlowSchema",
                lambda: (
                    probe(holder_user).headers.get("x-kubernetes-pf-flowschema-uid") == schema_uid
                ),
                timeout=timeout,
            )
            holder.start()
            _wait_until("a request to hold the only seat", holder.holding.is_set, timeout=timeout)
            _wait_until(
                "APF to reject the user", lambda: probe(user).status == 429, timeout=timeout
            )
            yield
        finally:
            holder.stop()
            self._ok(self.request("DELETE", f"{base}/flowschemas/{name}"), 200, 202, 404)
            self._ok(
                self.request("DELETE", f"{base}/prioritylevelconfigurations/{name}"), 200, 202, 404
            )
            _wait_until("APF to admit the user", lambda: probe(user).status != 429, timeout=timeout)

    def create_crd(
        self,
        group: str,
        kind: str,
        plural: str,
        *,
        version: str = "v1",
        scope: str = "Namespaced",
        schema: JSON | None = None,
        timeout: float = 60.0,
    ) -> str:
        """Create (or replace) a CustomResourceDefinition and wait until its resource is served;
        the default schema accepts any fields. Returns the CRD name ``<plural>.<group>``."""
        name = f"{plural}.{group}"
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "scope": scope,
                "names": {
                    "kind": kind,
                    "listKind": f"{kind}List",
                    "plural": plural,
                    "singular": kind.lower(),
                },
                "versions": [
                    {
                        "name": version,
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": schema
                            or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                ],
            },
        }
        self._apply("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)

        def served() -> bool:
            got = self.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = (got.body.get("status") or {}).get("conditions") or []
            established = any(
                c["type"] == "Established" and c["status"] == "True" for c in conditions
            )
            return (
                established
                and self.request("GET", f"/apis/{group}/{version}/{plural}").status == 200
            )

        _wait_until(f"CRD {name} to be served", served, timeout=timeout)
        return name

    def create_kwok_nodes(self, count: int, *, timeout: float = 120.0) -> list[str]:
        """Create ``count`` fake nodes that kwok keeps Ready (and runs pods on); returns their
        names once every one reports Ready. Names are unique per call."""
        prefix = f"kwok-{secrets.token_hex(3)}"
        names = [f"{prefix}-{index}" for index in range(count)]
        for name in names:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        KWOK_NODE_ANNOTATION: "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
            }
            self._ok(self.request("POST", "/api/v1/nodes", node))

        def all_ready() -> bool:
            for name in names:
                got = self.request("GET", f"/api/v1/nodes/{name}").body
                conditions = (got.get("status") or {}).get("conditions") or []
                if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return False
            return True

        _wait_until(f"{count} kwok nodes to be Ready", all_ready, timeout=timeout, interval=0.5)
        return names

    # ---- startup -----------------------------------------------------------------------------

    def _wait_apiserver(self, timeout: float) -> None:
        def ready() -> bool:
            self._check_alive("kube-apiserver")
            return self.ready()

        _wait_until("kube-apiserver /readyz", ready, timeout=timeout)


class _SeatHolder:
    """Keeps one request executing at a priority level until stopped.

    The request is a SelfSubjectAccessReview (every authenticated user may create one) sent
    with ``Expect: 100-continue`` and a body that never comes. The server answers
    ``100 Continue`` only once the request passed APF and its handler reads the body, so that
    reply proves the seat is held; any other reply (a 429) means try again. Past the request
    timeout the handler stays blocked on the body read, so the seat stays held until we close.
    """

    def __init__(self, cluster: ControlPlane, user: str) -> None:
        """Prepare to hold a seat as ``user`` (impersonated by the admin identity)."""
        self._cluster = cluster
        self._user = user
        self._stopping = threading.Event()
        self.holding = threading.Event()
        """Set while the server is known to execute our request."""
        self._lock = threading.Lock()
        self._sock: ssl.SSLSocket | None = None
        self._thread = threading.Thread(target=self._run, name=f"apf-{user}", daemon=True)

    def start(self) -> None:
        """Begin holding the seat in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Close the pending request, which frees the seat, and join the thread."""
        self._stopping.set()
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(30)

    def _attempt(self) -> None:
        url = urllib.parse.urlsplit(self._cluster.server)
        host, port = url.hostname or "127.0.0.1", url.port or 443
        context = self._cluster._ssl_context("admin")
        with (
            socket.create_connection((host, port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            with self._lock:
                self._sock = sock
            if self._stopping.is_set():
                return
            request = (
                "POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                f"Impersonate-User: {self._user}\r\n"
                "Content-Type: application/json\r\n"
                "Content-Length: 4096\r\n"
                "Expect: 100-continue\r\n\r\n"
            )
            sock.sendall(request.encode())
            with sock.makefile("rb") as reply:
                status = reply.readline().split(b" ", 2)[1:2]
                if status != [b"100"]:
                    return  # rejected (or the server is restarting): the caller retries
                self.holding.set()
                sock.settimeout(None)
                reply.read()  # returns when stop() shuts the socket down

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._attempt()
            except OSError:
                pass  # stop() shut the socket down, or the server closed it: retry or end
            finally:
                self.holding.clear()
                with self._lock:
                    self._sock = None
            self._stopping.wait(0.05)


def _rv(obj: JSON) -> JSON:
    return {"resourceVersion": obj["metadata"]["resourceVersion"]}


AUDIT_USERS = (pki.Identity("alice", ("system:masters",)), pki.Identity("bob", ("system:masters",)))
"""Client-certificate users for the audit webhook tests."""


def _write_pki(directory: Path, server: str, ports_host: str, audit_webhook_url: str = "") -> None:
    pki_dir = directory / "pki"
    pki_dir.mkdir(parents=True)
    ca = pki.CertificateAuthority(pki_dir)
    pki.service_account_keys(pki_dir)
    service_ip = "10.0.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
    ca.serving(
        "apiserver",
        dns=[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        ips=[ports_host, service_ip],
    )
    clients = {
        "admin": (ADMIN, directory / "kubeconfig"),
        "restricted": (RESTRICTED, directory / "restricted.kubeconfig"),
        "controller-manager": (_CONTROLLER_MANAGER, directory / "controller-manager.kubeconfig"),
        "scheduler": (_SCHEDULER, directory / "scheduler.kubeconfig"),
        "kwok": (_KWOK, directory / "kwok.kubeconfig"),
    }
    if audit_webhook_url:
        ca.serving("audit-webhook", dns=["localhost"], ips=[ports_host])
        audit_client = pki.Identity("kube-apiserver-audit")
        clients["audit-client"] = (audit_client, directory / "audit-webhook.kubeconfig")
        for user in AUDIT_USERS:
            clients[user.user] = (user, directory / f"{user.user}.kubeconfig")
    for stem, (identity, path) in clients.items():
        pair = ca.client(stem, identity)
        target = audit_webhook_url if stem == "audit-client" else server
        path.write_text(pki.kubeconfig(target, ca.pem, pair, identity.user))
        path.chmod(0o600)


_AUDIT_DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def documented_audit_policy() -> str:
    """The audit Policy docs/audit.md recommends for kube2git: the audited cluster runs it, so
    a real API server proves the documented policy loads and sends what kube2git needs."""
    text = _AUDIT_DOC.read_text(encoding="utf-8")
    for block in text.split("```yaml\n")[1:]:
        body = block.split("```", 1)[0]
        if "kind: Policy" in body:
            return body
    raise ClusterError(f"{_AUDIT_DOC} has no audit Policy block")


def _audit_webhook_flags(directory: Path) -> list[str]:
    """Batch mode with a short wait, so a change's fact reaches kube2git within its grace."""
    return [
        f"--audit-webhook-config-file={directory / 'audit-webhook.kubeconfig'}",
        "--audit-webhook-mode=batch",
        "--audit-webhook-batch-max-wait=1s",
        "--audit-webhook-initial-backoff=1s",
    ]


def _commands(
    directory: Path, bin_dir: Path, etcd_ports: tuple[int, int], apiserver_port: int
) -> dict[str, list[str]]:
    d, p = directory, directory / "pki"
    client, peer = etcd_ports
    etcd_url = f"http://127.0.0.1:{client}"
    return {
        "etcd": [
            str(bin_dir / "etcd"),
            "--name=kube2git",
            f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=kube2git=http://127.0.0.1:{peer}",
            "--quota-backend-bytes=8589934592",
            "--unsafe-no-fsync",  # throwaway data: durability is not worth the fsync latency
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={apiserver_port}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            f"--audit-policy-file={d / 'audit-policy.yaml'}",
            f"--audit-log-path={d / 'audit.log'}",
            "--audit-log-maxsize=0",  # no rotation: benchmarks read one file
            "--watch-cache=true",
            "--event-ttl=10m",
            # Endpoints of the `kubernetes` Service may not be loopback addresses.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={d / 'controller-manager.kubeconfig'}",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            "--v=1",
        ],
        "kube-scheduler": [
            str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={d / 'scheduler.kubeconfig'}",
            "--secure-port=0",
            "--leader-elect=false",
            "--v=1",
        ],
        "kwok": [
            str(bin_dir / "kwok"),
            f"--kubeconfig={d / 'kwok.kubeconfig'}",
            f"--config={bin_dir / KWOK_STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.1.0.1",
        ],
    }


def start(
    directory: Path,
    bin_dir: Path,
    *,
    controllers: bool = False,
    kwok: bool = False,
    audit_webhook: bool = False,
    timeout: float = 120.0,
) -> ControlPlane:
    """Start etcd and kube-apiserver (plus, on request, the controller manager, scheduler and
    kwok) in an empty ``directory``; returns once ``/readyz`` answers. ``audit_webhook``: the
    API server also sends its audit events to ``https://127.0.0.1:PORT/audit`` (batch mode,
    its client certificate signed by the cluster CA), where kube2git is to listen with the
    certificate of :attr:`ControlPlane.audit_webhook_tls`; users ``alice`` and ``bob`` get
    kubeconfigs."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "cluster.json").exists():
        previous = ControlPlane.load(directory)
        if any(previous.running(name) for name in previous.commands):
            raise ClusterError(f"{directory} holds a running cluster; run `down` first")
    # A stopped cluster's state is discarded (its logs are kept): every start is a fresh cluster.
    for stale in ("pki", "etcd", "pids"):
        shutil.rmtree(directory / stale, ignore_errors=True)
    for stale in ("cluster.json", "audit.log"):
        (directory / stale).unlink(missing_ok=True)
    for sub in ("logs", "pids"):
        (directory / sub).mkdir(exist_ok=True)
    etcd_client, etcd_peer, apiserver_port, webhook_port = _free_ports(4)
    server = f"https://127.0.0.1:{apiserver_port}"
    webhook_url = f"https://127.0.0.1:{webhook_port}/audit" if audit_webhook else ""
    _write_pki(directory, server, "127.0.0.1", webhook_url)
    policy = documented_audit_policy() if audit_webhook else _AUDIT_POLICY
    (directory / "audit-policy.yaml").write_text(policy)
    commands = _commands(directory, bin_dir, (etcd_client, etcd_peer), apiserver_port)
    if audit_webhook:
        commands["kube-apiserver"] += _audit_webhook_flags(directory)
    wanted = ["etcd", "kube-apiserver"]
    if controllers:
        wanted += ["kube-controller-manager", "kube-scheduler"]
    if kwok:
        wanted.append("kwok")
    cluster = ControlPlane(
        directory=directory,
        server=server,
        etcd_url=f"http://127.0.0.1:{etcd_client}",
        bin_dir=bin_dir,
        commands={name: commands[name] for name in wanted},
        audit_webhook_url=webhook_url,
    )
    cluster._save()
    try:
        cluster._launch("etcd")

        def etcd_ready() -> bool:
            cluster._check_alive("etcd")
            return cluster._etcd_healthy()

        _wait_until("etcd /health", etcd_ready, timeout=timeout)
        cluster._launch("kube-apiserver")
        cluster._wait_apiserver(timeout)
        for component in wanted[2:]:
            cluster._launch(component)
        if controllers:
            # Pods need the `default` ServiceAccount, which the controller manager creates.
            _wait_until(
                "the default ServiceAccount",
                lambda: (
                    cluster.request(
                        "GET", "/api/v1/namespaces/default/serviceaccounts/default"
                    ).status
                    == 200
                ),
                timeout=timeout,
            )
        time.sleep(0.5)
        for component in wanted[2:]:
            cluster._check_alive(component)
    except BaseException:
        cluster.stop()
        raise
    return cluster
