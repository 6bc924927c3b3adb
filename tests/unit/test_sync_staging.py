"""A large sync stages its files in the repository as it lists, and holds blob ids instead.

The initial sync of 100,000 objects held every file until its one commit (most of the 678 MiB
``kube2git run`` peaked at). Now a type's files go into the repository once they add up to
``stage_bytes``; the commit that follows names them by id. What it commits must not change:
the same tree, byte for byte, as a sync that held everything.

The cluster is a Python double serving one page of objects: what is tested is what the sync
does with them (the integration tests and the benchmark run it against real API servers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from exporter.cluster import ApiResource, Discovery, Page
from exporter.coalescer import Coalescer, Pacer
from exporter.config import PacingSettings, Settings, make_pipeline
from exporter.gitstore import GitSettings, GitStore
from exporter.messages import Upsert
from exporter.sync import FullSync
from filters import HpaIndex

WIDGETS = ApiResource("example.com", "v1", "widgets", "Widget", namespaced=True)


class OnePage:
    """Serves ``count`` widgets of about 200 bytes each in one page."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def discover(self) -> Discovery:
        return Discovery((WIDGETS,), ())

    async def read(self, resource: ApiResource) -> AsyncIterator[Page]:
        assert resource == WIDGETS
        yield Page([_widget(i) for i in range(self.count)], resource_version="9")


def _widget(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": f"w-{index:04d}", "namespace": "ns"},
        "spec": {"size": index, "note": f"widget number {index} " + "x" * 150},
    }


async def _sync(store: GitStore, *, stage_bytes: int | None) -> list[Any]:
    settings = Settings()
    hpa_index = HpaIndex()
    sync = FullSync(
        OnePage(120),  # type: ignore[arg-type]
        settings=settings,
        pipeline=make_pipeline(settings, hpa_index=hpa_index),
        hpa_index=hpa_index,
        blob_id=store.blob_id,
        stage=store.stage if stage_bytes is not None else None,
        stage_bytes=stage_bytes or 0,
    )
    changes, _ = await sync.run(store.index())
    return changes


async def test_a_staged_sync_commits_the_same_tree_holding_ids_not_files(tmp_path: Path) -> None:
    with (
        GitStore(tmp_path / "held.git", settings=GitSettings()) as held,
        GitStore(tmp_path / "staged.git", settings=GitSettings()) as staged,
    ):
        holding = await _sync(held, stage_bytes=None)
        staging = await _sync(staged, stage_bytes=4096)
        assert all(isinstance(c, Upsert) and c.content for c in holding)
        # The page holds about 30 KB of files: all staged, as one batch of them.
        assert all(isinstance(c, Upsert) and not c.content and c.staged for c in staging)
        assert [c.key for c in staging] == [c.key for c in holding]
        first = held.commit(holding)
        second = staged.commit(staging)
        assert first is not None
        assert second is not None
        assert held.index() == staged.index()
        assert first.subject == second.subject == "ns: 120 objects: 120 added"
        for path in held.index():
            assert staged.read(path) == held.read(path)


async def test_the_coalescer_knows_a_staged_file_by_its_id(tmp_path: Path) -> None:
    with GitStore(tmp_path / "repo.git", settings=GitSettings()) as store:
        staging = await _sync(store, stage_bytes=1)
        coalescer = Coalescer({}, blob_id=store.blob_id, pacer=Pacer(PacingSettings()))
        for change in staging:
            coalescer.offer(change)
        batch = coalescer.take()
        assert len(batch.changes) == 120
        store.commit_batch(list(batch.changes))
        coalescer.committed_batch(batch)
        assert coalescer.committed == store.index()
        # The same object listed again (its file in full this time) is no change.
        again = await _sync(store, stage_bytes=None)
        assert again == []
