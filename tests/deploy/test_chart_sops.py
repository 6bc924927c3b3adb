"""The chart's SOPS values: recipients (public keys only) become sops mode, the fingerprint
key is mounted from an existing Secret, and an identity or a missing piece fails the render."""

from __future__ import annotations

from pathlib import Path

import pyrage
import pytest
import yaml

from exporter.config import load_settings
from filters.policy import SecretMode
from tests.deploy.conftest import Render, one


def _recipient() -> str:
    return str(pyrage.x25519.Identity.generate().to_public())


def test_recipients_turn_on_sops_mode_with_the_fingerprint_key_mounted(
    render: Render, tmp_path: Path
) -> None:
    recipients = [_recipient(), _recipient()]
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "captureSecrets": True,
                "sops": {"ageRecipients": recipients, "fingerprintKeySecret": "kube2git-fp"},
                "config": {"filters": {"secrets": {"skip_helm_releases": False}}},
            }
        )
    )
    manifests = render(values_file=values)
    config = tmp_path / "config.yaml"
    config.write_text(one(manifests, "ConfigMap")["data"]["config.yaml"])
    secrets = load_settings(config).filters.secrets
    assert secrets.mode is SecretMode.SOPS
    assert secrets.age_recipients == tuple(recipients)
    assert secrets.fingerprint_key_file == "/etc/kube2git/fingerprint/key"
    assert secrets.skip_helm_releases is False, "the user's other secrets settings stay"
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "fingerprint-key")
    assert volume["secret"]["secretName"] == "kube2git-fp"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "fingerprint-key")
    assert mount == {
        "name": "fingerprint-key",
        "mountPath": "/etc/kube2git/fingerprint",
        "readOnly": True,
    }


def test_without_recipients_nothing_changes(render: Render) -> None:
    pod = one(render(values=["captureSecrets=true"]), "Deployment")["spec"]["template"]["spec"]
    assert all(v["name"] != "fingerprint-key" for v in pod["volumes"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["sops.fingerprintKeySecret=fp"], "needs captureSecrets: true"),
        (["captureSecrets=true"], "needs sops.fingerprintKeySecret"),
        (
            ["captureSecrets=true", "sops.fingerprintKeySecret=fp"],
            "takes age public keys \\(age1...\\), never an identity",
        ),
    ],
)
def test_incomplete_sops_values_or_an_identity_fail_the_render(
    render: Render, values: list[str], message: str
) -> None:
    recipient = _recipient()
    if "never an identity" in message:
        identity = str(pyrage.x25519.Identity.generate())
        with pytest.raises(AssertionError, match=message) as failure:
            render(values=[*values, f"sops.ageRecipients={{{identity}}}"])
        assert identity not in str(failure.value), "the identity is never echoed"
        return
    with pytest.raises(AssertionError, match=message):
        render(values=[*values, f"sops.ageRecipients={{{recipient}}}"])
