"""Push to real servers on loopback: a bare repository, OpenSSH, and git smart HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from exporter.gitstore import (
    AuthenticationFailed,
    CredentialsUnavailable,
    GitSettings,
    GitStore,
    GitStoreError,
    HostKeyUnknown,
    HttpsSettings,
    PushRejected,
    RemoteSettings,
    RemoteTimeout,
    RemoteUnreachable,
    SshSettings,
)
from exporter.layout import ObjectKey
from exporter.messages import Delete, Upsert

Git = Callable[..., str]
NO_RETRY = ()
LOOPBACK_HTTP = {"allow_insecure_http": True}
"""The test server speaks plain http:// on loopback (test_insecure_http.py covers the refusal)."""


def configmap(name: str, value: str = "v", namespace: str = "shop") -> Upsert:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"key": value},
    }
    content = yaml.safe_dump(body, sort_keys=False).encode()
    return Upsert(ObjectKey("", "configmaps", namespace, name), "ConfigMap", content, body)


def open_store(path: Path, **remote: Any) -> GitStore:
    remote.setdefault("retry_delays", NO_RETRY)
    remote.setdefault("operation_timeout", 60.0)
    return GitStore(path, settings=GitSettings(remote=RemoteSettings(**remote)))


def remote_tip(git: Git, repo: Path, branch: str = "kube2git") -> str:
    return git("--git-dir", str(repo), "rev-parse", f"refs/heads/{branch}").strip()


def test_push_to_a_local_bare_repository(tmp_path: Path, bare_remote: Path, git_cli: Git) -> None:
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        assert store.push().remote_tip is None  # nothing committed yet
        store.commit([configmap("a")])
        first = store.push()
        assert first.pushed
        assert remote_tip(git_cli, bare_remote) == store.head()
        assert not store.push().pushed  # up to date: no remote call needed
        store.commit([configmap("a", "w")])
        store.commit([Delete(configmap("a").key, "ConfigMap")])
        second = store.push()
        assert second.pushed
        assert second.replayed == 0
        assert remote_tip(git_cli, bare_remote) == store.head()
    git_cli("--git-dir", str(bare_remote), "fsck", "--strict")


def test_remote_that_moved_on_gets_our_commits_replayed_on_top(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        store.commit([configmap("a"), configmap("shared", "base")])
        store.push()
        # someone else pushes to the same branch with the git CLI
        work = tmp_path / "someone"
        git_cli("clone", "--quiet", "--branch", "kube2git", str(bare_remote), str(work))
        (work / "README.md").write_text("hand-written\n")
        shared = work / "namespaces/shop/configmaps/shared.yaml"
        shared.write_text(shared.read_text().replace("base", "edited-in-git"))
        git_cli("add", "-A", cwd=work)
        git_cli("commit", "--quiet", "-m", "edit by hand", cwd=work)
        git_cli("push", "--quiet", "origin", "kube2git", cwd=work)
        theirs = git_cli("rev-parse", "HEAD", cwd=work).strip()
        # meanwhile the exporter records two more commits
        store.commit([configmap("b")])
        ours = configmap("shared", "cluster-value")
        store.commit([ours])
        with capture_logs() as logs:
            result = store.push()
        assert result.pushed
        assert result.replayed == 2
        assert result.conflicts == (ours.key.path,)
        tip = remote_tip(git_cli, bare_remote)
        assert tip == store.head()
        # nothing forced: their commit is an ancestor, both of ours are on top of it
        git_cli("--git-dir", str(bare_remote), "merge-base", "--is-ancestor", theirs, tip)
        subjects = git_cli(
            "--git-dir", str(bare_remote), "log", "--format=%s", "kube2git"
        ).splitlines()
        assert subjects[:3] == [
            "shop: ConfigMap shared modified",
            "shop: ConfigMap b added",
            "edit by hand",
        ]
        # the cluster's state wins the conflict; their other change is kept
        assert store.read(ours.key.path) == ours.content
        assert store.read("README.md") == b"hand-written\n"
        replayed = [e for e in logs if e["event"] == "gitstore.replayed"]
        assert replayed[0]["conflict_paths"] == [ours.key.path]
        assert replayed[0]["resolution"] == "cluster state wins"


def test_first_push_onto_an_existing_unrelated_branch(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    work = tmp_path / "someone"
    git_cli("init", "--quiet", "--initial-branch=kube2git", str(work))
    (work / "README.md").write_text("backup of the cluster\n")
    git_cli("add", "-A", cwd=work)
    git_cli("commit", "--quiet", "-m", "start", cwd=work)
    git_cli("push", "--quiet", str(bare_remote), "kube2git", cwd=work)
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        store.commit([configmap("a")])
        result = store.push()
        assert result.replayed == 1
        assert set(store.index()) == {"README.md", configmap("a").key.path}


def test_push_over_ssh(tmp_path: Path, ssh_server: Any, git_cli: Git) -> None:
    ssh = SshSettings(
        private_key_file=str(ssh_server.client_key), known_hosts_file=str(ssh_server.known_hosts)
    )
    with open_store(tmp_path / "local.git", url=ssh_server.url, ssh=ssh) as store:
        store.commit([configmap("a")])
        assert store.push().pushed
        assert remote_tip(git_cli, ssh_server.repo) == store.head()
        # and the moved-on case over the same transport
        git_cli("--git-dir", str(ssh_server.repo), "branch", "-f", "other", "kube2git")
        work = tmp_path / "someone"
        git_cli("clone", "--quiet", "--branch", "kube2git", str(ssh_server.repo), str(work))
        (work / "NOTES").write_text("x\n")
        git_cli("add", "-A", cwd=work)
        git_cli("commit", "--quiet", "-m", "notes", cwd=work)
        git_cli("push", "--quiet", "origin", "kube2git", cwd=work)
        store.commit([configmap("b")])
        result = store.push()
        assert result.replayed == 1
        assert remote_tip(git_cli, ssh_server.repo) == store.head()


def test_ssh_with_a_key_the_server_does_not_know(tmp_path: Path, ssh_server: Any) -> None:
    ssh = SshSettings(
        private_key_file=str(ssh_server.other_key), known_hosts_file=str(ssh_server.known_hosts)
    )
    with open_store(
        tmp_path / "local.git", url=ssh_server.url, ssh=ssh, retry_delays=(0.01,) * 3
    ) as store:
        store.commit([configmap("a")])
        with pytest.raises(AuthenticationFailed, match="authentication failed"):
            store.push()


@pytest.mark.parametrize("which", ["empty_known_hosts", "wrong_known_hosts"])
def test_ssh_host_key_not_in_known_hosts(tmp_path: Path, ssh_server: Any, which: str) -> None:
    ssh = SshSettings(
        private_key_file=str(ssh_server.client_key),
        known_hosts_file=str(getattr(ssh_server, which)),
    )
    with open_store(tmp_path / "local.git", url=ssh_server.url, ssh=ssh) as store:
        store.commit([configmap("a")])
        with pytest.raises(HostKeyUnknown, match="host key"):
            store.push()
    assert "127.0.0.1" not in ssh_server.empty_known_hosts.read_text()  # never learned


def test_missing_key_file_is_reported(tmp_path: Path, ssh_server: Any) -> None:
    ssh = SshSettings(private_key_file=str(tmp_path / "nope"))
    with open_store(tmp_path / "local.git", url=ssh_server.url, ssh=ssh) as store:
        store.commit([configmap("a")])
        with pytest.raises(CredentialsUnavailable, match="nope"):
            store.push()


def test_push_over_http_with_basic_auth_from_env(
    tmp_path: Path, http_server: Any, git_cli: Git, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_GIT_PASSWORD", http_server.password)
    https = HttpsSettings(
        username=http_server.username, password_env="BACKUP_GIT_PASSWORD", **LOOPBACK_HTTP
    )
    with open_store(tmp_path / "local.git", url=http_server.url, https=https) as store:
        store.commit([configmap(f"cm{i}", "x" * 2000 + str(i)) for i in range(300)])
        assert store.push().pushed
        assert remote_tip(git_cli, http_server.repo) == store.head()


def test_push_over_http_with_a_token_file(tmp_path: Path, http_server: Any, git_cli: Git) -> None:
    token = tmp_path / "token"
    token.write_text(http_server.password + "\n")
    https = HttpsSettings(username=http_server.username, token_file=str(token), **LOOPBACK_HTTP)
    with open_store(tmp_path / "local.git", url=http_server.url, https=https) as store:
        store.commit([configmap("a")])
        assert store.push().pushed
        assert remote_tip(git_cli, http_server.repo) == store.head()


def test_credentials_never_reach_logs_or_errors(
    tmp_path: Path, http_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wr0ng-Secret-Value"
    monkeypatch.setenv("BACKUP_GIT_PASSWORD", wrong)
    https = HttpsSettings(
        username=http_server.username, password_env="BACKUP_GIT_PASSWORD", **LOOPBACK_HTTP
    )
    with capture_logs() as logs:
        with open_store(tmp_path / "a.git", url=http_server.url, https=https) as store:
            store.commit([configmap("a")])
            with pytest.raises(AuthenticationFailed) as failed:
                store.push()
        # credentials embedded in the URL, then an unreachable port with retries
        insecure = HttpsSettings(**LOOPBACK_HTTP)
        secret_url = http_server.url.replace(
            "http://", f"http://{http_server.username}:{http_server.password}@"
        )
        with open_store(tmp_path / "b.git", url=secret_url, https=insecure) as store:
            store.commit([configmap("a")])
            assert store.push().pushed
        dead = f"http://user:{wrong}@127.0.0.1:{_closed_port()}/backup.git"
        with open_store(
            tmp_path / "c.git", url=dead, https=insecure, retry_delays=(0.01, 0.01)
        ) as store:
            store.commit([configmap("a")])
            with pytest.raises(RemoteUnreachable) as unreachable:
                store.push()
    texts = [str(failed.value), repr(failed.value), str(unreachable.value), repr(logs)]
    for text in texts:
        assert wrong not in text
        assert http_server.password not in text
    assert "***@127.0.0.1" in str(unreachable.value)
    assert any(e["event"] == "gitstore.push_retry" for e in logs)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_server_down_then_back_is_retried_until_it_succeeds(
    tmp_path: Path, http_server: Any, git_cli: Git, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", http_server.password)
    https = HttpsSettings(username=http_server.username, password_env="PW", **LOOPBACK_HTTP)
    http_server.stop()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            http_server.start()  # the server comes back during the third wait

    settings = GitSettings(
        remote=RemoteSettings(
            url=http_server.url, https=https, retry_delays=(1.0, 2.0, 4.0, 8.0, 16.0)
        )
    )
    with GitStore(tmp_path / "local.git", settings=settings, sleep=sleep) as store:
        store.commit([configmap("a")])
        with capture_logs() as logs:
            result = store.push()
    assert result.pushed
    assert result.attempts == 4
    assert len(sleeps) == 3
    for delay, base in zip(sleeps, (1.0, 2.0, 4.0), strict=True):
        assert base <= delay <= base * 1.2  # jitter stretches each delay by up to 20 %
    assert [e["event"] for e in logs].count("gitstore.push_retry") == 3
    assert remote_tip(git_cli, http_server.repo) == result.remote_tip


def test_retries_run_out(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/backup.git"
    sleeps: list[float] = []
    settings = GitSettings(remote=RemoteSettings(url=url, retry_delays=(1.0, 2.0)))
    with GitStore(tmp_path / "local.git", settings=settings, sleep=sleeps.append) as store:
        store.commit([configmap("a")])
        with pytest.raises(RemoteUnreachable):
            store.push()
    assert len(sleeps) == 2


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_hung_remote_times_out(tmp_path: Path, silent_server: int) -> None:
    url = f"http://127.0.0.1:{silent_server}/backup.git"
    with open_store(tmp_path / "local.git", url=url, operation_timeout=2.0) as store:
        store.commit([configmap("a")])
        with pytest.raises(RemoteTimeout, match="did not finish in 2s"):
            store.push()


def test_a_remote_hook_that_refuses_the_update(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    hook = bare_remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    with open_store(tmp_path / "local.git", url=str(bare_remote), retry_delays=(0.01,)) as store:
        store.commit([configmap("a")])
        with pytest.raises(PushRejected, match="refused refs/heads/kube2git"):
            store.push()
    assert "kube2git" not in git_cli("--git-dir", str(bare_remote), "branch", "--list")


def test_push_over_https_verifies_the_certificate(
    tmp_path: Path, https_server: Any, git_cli: Git, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", https_server.password)
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")  # ignored: verification cannot be turned off
    https = HttpsSettings(username=https_server.username, password_env="PW")
    with open_store(tmp_path / "a.git", url=https_server.url, https=https) as store:
        store.commit([configmap("a")])
        with pytest.raises(RemoteUnreachable, match="certificate"):
            store.push()
    trusted = HttpsSettings(
        username=https_server.username, password_env="PW", ca_file=str(https_server.ca_file)
    )
    with open_store(tmp_path / "b.git", url=https_server.url, https=trusted) as store:
        store.commit([configmap("a")])
        assert store.push().pushed
        assert remote_tip(git_cli, https_server.repo) == store.head()


def test_a_remote_branch_that_is_not_a_commit_is_a_git_store_error(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    """A broken remote (its branch file edited to name a tree: git itself refuses to write
    one) fails catching up with a one-line :class:`GitStoreError` the runner reports, never
    an ``AssertionError`` that crashes ``kube2git run``; the local branch stays as it was."""
    empty_tree = git_cli(
        "--git-dir", str(bare_remote), "hash-object", "-t", "tree", "-w", "/dev/null"
    ).strip()
    (bare_remote / "refs" / "heads" / "kube2git").write_text(empty_tree + "\n")
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        with pytest.raises(GitStoreError, match="branch kube2git does not point to a commit"):
            store.catch_up()
        assert store.head() is None
        store.commit([configmap("a")])
        ours = store.head()
        with pytest.raises(GitStoreError) as raised:
            store.catch_up()
        assert "\n" not in str(raised.value)
        assert store.head() == ours


def test_a_push_that_loses_the_race_at_the_remote_ref_update_is_replayed(
    tmp_path: Path, bare_remote: Path, git_cli: Git
) -> None:
    """Two writers push at once: ours passed the remote's checks, then another push moved the
    branch before ours updated it (``cannot lock ref … is at X but expected Y``). That is the
    compare-and-swap lost, the same as a branch that moved: fetch, replay, push again, not a
    refused push (which would wait out a backoff; with ten writers it made the p99 tail)."""
    hold, waiting, release = (tmp_path / name for name in ("hold", "waiting", "release"))
    with open_store(tmp_path / "local.git", url=str(bare_remote)) as store:
        store.commit([configmap("a")])
        store.push()
        hook = bare_remote / "hooks" / "pre-receive"
        hook.write_text(
            "#!/bin/sh\n"
            f"if [ -e {hold} ]; then\n"
            f"  rm {hold}; touch {waiting}\n"
            f"  while [ ! -e {release} ]; do sleep 0.05; done\n"
            "fi\n"
        )
        hook.chmod(0o755)
        hold.touch()
        store.commit([configmap("ours")])
        outcome: dict[str, Any] = {}

        def push() -> None:
            try:
                outcome["result"] = store.push()
            except Exception as error:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = error

        pushing = threading.Thread(target=push)
        pushing.start()
        try:
            for _ in range(600):
                if waiting.exists():
                    break
                threading.Event().wait(0.05)
            assert waiting.exists(), "our push never reached the remote's hook"
            work = tmp_path / "other-writer"
            git_cli("clone", "--quiet", "--branch", "kube2git", str(bare_remote), str(work))
            (work / "namespaces/shop/configmaps/theirs.yaml").write_text("theirs\n")
            git_cli("add", "-A", cwd=work)
            git_cli("commit", "--quiet", "-m", "another writer", cwd=work)
            git_cli("push", "--quiet", "origin", "kube2git", cwd=work)
            theirs = git_cli("rev-parse", "HEAD", cwd=work).strip()
        finally:
            release.touch()
            pushing.join(timeout=60)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        assert result.pushed
        assert result.replayed == 1
        tip = remote_tip(git_cli, bare_remote)
        assert tip == store.head()
        git_cli("--git-dir", str(bare_remote), "merge-base", "--is-ancestor", theirs, tip)
        assert store.read("namespaces/shop/configmaps/theirs.yaml") == b"theirs\n"
