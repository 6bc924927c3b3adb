"""A drop list in the configuration extends the default list; replacing it must be asked for.

Setting ``drop_annotations: [my/annotation]`` used to replace the defaults, which silently
brought back ``kubectl.kubernetes.io/last-applied-configuration`` (and with it Secret data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cli import main
from exporter.config import ConfigError, load_settings, make_pipeline
from filters import HpaIndex, Skip
from filters.policy import Policy

APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _pipeline(tmp_path: Path, config: str) -> Any:
    path = tmp_path / "cfg.yaml"
    path.write_text(config)
    return make_pipeline(load_settings(path), hpa_index=HpaIndex())


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "annotations": {
                APPLIED: json.dumps({"kind": "Deployment"}),
                "deployment.kubernetes.io/revision": "4",
                "example.com/build-id": "b-77",
                "team": "web",
            },
        },
        "spec": {},
    }


def test_a_drop_annotations_list_extends_the_defaults(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "filters: {drop_annotations: [example.com/build-id]}\n")
    result = pipeline(_deployment())
    assert result["metadata"]["annotations"] == {"team": "web"}


def test_other_drop_lists_extend_their_defaults(tmp_path: Path) -> None:
    pipeline = _pipeline(
        tmp_path,
        "filters:\n"
        "  drop_fields: [/spec/paused]\n"
        "  select: {exclude_types: [cilium.io/*], exclude_names: ['Secret:shop/tmp-*']}\n"
        "  ignore_fields: [{types: [apps/Deployment], pointers: [/spec/minReadySeconds]}]\n"
        "  secrets: {skip_types: [example.com/token]}\n",
    )
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "s"}}
    assert pipeline(event) == Skip("excluded type")
    root_ca = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}}
    assert pipeline(root_ca) == Skip("excluded name")
    token = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "t", "namespace": "s"},
    }
    assert pipeline(token) == Skip("secret type")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": "s", "uid": "1"},
        "spec": {"volumeName": "pv-1"},
        "status": {"phase": "Bound"},
    }
    assert pipeline(claim) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": "s"},
    }
    deployment = _deployment()
    deployment["spec"] = {"paused": True, "minReadySeconds": 5, "replicas": 2}
    assert pipeline(deployment)["spec"] == {"replicas": 2}


def test_replacing_a_default_list_is_explicit(tmp_path: Path) -> None:
    pipeline = _pipeline(
        tmp_path,
        "filters:\n"
        "  replace_defaults: [drop_annotations, select.exclude_types]\n"
        "  drop_annotations: [example.com/build-id]\n"
        "  select: {exclude_types: []}\n",
    )
    result = pipeline(_deployment())
    assert set(result["metadata"]["annotations"]) == {
        APPLIED,
        "deployment.kubernetes.io/revision",
        "team",
    }
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "s"}}
    assert not isinstance(pipeline(event), Skip)


def test_a_replaced_drop_list_still_never_keeps_a_secrets_applied_copy(tmp_path: Path) -> None:
    pipeline = _pipeline(
        tmp_path, "filters: {replace_defaults: [drop_annotations], drop_annotations: []}\n"
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "namespace": "shop",
            "annotations": {APPLIED: '{"stringData": {"p": "old-pw-1"}}'},
        },
        "stringData": {"p": "new-pw-2"},
    }
    result = pipeline(secret)
    assert APPLIED not in result["metadata"]["annotations"]


def test_defaults_stay_when_the_file_does_not_set_a_list(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("filters: {skip_controlled: true}\n")
    assert load_settings(path).filters == Policy()


def test_naming_the_same_entry_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"filters: {{drop_annotations: ['{APPLIED}']}}\n")
    assert load_settings(path).filters == Policy()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[include_types]", "filters.replace_defaults: 'include_types' is not a list with defaults"),
        ("[bogus]", "filters.replace_defaults: 'bogus' is not a list with defaults"),
        ("drop_fields", "filters.replace_defaults must be a list"),
    ],
)  # fmt: skip
def test_replace_defaults_names_only_default_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(f"filters: {{replace_defaults: {value}}}\n")
    with pytest.raises(ConfigError):
        load_settings(config)
    objects = tmp_path / "in.yaml"
    objects.write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n")
    assert main(["normalize", str(objects), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(st.sampled_from(["a/x", "b/*", APPLIED, "deployment.kubernetes.io/*"])),
    replace=st.booleans(),
)
def test_a_configured_list_keeps_every_default_unless_replaced(
    tmp_path: Path, entries: list[str], replace: bool
) -> None:
    path = tmp_path / "cfg.yaml"
    switch = "replace_defaults: [drop_annotations], " if replace else ""
    path.write_text(f"filters: {{{switch}drop_annotations: {json.dumps(entries)}}}\n")
    loaded = load_settings(path).filters.drop_annotations
    if replace:
        assert list(loaded) == entries
    else:
        assert list(loaded) == list(dict.fromkeys([*Policy().drop_annotations, *entries]))
