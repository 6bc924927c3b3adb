"""docs/configuration.md is generated from the settings dataclasses and must not go stale."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from exporter.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_config_reference.py"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_current(generator: ModuleType) -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == generator.render(), (
        "docs/configuration.md is stale: run python scripts/gen_config_reference.py"
    )


def _walk(cls: type, prefix: str = "") -> Iterator[tuple[type, str, str]]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[field.name]
        yield cls, field.name, f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            yield from _walk(hint, f"{prefix}{field.name}.")


def test_every_setting_is_documented(generator: ModuleType) -> None:
    undocumented = [
        dotted
        for cls, name, dotted in _walk(Settings)
        if not generator.attribute_docs(cls).get(name, "").strip()
    ]
    assert not undocumented, f"settings without a docstring: {undocumented}"
    text = generator.render()
    for _, name, _ in _walk(Settings):
        assert f"**`{name}`**" in text


def test_default_configuration_block_loads_back(generator: ModuleType, tmp_path: Path) -> None:
    """The reference's full default configuration is itself a valid configuration file."""
    block = generator.render().split("## The whole default configuration", 1)[1]
    yaml_text = block.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml_text)
    assert load_settings(path) == Settings()
