"""Configuration values are range- and enum-checked at load (issue 11).

A value that would make kube2git misbehave later (a zero rate limit, a negative timeout, a
listen address it cannot bind, a rule without its fields, a password in a URL) is one line
naming the file and the dotted key, exit code 2, before anything starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import Settings, check_settings, load_settings
from tests.unit.cli import run_cli

_ALIAS_BOMB = "".join(
    ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]\n"]
    + [f"b{n}: &b{n} [{', '.join([f'*b{n - 1}'] * 10)}]\n" for n in range(1, 9)]
)


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    path = tmp_path / "in.yaml"
    path.write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n")
    return path


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("cluster: {qps: 0}\n", "cluster.qps must be greater than 0"),
        ("cluster: {qps: -5}\n", "cluster.qps must be greater than 0"),
        ("cluster: {burst: 0}\n", "cluster.burst must be greater than 0"),
        ("cluster: {page_size: 0}\n", "cluster.page_size must be greater than 0"),
        ("cluster: {request_timeout: -1}\n", "cluster.request_timeout must be greater than 0"),
        ("cluster: {backoff: []}\n", "cluster.backoff must not be empty"),
        ("cluster: {backoff: [1, -2]}\n", "cluster.backoff[1] must be 0 or more"),
        ("cluster: {qps: .inf}\n", "cluster.qps: not a finite number"),
        ("cluster: {burst: 99999999999999999999999}\n", "cluster.burst: integer beyond the 64-bit range"),
        ("run: {queue_size: 0}\n", "run.queue_size must be greater than 0"),
        ("run: {pacing: {quiet_period: -1}}\n", "run.pacing.quiet_period must be 0 or more"),
        ("run: {pacing: {max_delay: 10, max_delay_under_load: 5}}\n", "run.pacing.max_delay_under_load must be at least run.pacing.max_delay (10)"),
        ("run: {leader_election: {lease_duration: 5, renew_deadline: 10}}\n", "run.leader_election.renew_deadline must be less than run.leader_election.lease_duration (5)"),
        ("run: {shards: 0}\n", "run.shards must be greater than 0"),
        ("run: {shards: 65}\n", "run.shards must be at most 64"),
        ("run: {shards: 2.5}\n", "run.shards must be a whole number"),
        ("git: {remote: {retry_jitter: -0.5}}\n", "git.remote.retry_jitter must be 0 or more"),
        ("git: {pack: {threads: -1}}\n", "git.pack.threads must be 0 or more"),
        ("log: {level: verbose}\n", "log.level must be one of debug, info, warning, error"),
        ("run: {listen: 'localhost'}\n", "run.listen must be HOST:PORT"),
        ("run: {listen: '0.0.0.0:http'}\n", "run.listen must be HOST:PORT"),
        ("run: {listen: '0.0.0.0:70000'}\n", "run.listen: port 70000 is not between 0 and 65535"),
        ("run: {listen: 'bad host:80'}\n", "run.listen: 'bad host' is not a host name or IP address"),
        ("run: {listen: '[::1:80'}\n", "run.listen must be HOST:PORT"),
        ("filters: {ignore_fields: [{types: [Pod]}]}\n", "filters.ignore_fields[0]: missing required key 'pointers'"),
        ("filters: {ignore_fields: [{pointers: [/spec]}]}\n", "filters.ignore_fields[0]: missing required key 'types'"),
        ("filters: {ignore_fields: [3]}\n", "filters.ignore_fields[0] must be a mapping"),
        (_ALIAS_BOMB, "cfg.yaml: document 1: line 5: YAML aliases expand to more than 100,000 nodes"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_naming_the_key_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], objects: Path, config: str, expected: str
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(config)
    code, err = run_cli(["normalize", str(objects), "--config", str(cfg)], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert f"kube2git: error: {cfg}" in err
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "listen",
    ["", "0.0.0.0:8080", "127.0.0.1:0", ":9090", "[::]:8080", "[::1]:8080", "localhost:8080"],
)
def test_valid_listen_addresses_load(tmp_path: Path, listen: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"run: {{listen: '{listen}'}}\n")
    assert load_settings(cfg).run.listen == listen


def test_the_defaults_pass_their_own_checks() -> None:
    assert check_settings(Settings(), source="defaults") == Settings()


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        (["--listen", "nowhere"], {}, "kube2git: error: --listen: run.listen must be HOST:PORT"),
        ([], {"KUBE2GIT_LISTEN": "1.2.3.4:99999"}, "kube2git: error: KUBE2GIT_LISTEN: run.listen: port 99999"),
    ],
)  # fmt: skip
def test_flags_and_environment_are_checked_too(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    flags: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, err = run_cli(["run", "--repo", str(tmp_path / "r.git"), *flags], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith(expected)


# -- credentials never in the configuration --------------------------------------------------

_TOKEN = "ghp_s3cr3tT0kenValue"


@pytest.mark.parametrize(
    "url",
    [
        f"https://x-access-token:{_TOKEN}@git.example.com/ops/backup.git",
        f"http://backup:{_TOKEN}@127.0.0.1:8080/backup.git",
        f"ssh://git:{_TOKEN}@git.example.com/ops/backup.git",
        f"HTTPS://user:{_TOKEN}@git.example.com",
    ],
)
def test_a_password_in_the_remote_url_is_refused_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], objects: Path, url: str
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"git: {{remote: {{url: '{url}'}}}}\n")
    code, err = run_cli(["normalize", str(objects), "--config", str(cfg)], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert f"{cfg}: git.remote.url: a password in the URL is refused" in err
    assert "password_file" in err
    assert _TOKEN not in err

    code, err = run_cli(["run", "--repo", str(tmp_path / "r.git"), "--remote", url], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith("kube2git: error: --remote: git.remote.url: a password in the URL")
    assert _TOKEN not in err


@pytest.mark.parametrize(
    "url",
    [
        "https://backup@git.example.com/ops/backup.git",
        "git@github.com:ops/backup.git",
        "ssh://git@git.example.com:2222/ops/backup.git",
        "/srv/git/backup.git",
    ],
)
def test_a_user_name_alone_is_fine(tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"git: {{remote: {{url: '{url}'}}}}\n")
    assert load_settings(cfg).git.remote.url == url


@pytest.mark.parametrize(
    "https",
    [
        "{token_file: /etc/kube2git/git/token}",
        "{password_env: GIT_PASSWORD, username: bot}",
    ],
)
def test_credentials_for_a_plain_http_remote_need_the_insecure_switch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], objects: Path, https: str
) -> None:
    cfg = tmp_path / "cfg.yaml"
    remote = "url: 'http://git.example.com/ops/backup.git'"
    cfg.write_text(f"git: {{remote: {{{remote}, https: {https}}}}}\n")
    code, err = run_cli(["normalize", str(objects), "--config", str(cfg)], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert f"{cfg}: git.remote.url: credentials are not sent over plain http://" in err
    assert "git.remote.https.allow_insecure_http" in err

    insecure = https.replace("}", ", allow_insecure_http: true}")
    cfg.write_text(f"git: {{remote: {{{remote}, https: {insecure}}}}}\n")
    assert load_settings(cfg).git.remote.https.allow_insecure_http


def test_an_anonymous_http_remote_needs_no_switch(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("git: {remote: {url: 'http://mirror.internal/backup.git'}}\n")
    assert load_settings(cfg).git.remote.url == "http://mirror.internal/backup.git"
