"""What the integration tests share: git inspection, polling, and the exporter as a process."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main

BRANCH = "kube2git"


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=check
    ).stdout


def tree(repo: Path, ref: str = BRANCH, *, prefix: str = "") -> dict[str, str]:
    """path → blob id at ``ref`` ({} when the branch does not exist yet); with ``prefix``,
    only the files below that folder, named without it (one cluster of a fleet)."""
    out = git(repo, "ls-tree", "-r", ref, check=False)
    entries = {}
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        if path.startswith(prefix):
            entries[path[len(prefix) :]] = meta.split()[2]
    return entries


def show(repo: Path, path: str, ref: str = BRANCH) -> Any:
    return yaml.safe_load(git(repo, "show", f"{ref}:{path}"))


def commit_count(repo: Path, ref: str = BRANCH) -> int:
    out = git(repo, "rev-list", "--count", ref, check=False).strip()
    return int(out) if out else 0


def eventually(what: str, probe: Callable[[], bool], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(0.25)


def ok(response: Any) -> Any:
    """The body of a successful API response; fails the test on any other status."""
    assert response.status in (200, 201), response.body
    return response.body


def create_config_maps(
    control_plane: Any, namespace: str, *names: str, data: dict[str, str] | None = None
) -> None:
    """Create ConfigMaps in ``namespace`` (with ``data`` when given) through the real API."""
    for name in names:
        body: dict[str, Any] = {"metadata": {"name": name}}
        if data is not None:
            body["data"] = data
        ok(control_plane.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body))


def create_deployment(
    control_plane: Any, namespace: str, name: str, *, replicas: int, image: str = "nginx:1.27"
) -> None:
    """A Deployment whose pods tolerate kwok's nodes, as a person would write it."""
    labels = {"app": name}
    body = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": name, "image": image}],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
        },
    }
    ok(control_plane.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body))


def create_hpa(control_plane: Any, namespace: str, target: str, *, max_replicas: int) -> None:
    """An autoscaler (named like its target) scaling Deployment ``target``."""
    body = {
        "metadata": {"name": target},
        "spec": {
            "minReplicas": 1,
            "maxReplicas": max_replicas,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        },
    }
    path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
    ok(control_plane.request("POST", path, body))


def bare_remote(path: Path) -> Path:
    """A bare repository that, like a protected branch, refuses any non-fast-forward push."""
    subprocess.run(["git", "init", "--bare", "-q", str(path)], check=True)
    subprocess.run(
        ["git", "--git-dir", str(path), "config", "receive.denyNonFastForwards", "true"],
        check=True,
    )
    return path


def fresh_snapshot(tmp_path: Path, kubeconfig: Path) -> dict[str, str]:
    repo = tmp_path / f"fresh-{secrets.token_hex(3)}.git"
    assert main(["snapshot", "--repo", str(repo), "--kubeconfig", str(kubeconfig)]) == 0
    return tree(repo)


def converges_to_snapshot(
    repo: Path, tmp_path: Path, kubeconfig: Path, *, prefix: str = "", within: float = 60
) -> None:
    """The branch (below ``prefix``) ends equal to a fresh snapshot of the cluster (retried
    while it settles)."""
    last: dict[str, Any] = {}

    def equal() -> bool:
        ours, fresh = tree(repo, prefix=prefix), fresh_snapshot(tmp_path, kubeconfig)
        last["diff"] = sorted(set(ours.items()) ^ set(fresh.items()))[:10]
        return ours == fresh

    try:
        eventually(f"the branch ({prefix or 'root'}) to equal a fresh snapshot", equal, within)
    except pytest.fail.Exception:
        pytest.fail(f"branch {prefix} differs from a fresh snapshot: {last.get('diff')}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


FAST_PACING = """
run:
  pacing:
    quiet_period: 0.5
    max_delay: 2.0
    max_delay_under_load: 60.0
    push_interval: 1.0
  drain_timeout: 30
cluster:
  watch_timeout_seconds: 60
git:
  remote:
    retry_delays: [0.5, 1.0]
"""


class ExporterProcess:
    """``kube2git run`` as a real process, as a user or a pod would run it."""

    def __init__(
        self,
        tmp_path: Path,
        kubeconfig: Path,
        *,
        repo: Path | None = None,
        remote: str = "",
        watch_timeout: int = 60,
        quiet_period: float = 0.5,
        max_delay: float = 2.0,
        run_config: str = "",
        extra_config: str = "",
        cluster_config: str = "",
        git_config: str = "",
        remote_config: str = "",
        push_interval: float = 1.0,
        retry_delays: str = "[0.5, 1.0]",
        pacing_config: str = "",
    ) -> None:
        self.repo = repo or tmp_path / "backup.git"
        self.kubeconfig = kubeconfig
        self.remote = remote
        self.port = free_port()
        self.config = tmp_path / f"kube2git-{self.port}.yaml"
        self.config.write_text(
            FAST_PACING.replace(
                "watch_timeout_seconds: 60", f"watch_timeout_seconds: {watch_timeout}"
            )
            .replace("quiet_period: 0.5", f"quiet_period: {quiet_period}")
            .replace("max_delay: 2.0", f"max_delay: {max_delay}")
            .replace("push_interval: 1.0", f"push_interval: {push_interval}")
            # the batch can stretch under load, never below the plain maximum delay
            .replace("max_delay_under_load: 60.0", f"max_delay_under_load: {max(60, max_delay)}")
            .replace("\nrun:\n", "\nrun:\n" + run_config)
            .replace("\ncluster:\n", "\ncluster:\n" + cluster_config)
            .replace("\ngit:\n", "\ngit:\n" + git_config)
            .replace("  remote:\n", "  remote:\n" + remote_config)
            .replace("  pacing:\n", "  pacing:\n" + pacing_config)
            .replace("retry_delays: [0.5, 1.0]", f"retry_delays: {retry_delays}")
            + extra_config
        )
        self.log = tmp_path / f"run-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_readyz = ""
        """The body of the last ``/readyz`` answer :meth:`ready` saw (why not ready)."""

    def start(self, *, wait_ready: bool = True) -> ExporterProcess:
        argv = [
            sys.executable, "-m", "exporter.cli", "run",
            "--repo", str(self.repo), "--kubeconfig", str(self.kubeconfig),
            "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        if self.remote:
            argv += ["--remote", self.remote]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=os.environ.copy())
        try:
            if wait_ready:
                self.wait_ready()
            else:
                eventually(
                    "the exporter to serve /healthz", lambda: self.http("/healthz")[0] == 200
                )
        except BaseException:
            self.kill()  # a failed start must not leave a process behind (it outlives pytest)
            raise
        return self

    def wait_ready(self, within: float = 120) -> None:
        """Wait until ``/readyz`` answers 200; the failure names its last reason."""
        try:
            eventually("the exporter to be ready", self.ready, within=within)
        except pytest.fail.Exception:
            pytest.fail(f"not ready after {within:.0f}s: {self.last_readyz.strip()}")

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(
                f"exporter exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}"
            )
        status, self.last_readyz = self.http("/readyz")
        return status == 200

    def metric(self, name: str, **labels: str) -> float:
        """The first sample of ``name`` that carries all of ``labels`` (0 when none)."""
        _, text = self.http("/metrics")
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        for line in text.splitlines():
            if line.startswith((name + " ", name + "{")) and all(w in line for w in wanted):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def kubectl(
    control_plane: Any, *args: str, editor: str = "", kubeconfig: Path | None = None
) -> str:
    """The real kubectl, as the admin or as another user (``kubeconfig``); ``editor`` is the
    KUBE_EDITOR for ``kubectl edit``."""
    kubectl_bin = shutil.which("kubectl")
    assert kubectl_bin, "scripts/setup installs kubectl"
    env = {**os.environ, "KUBE_EDITOR": editor} if editor else None
    config = kubeconfig or control_plane.kubeconfig
    done = subprocess.run(
        [kubectl_bin, "--kubeconfig", str(config), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    return done.stdout


def commits(repo: Path, *paths: str) -> list[dict[str, str]]:
    """Newest first: author, subject and trailers of each commit touching ``paths``."""
    fmt = "%an <%ae>%x1f%s%x1f%(trailers:unfold,separator=%x1e)%x1d"
    out = git(repo, "log", f"--format={fmt}", BRANCH, "--", *paths)
    entries = []
    for record in out.split("\x1d"):
        if not record.strip():
            continue
        author, subject, trailers = record.strip("\n").split("\x1f")
        entry = {"author": author, "subject": subject}
        entry.update(t.split(": ", 1) for t in trailers.split("\x1e") if ": " in t)
        entries.append(entry)
    return entries
