"""Which files of a shared branch one writer owns (exporter/gitstore/ownership.py).

A fleet member owns ``clusters/<name>/``; a shard owns its types' folders. Every path a
writer can change goes through these answers, so they are pinned here exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from exporter.gitstore import GitStore
from exporter.gitstore.ownership import OutsideOwnership, Ownership
from exporter.layout import ObjectKey
from exporter.messages import Delete
from exporter.sharding import ShardTypes
from tests.gitstore.test_push import configmap

CM = "namespaces/shop/configmaps/web.yaml"
DEPLOY = "namespaces/shop/deployments.apps/web.yaml"
ROLE = "cluster/clusterroles.rbac.authorization.k8s.io/admin.yaml"


def test_the_default_owns_the_whole_branch() -> None:
    whole = Ownership()
    assert whole.everything
    for path in (CM, "README.md", "clusters/prod/" + CM):
        assert whole.relative(path) == path
        assert whole.absolute(path) == path


def test_a_fleet_member_owns_its_folder_only() -> None:
    prod = Ownership.fleet("prod")
    assert not prod.everything
    assert prod.relative("clusters/prod/" + CM) == CM
    assert prod.relative("clusters/prod/notes.md") == "notes.md"
    assert prod.absolute(CM) == "clusters/prod/" + CM
    for foreign in (
        "clusters/prod-eu/" + CM,  # a sibling whose name starts the same
        "clusters/staging/" + CM,
        CM,  # the default layout at the root (an earlier, single-cluster backup)
        "clusters/prod",  # a file, not the folder
        "clusters/prod/",
        "README.md",
    ):
        assert not prod.owns(foreign), foreign
        assert prod.relative(foreign) is None
    with pytest.raises(OutsideOwnership, match=r"clusters/staging/.*outside.*clusters/prod/"):
        prod.check(["clusters/prod/" + CM, "clusters/staging/" + CM])


def test_a_shard_owns_its_types_folders_in_every_namespace() -> None:
    shard = Ownership(types=frozenset({("apps", "deployments"), ("", "configmaps")}))
    assert shard.owns(CM)
    assert shard.owns(DEPLOY)
    assert shard.owns("cluster/configmaps.x/oddly-scoped.yaml") is False  # another group
    assert not shard.owns(ROLE)
    assert not shard.owns("README.md")  # outside the layout: nobody's type
    with pytest.raises(OutsideOwnership, match=r"clusterroles.*outside.*configmaps, deployments"):
        shard.absolute(ROLE)


def test_a_shard_of_a_fleet_member_owns_its_types_below_the_folder() -> None:
    shard = Ownership(prefix="clusters/prod/", types=frozenset({("apps", "deployments")}))
    assert shard.absolute(DEPLOY) == "clusters/prod/" + DEPLOY
    assert not shard.owns(DEPLOY)
    assert not shard.owns("clusters/prod/" + CM)
    assert not shard.owns("clusters/staging/" + DEPLOY)


def test_a_replica_owns_the_types_of_the_shards_it_holds_and_takes_up_more(
    tmp_path: Path,
) -> None:
    """``run.shards``: the store of a replica holding shard 0 of 4 reads, writes and deletes
    only that shard's types (ConfigMaps hash to shard 0, ServiceAccounts to 3); once it takes
    up shard 3 too, ServiceAccounts are its own, and the files it could not see before are in
    its view of the branch."""
    account = dataclasses.replace(
        configmap("robot"),
        key=ObjectKey("", "serviceaccounts", "shop", "robot"),
        kind="ServiceAccount",
    )
    with GitStore(tmp_path / "all.git") as whole:
        whole.commit([configmap("web"), account])
    with GitStore(tmp_path / "all.git") as store:
        store.ownership = Ownership(types=ShardTypes(4, frozenset({0})))
        assert set(store.index()) == {configmap("web").key.path}
        assert store.read(account.key.path) is None
        with pytest.raises(OutsideOwnership, match="shard"):
            store.commit([dataclasses.replace(account, content=b"changed\n")])
        store.commit([configmap("web", "w")])
        store.ownership = Ownership(types=ShardTypes(4, frozenset({0, 3})))
        assert set(store.index()) == {configmap("web").key.path, account.key.path}
        store.commit([Delete(account.key, "ServiceAccount")])
        assert set(store.index()) == {configmap("web").key.path}
