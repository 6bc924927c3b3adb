"""Keep Secret values and binary blobs out of Git history.

By default a Secret keeps its keys with empty values and an annotation saying they were
redacted; in fingerprint mode each value becomes a keyed HMAC, so a change shows without the
value. Service-account tokens and Helm release Secrets are skipped. ConfigMap ``binaryData``
becomes SHA-256 fingerprints, which keeps large blobs out of history.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from filters.base import Body, Skip
from filters.policy import SecretMode

REDACTED_ANNOTATION = "kube2git.io/secret-values"
"""Set on every recorded Secret to say how its values were treated."""

# Fingerprints contain ':', which base64 never does: a value that already is one is kept, so
# normalizing normalized output changes nothing.
_FINGERPRINT = re.compile(r"(?:sha256|hmac-sha256):[0-9a-f]+")


class SkipSecretTypes:
    """Skip Secrets whose ``type`` is one of the given ones (tokens, Helm releases)."""

    def __init__(self, types: Iterable[str]) -> None:
        self._types = frozenset(types)
        self._skip = Skip("secret type")

    def __call__(self, body: Body) -> Body | Skip:
        if _is_secret(body) and body.get("type") in self._types:
            return self._skip
        return body


class SecretValues:
    """Replace every Secret value (``data`` and ``stringData``) according to the mode."""

    def __init__(self, mode: SecretMode, fingerprint_key: bytes = b"") -> None:
        if mode is SecretMode.FINGERPRINT and not fingerprint_key:
            raise ValueError("secret fingerprint mode needs a fingerprint key")
        self._mode = mode
        self._key = fingerprint_key
        self._skip = Skip("secret")

    def __call__(self, body: Body) -> Body | Skip:
        if not _is_secret(body):
            return body
        if self._mode is SecretMode.SKIP:
            return self._skip
        for field in ("data", "stringData"):
            values = body.get(field)
            if isinstance(values, dict):
                body[field] = {key: self._replace(key, value) for key, value in values.items()}
        metadata = body.setdefault("metadata", {})
        annotations = metadata.get("annotations")
        if not isinstance(annotations, dict):
            annotations = metadata["annotations"] = {}
        annotations[REDACTED_ANNOTATION] = self._mode.value
        return body

    def _replace(self, key: str, value: object) -> str:
        if self._mode is SecretMode.REDACT:
            return ""
        if isinstance(value, str) and _FINGERPRINT.fullmatch(value):
            return value
        digest = hmac.new(self._key, f"{key}\0{value}".encode(), hashlib.sha256).hexdigest()
        return f"hmac-sha256:{digest[:32]}"


class ConfigMapBinaryFingerprints:
    """Replace ConfigMap ``binaryData`` values by ``sha256:<hex>`` of their base64 text."""

    def __call__(self, body: Body) -> Body | Skip:
        if body.get("kind") != "ConfigMap" or body.get("apiVersion") != "v1":
            return body
        binary = body.get("binaryData")
        if isinstance(binary, dict):
            body["binaryData"] = {key: _sha256(value) for key, value in binary.items()}
        return body


def _sha256(value: object) -> str:
    text = str(value)
    if _FINGERPRINT.fullmatch(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _is_secret(body: Body) -> bool:
    return body.get("kind") == "Secret" and body.get("apiVersion") == "v1"
