"""Which files of a shared branch one writer owns (exporter/gitstore/ownership.py).

A fleet member owns ``clusters/<name>/``; a shard owns its types' folders. Every path a
writer can change goes through these answers, so they are pinned here exactly.
"""

from __future__ import annotations

import pytest

from exporter.gitstore.ownership import OutsideOwnership, Ownership

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
