"""Build (or reuse) the peer exporter katafygio from the Go wrapper module in benchmarks/peers.

The binary lives outside the source tree (``~/.cache/kube2git-bench/``), keyed by a hash of the
wrapper's go.mod/go.sum and the Go toolchain, so it is rebuilt only when those change.

``go build github.com/bpineau/katafygio`` from the wrapper module fetches katafygio from the Go
module proxy. Where the proxy does not serve it, ``KATAFYGIO_SOURCE=DIR`` (or ``--source``)
points at a local checkout of katafygio's source: the build then runs in a temporary copy of the
wrapper with a ``replace`` directive onto that directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests import gotools

WRAPPER = Path(__file__).resolve().parent.parent / "peers" / "katafygio"
MODULE = "github.com/bpineau/katafygio"


class PeerBuildError(RuntimeError):
    """The go command failed or is missing; the message carries its output tail."""


def cache_root() -> Path:
    """``$KUBE2GIT_BENCH_CACHE`` or ``$XDG_CACHE_HOME/kube2git-bench`` (``~/.cache``)."""
    return gotools.cache_root("kube2git-bench", "KUBE2GIT_BENCH_CACHE")


def _go() -> str:
    return gotools.go_binary("build katafygio", PeerBuildError)


def _env() -> dict[str, str]:
    return gotools.go_env("-mod=mod")


def build_key(source: Path | None) -> str:
    """Hash of the wrapper module, the toolchain and (when given) the local source tree."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((WRAPPER / name).read_bytes())
    version = subprocess.run(
        [_go(), "env", "GOVERSION"], check=True, capture_output=True, text=True
    )
    digest.update(version.stdout.encode())
    if source is not None:
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in {".go", ".mod", ".sum"}:
                digest.update(str(path.relative_to(source)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_katafygio(source: Path | None = None) -> tuple[Path, float | None]:
    """The katafygio binary, built when missing; returns it and the build time in seconds
    (``None`` when the cached binary was reused)."""
    if source is None and os.environ.get("KATAFYGIO_SOURCE"):
        source = Path(os.environ["KATAFYGIO_SOURCE"])
    key = build_key(source)
    out_dir = cache_root() / f"katafygio-{key}"
    binary = out_dir / "katafygio"
    meta = out_dir / "build.json"
    if binary.exists() and meta.exists():
        return binary, None
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="katafygio-build-") as tmp:
        work = Path(tmp)
        for name in ("go.mod", "go.sum", "tools.go"):
            shutil.copy2(WRAPPER / name, work / name)
        if source is not None:
            _run([_go(), "mod", "edit", f"-replace={MODULE}={source.resolve()}"], work)
        _run([_go(), "build", "-trimpath", "-o", str(binary), MODULE], work)
    seconds = time.monotonic() - started
    meta.write_text(
        json.dumps({"seconds": round(seconds, 1), "source": str(source or "module proxy")}) + "\n"
    )
    return binary, seconds


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise PeerBuildError(f"{' '.join(argv)} failed ({done.returncode}):\n{tail}")


def main() -> None:
    """``python -m benchmarks.cluster.peers [--source DIR]``: build and print the binary."""
    parser = argparse.ArgumentParser(description="build or reuse the katafygio binary")
    parser.add_argument("--source", type=Path, help="local katafygio checkout (replace)")
    args = parser.parse_args()
    binary, seconds = ensure_katafygio(args.source)
    built = f"built in {seconds:.0f}s" if seconds is not None else "cached"
    print(f"{binary} ({built})")


if __name__ == "__main__":
    main()
