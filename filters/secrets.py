"""Keep Secret values and binary blobs out of Git history.

Secrets fail closed. :class:`SecretValues` first reduces a Secret to the shape the API
defines (``data`` and ``stringData`` maps of strings; anything else there, or any other
top-level field, is dropped), then drops every label and annotation that copies a value or
the applied object (whatever the configured drop lists say), and only then hands the Secret
to the mode's :class:`Treatment`, which replaces the values: ``redact`` empties them,
``fingerprint`` puts a keyed HMAC bound to the Secret and key in their place, ``sops`` wraps
them for the exporter's SOPS stage to encrypt (:mod:`filters.sealed`). Helm releases
(ConfigMap- or Secret-backed, Helm 3 or Helm 2) and service-account tokens are skipped.
ConfigMap ``binaryData`` becomes SHA-256 fingerprints, which keeps large blobs out of history.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

from filters.base import Body, Skip, glob, group_of
from filters.copies import ValueCopies
from filters.policy import SecretMode
from filters.sealed import Unsealed

REDACTED_ANNOTATION = "kube2git.io/secret-values"
"""Set on every recorded Secret to say how its values were treated."""

MIN_FINGERPRINT_KEY = 16
"""Bytes a fingerprint key needs at least: a shorter key lets values be guessed by search."""

VALUE_FIELDS = ("data", "stringData")
SECRET_FIELDS = frozenset({"apiVersion", "kind", "metadata", "type", "immutable", *VALUE_FIELDS})
"""The top-level fields of a Secret; any other one is dropped."""

APPLIED_COPY_ANNOTATIONS = (
    "*last-applied*",  # kubectl, KubeVela (app.oam.dev/last-applied-configuration), ...
    "kapp.k14s.io/original*",  # kapp: original, original-diff
    "objectset.rio.cattle.io/applied*",  # Rancher and Fleet: gzip+base64 of the object
)
"""Annotations (globs) that carry a copy of an applied object: never kept on a Secret."""

_APPLIED_COPY = re.compile("|".join(glob(p).pattern for p in APPLIED_COPY_ANNOTATIONS))
_HELM3_NAME = "sh.helm.release."
_FINGERPRINT = re.compile(r"hmac-sha256:[0-9a-f]{32}")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_SECRET_KIND = re.compile(rb'"kind":"secret"', re.IGNORECASE)


def is_secret(body: Body) -> bool:
    """A core-group Secret, however its apiVersion or kind is spelled: doubt means Secret."""
    return _is_core_kind(body, "secret")


def _is_core_kind(body: Body, lower_kind: str) -> bool:
    kind = body.get("kind")
    return isinstance(kind, str) and kind.lower() == lower_kind and group_of(body) in ("", "core")


def _mapping(parent: object, key: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


class SkipSecretTypes:
    """Skip Secrets whose ``type`` is one of the given ones (service-account tokens...)."""

    def __init__(self, types: Iterable[str]) -> None:
        self._types = frozenset(types)
        self._skip = Skip("secret type")

    def __call__(self, body: Body) -> Body | Skip:
        kind = body.get("type")
        if is_secret(body) and isinstance(kind, str) and kind in self._types:
            return self._skip
        return body


class SkipHelmReleases:
    """Skip Helm release records, which hold the chart's values and rendered Secrets.

    Helm 3 names them ``sh.helm.release.v1.NAME.vN`` and labels them ``owner=helm``; Helm 2
    (Tiller) labels them ``OWNER=TILLER``. Either storage counts: Secrets, or ConfigMaps
    (``HELM_DRIVER=configmap``, Tiller's default).
    """

    def __init__(self) -> None:
        self._skip = Skip("helm release")

    def __call__(self, body: Body) -> Body | Skip:
        if not (is_secret(body) or _is_core_kind(body, "configmap")):
            return body
        metadata = _mapping(body, "metadata")
        labels = _mapping(metadata, "labels")
        name = metadata.get("name")
        if (
            (isinstance(name, str) and name.startswith(_HELM3_NAME))
            or labels.get("owner") == "helm"
            or labels.get("OWNER") == "TILLER"
        ):
            return self._skip
        return body


class Treatment(Protocol):
    """What a mode does to the values of a Secret that :class:`SecretValues` made safe.

    It receives a Secret whose ``data`` and ``stringData`` (when present) are maps of strings
    and whose metadata holds no copy of a value, and returns it with the values replaced.
    """

    @property
    def mode(self) -> SecretMode:
        """The mode, recorded in the :data:`REDACTED_ANNOTATION` annotation."""
        ...

    def __call__(self, secret: Body) -> Body: ...


class Redact:
    """Every value becomes an empty string; the keys stay."""

    mode = SecretMode.REDACT

    def __call__(self, secret: Body) -> Body:
        for field in VALUE_FIELDS:
            if field in secret:
                secret[field] = dict.fromkeys(secret[field], "")
        return secret


class Fingerprint:
    """Every value becomes ``hmac-sha256:<hex>``, keyed and bound to namespace/name/key.

    The binding means equal values in different Secrets (or under different keys) get
    different fingerprints, so Git does not show which Secrets share a password. The value
    is taken decoded (``data`` is base64), so ``data`` and ``stringData`` agree.
    """

    mode = SecretMode.FINGERPRINT

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_FINGERPRINT_KEY:
            raise ValueError(
                f"the secret fingerprint key has {len(key)} bytes, "
                f"at least {MIN_FINGERPRINT_KEY} are needed"
            )
        self._key = key

    def __call__(self, secret: Body) -> Body:
        metadata = _mapping(secret, "metadata")
        owner = [metadata.get("namespace") or "", metadata.get("name") or ""]
        ours = _mapping(metadata, "annotations").get(REDACTED_ANNOTATION) == self.mode.value
        for field in VALUE_FIELDS:
            if field in secret:
                secret[field] = {
                    key: value
                    if ours and _FINGERPRINT.fullmatch(value)  # already our output
                    else self._fingerprint(owner, key, _raw(field, value))
                    for key, value in secret[field].items()
                }
        return secret

    def _fingerprint(self, owner: list[str], key: str, value: bytes) -> str:
        message = json.dumps([*owner, key]).encode() + b"\n" + value
        return "hmac-sha256:" + hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]


class SealForSops:
    """Every value is handed to the exporter's SOPS stage as :class:`~filters.sealed.Unsealed`,
    which only that stage can turn into text (as ciphertext)."""

    mode = SecretMode.SOPS

    def __call__(self, secret: Body) -> Body:
        for field in VALUE_FIELDS:
            if field in secret:
                secret[field] = {key: Unsealed(value) for key, value in secret[field].items()}
        return secret


def treatment_for(mode: SecretMode, fingerprint_key: bytes = b"") -> Treatment | None:
    """The treatment of ``mode``; ``None`` for ``skip`` (Secrets are not recorded)."""
    if mode is SecretMode.SKIP:
        return None
    if mode is SecretMode.SOPS:
        return SealForSops()
    if mode is SecretMode.FINGERPRINT:
        if not fingerprint_key:
            raise ValueError("secret fingerprint mode needs a fingerprint key")
        return Fingerprint(fingerprint_key)
    return Redact()


class SecretValues:
    """Make a Secret safe (shape, metadata copies), then treat its values by the mode."""

    def __init__(self, treatment: Treatment | None) -> None:
        self._treatment = treatment
        self._skip = Skip("secret")

    def __call__(self, body: Body) -> Body | Skip:
        if not is_secret(body):
            return body
        if self._treatment is None:
            return self._skip
        copies = ValueCopies(_values_for_search(body))
        _reduce_to_secret_shape(body)
        _drop_copies(body["metadata"], copies)
        body = self._treatment(body)
        body["metadata"].setdefault("annotations", {})[REDACTED_ANNOTATION] = (
            self._treatment.mode.value
        )
        return body


def _raw(field: str, value: str) -> bytes:
    """The value itself: ``data`` is base64 (taken as written when it is not)."""
    if field == "data":
        with contextlib.suppress(binascii.Error, ValueError):  # not base64: as written
            return base64.b64decode(value, validate=True)
    return value.encode()


def _values_for_search(body: Body) -> Iterator[bytes]:
    """Every value (decoded: its base64 is among the forms looked for), including those of a
    wrong shape and those of fields that a Secret does not have."""
    for field, node in body.items():
        if field in ("apiVersion", "kind", "metadata") or (
            field == "type" and isinstance(node, str)
        ):
            continue
        for text in _strings(node):
            yield _raw(field, text)


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node
    elif node is not None:
        yield json.dumps(node)


def _reduce_to_secret_shape(body: Body) -> None:
    """Drop what a Secret cannot hold: other fields, values that are not strings."""
    for field in [field for field in body if field not in SECRET_FIELDS]:
        del body[field]
    if not isinstance(body.get("metadata"), dict):
        body["metadata"] = {}
    if not isinstance(body.get("type", ""), str):
        del body["type"]
    if not isinstance(body.get("immutable", False), bool):
        del body["immutable"]
    for field in VALUE_FIELDS:
        if field not in body:
            continue
        values = body[field]
        if not isinstance(values, dict):
            del body[field]  # null, a list, a string...: nothing of it is kept
            continue
        body[field] = {
            key: value
            for key, value in values.items()
            if isinstance(key, str) and isinstance(value, str)
        }


def _drop_copies(metadata: dict[str, Any], copies: ValueCopies) -> None:
    """Drop labels and annotations that copy the applied object or a value."""
    for field in ("labels", "annotations"):
        if field not in metadata:
            continue
        entries = metadata[field]
        if not isinstance(entries, dict):
            del metadata[field]
            continue
        for key in [key for key, value in entries.items() if _copies(key, value, copies)]:
            del entries[key]
        if not entries:
            del metadata[field]


def _copies(key: str, value: object, copies: ValueCopies) -> bool:
    if not isinstance(value, str) or _APPLIED_COPY.match(key):
        return True
    return copies(key) or copies(value)


class EmbeddedSecrets:
    """Empty the values of Secret manifests that other objects carry inside them.

    Some custom resources hold whole manifests: Crossplane's ``Object``, OpenShift's
    ``Template``, Kyverno's ``generate`` rules. Every string below ``data`` or ``stringData``
    of a nested map of ``kind: Secret`` becomes ``""``, whatever the mode (a value inside
    another object can be neither fingerprinted nor encrypted where it stands). Objects of the
    built-in API groups never embed one and are not walked.
    """

    def __call__(self, body: Body) -> Body | Skip:
        if _is_built_in(group_of(body)) or not _may_embed_a_secret(body):
            return body
        return empty_embedded_secrets(body)


def empty_embedded_secrets(body: Body) -> Body:
    """The walk of :class:`EmbeddedSecrets`: every map with the kind Secret below ``body``
    (not in its metadata) has its values emptied."""
    stack: list[object] = [value for key, value in body.items() if key != "metadata"]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            kind = node.get("kind")
            if isinstance(kind, str) and kind.lower() == "secret":
                for field in VALUE_FIELDS:
                    if field in node:
                        node[field] = _emptied(node[field])
            stack.extend(node.values())
    return body


def _may_embed_a_secret(body: Body) -> bool:
    """False when no map anywhere in ``body`` has the kind Secret, decided by one search in C.

    orjson writes a ``kind`` key with a string value that lower-cases to ``secret`` as the
    bytes ``"kind":"secret"`` up to ASCII case (no character outside ASCII lower-cases to a
    letter of it: a test checks), so without those bytes the walk would find nothing.
    On the benchmark mix's custom resources this is 3x faster than the walk (measured); a
    body orjson cannot write is walked.
    """
    try:
        text = orjson.dumps(body)
    except orjson.JSONEncodeError:
        return True
    return _SECRET_KIND.search(text) is not None


def _is_built_in(group: str) -> bool:
    return "." not in group or group.endswith((".k8s.io", ".kubernetes.io"))


def _emptied(node: object) -> object:
    """The same shape (maps and lists), every scalar an empty string."""
    if isinstance(node, dict):
        return {key: _emptied(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_emptied(item) for item in node]
    return ""


class ConfigMapBinaryFingerprints:
    """Replace ConfigMap ``binaryData`` values by ``sha256:<hex>`` of their base64 text.

    A ``binaryData`` that is not a map is dropped, never kept as it is.
    """

    def __call__(self, body: Body) -> Body | Skip:
        if not _is_core_kind(body, "configmap") or "binaryData" not in body:
            return body
        binary = body["binaryData"]
        if isinstance(binary, dict):
            body["binaryData"] = {str(key): _sha256(value) for key, value in binary.items()}
        else:
            del body["binaryData"]
        return body


def _sha256(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if _SHA256.fullmatch(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
