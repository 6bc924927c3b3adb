"""Who made a change, and how sure the history is about it: one actor per commit, never a guess.

Each effective change gets an :class:`Actor`, from the surest source there is:

- ``audit``: the user the API server's audit stream names for that request;
- ``field-manager``: the field manager that ``managedFields`` shows owning the changed fields;
- ``none``: nobody can tell (a deletion carries no field manager), or the change was observed
  after a gap (initial capture, restart, relist), when neither actor nor order is known.

A batch becomes one commit per actor, so two actors never share a commit. Kept pure (no
pygit2, no I/O) so the rules are unit-tested; the git store applies them.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.messages import AuditUser, FieldManager, Gap

__all__ = [
    "Actor",
    "Attribution",
    "AuditSettings",
    "AuditWebhookError",
    "AuditWebhookSettings",
    "Automation",
    "ChangeKind",
    "Gap",
    "identify",
    "one_line",
]


class Attribution(enum.Enum):
    """How an actor was learned: the ``Attribution:`` trailer of every commit."""

    AUDIT = "audit"
    """A user named by the API server's audit stream for this very request."""
    FIELD_MANAGER = "field-manager"
    """The field manager owning the changed fields (a client-chosen name, not a person)."""
    NONE = "none"
    """Nobody can tell: a deletion without audit, or changes observed after a gap."""
    EXPORTER = "kube2git"
    """kube2git itself rewrote stored files, the cluster did not change (``kube2git rekey``)."""


class ChangeKind(enum.Enum):
    """The ``Change-Kind:`` trailer: whether a system of record made the change."""

    MANUAL = "manual"
    """The actor is not in ``audit.automation``: a person or an unlisted tool."""
    AUTOMATION = "automation"
    """The actor (user or field manager) matches ``audit.automation``."""
    UNKNOWN = "unknown"
    """The actor is unknown, or the change was observed after a gap."""
    MAINTENANCE = "maintenance"
    """Not a change in the cluster: kube2git rewrote the stored form (``Maintenance:`` says
    why), so no alert on changes outside Git should fire."""


DEFAULT_AUTOMATION: tuple[str, ...] = (
    # Flux
    "kustomize-controller",
    "helm-controller",
    "source-controller",
    "image-automation-controller",
    "image-reflector-controller",
    "notification-controller",
    "system:serviceaccount:flux-system:*",
    # Argo CD
    "argocd-controller",
    "argocd-application-controller",
    "argocd-server",
    "system:serviceaccount:argocd:*",
    # Helm, kube2git's own restore
    "helm",
    "kube2git-restore",
    # Kubernetes' own components
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:apiserver",
    "system:node:*",
    "system:serviceaccount:kube-system:*",
)


class AuditWebhookError(ValueError):
    """The audit webhook's configuration cannot serve (missing certificate, no client check)."""


@dataclass(frozen=True, slots=True)
class AuditWebhookSettings:
    """The HTTPS endpoint for kube-apiserver's audit webhook backend (docs/audit.md)."""

    listen: str = ""
    """``HOST:PORT`` to serve on (e.g. ``0.0.0.0:8443``); ``""`` disables the webhook and
    commits are attributed to field managers."""
    cert_file: str = ""
    """PEM certificate the endpoint serves (the API server's webhook kubeconfig trusts its CA)."""
    key_file: str = ""
    """PEM private key of ``cert_file``."""
    client_ca_file: str = ""
    """PEM CA that signed the API server's client certificate; a client without a certificate
    it signed is refused in the TLS handshake. Use a CA of its own, not the cluster's."""
    token_file: str = ""
    """File holding a bearer token the API server must send (``token:`` in its webhook
    kubeconfig); with ``client_ca_file`` both are required. One of the two must be set."""
    max_request_bytes: int = 16 * 1024 * 1024
    """Largest EventList accepted; a larger request is refused with 413."""
    grace: float = 3.0
    """Seconds a watch event waits for its audit fact before it falls back to the field
    manager (the API server's ``--audit-webhook-batch-max-wait`` must be shorter)."""
    fact_ttl: float = 120.0
    """Seconds an unused fact is kept."""
    max_facts: int = 20_000
    """Facts kept at most; the oldest go first. A fact takes about 2 KiB (at most about 5 KiB:
    names are cut to a few KiB), so the default holds 40-100 MiB at worst; 20,000 covers
    about 160 mutations a second for ``fact_ttl``."""


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """Attribution of changes to actors, and which actors are automation."""

    automation: tuple[str, ...] = DEFAULT_AUTOMATION
    """Globs of field managers and users that are the system of record (Flux, Argo CD, Helm,
    ``kube2git-restore``, Kubernetes' own controllers); every other actor's change is
    manual: ``Change-Kind: manual``, counted in ``kube2git_manual_changes`` and logged as
    ``change.manual``. Setting it replaces the defaults."""
    unknown_name: str = "unknown"
    """Author name of a change whose actor nobody can tell (a deletion without audit)."""
    unknown_email: str = "unknown@kube2git.invalid"
    """Author e-mail of a change whose actor nobody can tell."""
    user_email_domain: str = "user.kube2git.invalid"
    """An audited user ``u`` authors commits as ``u <u@domain>``."""
    webhook: AuditWebhookSettings = field(default_factory=AuditWebhookSettings)
    """The audit webhook endpoint that names real users (off by default)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who one commit is authored by, and how that is known."""

    name: str
    email: str
    attribution: Attribution
    gap: Gap | None = None
    time: str | None = None
    """RFC 3339 time of the actor's change when known (the commit's author date)."""
    user: AuditUser | None = None
    managers: tuple[str, ...] = field(default=(), compare=False)

    @property
    def group(self) -> tuple[str, str, Attribution, Gap | None]:
        """What makes two changes' actors the same (their commits must not be shared)."""
        return (self.name, self.email, self.attribution, self.gap)


class Automation:
    """Matches actors against ``audit.automation`` globs (compiled once)."""

    def __init__(self, globs: Iterable[str]) -> None:
        patterns = [fnmatch.translate(glob) for glob in globs]
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    def matches(self, name: str) -> bool:
        return self._pattern is not None and self._pattern.match(name) is not None

    def kind(self, actor: Actor) -> ChangeKind:
        """Manual unless the user or a field manager of the change is automation."""
        if actor.attribution is Attribution.EXPORTER:
            return ChangeKind.MAINTENANCE
        if actor.gap is not None or (actor.attribution is Attribution.NONE and not actor.managers):
            return ChangeKind.UNKNOWN
        names = [actor.name, *actor.managers]
        if actor.user is not None and actor.user.impersonated_by:
            names.append(actor.user.impersonated_by)
        if any(self.matches(name) for name in names):
            return ChangeKind.AUTOMATION
        return ChangeKind.MANUAL


def identify(
    *,
    user: AuditUser | None,
    manager: FieldManager | None,
    gap: Gap | None,
    settings: AuditSettings,
    exporter: tuple[str, str],
    manager_email_domain: str,
) -> Actor:
    """The actor of one effective change, from the surest source available."""
    managers = (manager.manager,) if manager is not None else ()
    if gap is not None:
        name, email = exporter
        return Actor(name, email, Attribution.NONE, gap=gap, managers=managers)
    if user is not None and _signable(user.username):
        email = f"{_local_part(user.username)}@{settings.user_email_domain}"
        return Actor(
            one_line(user.username),
            email,
            Attribution.AUDIT,
            time=user.time or None,
            user=user,
            managers=managers,
        )
    if manager is not None and _signable(manager.manager):
        email = f"{_local_part(manager.manager)}@{manager_email_domain}"
        return Actor(
            one_line(manager.manager),
            email,
            Attribution.FIELD_MANAGER,
            time=manager.time or None,
            managers=managers,
        )
    return Actor(settings.unknown_name, settings.unknown_email, Attribution.NONE)


def _local_part(name: str) -> str:
    """A name as an e-mail local part: characters git would refuse or mangle become ``-``."""
    local = "".join(ch if ch.isprintable() else "-" for ch in name)
    return re.sub(r"[\s<>@,;\"]", "-", local) or "unknown"


_ESCAPED = frozenset("<>")
"""Printable characters a one-line name still escapes: git refuses them in a name."""
_GIT_TRIMS = " \t.,:;<>\"\\'"
"""Characters git trims from both ends of a name (a name of only these becomes empty)."""


def one_line(text: str) -> str:
    """A name from the cluster or the authenticator (a user, a field manager) made safe for a
    commit's author or a message line: a newline, control or separator character (and ``<``,
    ``>``) becomes a visible ``\\xNN``/``\\uNNNN`` escape, so no name can add a header, a
    body line or a trailer, or make git refuse the commit."""
    return "".join(_escape(ch) if ch in _ESCAPED or not ch.isprintable() else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _signable(name: str) -> bool:
    """Whether git keeps anything of ``name`` as an author (else the next source is used)."""
    return bool(one_line(name).strip(_GIT_TRIMS))
