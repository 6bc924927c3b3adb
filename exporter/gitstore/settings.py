"""Settings of the git store: plain frozen dataclasses, so the config loader can fill them.

Secrets are never settings values: a setting names the file or the environment variable that
holds one, and the store reads it only when it talks to the remote.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SshSettings:
    """How to authenticate to an ``ssh://`` or ``user@host:path`` remote."""

    private_key_file: str = ""
    """Path of the private key to offer; ``""`` lets ssh use its defaults (agent, ``~/.ssh``)."""
    known_hosts_file: str = ""
    """Path of the known_hosts file the server's host key must be in; ``""`` means ssh's own
    default (``~/.ssh/known_hosts``). An unknown host is always refused, never learned."""
    connect_timeout: float = 15.0
    """Seconds ssh waits for the TCP connection and the handshake."""


@dataclass(frozen=True, slots=True)
class HttpsSettings:
    """How to authenticate to an ``https://`` (or ``http://``) remote: basic auth or a token."""

    username: str = ""
    """User name for basic auth (not a secret); with a token, ``""`` means ``x-access-token``."""
    username_file: str = ""
    """Path of a file holding the user name, when it is mounted from a Kubernetes Secret."""
    username_env: str = ""
    """Name of an environment variable holding the user name."""
    password_file: str = ""
    """Path of a file holding the password."""
    password_env: str = ""
    """Name of an environment variable holding the password."""
    token_file: str = ""
    """Path of a file holding an access token (sent as the basic-auth password)."""
    token_env: str = ""
    """Name of an environment variable holding an access token."""
    ca_file: str = ""
    """Path of a PEM bundle of CAs to trust for the server's certificate; ``""`` means the
    system's. Certificates are always verified."""
    low_speed_time: float = 30.0
    """Abort an HTTP transfer that stays under 1 KB/s for this many seconds."""
    allow_insecure_http: bool = False
    """Send credentials over plain ``http://``, where anyone on the network path can read them:
    only for a loopback or otherwise trusted network. Without it, an ``http://`` remote with
    credentials (configured here or in the URL) is refused, and git never follows a redirect
    from ``https://`` to ``http://`` while it holds credentials."""


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """Where and how the backup branch is pushed."""

    url: str = ""
    """Remote URL (``ssh://…``, ``git@host:path``, ``https://…``, a local path); ``""`` disables
    push. A password in the URL (``https://user:token@…``) is refused at load: credentials come
    from files (``https.password_file``, ``https.token_file``, ``ssh.private_key_file``)."""
    name: str = "origin"
    """Name under which the remote's branch is tracked (``refs/remotes/<name>/<branch>``)."""
    ssh: SshSettings = field(default_factory=SshSettings)
    """SSH authentication."""
    https: HttpsSettings = field(default_factory=HttpsSettings)
    """HTTPS authentication."""
    retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    """Seconds to wait before each retry of a failed push; its length is the number of retries."""
    retry_jitter: float = 0.2
    """Each delay is stretched by a random fraction up to this, so replicas do not retry in step."""
    operation_timeout: float = 300.0
    """Seconds after which one fetch or push is killed and counted as failed."""
    max_replays: int = 10
    """How many times one push fetches and replays on a remote that keeps moving on (in a
    fleet, other clusters push to the same branch), before it counts as failed."""
    replay_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
    """Seconds to wait before the second, third… fetch-and-replay of one push (the first
    follows the refusal at once; the last delay repeats), each spread at random between half
    and one and a half of itself, so writers whose pushes collided fall out of step."""


@dataclass(frozen=True, slots=True)
class PackSettings:
    """When loose objects are packed (libgit2 writes each object as its own file)."""

    automatic: bool = True
    """Pack after a commit that crosses the thresholds below; ``False`` leaves every pack to
    the caller's schedule (:meth:`GitStore.pack`)."""
    loose_objects_threshold: int = 5000
    """Pack after a commit that leaves more loose objects than this."""
    max_packs: int = 20
    """Once there are this many packs, repack everything into one with fresh deltas
    (``git repack -a -d -f``); a large commit's pack triggers that too."""
    threads: int = 0
    """Threads for delta search; 0 means one per CPU."""
    bulk_threshold: int = 1000
    """A commit with more new blobs than this writes them as one pack, stored without
    compression, instead of one loose file each (an initial sync of 100,000 objects would
    otherwise create 100,000 files); the next pack, automatic right after that commit,
    repacks and compresses everything (``git repack -a -d -F``). ``0`` disables it."""


@dataclass(frozen=True, slots=True)
class SigningSettings:
    """SSH signatures on every commit, so the history is tamper-evident (docs/audit.md)."""

    key_file: str = ""
    """Path of an unencrypted OpenSSH ed25519 private key; every commit (replays included)
    is signed as ``git -c gpg.format=ssh`` does, so ``git verify-commit`` with an allowed
    signers file accepts it. ``""``: commits are not signed."""


class Layout(enum.Enum):
    """Where the layout of one cluster starts in the branch."""

    DEFAULT = "default"
    """At the root: ``cluster/…`` and ``namespaces/…`` (one cluster per branch)."""
    FLEET = "fleet"
    """Under ``clusters/<cluster.name>/``: several clusters share one branch, each writing
    only below its own folder."""


@dataclass(frozen=True, slots=True)
class GitSettings:
    """The git store: repository, branch, identities, commit messages, packing and push."""

    branch: str = "kube2git"
    """The backup branch the exporter commits to (a short name, without ``refs/heads/``)."""
    layout: Layout = Layout.DEFAULT
    """``default`` (the layout at the root of the branch) or ``fleet``: every file under
    ``clusters/<cluster.name>/``, commit subjects starting with the cluster name and a
    ``Cluster:`` trailer, so one branch of one remote can back up many clusters, each
    instance writing and deleting only below its own folder (docs/operations.md, "Many
    clusters, one repository")."""
    author_name: str = "kube2git"
    """Name of the exporter's identity: the committer always, the author when no field manager
    is known."""
    author_email: str = "kube2git@kube2git.invalid"
    """E-mail of the exporter's identity."""
    manager_email_domain: str = "field-manager.kube2git.invalid"
    """A field manager ``m`` authors commits as ``m <m@domain>``."""
    message_max_objects: int = 500
    """A commit body lists at most this many objects, then counts the rest."""
    message_max_fields: int = 20
    """At most this many changed fields are listed per modified object."""
    fsync: bool = False
    """fsync objects and refs as they are written: survives power loss, at a cost in speed. A
    killed process leaves a valid repository either way."""
    pack: PackSettings = field(default_factory=PackSettings)
    """Packing of loose objects."""
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    """The remote the branch is pushed to."""
    signing: SigningSettings = field(default_factory=SigningSettings)
    """SSH signing of commits."""
