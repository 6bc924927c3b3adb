"""Build (or reuse) the peers of the cluster benchmark from their unmodified upstream source.

The sources are the copies in ``../shared/peers/`` (see its README: upstream, commit, licence);
``--peer-source DIR`` points elsewhere. Nothing of a peer is rewritten: the tree is copied to a
temporary folder (the shared copy is read-only and ``-mod=mod`` may complete go.sum) and built
with the command its README gives. The binary is cached outside the source tree
(``~/.cache/kube2git-bench/<peer>-<key>/``), keyed by a hash of every file of the source and the
Go toolchain; ``build.json`` next to it records the upstream commit, the source hash, the
binary's sha256 and the build time, and every results file copies it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import gotools

SHARED_PEERS = Path(__file__).resolve().parents[3] / "shared" / "peers"


class PeerBuildError(RuntimeError):
    """The source is missing or the go command failed; the message carries its output tail."""


@dataclass(frozen=True)
class Peer:
    """One upstream project, as ``../shared/peers/README.md`` lists it."""

    name: str
    folder: str
    """Its folder under ``../shared/peers/``."""
    upstream: str
    commit: str
    """The upstream commit the shared copy was taken at."""
    package: str
    """What ``go build`` builds, from the source's root."""
    goflags: str = ""


PEERS = {
    peer.name: peer
    for peer in (
        Peer(
            name="katafygio",
            folder="katafygio-v0.8.3",
            upstream="bpineau/katafygio v0.8.3",
            commit="71da77b41e64b1c3b2421ee327fbd06ee1b299d3",
            package=".",
            goflags="-mod=mod",
        ),
        Peer(
            name="gitops-reverser",
            folder="gitops-reverser",
            upstream="ConfigButler/gitops-reverser main",
            commit="f0f7b42623f059a07232dc5aca3ce45f868d17a2",
            package="./cmd",
        ),
    )
}


def cache_root() -> Path:
    """``$KUBE2GIT_BENCH_CACHE`` or ``$XDG_CACHE_HOME/kube2git-bench`` (``~/.cache``)."""
    return gotools.cache_root("kube2git-bench", "KUBE2GIT_BENCH_CACHE")


def _go() -> str:
    return gotools.go_binary("build the benchmark peers", PeerBuildError)


def source_hash(source: Path) -> str:
    """sha256 over every file's relative path and bytes: what was built, byte for byte."""
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_peer(name: str, source: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The peer's binary, built when missing, and its provenance (``build.json``)."""
    peer = PEERS[name]
    source = (source or SHARED_PEERS / peer.folder).resolve()
    if not (source / "go.mod").is_file():
        raise PeerBuildError(f"{name}: no go.mod in {source} (pass --peer-source DIR)")
    tree = source_hash(source)
    toolchain = subprocess.run(
        [_go(), "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()
    key = hashlib.sha256(f"{tree}\0{toolchain}\0{peer.package}".encode()).hexdigest()[:16]
    out_dir = cache_root() / f"{name}-{key}"
    binary, meta = out_dir / name, out_dir / "build.json"
    if binary.exists() and meta.exists():
        return binary, json.loads(meta.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{name}-build-") as tmp:
        work = Path(tmp) / "src"
        shutil.copytree(source, work)
        for path in work.rglob("*"):  # the shared copy is read-only; so would the copy be
            path.chmod(path.stat().st_mode | 0o200)
        argv = [_go(), "build", "-trimpath", "-o", str(binary), peer.package]
        env = gotools.go_env(peer.goflags)
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-3000:]
            raise PeerBuildError(f"{name}: {' '.join(argv)} failed ({done.returncode}):\n{tail}")
    provenance = {
        "peer": name,
        "upstream": peer.upstream,
        "upstream_commit": peer.commit,
        "source": str(source),
        "source_sha256": tree,
        "binary_sha256": _file_hash(binary),
        "go": toolchain,
        "build_command": f"CGO_ENABLED=0 GOWORK=off GOFLAGS={peer.goflags} "
        f"go build -trimpath -o BIN {peer.package}",
        "build_seconds": round(time.monotonic() - started, 1),
    }
    meta.write_text(json.dumps(provenance, indent=2) + "\n")
    return binary, provenance


def main() -> None:
    """``python -m benchmarks.cluster.peers [NAME] [--peer-source DIR]``: build, print."""
    parser = argparse.ArgumentParser(description="build or reuse a benchmark peer")
    parser.add_argument("name", nargs="?", default="katafygio", choices=sorted(PEERS))
    parser.add_argument("--peer-source", type=Path, help="the peer's source folder")
    args = parser.parse_args()
    binary, provenance = ensure_peer(args.name, args.peer_source)
    print(binary)
    print(json.dumps(provenance, indent=2))


if __name__ == "__main__":
    main()
