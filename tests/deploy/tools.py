"""Build (or reuse) the deployment tools the tests need: ``python -m tests.deploy.tools helm``.

helm is built from its Go module through the Go module proxy (no binary downloads), into a
cache outside the source tree keyed by the helm version and the Go toolchain, as
tests/cluster does for the control plane. A second call with the same inputs is a no-op.
Kept to the standard library so CI can call it before the project itself is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import gotools

HELM_MODULE = "helm.sh/helm/v3"
HELM_VERSION = "v3.19.5"
"""The helm release the chart is rendered with in tests."""
_RECIPE_VERSION = "2"
"""Bump when the build command changes in a way the hashed inputs do not show."""


class ToolError(RuntimeError):
    """A tool could not be built; the message carries the command and its output tail."""


def cache_root() -> Path:
    """Where built tools live; ``KUBE2GIT_TOOLS_CACHE`` overrides it (a CI cache volume)."""
    return gotools.cache_root("kube2git-tools", "KUBE2GIT_TOOLS_CACHE")


def _go() -> str:
    return gotools.go_binary("build helm", ToolError)


def _go_env() -> dict[str, str]:
    return gotools.go_env()


def _go_version() -> str:
    return subprocess.run(
        [_go(), "env", "GOVERSION", "GOARCH", "GOOS"],
        check=True,
        capture_output=True,
        text=True,
        env=_go_env(),
    ).stdout


def helm_path() -> Path:
    """Where the helm binary for this helm version and Go toolchain lives once built."""
    inputs = f"{_RECIPE_VERSION}\n{HELM_MODULE}@{HELM_VERSION}\n{_go_version()}"
    key = hashlib.sha256(inputs.encode()).hexdigest()
    return cache_root() / f"helm-{HELM_VERSION}-{key[:12]}" / "helm"


def _helm_ldflags() -> str:
    """The version stamps of helm's Makefile: without them helm reports no version and
    assumes Kubernetes 1.20 for ``.Capabilities.KubeVersion`` (failing any chart that needs
    more). The Kubernetes version is derived from helm's client-go requirement, as there."""
    info = subprocess.run(
        [_go(), "mod", "download", "-json", f"{HELM_MODULE}@{HELM_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
        env=_go_env(),
    ).stdout
    go_mod = Path(json.loads(info)["GoMod"]).read_text()
    found = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.", go_mod, re.MULTILINE)
    if found is None:
        raise ToolError(f"no k8s.io/client-go requirement in {HELM_MODULE}@{HELM_VERSION}")
    minor = found.group(1)
    stamps = {
        "helm.sh/helm/v3/internal/version.version": HELM_VERSION,
        "helm.sh/helm/v3/internal/version.gitTreeState": "clean",
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor": "1",
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor": minor,
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor": "1",
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor": minor,
    }
    return " ".join(["-s", "-w", *(f"-X {name}={value}" for name, value in stamps.items())])


def ensure_helm(*, log: bool = True) -> Path:
    """Return the helm binary, building it first (a few minutes, once per machine)."""
    target = helm_path()
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-helm-", dir=target.parent.parent))
    started = time.monotonic()
    if log:
        print(f"building helm {HELM_VERSION} into {target} ...", file=sys.stderr)  # noqa: T201
    try:
        env = _go_env() | {"GOBIN": str(staging)}
        command = [
            _go(), "install", "-trimpath", "-ldflags", _helm_ldflags(),
            f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}",
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-4000:]
            raise ToolError(f"{' '.join(command)} failed ({done.returncode}):\n{tail}")
        target.parent.mkdir(exist_ok=True)
        # A rename is atomic: a concurrent reader never sees a half-written binary.
        (staging / "helm").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log:
        print(f"built in {time.monotonic() - started:.0f}s", file=sys.stderr)  # noqa: T201
    return target


def main(argv: list[str] | None = None) -> int:
    """Build or reuse one tool and print its path; exit code 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.tools", description=__doc__)
    parser.add_argument("tool", choices=["helm"], help="the tool to build or reuse")
    parser.parse_args(argv)
    try:
        print(ensure_helm())  # noqa: T201
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
