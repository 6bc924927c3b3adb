"""What every Go-built tool of the tests and benchmarks shares: a cache folder and the toolchain.

The control plane (tests/cluster), helm (tests/deploy) and the benchmark peer katafygio are
built from the Go module proxy into caches outside the source tree, rebuilt only when their
inputs change.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_root(name: str, override: str) -> Path:
    """``$<override>``, else ``$XDG_CACHE_HOME/<name>`` (``~/.cache``): CI can point it at a
    cached volume."""
    explicit = os.environ.get(override)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / name


def go_binary(purpose: str, error: type[Exception]) -> str:
    """The ``go`` command, or ``error`` naming what it was needed for."""
    go = shutil.which("go")
    if go is None:
        raise error(f"the Go toolchain ('go') is not on PATH; it is needed to {purpose}")
    return go


def go_env(goflags: str = "") -> dict[str, str]:
    """Static binaries (no C compiler), and no go.work above the checkout changing the build."""
    return {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": goflags}
