"""SOPS's YAML document format, as the ``sops`` CLI and Flux read and write it. No I/O.

A SOPS document is the object itself with some values replaced by
``ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|float|bool>]`` and a top-level
``sops:`` block holding the 32-byte data key wrapped for each age recipient (``age:`` a list
of ``{recipient, enc}``, ``enc`` an armored age file), ``lastmodified`` (RFC 3339), ``mac``,
the rule that says which values are encrypted (kube2git writes ``encrypted_regex:
^(data|stringData)$``: any key on the value's path matching it) and ``version``.

- A value is sealed with AES-256-GCM under the data key, a 32-byte nonce, and as additional
  data the map keys down to it joined by ``:`` with a trailing ``:`` (``data:password:``), so
  a ciphertext moved to another key fails to open. An empty string stays empty, as in sops.
- The MAC is the SHA-512 (upper-case hex) of every non-null value in file order (the plaintext
  of encrypted ones; with ``mac_only_encrypted`` only those, after a fixed prefix), itself
  sealed like a value with ``lastmodified`` as the additional data. It detects a changed,
  added, removed or reordered value, and a ciphertext moved between documents.

kube2git derives each nonce instead of drawing it (:class:`DerivedNonces`): an HMAC-SHA256,
under a key derived from the data key, of the value's additional data, type and plaintext.
The same value at the same key under the same data key therefore seals to the same bytes (no
churn in Git), and two different values never share a nonce. Equality of a value with its
own earlier version is all it reveals, which an unchanged file reveals anyway. sops itself
keeps nonces of unchanged values when it re-encrypts a file, for the same reason.

Errors (:class:`SopsError` and its subclasses):
    SopsError
    ├── SopsFormatError      not a SOPS document, or one this module cannot read
    ├── SopsKeyError         no identity opens the data key; a bad age key or recipient
    └── SopsIntegrityError   a value or the MAC fails to authenticate: tampering
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, cast

# pyrage binds the age reference implementation in Rust (the `age` crate, maintained with the
# format's specification): the one maintained binding, as wheels with no native build step.
# The pure-Python `age` package on PyPI has had no release since 2023.
import pyrage
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exporter.sops import METADATA_KEY

ENCRYPTED_REGEX = "^(data|stringData)$"
"""What kube2git encrypts: Secret values, and nothing else (names and labels stay readable)."""
FORMAT_VERSION = "3.13.3"
"""The ``version`` kube2git writes: the sops release whose format this follows."""
DATA_KEY_SIZE = 32
NONCE_SIZE = 32
"""sops draws 32-byte nonces; AES-GCM hashes a nonce of any length other than 12 bytes."""
_TAG_SIZE = 16
_MAC_ONLY_ENCRYPTED_PREFIX = hashlib.sha256(b"sops").digest()
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
_RULE_KEYS = (
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
)

Scalar = str | int | float | bool
Path = tuple[str, ...]


class SopsError(Exception):
    """Any failure to read or write a SOPS document."""


class SopsFormatError(SopsError):
    """Not a SOPS document, or one using a feature kube2git does not read."""


class SopsKeyError(SopsError):
    """No identity opens the data key, or an age key or recipient is malformed."""


class SopsIntegrityError(SopsError):
    """A value or the MAC does not authenticate: the document was changed without the key."""


# -- YAML as sops reads it ---------------------------------------------------------------------


class _CoreLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (its C parser) with YAML 1.2 core scalars, as sops's YAML library
    reads them.

    PyYAML resolves YAML 1.1 (``yes`` is a boolean, ``2024-01-01`` a date); the MAC covers
    each value's text as sops typed it, so the two readers must agree.
    """

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level table


_CORE_SCALARS = (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
)
for _tag, _pattern, _first in _CORE_SCALARS:
    _CoreLoader.add_implicit_resolver(_tag, re.compile(_pattern), [*_first, ""])


def _core_int(loader: yaml.BaseLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(cast("yaml.ScalarNode", node)))
    if text.startswith(("0x", "0o")):
        return int(text, 0)
    return int(text, 10)


def _core_bool(loader: yaml.BaseLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(cast("yaml.ScalarNode", node))).lower() == "true"


def _core_float(loader: yaml.BaseLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(cast("yaml.ScalarNode", node))).lower()
    if text.endswith((".inf", ".nan")):
        return float(text.replace(".", ""))
    return float(text)


_CoreLoader.add_constructor("tag:yaml.org,2002:int", _core_int)
_CoreLoader.add_constructor("tag:yaml.org,2002:bool", _core_bool)
_CoreLoader.add_constructor("tag:yaml.org,2002:float", _core_float)


def load(content: bytes | str) -> Any:
    """Parse a YAML document as sops does: YAML 1.2 core scalars, keys in file order."""
    try:
        return yaml.load(content, Loader=_CoreLoader)  # noqa: S506 - a safe loader subclass
    except yaml.YAMLError as error:
        raise SopsFormatError(f"not YAML: {error}") from error


def is_sops_document(doc: object) -> bool:
    """Whether a parsed document carries a SOPS metadata block."""
    return isinstance(doc, Mapping) and isinstance(doc.get(METADATA_KEY), Mapping)


# -- values ----------------------------------------------------------------------------------


def scalar_bytes(value: Scalar) -> bytes:
    """A value's bytes as sops hashes and encrypts them (Go's formatting of the typed value)."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        if math.isnan(value):
            return b"NaN"
        if math.isinf(value):
            return b"+Inf" if value > 0 else b"-Inf"
        # Go's FormatFloat(v, 'f', -1, 64): the shortest round-trip digits, never an exponent.
        return format(Decimal(repr(value)).normalize(), "f").encode()
    return value.encode("utf-8", "surrogatepass")


def _type_name(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


NonceSource = Callable[[str, str, bytes], bytes]
"""``(additional data, type, plaintext) → 32-byte nonce``."""


def random_nonces(_aad: str, _type: str, _plaintext: bytes) -> bytes:
    """Fresh random nonces, as sops draws them."""
    return secrets.token_bytes(NONCE_SIZE)


class DerivedNonces:
    """Nonces that are a keyed function of what they seal (see the module docstring)."""

    __slots__ = ("_key",)

    def __init__(self, data_key: bytes) -> None:
        self._key = hmac.new(data_key, b"kube2git sops nonce v1", hashlib.sha256).digest()

    def __call__(self, aad: str, type_name: str, plaintext: bytes) -> bytes:
        message = b"\0".join((aad.encode("utf-8", "surrogatepass"), type_name.encode(), plaintext))
        return hmac.new(self._key, message, hashlib.sha256).digest()


def encrypt_value(value: Scalar, data_key: bytes, aad: str, nonces: NonceSource) -> str:
    """``value`` sealed as an ``ENC[AES256_GCM,...]`` string ("" stays "")."""
    if value == "" and isinstance(value, str):
        return ""
    plaintext = scalar_bytes(value)
    type_name = _type_name(value)
    nonce = nonces(aad, type_name, plaintext)
    sealed = AESGCM(data_key).encrypt(nonce, plaintext, aad.encode("utf-8", "surrogatepass"))
    data, tag = sealed[:-_TAG_SIZE], sealed[-_TAG_SIZE:]
    b64 = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b64(data).decode()},iv:{b64(nonce).decode()},"
        f"tag:{b64(tag).decode()},type:{type_name}]"
    )


def decrypt_value(text: str, data_key: bytes, aad: str) -> Scalar:
    """Open an ``ENC[...]`` string; :class:`SopsIntegrityError` when it does not authenticate."""
    if text == "":
        return ""
    found = _ENC.match(text)
    if found is None:
        raise SopsFormatError("a value that should be encrypted is not an ENC[AES256_GCM,...]")
    try:
        data, nonce, tag = (base64.b64decode(found.group(i), validate=True) for i in (1, 2, 3))
    except binascii.Error as error:
        raise SopsFormatError(f"an encrypted value is not base64: {error}") from error
    type_name = found.group(4)
    try:
        plaintext = AESGCM(data_key).decrypt(
            nonce, data + tag, aad.encode("utf-8", "surrogatepass")
        )
    except (InvalidTag, ValueError) as error:
        where = aad.rstrip(":") or "the MAC"
        raise SopsIntegrityError(f"the value at {where} does not authenticate") from error
    text_value = plaintext.decode("utf-8", "surrogatepass")
    if type_name == "str":
        return text_value
    if type_name == "int":
        return int(text_value)
    if type_name == "float":
        return float(text_value)
    if type_name == "bool":
        return text_value.lower() == "true"
    raise SopsFormatError(f"unsupported encrypted value type {type_name!r}")


# -- which values are encrypted ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """The metadata's rule for which values are encrypted (sops allows one of six)."""

    key: str = "encrypted_regex"
    """``encrypted_regex``, ``unencrypted_regex``, ``encrypted_suffix``, ``unencrypted_suffix``."""
    value: str = ENCRYPTED_REGEX

    def encrypts(self, path: Path) -> bool:
        """Whether sops encrypts the value at ``path`` (any key on the path decides)."""
        if self.key == "unencrypted_suffix":
            return not any(step.endswith(self.value) for step in path)
        if self.key == "encrypted_suffix":
            return any(step.endswith(self.value) for step in path)
        # Go's regexp.Match searches, as re.search does; the patterns sops accepts are RE2's.
        matches = any(re.search(self.value, step) for step in path)
        return matches if self.key == "encrypted_regex" else not matches


def _rule(metadata: Mapping[str, Any]) -> Rule:
    present = [key for key in _RULE_KEYS if metadata.get(key)]
    if len(present) > 1:
        raise SopsFormatError("the sops metadata sets more than one encryption rule")
    if not present:
        return Rule("unencrypted_suffix", "_unencrypted")  # sops's default
    key = present[0]
    if key.endswith("comment_regex"):
        raise SopsFormatError(f"sops documents with {key} are not supported")
    return Rule(key, str(metadata[key]))


# -- walking a document --------------------------------------------------------------------------


class Leaf(Protocol):
    """Called for every non-null scalar in file order; returns what replaces it."""

    def __call__(self, value: Scalar, path: Path, *, encrypted: bool) -> Any: ...


def _walk(node: Any, path: Path, rule: Rule, leaf: Leaf) -> Any:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                raise SopsFormatError(f"a map key at {':'.join(path)!r} is not a string")
            out[key] = _walk(value, (*path, key), rule, leaf)
        return out
    if isinstance(node, list):
        return [_walk(item, path, rule, leaf) for item in node]  # sops: no index in the path
    if node is None:
        return None
    if isinstance(node, str | int | float):  # bool is an int
        return leaf(node, path, encrypted=rule.encrypts(path))
    raise SopsFormatError(f"a value at {':'.join(path)!r} is a {type(node).__name__}")


def _aad(path: Path) -> str:
    return ":".join(path) + ":"


class _Mac:
    """The running SHA-512 of the values, as :meth:`sops.Tree.Encrypt` computes it."""

    def __init__(self, *, only_encrypted: bool) -> None:
        self._hash = hashlib.sha512()
        self._only_encrypted = only_encrypted
        if only_encrypted:
            self._hash.update(_MAC_ONLY_ENCRYPTED_PREFIX)

    def add(self, value: Scalar, *, encrypted: bool) -> None:
        if encrypted or not self._only_encrypted:
            self._hash.update(scalar_bytes(value))

    def hexdigest(self) -> str:
        return self._hash.hexdigest().upper()


# -- age ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgeKey:
    """The data key wrapped for one age recipient, as the metadata lists it."""

    recipient: str
    enc: str
    """An armored age file holding the 32-byte data key."""


def parse_recipient(text: str) -> Any:
    """An ``age1...`` X25519 recipient; :class:`SopsKeyError` naming it when malformed."""
    try:
        return pyrage.x25519.Recipient.from_str(text.strip())
    except pyrage.RecipientError as error:
        raise SopsKeyError(f"not an age recipient (age1...): {text.strip()!r}: {error}") from error


def parse_identities(text: str, source: str) -> list[Any]:
    """The ``AGE-SECRET-KEY-1...`` lines of an age key file (``#`` comments and blanks allowed).

    ``source`` names the file in errors; a key itself never appears in a message.
    """
    identities = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise SopsKeyError(f"{source}: line {number} is not an age identity") from None
    if not identities:
        raise SopsKeyError(f"{source}: no age identity (AGE-SECRET-KEY-1...) in the file")
    return identities


def public_recipient(identity: Any) -> str:
    """The ``age1...`` recipient of an identity."""
    return str(identity.to_public())


def wrap_data_key(data_key: bytes, recipients: Sequence[str]) -> tuple[AgeKey, ...]:
    """The data key wrapped for each recipient separately, as sops lists them."""
    if not recipients:
        raise SopsKeyError("no age recipient to encrypt for")
    wrapped = []
    for text in recipients:
        recipient = parse_recipient(text)
        armored = cast("bytes", pyrage.encrypt(data_key, [recipient], armored=True))
        wrapped.append(AgeKey(text.strip(), armored.decode("ascii")))
    return tuple(wrapped)


def unwrap_data_key(keys: Iterable[AgeKey], identities: Sequence[Any]) -> bytes:
    """The data key, opened by the first identity that matches one of ``keys``."""
    keys = list(keys)
    if not keys:
        raise SopsKeyError("the document is not encrypted for any age recipient")
    for key in keys:
        try:
            data_key = cast("bytes", pyrage.decrypt(key.enc.encode("ascii"), list(identities)))
        except (pyrage.DecryptError, UnicodeEncodeError):
            continue
        if len(data_key) != DATA_KEY_SIZE:
            raise SopsFormatError(f"the data key for {key.recipient} is not {DATA_KEY_SIZE} bytes")
        return data_key
    names = ", ".join(sorted(k.recipient for k in keys))
    raise SopsKeyError(f"none of the age identities is a recipient of this document ({names})")


# -- documents ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metadata:
    """The ``sops:`` block."""

    age: tuple[AgeKey, ...]
    lastmodified: str
    mac: str
    rule: Rule = Rule()
    mac_only_encrypted: bool = False
    version: str = FORMAT_VERSION

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "age": [{"recipient": k.recipient, "enc": k.enc} for k in self.age],
            "lastmodified": self.lastmodified,
            "mac": self.mac,
            self.rule.key: self.rule.value,
            "version": self.version,
        }
        if self.mac_only_encrypted:
            out["mac_only_encrypted"] = True
        return out

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Metadata:
        block = doc.get(METADATA_KEY)
        if not isinstance(block, Mapping):
            raise SopsFormatError("no sops metadata block")
        groups = block.get("key_groups")
        age = block.get("age") or []
        if groups:
            if not isinstance(groups, list) or len(groups) != 1:
                raise SopsFormatError("sops documents with several key groups are not supported")
            age = (groups[0] or {}).get("age") or []
        if not isinstance(age, list):
            raise SopsFormatError("sops.age is not a list")
        keys = []
        for entry in age:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("enc"), str):
                raise SopsFormatError("a sops.age entry lacks its 'enc' text")
            keys.append(AgeKey(str(entry.get("recipient", "")), entry["enc"]))
        lastmodified, mac = block.get("lastmodified"), block.get("mac")
        if not isinstance(lastmodified, str) or not isinstance(mac, str):
            raise SopsFormatError("the sops metadata lacks lastmodified or mac")
        return cls(
            age=tuple(keys),
            lastmodified=lastmodified,
            mac=mac,
            rule=_rule(block),
            mac_only_encrypted=block.get("mac_only_encrypted") is True,
            version=str(block.get("version", "")),
        )


def encrypt_document(
    plain: Mapping[str, Any],
    *,
    data_key: bytes,
    age: tuple[AgeKey, ...],
    lastmodified: str,
    nonces: NonceSource | None = None,
    rule: Rule = Rule(),
) -> dict[str, Any]:
    """``plain`` (its mappings in file order) with the rule's values sealed and a sops block.

    ``nonces`` defaults to :class:`DerivedNonces` of the data key: the same input gives the
    same bytes. ``lastmodified`` is RFC 3339 in UTC (``2026-12-01T20:00:00Z``).
    """
    if METADATA_KEY in plain:
        raise SopsFormatError("the document already has a sops metadata block")
    nonce_source = nonces or DerivedNonces(data_key)
    mac = _Mac(only_encrypted=False)

    def seal(value: Scalar, path: Path, *, encrypted: bool) -> Any:
        mac.add(value, encrypted=encrypted)
        return encrypt_value(value, data_key, _aad(path), nonce_source) if encrypted else value

    sealed = cast("dict[str, Any]", _walk(plain, (), rule, seal))
    metadata = Metadata(
        age=age,
        lastmodified=lastmodified,
        mac=encrypt_value(mac.hexdigest(), data_key, lastmodified, nonce_source),
        rule=rule,
    )
    sealed[METADATA_KEY] = metadata.to_mapping()
    return sealed


def decrypt_document(doc: Mapping[str, Any], data_key: bytes) -> dict[str, Any]:
    """The plain document (without its sops block), its MAC checked.

    :class:`SopsIntegrityError` when a value or the MAC fails to authenticate or the MAC does
    not match the values: someone without the key changed the document.
    """
    metadata = Metadata.from_document(doc)
    mac = _Mac(only_encrypted=metadata.mac_only_encrypted)

    def open_value(value: Scalar, path: Path, *, encrypted: bool) -> Any:
        if encrypted:
            if not isinstance(value, str):
                raise SopsFormatError(f"the value at {':'.join(path)} is not encrypted")
            value = decrypt_value(value, data_key, _aad(path))
        mac.add(value, encrypted=encrypted)
        return value

    body = {k: v for k, v in doc.items() if k != METADATA_KEY}
    plain = cast("dict[str, Any]", _walk(body, (), metadata.rule, open_value))
    try:
        stored = decrypt_value(metadata.mac, data_key, metadata.lastmodified)
    except SopsIntegrityError:
        message = "the MAC does not authenticate (sops.mac or lastmodified changed)"
        raise SopsIntegrityError(message) from None
    if not isinstance(stored, str) or not hmac.compare_digest(stored, mac.hexdigest()):
        raise SopsIntegrityError("MAC mismatch: the values are not the ones that were encrypted")
    return plain


def open_document(doc: Mapping[str, Any], identities: Sequence[Any]) -> dict[str, Any]:
    """:func:`decrypt_document` with the data key opened by one of ``identities``."""
    data_key = unwrap_data_key(Metadata.from_document(doc).age, identities)
    return decrypt_document(doc, data_key)
