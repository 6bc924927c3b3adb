"""A small reader of the project's Dockerfile, enough to replay its build stage without Docker.

Instructions are joined across line continuations; comments and parser directives dropped.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_ARG_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction: ``RUN``, ``COPY``... and its argument text."""

    keyword: str
    text: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON-array form of the arguments, if written that way."""
        if not self.text.startswith("["):
            return None
        parsed = json.loads(self.text)
        assert isinstance(parsed, list)
        return [str(item) for item in parsed]


@dataclass(slots=True)
class Stage:
    """The instructions from one ``FROM`` to the next."""

    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(path: Path) -> list[Instruction]:
    """Every instruction of the file, continuations joined."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, rest = " ".join(pending).partition(" ")
        result.append(Instruction(keyword.upper(), rest.strip(), start))
        pending = []
    return result


def stages(path: Path) -> list[Stage]:
    """The build stages, with global ``ARG`` defaults expanded in their ``FROM`` lines."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for item in instructions(path):
        if item.keyword == "ARG" and not found:
            name, _, default = item.text.partition("=")
            args[name] = default
        elif item.keyword == "FROM":
            words = _ARG_REF.sub(lambda m: args[m.group(1) or m.group(2)], item.text).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            found.append(Stage(base=words[0], name=name))
        else:
            found[-1].instructions.append(item)
    return found


def env_pairs(text: str) -> dict[str, str]:
    """``ENV A=1 B=2`` as a mapping (the legacy ``ENV A 1`` form is not used here)."""
    pairs = {}
    for word in shlex.split(text):
        name, _, value = word.partition("=")
        pairs[name] = value
    return pairs
