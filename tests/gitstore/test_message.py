"""Commit messages and field-manager attribution (pure, no repository)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter.attribution import Actor, Attribution, ChangeKind
from exporter.gitstore.message import (
    ObjectChange,
    build_message,
    build_subject,
    changed_paths,
    covers,
    format_path,
    responsible_for_body,
    responsible_for_paths,
)
from exporter.layout import ObjectKey
from exporter.messages import FieldManager

WEB = ObjectKey("apps", "deployments", "shop", "web")
SCRIPTS = ObjectKey("", "configmaps", "shop", "scripts")
EDITOR = Actor(
    "kubectl-edit",
    "kubectl-edit@field-manager.kube2git.invalid",
    Attribution.FIELD_MANAGER,
    time="2024-05-01T10:00:00Z",
)

APPLY = FieldManager(
    "kubectl-client-side-apply",
    "Update",
    "2024-01-01T00:00:00Z",
    "",
    {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}},
                    }
                }
            },
        },
    },
)
EDIT = FieldManager(
    "kubectl-edit",
    "Update",
    "2024-05-01T10:00:00Z",
    "",
    {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}}},
)
STATUS = FieldManager(
    "kube-controller-manager",
    "Update",
    "2024-06-01T00:00:00Z",
    "status",
    {"f:status": {"f:replicas": {}}, "f:spec": {"f:replicas": {}}},
)


def deployment(image: str, replicas: int = 2) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
        },
    }


def test_changed_paths_types_list_indices() -> None:
    paths = changed_paths(deployment("nginx:1"), deployment("nginx:2", replicas=3))
    assert sorted(paths, key=str) == sorted(
        [("spec", "replicas"), ("spec", "template", "spec", "containers", 0, "image")], key=str
    )


def test_format_path_quotes_keys_that_are_not_identifiers() -> None:
    assert format_path(("spec", "containers", 0, "image")) == ".spec.containers[0].image"
    assert (
        format_path(("metadata", "labels", "app.kubernetes.io/name"))
        == '.metadata.labels["app.kubernetes.io/name"]'
    )


def test_covers_matches_list_items_at_any_index_and_owned_subtrees() -> None:
    image = ("spec", "template", "spec", "containers", 3, "image")
    assert covers(EDIT.fields, image)
    assert not covers(EDIT.fields, ("spec", "replicas"))
    assert covers(APPLY.fields, ("metadata", "labels", "app"))
    assert not covers(APPLY.fields, ("metadata", "annotations", "x"))
    assert covers({"f:data": {}}, ("data", "key"))  # an atomic field owns what is below it
    assert not covers({}, ("spec",))


def test_newest_covering_manager_is_responsible_and_status_is_ignored() -> None:
    managers = (APPLY, EDIT, STATUS)
    image = ("spec", "template", "spec", "containers", 0, "image")
    assert responsible_for_paths(managers, [image]) == EDIT
    assert responsible_for_paths(managers, [("spec", "replicas")]) == APPLY
    assert responsible_for_paths(managers, [("metadata", "annotations", "gone")]) is None
    assert responsible_for_body(managers, deployment("nginx:1")) == EDIT


def test_message_for_a_kubectl_edit() -> None:
    change = ObjectChange(
        "modified",
        WEB,
        "Deployment",
        (".spec.template.spec.containers[0].image",),
        EDIT,
        "12345",
    )
    message = build_message(
        [change, ObjectChange("added", SCRIPTS, "ConfigMap", (), EDIT)],
        actor=EDITOR,
        change_kind=ChangeKind.MANUAL,
    )
    assert message.subject == "shop: Deployment web modified, ConfigMap scripts added"
    assert message.actor == EDITOR
    assert message.text == (
        "shop: Deployment web modified, ConfigMap scripts added\n"
        "\n"
        "added ConfigMap shop/scripts by kubectl-edit\n"
        "modified Deployment shop/web by kubectl-edit (resourceVersion 12345)\n"
        "  .spec.template.spec.containers[0].image\n"
        "\n"
        "Attribution: field-manager\n"
        "Change-Kind: manual\n"
        "Field-Manager: kubectl-edit\n"
        "Resource-Version: 12345\n"
    )


def test_a_deletion_without_audit_says_nobody_knows_who() -> None:
    unknown = Actor("unknown", "unknown@kube2git.invalid", Attribution.NONE)
    message = build_message([ObjectChange("deleted", SCRIPTS, "ConfigMap")], actor=unknown)
    assert message.text == (
        "shop: ConfigMap scripts deleted\n"
        "\n"
        "deleted ConfigMap shop/scripts\n"
        "\n"
        "Attribution: none\n"
        "Change-Kind: unknown\n"
    )


def test_big_batches_get_a_count_subject_and_a_capped_body() -> None:
    changes = [
        ObjectChange("added", ObjectKey("", "configmaps", f"ns{i % 37}", f"cm{i}"), "ConfigMap")
        for i in range(400)
    ] + [
        ObjectChange(
            "modified",
            ObjectKey("", "configmaps", f"ns{i}", "x"),
            "ConfigMap",
            (".data.a",),
            EDIT if i % 2 else APPLY,
            str(1000 + i),
        )
        for i in range(12)
    ]
    message = build_message(changes, actor=EDITOR, max_objects=50)
    assert message.subject == "412 objects: 400 added, 12 modified in 37 namespaces"
    assert "… and 362 more objects" in message.text
    assert message.text.endswith(
        "Field-Manager: kubectl-edit\n"  # a tie, broken by who acted last
        "Field-Manager: kubectl-client-side-apply\n"
        "Resource-Version: 1011\n"
    )


def test_subject_across_namespaces_and_cluster_scope() -> None:
    role = ObjectKey("rbac.authorization.k8s.io", "clusterroles", None, "admin")
    assert build_subject([ObjectChange("deleted", role, "ClusterRole")]) == (
        "cluster: ClusterRole admin deleted"
    )
    other = ObjectKey("", "configmaps", "kube-system", "x")
    assert build_subject(
        [ObjectChange("added", other, "ConfigMap"), ObjectChange("modified", WEB, "Deployment")]
    ) == ("Deployment shop/web modified, ConfigMap kube-system/x added")


def test_in_a_fleet_the_subject_starts_with_the_cluster_and_a_trailer_names_it() -> None:
    message = build_message(
        [ObjectChange("deleted", SCRIPTS, "ConfigMap")], actor=EDITOR, cluster="prod-eu"
    )
    assert message.subject == "prod-eu: shop: ConfigMap scripts deleted"
    trailers = message.text.split("\n\n")[-1].splitlines()
    assert trailers[0] == "Cluster: prod-eu"


def test_a_cluster_name_counts_against_the_subject_length() -> None:
    changes = [
        ObjectChange("added", ObjectKey("", "configmaps", "shop", f"web-{i}"), "ConfigMap")
        for i in range(2)
    ]
    assert build_subject(changes) == "shop: ConfigMap web-0 added, ConfigMap web-1 added"
    named = build_subject(changes, cluster="a-rather-long-cluster-name")
    assert named == "a-rather-long-cluster-name: shop: 2 objects: 2 added"
    assert len(named) <= 72


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["added", "modified", "deleted"]),
            st.sampled_from([None, "a", "shop"]),
            st.text("ab-", min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_a_subject_names_the_objects_whenever_their_names_fit(
    rows: list[tuple[str, str | None, str]],
) -> None:
    """However many objects a commit holds, the subject names them in order (modifications
    first) when that fits in 72 characters, and counts them otherwise."""
    changes = [ObjectChange(a, ObjectKey("", "configmaps", ns, n), "C") for a, ns, n in rows]
    order = {"modified": 0, "added": 1, "deleted": 2}
    ordered = sorted(changes, key=lambda c: (order[c.action], c.key.path))
    scopes = {c.key.namespace or "cluster" for c in changes}
    if len(scopes) == 1:
        named = f"{next(iter(scopes))}: " + ", ".join(f"C {c.key.name} {c.action}" for c in ordered)
    else:
        named = ", ".join(
            f"C {c.key.name if c.key.namespace is None else f'{c.key.namespace}/{c.key.name}'} "
            f"{c.action}"
            for c in ordered
        )
    subject = build_subject(changes)
    assert (subject == named) == (len(named) <= 72)
