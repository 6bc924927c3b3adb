"""Credentials never travel over plain http:// unless ``allow_insecure_http`` says so (issue 11).

Against the real git http-backend on loopback: the refusal happens before git starts, so the
server sees no request at all; a redirect from https:// to http:// is not followed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.gitstore import GitStoreError, HttpsSettings, InsecureTransport
from tests.gitstore.test_push import Git, configmap, open_store, remote_tip


@pytest.fixture
def token_file(tmp_path: Path, http_server: Any) -> Path:
    path = tmp_path / "token"
    path.write_text(http_server.password + "\n")
    return path


def test_a_token_is_not_sent_over_plain_http(
    tmp_path: Path, http_server: Any, token_file: Path
) -> None:
    https = HttpsSettings(username=http_server.username, token_file=str(token_file))
    with open_store(tmp_path / "a.git", url=http_server.url, https=https) as store:
        store.commit([configmap("a")])
        with pytest.raises(InsecureTransport, match="allow_insecure_http") as refused:
            store.push()
    assert http_server.password not in str(refused.value)
    assert http_server.requests == []


def test_a_password_in_an_http_url_is_not_sent_either(tmp_path: Path, http_server: Any) -> None:
    url = http_server.url.replace(
        "http://", f"http://{http_server.username}:{http_server.password}@"
    )
    with open_store(tmp_path / "a.git", url=url) as store:
        store.commit([configmap("a")])
        with pytest.raises(InsecureTransport) as refused:
            store.push()
    assert http_server.password not in str(refused.value)
    assert http_server.requests == []


def test_the_insecure_switch_sends_them(
    tmp_path: Path, http_server: Any, token_file: Path, git_cli: Git
) -> None:
    https = HttpsSettings(
        username=http_server.username, token_file=str(token_file), allow_insecure_http=True
    )
    with open_store(tmp_path / "a.git", url=http_server.url, https=https) as store:
        store.commit([configmap("a")])
        assert store.push().pushed
        assert remote_tip(git_cli, http_server.repo) == store.head()


def test_plain_http_without_credentials_needs_no_switch(
    tmp_path: Path, http_server: Any, git_cli: Git
) -> None:
    """Nothing secret to protect: an anonymous http:// remote is the operator's choice."""
    http_server.password = ""  # the server still asks; git has nothing to answer with
    with open_store(tmp_path / "a.git", url=http_server.url) as store:
        store.commit([configmap("a")])
        with pytest.raises(GitStoreError) as failed:
            store.push()
    assert not isinstance(failed.value, InsecureTransport)
    assert http_server.requests  # git did talk to the server


def test_a_redirect_from_https_to_http_is_not_followed_with_credentials(
    tmp_path: Path, https_server: Any, http_server: Any, token_file: Path
) -> None:
    https_server.redirect_to = f"http://127.0.0.1:{http_server.port}"
    https = HttpsSettings(
        username=http_server.username,
        token_file=str(token_file),
        ca_file=str(https_server.ca_file),
    )
    with open_store(tmp_path / "a.git", url=https_server.url, https=https) as store:
        store.commit([configmap("a")])
        with pytest.raises(GitStoreError):
            store.push()
    assert https_server.requests  # the https server answered with its redirect
    assert http_server.requests == []  # and nothing went to the plain http one
