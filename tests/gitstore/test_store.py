"""Committing to the backup branch: content, idempotence, deletes, history, crash safety."""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pygit2
import pytest
import yaml

from exporter.gitstore import (
    GitSettings,
    GitStore,
    NotLeading,
    PackSettings,
    RepositoryLocked,
)
from exporter.layout import ObjectKey
from exporter.messages import (
    AuditUser,
    Delete,
    FieldManager,
    Gap,
    Upsert,
    observed_after_gap,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE: dict[str, Any] = {"f:image": {}}


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    return done.stdout


def configmap(namespace: str, name: str, data: dict[str, str] | None = None) -> Upsert:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data or {"key": "value"},
    }
    content = yaml.safe_dump(body, sort_keys=False).encode()
    return Upsert(ObjectKey("", "configmaps", namespace, name), "ConfigMap", content, body)


def deployment(image: str, managers: tuple[FieldManager, ...] = (), rv: str = "1") -> Upsert:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
        },
    }
    content = yaml.safe_dump(body, sort_keys=False).encode()
    key = ObjectKey("apps", "deployments", "shop", "web")
    return Upsert(key, "Deployment", content, body, managers, rv)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with GitStore(tmp_path / "backup.git") as opened:
        yield opened


def fsck(path: Path) -> None:
    done = subprocess.run(
        ["git", "--git-dir", str(path), "fsck", "--strict", "--no-dangling"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "missing" not in done.stdout.lower()


def test_commit_writes_files_without_work_tree_or_index(store: GitStore) -> None:
    change = configmap("shop", "scripts")
    info = store.commit([change])
    assert info is not None
    assert info.added == ("namespaces/shop/configmaps/scripts.yaml",)
    assert store.read(change.key.path) == change.content
    assert store.index() == {change.key.path: store.blob_id(change.content)}
    assert store.head() == info.id
    assert not (store.path / "index").exists()
    assert git("--git-dir", str(store.path), "rev-parse", "--is-bare-repository").strip() == "true"
    assert git("--git-dir", str(store.path), "show", f"kube2git:{change.key.path}").encode() == (
        change.content
    )
    fsck(store.path)


def test_same_content_twice_makes_no_commit(store: GitStore) -> None:
    first = store.commit([configmap("shop", "a"), configmap("shop", "b")])
    assert first is not None
    assert store.commit([configmap("shop", "a"), configmap("shop", "b")]) is None
    assert store.commit([]) is None
    assert store.head() == first.id


def test_deletes(store: GitStore) -> None:
    a, b = configmap("shop", "a"), configmap("shop", "b")
    store.commit([a, b, configmap("other", "c")])
    info = store.commit([Delete(a.key, "ConfigMap", "7")])
    assert info is not None
    assert info.deleted == (a.key.path,)
    assert info.subject == "shop: ConfigMap a deleted"
    assert store.read(a.key.path) is None
    assert store.commit([Delete(a.key, "ConfigMap")]) is None  # already absent
    # deleting the last object of a namespace removes its directory
    store.commit([Delete(ObjectKey("", "configmaps", "other", "c"), "ConfigMap")])
    assert set(store.index()) == {b.key.path}
    listing = git("--git-dir", str(store.path), "ls-tree", "-d", "kube2git", "namespaces/")
    assert "other" not in listing
    fsck(store.path)


def test_last_change_to_a_path_wins_within_a_batch(store: GitStore) -> None:
    a = configmap("shop", "a")
    store.commit([a])
    assert store.commit([Delete(a.key, "ConfigMap"), a]) is None
    info = store.commit([configmap("shop", "a", {"k": "1"}), Delete(a.key, "ConfigMap")])
    assert info is not None
    assert info.deleted == (a.key.path,)


def test_kubectl_edit_change_is_attributed_and_described(store: GitStore) -> None:
    created = FieldManager(
        "kubectl-client-side-apply",
        "Update",
        "2024-01-01T00:00:00Z",
        "",
        {
            "f:spec": {
                "f:replicas": {},
                "f:template": {
                    "f:spec": {"f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}}}}
                },
            }
        },
    )
    store.commit([deployment("nginx:1", (created,))])
    edited = FieldManager(
        "kubectl-edit",
        "Update",
        "2024-05-01T10:00:00+02:00",
        "",
        {
            "f:spec": {
                "f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}
            }
        },
    )
    info = store.commit([deployment("nginx:2", (created, edited), rv="12345")])
    assert info is not None
    assert info.subject == "shop: Deployment web modified"
    log = git(
        "--git-dir", str(store.path), "log", "-1", "--format=%an <%ae>%n%aI%n%cn%n%B", "kube2git"
    )
    assert log == (
        "kubectl-edit <kubectl-edit@field-manager.kube2git.invalid>\n"
        "2024-05-01T10:00:00+02:00\n"
        "kube2git\n"
        "shop: Deployment web modified\n"
        "\n"
        "modified Deployment shop/web by kubectl-edit (resourceVersion 12345)\n"
        "  .spec.template.spec.containers[0].image\n"
        "\n"
        "Attribution: field-manager\n"
        "Change-Kind: manual\n"
        "Field-Manager: kubectl-edit\n"
        "Resource-Version: 12345\n\n"
    )
    trailers = git(
        "--git-dir", str(store.path), "log", "-1", "--format=%(trailers:key=Field-Manager)"
    )
    assert trailers.strip() == "Field-Manager: kubectl-edit"


def test_unattributed_change_is_authored_by_unknown_never_a_guess(store: GitStore) -> None:
    store.commit([deployment("nginx:1")])
    info = store.commit([deployment("nginx:2")])
    assert info is not None
    assert info.author == "unknown"
    author = git("--git-dir", str(store.path), "log", "-1", "--format=%an <%ae>", "kube2git")
    assert author.strip() == "unknown <unknown@kube2git.invalid>"


def trailers(store: GitStore, ref: str = "kube2git") -> dict[str, str]:
    out = git("--git-dir", str(store.path), "log", "-1", "--format=%(trailers:unfold)", ref)
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def edited(name: str, value: str, manager: str, time: str) -> Upsert:
    change = configmap("shop", name, {"key": value})
    owner = FieldManager(manager, "Update", time, "", {"f:data": {"f:key": {}}})
    return Upsert(change.key, change.kind, change.content, change.body, (owner,), "7")


def test_a_batch_of_several_actors_becomes_one_commit_per_actor(store: GitStore) -> None:
    store.commit(observed_after_gap([configmap("shop", n) for n in "abcd"], Gap.INITIAL_CAPTURE))
    batch = [
        edited("a", "1", "kubectl-edit", "2024-05-01T10:00:00Z"),
        Delete(ObjectKey("", "configmaps", "shop", "b"), "ConfigMap"),
        edited("c", "1", "helm", "2024-05-01T10:00:01Z"),
        edited("d", "1", "kubectl-edit", "2024-05-01T10:00:02Z"),
        edited("a", "2", "kubectl-edit", "2024-05-01T10:00:03Z"),  # latest state wins
    ]
    infos = store.commit_batch(batch)
    log = git("--git-dir", str(store.path), "log", "--format=%an|%s", "kube2git").splitlines()
    assert log == [
        "helm|shop: ConfigMap c modified",
        "unknown|shop: ConfigMap b deleted",
        "kubectl-edit|shop: ConfigMap a modified, ConfigMap d modified",
        "kube2git|shop: 4 objects: 4 added",
    ]
    assert [i.author for i in infos] == ["kubectl-edit", "unknown", "helm"]
    assert trailers(store, "kube2git~2")["Change-Kind"] == "manual"
    assert trailers(store, "kube2git~1") == {"Attribution": "none", "Change-Kind": "unknown"}
    assert trailers(store)["Change-Kind"] == "automation"
    assert trailers(store, "kube2git~3") == {
        "Attribution": "none",
        "Change-Kind": "unknown",
        "Observed-After-Gap": "initial-capture",
    }
    assert yaml.safe_load(store.read("namespaces/shop/configmaps/a.yaml") or b"") == {
        **configmap("shop", "a", {"key": "2"}).body
    }


def test_one_object_change_rewrites_only_the_trees_on_its_path(store: GitStore) -> None:
    store.commit([configmap(f"ns{i % 50}", f"cm{i}") for i in range(2000)])
    store.pack()
    before = store.index()
    info = store.commit([configmap("ns7", "cm7", {"key": "changed"})])
    assert info is not None
    # root, namespaces/, namespaces/ns7/, namespaces/ns7/configmaps/ + the blob + the commit
    loose = list((store.path / "objects").glob("[0-9a-f][0-9a-f]/*"))
    assert len(loose) == 6
    after = store.index()
    assert {p for p in after if after[p] != before[p]} == {"namespaces/ns7/configmaps/cm7.yaml"}


def loose_files(path: Path) -> int:
    return len(list((path / "objects").glob("[0-9a-f][0-9a-f]/*")))


def test_a_refused_commit_s_loose_objects_count_toward_the_pack_threshold(
    tmp_path: Path,
) -> None:
    """A commit the fence refuses has written its blobs and trees loose; the next commit
    that lands packs them once they pass the threshold (before, only the refused commit's
    trees counted, and the loose files on disk went past the threshold unpacked)."""
    settings = GitSettings(pack=PackSettings(loose_objects_threshold=20))
    leading = False
    with GitStore(tmp_path / "r.git", settings=settings) as store:
        store.fence = lambda: leading
        with pytest.raises(NotLeading):
            store.commit([configmap("shop", f"cm{i}") for i in range(30)])
        assert store.head() is None
        assert loose_files(store.path) > 30  # written, though never on the branch
        leading = True
        store.commit([configmap("shop", "after")])
        assert loose_files(store.path) <= settings.pack.loose_objects_threshold
        assert list(store.index()) == ["namespaces/shop/configmaps/after.yaml"]
        fsck(store.path)


def test_pack_keeps_every_object_and_removes_loose_files(tmp_path: Path) -> None:
    settings = GitSettings(pack=PackSettings(loose_objects_threshold=100, max_packs=3))
    with GitStore(tmp_path / "r.git", settings=settings) as store:
        for round_ in range(6):
            store.commit([configmap("shop", f"cm{i}", {"r": str(round_)}) for i in range(60)])
        assert len(list((store.path / "objects" / "pack").glob("*.pack"))) <= 3
        store.pack()
        assert not list((store.path / "objects").glob("[0-9a-f][0-9a-f]/*"))
        assert len(store.index()) == 60
        fsck(store.path)
        assert int(git("--git-dir", str(store.path), "rev-list", "--count", "kube2git")) == 6


def test_an_incremental_pack_stores_each_tree_as_a_delta_of_its_earlier_version(
    tmp_path: Path,
) -> None:
    """Between full repacks, the loose objects of many small commits become one pack. Each
    commit rewrites the trees above its changed files, and trees of different namespaces
    that hold the same names have the same size. Given ids only, the delta search sorted them
    by size and stored most trees whole: at the cluster benchmark's scale M a 1.65 MB pack of
    19 commits, 0.75 MB when git packs the same objects knowing their paths."""
    settings = GitSettings(pack=PackSettings(automatic=False))
    with GitStore(tmp_path / "r.git", settings=settings) as store:
        store.commit([configmap(f"ns{n}", f"cm{i}") for n in range(20) for i in range(60)])
        store.pack(full=True)
        pack_dir = store.path / "objects" / "pack"
        full_pack = set(pack_dir.glob("pack-*.pack"))
        for round_ in range(40):
            store.commit(
                [
                    configmap(
                        f"ns{(3 * round_ + j) % 20}",
                        f"cm{(7 * round_ + j) % 60}",
                        {"r": str(round_)},
                    )
                    for j in range(3)
                ]
            )
        store.pack(full=False)
        (incremental,) = set(pack_dir.glob("pack-*.pack")) - full_pack
        fsck(store.path)
        listed = git("verify-pack", "-v", str(incremental.with_suffix(".idx")))
        ids = "".join(
            f"{line.split()[0]}\n"
            for line in listed.splitlines()
            if line.split()[1:2] in (["commit"], ["tree"], ["blob"])
        )
        without_paths = subprocess.run(
            [
                "git",
                "--git-dir",
                str(store.path),
                "pack-objects",
                "--stdout",
                "--no-reuse-delta",
                "--no-reuse-object",
            ],
            input=ids.encode(),
            capture_output=True,
            check=True,
        ).stdout
    assert incremental.stat().st_size < 0.7 * len(without_paths)


def test_second_writer_is_refused(store: GitStore) -> None:
    with pytest.raises(RepositoryLocked):
        GitStore(store.path)


def test_a_refused_second_writer_keeps_no_repository_open(store: GitStore) -> None:
    """A process that retries while another holds the lock, and keeps each error (a log
    with its traceback, an exception group), must not keep a libgit2 repository per try."""

    def live_repositories() -> int:
        gc.collect()  # pygit2's Repository is in a reference cycle of its own
        return sum(isinstance(thing, pygit2.Repository) for thing in gc.get_objects())

    before = live_repositories()
    refused: list[RepositoryLocked] = []
    for _ in range(20):
        try:
            GitStore(store.path)
        except RepositoryLocked as error:
            refused.append(error)
    assert len(refused) == 20
    assert live_repositories() == before


def test_stale_ref_lock_from_a_killed_writer_is_cleared(tmp_path: Path) -> None:
    path = tmp_path / "r.git"
    with GitStore(path) as store:
        store.commit([configmap("shop", "a")])
    (path / "refs" / "heads" / "kube2git.lock").write_text("garbage")
    with GitStore(path) as store:
        assert store.commit([configmap("shop", "b")]) is not None


CHILD = textwrap.dedent(
    """
    import sys, yaml
    from exporter.gitstore import GitStore, GitSettings, PackSettings
    from exporter.layout import ObjectKey
    from exporter.messages import Upsert

    bulk = int(sys.argv[3])
    settings = GitSettings(pack=PackSettings(loose_objects_threshold=10**9, bulk_threshold=bulk))
    store = GitStore(sys.argv[1], settings=settings)
    changes = []
    for i in range(int(sys.argv[2])):
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"cm{i}", "namespace": f"ns{i % 97}"},
                "data": {"key": "x" * 800 + str(i)}}
        content = yaml.safe_dump(body).encode()
        changes.append(Upsert(ObjectKey("", "configmaps", f"ns{i % 97}", f"cm{i}"),
                              "ConfigMap", content, body))
    print("ready", flush=True)
    store.commit(changes)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize(
    ("bulk_threshold", "midway"),
    [
        pytest.param(0, "loose", id="loose-objects"),
        pytest.param(1000, "tmp_pack", id="bulk-pack"),
    ],
)
def test_kill_9_in_the_middle_of_a_large_commit_leaves_a_valid_repository(
    tmp_path: Path, bulk_threshold: int, midway: str
) -> None:
    path = tmp_path / "r.git"
    with GitStore(path) as store:
        first = store.commit([configmap("shop", "before")])
        assert first is not None
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "20000", str(bulk_threshold)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    for line in child.stdout:  # structlog's default output shares stdout
        if line.strip() == "ready":
            break
    objects = path / "objects"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until it is well into writing blobs
        if midway == "loose" and sum(1 for _ in objects.glob("[0-9a-f][0-9a-f]/*")) > 3000:
            break
        if midway == "tmp_pack" and any(
            f.stat().st_size > 1_000_000 for f in (objects / "pack").glob("tmp_pack_*")
        ):
            break
        assert child.poll() is None, "the child finished before it could be killed"
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    fsck(path)
    with GitStore(path) as store:
        assert not list((path / "objects").glob("**/tmp_*"))  # leftovers cleared on open
        assert store.head() == first.id  # the interrupted commit never happened
        assert set(store.index()) == {"namespaces/shop/configmaps/before.yaml"}
        again = store.commit([configmap("shop", "after")])
        assert again is not None
        assert again.parent == first.id
    fsck(path)


def test_two_users_changes_to_one_object_in_one_batch_are_two_commits(store: GitStore) -> None:
    store.commit([configmap("shop", "a")])
    alice = dataclasses.replace(edited("a", "1", "kubectl-edit", "2024-05-01T10:00:00Z"))
    bob = edited("a", "2", "kubectl-scale", "2024-05-01T10:00:00.5Z")
    infos = store.commit_batch(
        [
            dataclasses.replace(alice, user=AuditUser("alice", time="2024-05-01T10:00:00Z")),
            dataclasses.replace(bob, user=AuditUser("bob", time="2024-05-01T10:00:00.5Z")),
        ]
    )
    assert [(i.author, i.actor.attribution.value if i.actor else "") for i in infos] == [
        ("alice", "audit"),
        ("bob", "audit"),
    ]
    log = git("--git-dir", str(store.path), "log", "-2", "--format=%an %ae", "kube2git")
    assert log.splitlines() == [
        "bob bob@user.kube2git.invalid",
        "alice alice@user.kube2git.invalid",
    ]
    assert trailers(store)["Field-Manager"] == "kubectl-scale"
    first = git(
        "--git-dir", str(store.path), "show", "kube2git~1:namespaces/shop/configmaps/a.yaml"
    )
    assert "key: '1'" in first


@pytest.mark.parametrize(
    "username",
    [
        "mallory\nChange-Kind: automation",
        "mallory\r\ncommitter Admin",
        "Mallory <admin@example.com>",
        "mallory\x00-hidden",
        "mallory\u2028Attribution: field-manager",
    ],
)
def test_an_audited_user_name_cannot_forge_headers_or_trailers_or_stop_commits(
    store: GitStore, username: str
) -> None:
    """A user name is whatever the authenticator says (an OIDC claim, a certificate's CN):
    it may hold newlines or angle brackets, and must neither fail the commit nor add a line."""
    store.commit([configmap("shop", "a")])
    change = edited("a", "1", "kubectl-edit", "2024-05-01T10:00:00Z")
    user = AuditUser(username, impersonated_by=f"{username}\nField-Manager: helm")
    info = store.commit(
        [dataclasses.replace(change, user=dataclasses.replace(user, time="2024-05-01T10:00:00Z"))]
    )
    assert info is not None
    fsck(store.path)
    author = git("--git-dir", str(store.path), "log", "-1", "--format=%an%x00%ae", "kube2git")
    name, email = author.rstrip("\n").split("\x00")
    assert name.lower().startswith("mallory")
    assert not any(ch in name + email for ch in "\n\r\x00\u2028<>")
    body = git("--git-dir", str(store.path), "log", "-1", "--format=%B", "kube2git")
    lines = body.rstrip("\n").split("\n")
    assert len(lines) == 10, body  # subject, blank, the object, its field, blank, 5 trailers
    assert trailers(store) == {
        "Attribution": "audit",
        "Change-Kind": "manual",
        "Impersonated-By": trailers(store)["Impersonated-By"],
        "Field-Manager": "kubectl-edit",
        "Resource-Version": "7",
    }
    assert "\n" not in trailers(store)["Impersonated-By"]


def many_configmaps(count: int, generation: int = 0) -> list[Upsert]:
    return [
        configmap(f"ns{i % 7}", f"cm{i}", {"n": f"{i}-{generation}" * 40}) for i in range(count)
    ]


def loose_blobs(path: Path) -> list[str]:
    names = [
        f"{d.name}{f.name}"
        for d in (path / "objects").glob("[0-9a-f][0-9a-f]")
        for f in d.iterdir()
    ]
    return [n for n in names if git("--git-dir", str(path), "cat-file", "-t", n).strip() == "blob"]


def test_large_commit_is_one_pack_that_git_reads_checks_clones_and_collects(tmp_path: Path) -> None:
    path = tmp_path / "r.git"
    # with one object larger than a stored deflate block (64 KiB)
    changes = [*many_configmaps(1500), configmap("big", "big", {"k": "x" * 200_000})]
    settings = GitSettings(pack=PackSettings(automatic=False, bulk_threshold=1000))
    with GitStore(path, settings=settings) as store:
        info = store.commit(changes)
        assert info is not None
    assert loose_blobs(path) == []  # every blob is in the one new pack
    assert len(list((path / "objects" / "pack").glob("pack-*.pack"))) == 1
    fsck(path)
    listed = git("--git-dir", str(path), "ls-tree", "-r", "--name-only", "kube2git").split()
    assert sorted(listed) == sorted(c.key.path for c in changes)
    for some in (changes[777], changes[-1]):
        shown = git("--git-dir", str(path), "show", f"kube2git:{some.key.path}").encode()
        assert shown == some.content
    clone = tmp_path / "clone"
    git("clone", "--quiet", "--branch", "kube2git", str(path), str(clone))
    assert all((clone / c.key.path).read_bytes() == c.content for c in changes)
    git("--git-dir", str(path), "gc", "--quiet")  # another client's maintenance
    fsck(path)
    with GitStore(path) as store:
        assert store.read(some.key.path) == some.content
        assert store.commit([configmap("shop", "after")]) is not None
    fsck(path)


def test_a_large_commit_is_recompressed_by_the_next_pack_even_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.git"
    pack_dir = path / "objects" / "pack"
    changes = many_configmaps(1500)
    raw_size = sum(len(c.content) for c in changes)
    settings = GitSettings(pack=PackSettings(automatic=False, bulk_threshold=1000))
    with GitStore(path, settings=settings) as store:
        store.commit(changes)
    # restarted before its automatic pack: the next pack still repacks and compresses all
    with GitStore(path, settings=settings) as store:
        store.commit([configmap("shop", "after")])
        store.pack()
    packs = list(pack_dir.glob("pack-*.pack"))
    assert len(packs) == 1
    assert packs[0].stat().st_size < raw_size / 2  # stored objects alone would exceed it
    fsck(path)
    with GitStore(path, settings=settings) as store:
        store.commit([configmap("shop", "later")])
        store.pack()  # no second full repack: the loose objects join a small new pack
    assert len(list(pack_dir.glob("pack-*.pack"))) == 2
    fsck(path)


def test_a_large_commit_with_fsync_is_one_valid_pack(tmp_path: Path) -> None:
    import pygit2

    path = tmp_path / "r.git"
    changes = many_configmaps(1100)
    settings = GitSettings(fsync=True, pack=PackSettings(automatic=False, bulk_threshold=1000))
    try:
        with GitStore(path, settings=settings) as store:
            assert store.commit(changes) is not None
            assert store.read(changes[-1].key.path) == changes[-1].content
    finally:
        pygit2.settings.enable_fsync_gitdir(False)  # libgit2's setting is process-wide
    assert loose_blobs(path) == []
    assert not list((path / "objects" / "pack").glob("tmp_*"))
    fsck(path)
