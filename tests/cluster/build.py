"""Build (or reuse) the control-plane binaries from the Go modules next to this file.

The binaries are large and a cold build takes many minutes, so they live in a cache outside the
source tree, keyed by a hash of everything that decides their content (the go.mod/go.sum files,
the versions stamped into them, the Go toolchain). A second build with the same inputs is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import gotools

HERE = Path(__file__).resolve().parent
K8S_MODULE = HERE
KWOK_MODULE = HERE / "kwok"

KUBERNETES_VERSION = "v1.35.4"
"""Must match the k8s.io/kubernetes requirement in go.mod (stamped into the binaries)."""

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_STAGES = "kwok-stages.yaml"
# Stage files from the kwok module: node initialisation, lease heartbeat, pod readiness and
# completion, pod deletion. Shipped with kwok, so they always match the kwok we build.
_KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
_BUILD_RECIPE_VERSION = "1"
"""Bump when the build commands below change in a way the hashed files do not show."""


class BuildError(RuntimeError):
    """A go command failed; the message carries the command and its output tail."""


def cache_root() -> Path:
    """Where built binaries live."""
    return gotools.cache_root("kube2git-cluster", "KUBE2GIT_CLUSTER_CACHE")


def _go() -> str:
    return gotools.go_binary("build the cluster", BuildError)


def _go_env() -> dict[str, str]:
    # go.sum is the only source of truth for what we build.
    flags = f"{os.environ.get('GOFLAGS', '')} -mod=readonly".strip()
    return gotools.go_env(flags)


def build_key() -> str:
    """Hash of every input that decides the binaries' content."""
    digest = hashlib.sha256()
    digest.update(_BUILD_RECIPE_VERSION.encode())
    digest.update(KUBERNETES_VERSION.encode())
    version = subprocess.run(
        [_go(), "env", "GOVERSION", "GOARCH", "GOOS"],
        check=True,
        capture_output=True,
        text=True,
        env=_go_env(),
    ).stdout
    digest.update(version.encode())
    for module in (K8S_MODULE, KWOK_MODULE):
        for name in ("go.mod", "go.sum"):
            digest.update((module / name).read_bytes())
    return digest.hexdigest()[:16]


def bin_dir_for(key: str) -> Path:
    """The cache folder holding the binaries built from inputs hashing to ``key``."""
    return cache_root() / key / "bin"


def _ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    stamps = [
        f"-X k8s.io/component-base/version.{name}={value}"
        for name, value in (
            ("gitVersion", KUBERNETES_VERSION),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    ]
    return " ".join(["-s", "-w", *stamps])


def _run(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=_go_env(), stdout=out, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.wait() != 0:
        tail = log.read_text(errors="replace")[-4000:]
        args = proc.args
        command = " ".join(map(str, args)) if isinstance(args, list) else str(args)
        raise BuildError(f"{command} failed ({proc.returncode}):\n{tail}")


def _kwok_module_dir() -> Path:
    out = subprocess.run(
        [_go(), "list", "-m", "-json", "sigs.k8s.io/kwok"],
        cwd=KWOK_MODULE,
        check=True,
        capture_output=True,
        text=True,
        env=_go_env(),
    ).stdout
    return Path(json.loads(out)["Dir"])


def _write_kwok_stages(target: Path) -> None:
    source = _kwok_module_dir()
    docs = [(source / name).read_text().strip() for name in _KWOK_STAGE_FILES]
    target.write_text("\n---\n".join(docs) + "\n")


def _build_into(out: Path) -> None:
    """Both go builds run at once: the kwok one is small and overlaps the big link steps."""
    go = _go()
    out.mkdir(parents=True)
    k8s_log, kwok_log = out / "build-k8s.log", out / "build-kwok.log"
    # One go build for the four Kubernetes-side binaries, so shared packages compile once.
    k8s = _run(
        [
            go, "build", "-trimpath", "-ldflags", _ldflags(), "-o", str(out) + "/",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "go.etcd.io/etcd/server/v3",
        ],
        K8S_MODULE,
        k8s_log,
    )  # fmt: skip
    try:
        kwok = _run(
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "kwok"),
             "sigs.k8s.io/kwok/cmd/kwok"],
            KWOK_MODULE,
            kwok_log,
        )  # fmt: skip
        _wait(kwok, kwok_log)
    finally:
        _wait(k8s, k8s_log)
    # go names the etcd main package after its path element before the major-version suffix.
    (out / "server").rename(out / "etcd")
    _write_kwok_stages(out / KWOK_STAGES)


def ensure_built(*, log: bool = True) -> Path:
    """Return the bin dir, building it first if the cache has no complete build for our inputs."""
    key = build_key()
    bin_dir = bin_dir_for(key)
    if (bin_dir / ".complete").exists():
        return bin_dir
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=bin_dir.parent)) / "bin"
    started = time.monotonic()
    if log:
        print(f"building control-plane binaries into {bin_dir} ...", file=sys.stderr)  # noqa: T201
    try:
        _build_into(staging)
        elapsed = time.monotonic() - started
        (staging / ".complete").write_text(f"{elapsed:.0f}s\n")
        # A rename is atomic, so a concurrent reader never sees a half-built folder.
        if bin_dir.exists():
            shutil.rmtree(bin_dir)
        staging.rename(bin_dir)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    if log:
        print(f"built in {elapsed:.0f}s", file=sys.stderr)  # noqa: T201
    return bin_dir
