"""SSH signatures on commits, as ``git -c gpg.format=ssh`` makes and verifies them.

git signs a commit by putting an armored OpenSSH ``SSHSIG`` signature (namespace ``git``) of
the commit object into its ``gpgsig`` header. The key is loaded and the ed25519 signature
made by ``cryptography`` (maintained, already used by the project, and it reads OpenSSH
private keys); the SSHSIG envelope around it is a few length-prefixed strings, written here
because the PyPI ``sshsig`` package only verifies (see PROTOCOL.sshsig in OpenSSH).

Errors: :class:`~exporter.gitstore.errors.SigningKeyError` (the key cannot be used).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path

import pygit2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter.gitstore.errors import SigningKeyError

_MAGIC = b"SSHSIG"
_VERSION = 1
_NAMESPACE = b"git"
_HASH = b"sha512"
_ARMOR_WIDTH = 70


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class SshSigner:
    """Signs commit objects with one OpenSSH ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._public_blob = _string(b"ssh-ed25519") + _string(raw)
        self.public_key = (
            key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        """The public key in ``authorized_keys`` form (``ssh-ed25519 AAAA…``)."""

    @classmethod
    def from_file(cls, path: str) -> SshSigner:
        """Load an unencrypted OpenSSH ed25519 private key (the key is never logged)."""
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise SigningKeyError(
                f"{path}: cannot read the signing key: {error.strerror}"
            ) from None
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except TypeError:
            raise SigningKeyError(
                f"{path}: the signing key is encrypted; give an unencrypted key file"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise SigningKeyError(f"{path}: not an OpenSSH private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path}: the signing key must be ed25519")
        return cls(key)

    def sign(self, payload: bytes) -> str:
        """The armored SSHSIG signature of ``payload`` in the ``git`` namespace."""
        digest = hashlib.sha512(payload).digest()
        signed = _MAGIC + _string(_NAMESPACE) + _string(b"") + _string(_HASH) + _string(digest)
        signature = _string(b"ssh-ed25519") + _string(self._key.sign(signed))
        blob = (
            _MAGIC
            + struct.pack(">I", _VERSION)
            + _string(self._public_blob)
            + _string(_NAMESPACE)
            + _string(b"")
            + _string(_HASH)
            + _string(signature)
        )
        text = base64.b64encode(blob).decode()
        lines = [text[i : i + _ARMOR_WIDTH] for i in range(0, len(text), _ARMOR_WIDTH)]
        return (
            "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----"
        )


def create_commit(
    repo: pygit2.Repository,
    signer: SshSigner | None,
    *,
    author: pygit2.Signature,
    committer: pygit2.Signature,
    message: str,
    tree: pygit2.Oid,
    parents: Sequence[pygit2.Oid],
) -> pygit2.Oid:
    """Write a commit object (no ref moves); signed in its ``gpgsig`` header with a signer."""
    if signer is None:
        oid: pygit2.Oid = repo.create_commit(None, author, committer, message, tree, list(parents))
        return oid
    # pygit2's stub says Oid; it returns the commit object's text
    content: str = repo.create_commit_string(  # type: ignore[assignment]
        author, committer, message, tree, list(parents)
    )
    signature = signer.sign(content.encode("utf-8"))
    signed: pygit2.Oid = repo.create_commit_with_signature(content, signature, "gpgsig")
    return signed
