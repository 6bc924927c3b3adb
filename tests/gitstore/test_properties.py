"""Property tests: the branch tip always holds exactly what the changes say."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.gitstore import GitSettings, GitStore, PackSettings
from exporter.gitstore.transport import scrub, url_kind
from exporter.layout import ObjectKey
from exporter.messages import Change, Delete, Upsert

KEYS = st.builds(
    ObjectKey,
    group=st.sampled_from(["", "apps"]),
    resource=st.sampled_from(["configmaps", "deployments"]),
    namespace=st.sampled_from([None, "a", "b"]),
    name=st.sampled_from(["x", "y", "z", "with:colon", ".hidden"]),
)
CHANGES = st.one_of(
    st.builds(
        lambda key, value: Upsert(key, "Thing", f"v: {value}\n".encode(), {"v": value}),
        KEYS,
        st.integers(0, 3),
    ),
    st.builds(lambda key: Delete(key, "Thing"), KEYS),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(CHANGES, max_size=6), max_size=6))
def test_tip_matches_a_model_of_the_changes(batches: list[list[Change]]) -> None:
    model: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings_ = GitSettings(pack=PackSettings(loose_objects_threshold=20, max_packs=2))
        with GitStore(Path(tmp) / "r.git", settings=settings_) as store:
            for batch in batches:
                before = dict(model)
                for change in batch:
                    if isinstance(change, Upsert):
                        model[change.key.path] = change.content
                    else:
                        model.pop(change.key.path, None)
                head = store.head()
                info = store.commit(batch)
                if model == before:
                    assert info is None
                    assert store.head() == head
                else:
                    assert info is not None
                    assert info.parent == head
                assert store.index() == {p: store.blob_id(c) for p, c in model.items()}
                for path, content in model.items():
                    assert store.read(path) == content


def test_scrub_removes_userinfo_and_secret_values() -> None:
    text = "fatal: unable to access 'https://bob:hunter22@git.example.com/r.git/': 401"
    assert scrub(text) == "fatal: unable to access 'https://***@git.example.com/r.git/': 401"
    assert scrub("token tok-123 rejected", ("tok-123",)) == "token *** rejected"


def test_url_kinds() -> None:
    assert url_kind("ssh://git@host:2222/r.git") == "ssh"
    assert url_kind("git@github.com:org/repo.git") == "ssh"
    assert url_kind("https://host/r.git") == "http"
    assert url_kind("/srv/git/r.git") == "local"
    assert url_kind("file:///srv/git/r.git") == "local"


def test_importing_the_package_does_not_import_pygit2() -> None:
    code = (
        "import sys, exporter.gitstore as g, exporter.gitstore.settings, "
        "exporter.gitstore.message\n"
        "assert 'pygit2' not in sys.modules, 'pygit2 imported eagerly'\n"
        "g.GitStore\n"
        "assert 'pygit2' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
