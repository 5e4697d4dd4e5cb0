"""Referral handshake between agencies: request, accept, decline, revoke, done; transfers;
the consent-to-share gate and its audited override; receiver entitlement."""

from __future__ import annotations

from schemas.cases import (
    AgeAssessed,
    ConsentRecorded,
    HandoverAccepted,
    HandoverCompleted,
    HandoverDeclined,
    HandoverMode,
    HandoverRequested,
    HandoverRevoked,
    ReferralAcknowledged,
    RejectionReason,
    SharingOverrideRecorded,
    TransitionRecorded,
)
from services.cases.domain.model import HandoverStatus
from tests.unit.cases.case_builders import CHILD, Run, referral

REFER = {"mode": HandoverMode.referral}
TRANSFER = {"mode": HandoverMode.transfer}


def owned_by_sw() -> Run:
    return Run(referral(), routed_to=["sw-th"])


def test_accepted_referral_adds_the_agency_and_keeps_the_owner() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER)
    assert "ngo-th" not in run.case.members
    run.ok(HandoverAccepted, "ngo-th")
    assert run.case.owner == "sw-th"
    assert "ngo-th" in run.case.assigned


def test_transfer_changes_the_owner_only_when_the_receiver_accepts() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **TRANSFER)
    assert run.case.owner == "sw-th"
    run.ok(HandoverAccepted, "ngo-th")
    assert run.case.owner == "ngo-th"
    assert "sw-th" in run.case.assigned
    event = run.log[-1]
    assert isinstance(event, TransitionRecorded)
    assert event.owner == "ngo-th"


def test_declined_request_records_the_reason_and_changes_no_membership() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **TRANSFER)
    run.ok(HandoverDeclined, "ngo-th", reason="no_capacity")
    handover = run.case.latest_handover_to("ngo-th")
    assert handover is not None
    assert handover.status == HandoverStatus.declined
    assert handover.decline_reason == "no_capacity"
    assert run.case.owner == "sw-th"
    assert "ngo-th" not in run.case.members


def test_accept_after_revoke_is_an_invalid_transition() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER)
    run.ok(HandoverRevoked, "sw-th", to_agency="ngo-th")
    assert run.refused(HandoverAccepted, "ngo-th") == RejectionReason.INVALID_TRANSITION
    assert run.refused(HandoverDeclined, "ngo-th", reason="x") == (
        RejectionReason.INVALID_TRANSITION
    )


def test_revoke_needs_an_open_request_from_the_revoking_agency() -> None:
    run = owned_by_sw()
    assert run.refused(HandoverRevoked, "sw-th", to_agency="ngo-th") == (
        RejectionReason.INVALID_TRANSITION
    )
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER)
    assert run.refused(HandoverRevoked, "police-th", to_agency="ngo-th") == (
        RejectionReason.NOT_AUTHORISED
    )


def test_an_agency_never_asked_cannot_accept() -> None:
    run = owned_by_sw()
    assert run.refused(HandoverAccepted, "ngo-th") == RejectionReason.NOT_AUTHORISED


def test_only_the_receiver_answers_a_request() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **TRANSFER)
    assert run.refused(HandoverAccepted, "police-th") == RejectionReason.NOT_AUTHORISED


def test_completed_referral_leaves_the_case() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER)
    run.ok(HandoverAccepted, "ngo-th")
    run.ok(HandoverCompleted, "ngo-th")
    assert "ngo-th" not in run.case.members
    assert run.refused(HandoverCompleted, "ngo-th") == RejectionReason.INVALID_TRANSITION


def test_a_transfer_is_not_completed_like_a_referral() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **TRANSFER)
    run.ok(HandoverAccepted, "ngo-th")
    assert run.refused(HandoverCompleted, "ngo-th") == RejectionReason.INVALID_TRANSITION


def test_requests_that_cannot_stand_are_refused() -> None:
    run = owned_by_sw()
    assert run.refused(HandoverRequested, "sw-th", to_agency="sw-th", **TRANSFER) == (
        RejectionReason.GUARD_FAILED
    )
    assert run.refused(HandoverRequested, "sw-th", to_agency="police-th", **REFER) == (
        RejectionReason.GUARD_FAILED  # already assigned
    )
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **TRANSFER)
    assert run.refused(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER) == (
        RejectionReason.GUARD_FAILED  # one open request per agency
    )
    assert run.refused(HandoverRequested, "sw-th", to_agency="cp-th", **TRANSFER) == (
        RejectionReason.GUARD_FAILED  # one pending transfer at a time
    )
    assert run.refused(HandoverRequested, "police-th", to_agency="cp-th", **REFER) == (
        RejectionReason.NOT_AUTHORISED  # only the owner hands over
    )


def test_receiver_must_be_entitled_to_the_kind_of_case() -> None:
    run = owned_by_sw()
    assert run.refused(HandoverRequested, "sw-th", to_agency="rcc-b", **REFER) == (
        RejectionReason.NOT_ENTITLED
    )
    assert run.refused(HandoverRequested, "sw-th", to_agency="nobody", **REFER) == (
        RejectionReason.NOT_ENTITLED
    )


def test_without_consent_to_share_no_handover_is_requested() -> None:
    run = Run(referral(consent_to_share=False), routed_to=["sw-th"])
    reason = run.refused(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER)
    assert reason == RejectionReason.CONSENT_REQUIRED


def test_withdrawn_consent_blocks_an_acceptance_already_requested() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER)
    run.ok(ConsentRecorded, "sw-th", consent_to_share=False)
    assert run.refused(HandoverAccepted, "ngo-th") == RejectionReason.CONSENT_REQUIRED


def test_authorised_override_opens_the_gate_for_one_agency_and_is_itself_recorded() -> None:
    run = Run(referral(consent_to_share=False), routed_to=["sw-th", "pros-th"])
    run.ok(
        SharingOverrideRecorded,
        "pros-th",
        for_agency="ngo-th",
        legal_basis="Court order 12/2025",
        reason="imminent_risk",
    )
    override_event = run.log[-1]
    assert isinstance(override_event, TransitionRecorded)
    assert override_event.action_type == "org.casebridge.case.sharing_override_recorded.v1"
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **REFER)
    reason = run.refused(HandoverRequested, "sw-th", to_agency="cp-th", **REFER)
    assert reason == RejectionReason.CONSENT_REQUIRED


def test_an_agency_without_override_permission_cannot_override() -> None:
    run = Run(referral(consent_to_share=False), routed_to=["sw-th"])
    reason = run.refused(
        SharingOverrideRecorded, "sw-th", for_agency="ngo-th", legal_basis="x", reason="y"
    )
    assert reason == RejectionReason.NOT_AUTHORISED


def test_child_protection_may_override_for_a_child_only() -> None:
    child = Run(referral(person=CHILD, consent_to_share=False), routed_to=["sw-th"])
    child.ok(
        SharingOverrideRecorded,
        "cp-th",
        for_agency="ngo-th",
        legal_basis="best interests",
        reason="best_interests",
    )
    adult = Run(referral(consent_to_share=False), routed_to=["sw-th", "cp-th"])
    reason = adult.refused(
        SharingOverrideRecorded, "cp-th", for_agency="ngo-th", legal_basis="x", reason="y"
    )
    assert reason == RejectionReason.NOT_AUTHORISED


def test_a_childs_only_child_protection_agency_cannot_leave() -> None:
    run = owned_by_sw()
    run.ok(HandoverRequested, "sw-th", to_agency="cp-id", **REFER)
    run.ok(HandoverAccepted, "cp-id")
    run.ok(AgeAssessed, "sw-th", assessed_as_child=True)
    assert run.case.child
    assert "cp-th" not in run.case.members
    assert run.refused(HandoverCompleted, "cp-id") == RejectionReason.GUARD_FAILED


def test_a_second_child_protection_agency_may_leave_a_childs_case() -> None:
    run = Run(referral(person=CHILD), routed_to=["sw-th"])
    run.ok(HandoverRequested, "sw-th", to_agency="cp-id", **REFER)
    run.ok(HandoverAccepted, "cp-id")
    run.ok(HandoverCompleted, "cp-id")
    assert "cp-th" in run.case.members


def test_handover_works_after_the_lifecycle_moved_on() -> None:
    run = owned_by_sw()
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", **TRANSFER)
    run.ok(HandoverAccepted, "ngo-th")
    assert run.refused(ReferralAcknowledged, "ngo-th") == RejectionReason.INVALID_TRANSITION
