"""The user documentation keeps up with the code: every metric and skip reason is described."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from exporter.config import load_settings
from exporter.metrics import Metrics, Sampled
from filters import HpaIndex, build_pipeline

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _exported_families() -> set[str]:
    metrics = Metrics()
    zero = lambda: 0.0  # noqa: E731 - identical samplers
    required = [f.name for f in dataclasses.fields(Sampled) if f.default is dataclasses.MISSING]
    metrics.sample(Sampled(**dict.fromkeys(required, zero)))
    text = metrics.render().decode()
    return set(re.findall(r"^# TYPE (\S+) (?:counter|gauge|histogram|summary)", text, re.M))


def test_every_metric_is_documented() -> None:
    documented = (DOCS / "metrics.md").read_text()
    families = _exported_families()
    assert families
    missing = sorted(
        name
        for name in families
        if not name.endswith("_created")  # the client's timestamp series of each counter
        and f"`{name}`" not in documented
        and f"`{name}_total`" not in documented
    )
    assert not missing, f"metrics missing from docs/metrics.md: {missing}"


def test_every_skip_reason_is_documented() -> None:
    reasons = set()
    for source in (ROOT / "filters").glob("*.py"):
        reasons |= set(re.findall(r'Skip\("([^"]+)"\)', source.read_text()))
    assert reasons
    documented = (DOCS / "metrics.md").read_text()
    missing = sorted(reason for reason in reasons if f"`{reason}`" not in documented)
    assert not missing, f"skip reasons missing from docs/metrics.md: {missing}"


def test_docs_link_to_existing_files() -> None:
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_policy_examples_are_valid_configurations(tmp_path: Path) -> None:
    """Every YAML block of docs/policy.md loads and builds a filter pipeline."""
    text = (DOCS / "policy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 8
    for number, block in enumerate(blocks):
        path = tmp_path / f"example-{number}.yaml"
        path.write_text(block)
        settings = load_settings(path)
        build_pipeline(
            settings.filters,
            hpa_index=HpaIndex(),
            fingerprint_key=b"a test key of 32 bytes or so....",
        )
