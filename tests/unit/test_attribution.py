"""Which actor a change is attributed to, and whether it counts as manual (pure rules)."""

from __future__ import annotations

from exporter.attribution import (
    Actor,
    Attribution,
    AuditSettings,
    Automation,
    ChangeKind,
    identify,
)
from exporter.messages import AuditUser, FieldManager, Gap

EXPORTER = ("kube2git", "kube2git@kube2git.invalid")
EDIT = FieldManager("kubectl-edit", "Update", "2024-05-01T10:00:00Z", "", {})
HELM = FieldManager("helm", "Update", "2024-05-01T10:00:00Z", "", {})


def actor(
    user: AuditUser | None = None, manager: FieldManager | None = None, gap: Gap | None = None
) -> Actor:
    return identify(
        user=user,
        manager=manager,
        gap=gap,
        settings=AuditSettings(),
        exporter=EXPORTER,
        manager_email_domain="field-manager.kube2git.invalid",
    )


def test_the_surest_source_wins() -> None:
    alice = AuditUser("alice", ("devs",), time="2024-05-01T10:00:01Z")
    assert actor(alice, EDIT).attribution is Attribution.AUDIT
    assert (actor(alice, EDIT).name, actor(alice, EDIT).email) == (
        "alice",
        "alice@user.kube2git.invalid",
    )
    assert actor(None, EDIT).attribution is Attribution.FIELD_MANAGER
    assert actor().name == "unknown"
    assert actor().attribution is Attribution.NONE
    after_gap = actor(alice, EDIT, Gap.RELIST)
    assert (after_gap.name, after_gap.attribution) == ("kube2git", Attribution.NONE)


def test_service_account_users_get_a_usable_email() -> None:
    deployer = actor(AuditUser("system:serviceaccount:ci:deployer"))
    assert deployer.email == "system:serviceaccount:ci:deployer@user.kube2git.invalid"
    assert actor(AuditUser("Jane Doe <jd>")).email == "Jane-Doe--jd-@user.kube2git.invalid"


def test_automation_is_matched_on_user_or_field_manager() -> None:
    automation = Automation(AuditSettings().automation)
    assert automation.kind(actor(None, EDIT)) is ChangeKind.MANUAL
    assert automation.kind(actor(None, HELM)) is ChangeKind.AUTOMATION
    flux = AuditUser("system:serviceaccount:flux-system:kustomize-controller")
    assert automation.kind(actor(flux, EDIT)) is ChangeKind.AUTOMATION
    assert automation.kind(actor(AuditUser("alice"), EDIT)) is ChangeKind.MANUAL
    assert automation.kind(actor(AuditUser("alice"), HELM)) is ChangeKind.AUTOMATION
    assert automation.kind(actor()) is ChangeKind.UNKNOWN
    assert automation.kind(actor(None, EDIT, Gap.RESTART)) is ChangeKind.UNKNOWN
    custom = Automation(["kubectl-*"])
    assert custom.kind(actor(None, EDIT)) is ChangeKind.AUTOMATION
    assert custom.kind(actor(None, HELM)) is ChangeKind.MANUAL


def test_a_user_name_git_would_drop_falls_back_to_the_field_manager() -> None:
    """git trims spaces and ``.,:;<>"'`` from a name's ends and refuses an empty one: such a
    user cannot author a commit, so the next surest source does (never a failed commit)."""
    for username in ("", " ", "::", ". ,"):
        fallback = actor(AuditUser(username), EDIT)
        assert (fallback.name, fallback.attribution) == ("kubectl-edit", Attribution.FIELD_MANAGER)
    assert actor(AuditUser("CORP\\alice")).name == "CORP\\alice"
    assert actor(AuditUser("eve\nbob")).name == "eve\\x0abob"
