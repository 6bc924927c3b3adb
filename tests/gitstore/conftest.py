"""Real git servers on loopback for the git store tests: sshd, smart HTTP, a bare repository."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
HTTP_BACKEND = (
    Path(
        subprocess.run(
            ["git", "--exec-path"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    / "git-http-backend"
)

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Someone Else",
    "GIT_AUTHOR_EMAIL": "someone@example.com",
    "GIT_COMMITTER_NAME": "Someone Else",
    "GIT_COMMITTER_EMAIL": "someone@example.com",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run the git CLI as another user of the remote would."""
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def init_bare(path: Path) -> Path:
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    git("--git-dir", str(path), "config", "http.receivepack", "true")
    return path


@pytest.fixture
def git_cli() -> Callable[..., str]:
    """The git CLI, as another user of the remote would run it."""
    return git


@pytest.fixture
def bare_remote(tmp_path: Path) -> Path:
    """A plain local bare repository as the remote."""
    return init_bare(tmp_path / "remote.git")


# -- sshd -----------------------------------------------------------------------------------


@dataclass
class SshServer:
    port: int
    repo: Path
    client_key: Path
    """A key the server accepts."""
    other_key: Path
    """A key the server does not know."""
    known_hosts: Path
    """known_hosts with the server's host key."""
    wrong_known_hosts: Path
    """known_hosts with another host's key for the same address."""
    empty_known_hosts: Path

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{self.repo}"


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[SshServer]:
    """OpenSSH on a free loopback port, key authentication only, serving a bare repository."""
    if not Path(SSHD).exists():
        pytest.fail(
            "openssh-server is not installed: run scripts/setup (apt-get install openssh-server)"
        )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    root = tmp_path / "sshd"
    root.mkdir()
    host_key = _keygen(root / "host_ed25519")
    other_host_key = _keygen(root / "other_host_ed25519")
    client_key = _keygen(root / "client_ed25519")
    other_key = _keygen(root / "stranger_ed25519")
    authorized = root / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "AuthenticationMethods publickey",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "LogLevel VERBOSE",
                f"SetEnv PATH={os.path.dirname(shutil.which('git-upload-pack') or '/usr/bin')}"
                ":/usr/bin:/bin",
                "",
            ]
        )
    )
    repo = init_bare(root / "backup.git")
    log = (root / "sshd.log").open("w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
    try:
        wait_for_port(port)
        host_pub = Path(f"{host_key}.pub").read_text().split()
        other_pub = Path(f"{other_host_key}.pub").read_text().split()
        known = root / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        wrong = root / "wrong_known_hosts"
        wrong.write_text(f"[127.0.0.1]:{port} {other_pub[0]} {other_pub[1]}\n")
        empty = root / "empty_known_hosts"
        empty.write_text("")
        yield SshServer(port, repo, client_key, other_key, known, wrong, empty)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


# -- smart HTTP -----------------------------------------------------------------------------


@dataclass
class HttpServer:
    """git http-backend behind a threaded Python server with basic auth; can stop and start."""

    root: Path
    port: int
    username: str = "backup"
    password: str = "s3cr3t-Pa55word"
    requests: list[str] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    """Serve HTTPS with this context."""
    ca_file: Path | None = None
    """The self-signed certificate a client must trust, with ``tls``."""
    redirect_to: str | None = None
    """Answer every request with a redirect to this base URL (plus the request's path)."""
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def repo(self) -> Path:
        return self.root / "backup.git"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/backup.git"

    def start(self) -> None:
        handler = _make_handler(self)
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _make_handler(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            server.requests.append(format % args)

        def _cgi(self) -> None:
            if server.redirect_to is not None:
                self.send_response(301)
                self.send_header("Location", server.redirect_to + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.headers.get("Authorization") != expected:
                body = _read_body(self) if self.command == "POST" else b""
                del body
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = _read_body(self) if self.command == "POST" else b""
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": server.username,
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            done = subprocess.run(
                [str(HTTP_BACKEND)], input=body, env=env, capture_output=True, check=False
            )
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = done.stdout.partition(b"\n\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _cgi  # noqa: N815
        do_POST = _cgi  # noqa: N815

    return Handler


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """git smart HTTP with basic auth on a free loopback port."""
    root = tmp_path / "http"
    root.mkdir()
    init_bare(root / "backup.git")
    server = HttpServer(root=root, port=free_port())
    server.start()
    wait_for_port(server.port)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[HttpServer]:
    """The same server over TLS, with a self-signed certificate for 127.0.0.1."""
    root = tmp_path / "https"
    root.mkdir()
    init_bare(root / "backup.git")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = HttpServer(root=root, port=free_port(), tls=context, ca_file=cert)
    server.start()
    wait_for_port(server.port)
    try:
        yield server
    finally:
        server.stop()
