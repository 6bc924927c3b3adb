"""Command line: ``python -m tests.cluster build | up --dir DIR [--controllers] [--kwok]
[--audit-webhook] | down``.

Kept to the standard library so CI can call it before the project itself is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.cluster.build import BuildError, ensure_built
from tests.cluster.control_plane import ClusterError, ControlPlane, start


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand; exit code 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or reuse the cached binaries; print their folder")
    up = sub.add_parser("up", help="start a control plane in DIR and return once it is ready")
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument("--controllers", action="store_true", help="kube-controller-manager+scheduler")
    up.add_argument("--kwok", action="store_true", help="kwok, to simulate nodes and pods")
    up.add_argument(
        "--audit-webhook",
        action="store_true",
        help="send audit events to kube2git's webhook (port printed) and add users alice, bob",
    )
    down = sub.add_parser("down", help="stop the control plane running in DIR")
    down.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_built())  # noqa: T201
        elif args.command == "up":
            cluster = start(
                args.dir,
                ensure_built(),
                controllers=args.controllers,
                kwok=args.kwok,
                audit_webhook=args.audit_webhook,
            )
            print(f"server: {cluster.server}")  # noqa: T201
            print(f"kubeconfig: {cluster.kubeconfig}")  # noqa: T201
            print(f"restricted kubeconfig: {cluster.restricted_kubeconfig}")  # noqa: T201
            if cluster.audit_webhook_url:
                cert, key, client_ca = cluster.audit_webhook_tls
                print(f"audit webhook: {cluster.audit_webhook_url}")  # noqa: T201
                print(f"  listen: 127.0.0.1:{cluster.audit_webhook_port}")  # noqa: T201
                print(f"  cert_file: {cert}\n  key_file: {key}")  # noqa: T201
                print(f"  client_ca_file: {client_ca}")  # noqa: T201
                for user in ("alice", "bob"):
                    print(f"{user} kubeconfig: {cluster.user_kubeconfig(user)}")  # noqa: T201
        else:
            directory = args.dir.resolve()
            if (directory / "cluster.json").exists():
                ControlPlane.load(directory).stop()
    except (BuildError, ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
