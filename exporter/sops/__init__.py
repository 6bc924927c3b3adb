"""SOPS encryption of Secret values: the document format, and the stage that writes it.

- :mod:`exporter.sops.format`: the format alone (pure: values, MAC, age key wrapping).
- :mod:`exporter.sops.sealer`: the stage between the filters and the serializer, fed the
  branch's previous file so that an unchanged Secret keeps its bytes.

This module holds only the names other parts of the exporter need without loading the
cryptography (the commit message leaves the SOPS bookkeeping out of its field lists).
"""

from __future__ import annotations

METADATA_KEY = "sops"
"""The top-level key of a SOPS document's metadata block."""
FINGERPRINT_ANNOTATION = "kube2git.io/sops-fingerprint"
"""The keyed fingerprint of the plain Secret a SOPS file was written from."""
