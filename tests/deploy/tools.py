"""Build (or reuse) the Go tools the tests need: ``python -m tests.deploy.tools helm|sops``.

helm (chart tests) and sops (the SOPS interoperability tests) are built from their Go modules
through the Go module proxy (no binary downloads), into a cache outside the source tree keyed
by the tool's version and the Go toolchain, as tests/cluster does for the control plane. A
second call with the same inputs is a no-op. Kept to the standard library so CI can call it
before the project itself is installed.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests import gotools

HELM_MODULE = "helm.sh/helm/v3"
HELM_VERSION = "v3.19.5"
"""The helm release the chart is rendered with in tests."""
SOPS_MODULE = "github.com/getsops/sops/v3"
SOPS_VERSION = "v3.13.3"
"""The sops release kube2git's SOPS files are checked against (decrypt and encrypt)."""
_RECIPE_VERSION = "2"
"""Bump when the build command changes in a way the hashed inputs do not show."""


class ToolError(RuntimeError):
    """A tool could not be built; the message carries the command and its output tail."""


def cache_root() -> Path:
    """Where built tools live; ``KUBE2GIT_TOOLS_CACHE`` overrides it (a CI cache volume)."""
    return gotools.cache_root("kube2git-tools", "KUBE2GIT_TOOLS_CACHE")


def _go() -> str:
    return gotools.go_binary("build the test tools (helm, sops)", ToolError)


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


@dataclass(frozen=True, slots=True)
class GoTool:
    """One command built with ``go install MODULE/PACKAGE@VERSION``."""

    name: str
    module: str
    version: str
    package: str
    ldflags: Callable[[], str] = lambda: "-s -w"


TOOLS = {
    "helm": GoTool("helm", HELM_MODULE, HELM_VERSION, "cmd/helm", _helm_ldflags),
    "sops": GoTool("sops", SOPS_MODULE, SOPS_VERSION, "cmd/sops"),
}


def tool_path(tool: GoTool) -> Path:
    """Where the tool's binary for its version and this Go toolchain lives once built."""
    inputs = f"{_RECIPE_VERSION}\n{tool.module}@{tool.version}\n{_go_version()}"
    key = hashlib.sha256(inputs.encode()).hexdigest()
    return cache_root() / f"{tool.name}-{tool.version}-{key[:12]}" / tool.name


def ensure_tool(tool: GoTool, *, log: bool = True) -> Path:
    """Return the tool's binary, building it first (a few minutes, once per machine)."""
    target = tool_path(tool)
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"build-{tool.name}-", dir=target.parent.parent))
    started = time.monotonic()
    if log:
        print(f"building {tool.name} {tool.version} into {target} ...", file=sys.stderr)  # noqa: T201
    try:
        env = _go_env() | {"GOBIN": str(staging)}
        command = [
            _go(), "install", "-trimpath", "-ldflags", tool.ldflags(),
            f"{tool.module}/{tool.package}@{tool.version}",
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-4000:]
            raise ToolError(f"{' '.join(command)} failed ({done.returncode}):\n{tail}")
        target.parent.mkdir(exist_ok=True)
        # A rename is atomic: a concurrent reader never sees a half-written binary.
        (staging / tool.name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log:
        print(f"built in {time.monotonic() - started:.0f}s", file=sys.stderr)  # noqa: T201
    return target


def ensure_helm(*, log: bool = True) -> Path:
    """The helm binary (built on first use)."""
    return ensure_tool(TOOLS["helm"], log=log)


def ensure_sops(*, log: bool = True) -> Path:
    """The sops binary (built on first use)."""
    return ensure_tool(TOOLS["sops"], log=log)


def main(argv: list[str] | None = None) -> int:
    """Build or reuse one tool and print its path; exit code 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.tools", description=__doc__)
    parser.add_argument("tool", choices=sorted(TOOLS), help="the tool to build or reuse")
    args = parser.parse_args(argv)
    try:
        print(ensure_tool(TOOLS[args.tool]))  # noqa: T201
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
