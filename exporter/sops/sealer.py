"""The SOPS stage: the Secret values the filters left :class:`~filters.sealed.Unsealed` become
a SOPS document (:mod:`exporter.sops.format`), without churn.

The exporter holds the recipients' public keys, not their identities, so it cannot open what
it wrote earlier. Two things make an unchanged Secret keep its bytes anyway:

- **Knowing it is unchanged without its plaintext**: the document carries a keyed fingerprint
  of the whole plain Secret (HMAC-SHA256 under ``fingerprint_key_file``, bound to the file's
  path) in the ``kube2git.io/sops-fingerprint`` annotation. When the branch's file has the
  fingerprint the Secret has now, that file is the result, byte for byte, across batches and
  restarts. Without the key nobody can test a guess against it; with the key, a guess of the
  whole Secret can be tested (as in ``fingerprint`` mode), so guard it like the Secrets.
- **Changing only what changed**: the data key of each document the stage writes stays in
  memory (keyed by path, 32 bytes each); nonces are derived from the values, so re-encrypting
  under the same data key leaves unchanged values' ciphertexts as they were and a changed
  value changes only its own ciphertext, the MAC and ``lastmodified``. After a restart the
  data key is gone unless an identity is configured (``age_identity_file``): the first change
  of each Secret then draws a new data key and re-encrypts all of that Secret's values.

A configured recipient set that differs from a file's leaves the file as it is while its
Secret is unchanged (``kube2git rekey`` re-encrypts the whole branch at once); a changed
Secret gets a new data key for the configured recipients.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from exporter.layout import ObjectKey
from exporter.serializer import dump_bytes, file_order
from exporter.sops import FINGERPRINT_ANNOTATION
from exporter.sops.format import (
    DATA_KEY_SIZE,
    AgeKey,
    Metadata,
    SopsError,
    encrypt_document,
    is_sops_document,
    load,
    open_document,
    parse_recipient,
    unwrap_data_key,
    wrap_data_key,
)
from filters.sealed import has_unsealed, unseal

log = structlog.get_logger()

PreviousFile = Callable[[str], bytes | None]
"""The content of a path at the branch tip, or ``None`` (``GitStore.read``)."""


def utc_now() -> str:
    """``lastmodified`` as sops writes it: RFC 3339, UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SecretSealer:
    """Replace a body's unsealed values by a SOPS document, reusing the branch's file."""

    def __init__(
        self,
        *,
        recipients: Sequence[str],
        fingerprint_key: bytes,
        previous: PreviousFile,
        identities: Sequence[Any] = (),
        clock: Callable[[], str] = utc_now,
        new_data_key: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if not recipients:
            raise ValueError("sops mode needs at least one age recipient")
        if not fingerprint_key:
            raise ValueError("sops mode needs a fingerprint key (fingerprint_key_file)")
        for recipient in recipients:
            parse_recipient(recipient)
        self._recipients = tuple(r.strip() for r in recipients)
        self._fingerprint_key = fingerprint_key
        self._previous = previous
        self._identities = list(identities)
        self._clock = clock
        self._new_data_key = new_data_key
        self._data_keys: dict[str, tuple[tuple[AgeKey, ...], bytes]] = {}

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        """The last step of the filter pipeline: a Secret's document at its file's path."""
        if not has_unsealed(body):
            return body
        metadata = body.get("metadata") or {}
        key = ObjectKey("", "secrets", metadata.get("namespace"), str(metadata.get("name", "")))
        return self.seal(key.path, body)

    def seal(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The document to write at ``path`` for ``body``; a body with nothing unsealed as is.

        Called on the event loop: reading the previous file waits for a commit in progress
        (the git store's lock), which is short next to the batching delays.
        """
        if not has_unsealed(body):
            return body
        plain: dict[str, Any] = unseal(body)
        annotations = plain.setdefault("metadata", {}).setdefault("annotations", {})
        # A Secret restored from a SOPS file carries the fingerprint it was written with: not
        # part of what it is, so the same Secret keeps the same fingerprint.
        annotations.pop(FINGERPRINT_ANNOTATION, None)
        fingerprint = self.fingerprint(path, plain)
        annotations[FINGERPRINT_ANNOTATION] = fingerprint
        previous = self._previous_document(path)
        if previous is not None and _fingerprint_of(previous) == fingerprint:
            return previous
        age, data_key = self._data_key(path, previous)
        document = encrypt_document(
            file_order(plain), data_key=data_key, age=age, lastmodified=self._clock()
        )
        self._data_keys[path] = (age, data_key)
        return document

    def fingerprint(self, path: str, plain: Mapping[str, Any]) -> str:
        """``hmac-sha256:<hex>`` of the plain Secret's normalized bytes, bound to its path."""
        message = b"kube2git sops v1\n" + path.encode() + b"\n" + dump_bytes(plain)
        return "hmac-sha256:" + hmac.new(self._fingerprint_key, message, hashlib.sha256).hexdigest()

    def _previous_document(self, path: str) -> dict[str, Any] | None:
        content = self._previous(path)
        if content is None:
            return None
        try:
            document = load(content)
        except SopsError:
            return None  # not YAML any more (a foreign edit): written anew
        return document if is_sops_document(document) else None

    def _data_key(
        self, path: str, previous: Mapping[str, Any] | None
    ) -> tuple[tuple[AgeKey, ...], bytes]:
        """The previous document's data key when it can be had, else a new one."""
        if previous is not None:
            try:
                age = Metadata.from_document(previous).age
            except SopsError:
                age = ()
            reason = "recipients changed"
            if sorted(k.recipient for k in age) == sorted(self._recipients):
                known = self._data_keys.get(path)
                if known is not None and known[0] == age:
                    return known
                reason = "data key not in memory (a restart) and no identity to open it"
                if self._identities:
                    try:
                        return age, unwrap_data_key(age, self._identities)
                    except SopsError:
                        reason = "no identity opens the data key"
            # Every value of the Secret is encrypted anew: say why its whole file changes.
            log.info("sops.new_data_key", path=path, reason=reason)
        data_key = self._new_data_key(DATA_KEY_SIZE)
        return wrap_data_key(data_key, self._recipients), data_key


def _fingerprint_of(document: Mapping[str, Any]) -> object:
    metadata = document.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return annotations.get(FINGERPRINT_ANNOTATION) if isinstance(annotations, Mapping) else None


def rekey(
    content: bytes,
    *,
    identities: Sequence[Any],
    recipients: Sequence[str],
    clock: Callable[[], str] = utc_now,
    new_data_key: Callable[[int], bytes] = secrets.token_bytes,
) -> dict[str, Any] | None:
    """A SOPS file re-encrypted under a new data key for ``recipients``; ``None`` when
    ``content`` is not a SOPS document. The MAC is checked first: a tampered file is an error
    (:class:`~exporter.sops.format.SopsIntegrityError`), never re-signed."""
    document = load(content)
    if not is_sops_document(document):
        return None
    plain = open_document(document, identities)
    data_key = new_data_key(DATA_KEY_SIZE)
    return encrypt_document(
        file_order(plain),
        data_key=data_key,
        age=wrap_data_key(data_key, recipients),
        lastmodified=clock(),
    )


def open_secret(secret: Mapping[str, Any], identities: Sequence[Any]) -> dict[str, Any] | str:
    """A Secret from a SOPS file, decrypted for ``kube2git restore``; or why it cannot be
    (no identity, none that opens it, a MAC mismatch): a reason that names no value.

    A Secret without values has nothing encrypted (and no ``sops`` block): it is restored as
    it is; one with values but no ``sops`` block is not what kube2git writes, and is refused.
    """
    if not is_sops_document(secret):
        if any(secret.get(field) for field in ("data", "stringData")):
            return "Secret is marked SOPS-encrypted but has no sops metadata block"
        return dict(secret)
    if not identities:
        return (
            "Secret values are SOPS-encrypted and no age identity was given "
            "(filters.secrets.age_identity_file or SOPS_AGE_KEY_FILE)"
        )
    try:
        plain = open_document(secret, identities)
    except SopsError as error:
        return f"Secret values cannot be decrypted: {error}"
    annotations = (plain.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(FINGERPRINT_ANNOTATION, None)  # kube2git's bookkeeping, not the Secret's
    return plain
