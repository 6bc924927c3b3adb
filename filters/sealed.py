"""Secret values held in clear for the SOPS stage, which is the only one that may read them.

In ``sops`` mode the filters cannot encrypt: keeping an unchanged Secret's ciphertext needs
the file already on the branch, which only the exporter may read. So the Secret filter wraps
each value in :class:`Unsealed` and the exporter's SOPS stage (``exporter/sops``) replaces the
wrappers with ciphertext. The wrapper fails closed: the serializer cannot write it (a Secret
that missed the stage is an error, never a file in clear), and its ``repr`` hides the value,
so a log line or a traceback that shows a body shows no secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Unsealed:
    """One Secret value on its way to encryption."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "<unsealed secret value>"


def has_unsealed(node: Any) -> bool:
    """Whether any value below ``node`` is :class:`Unsealed`."""
    if isinstance(node, Unsealed):
        return True
    if isinstance(node, dict):
        return any(has_unsealed(value) for value in node.values())
    if isinstance(node, list):
        return any(has_unsealed(item) for item in node)
    return False


def unseal(node: Any) -> Any:
    """A copy of ``node`` with every :class:`Unsealed` replaced by its value."""
    if isinstance(node, Unsealed):
        return node.value
    if isinstance(node, dict):
        return {key: unseal(value) for key, value in node.items()}
    if isinstance(node, list):
        return [unseal(item) for item in node]
    return node
