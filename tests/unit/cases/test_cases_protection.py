"""Consent, permitted purposes, age assessment and possible duplicates."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.cases import (
    SYSTEM_AGENCY,
    AgeAssessed,
    CaseClosed,
    ConsentRecorded,
    DuplicateReviewed,
    FlagPossibleDuplicate,
    PermittedPurposeRecorded,
    PossibleDuplicateFlagged,
    RejectionReason,
    TransitionRecorded,
)
from schemas.common import PersonRef
from schemas.vocab import CaseStatus
from services.cases.domain import decide, duplicate_flags, normalise_name, person_key
from tests.unit.cases.case_builders import (
    ADULT,
    CTX,
    SECRET,
    T0,
    Run,
    act,
    referral,
    return_request,
)

PURPOSE = {"purpose": "reflection_and_recovery_period", "legal_basis": "Immigration Act s.5"}


def test_consent_can_be_withdrawn_even_after_closure() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(CaseClosed, "sw-th", closure=CaseStatus.Closed)
    run.ok(ConsentRecorded, "sw-th", consent_to_share=False)
    assert not run.case.consent_to_share


def test_adult_consent_is_a_referral_notion() -> None:
    run = Run(return_request())
    assert run.refused(ConsentRecorded, "iom-th", adult_consent=True) == (
        RejectionReason.GUARD_FAILED
    )


def test_a_permitted_purpose_is_recorded_by_a_protection_agency_for_a_restricted_one() -> None:
    run = Run(referral(), routed_to=["sw-th", "imm-th"])
    run.ok(PermittedPurposeRecorded, "sw-th", for_agency="imm-th", **PURPOSE)
    assert run.case.has_purpose_for("imm-th")


def test_immigration_cannot_record_a_purpose_for_itself() -> None:
    run = Run(referral(), routed_to=["sw-th", "imm-th"])
    reason = run.refused(PermittedPurposeRecorded, "imm-th", for_agency="imm-th", **PURPOSE)
    assert reason == RejectionReason.NOT_AUTHORISED


def test_a_purpose_must_be_permitted_for_the_agencys_kind() -> None:
    run = Run(referral(), routed_to=["sw-th", "police-th"])
    reason = run.refused(PermittedPurposeRecorded, "sw-th", for_agency="police-th", **PURPOSE)
    assert reason == RejectionReason.GUARD_FAILED
    reason = run.refused(PermittedPurposeRecorded, "sw-th", for_agency="ngo-th", **PURPOSE)
    assert reason == RejectionReason.GUARD_FAILED


def test_age_assessed_as_child_brings_in_child_protection_and_records_it_for_replay() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    assert not run.case.child
    run.ok(AgeAssessed, "sw-th", assessed_as_child=True)
    assert run.case.child
    assert "cp-th" in run.case.assigned
    event = run.log[-1]
    assert isinstance(event, TransitionRecorded)
    assert event.assigned_added == ("cp-th",)


def test_age_assessed_as_adult_ends_the_child_workflow_but_keeps_the_agency() -> None:
    disputed = ADULT.model_copy(update={"age_disputed": True})
    run = Run(referral(person=disputed), routed_to=["sw-th"])
    run.ok(AgeAssessed, "sw-th", assessed_as_child=False)
    assert not run.case.child
    assert "cp-th" in run.case.assigned


def test_duplicates_are_flagged_on_both_cases_and_never_merged() -> None:
    first = Run(referral("ref-1"), routed_to=["sw-th"])
    second = Run(referral("ref-2", reporting_agency="imm-th"), routed_to=["ngo-th"])
    assert first.case.person_key == second.case.person_key is not None
    flags = duplicate_flags("ref-2", ["ref-1"])
    assert [(f.case_id, f.other_case_id) for f in flags] == [("ref-2", "ref-1"), ("ref-1", "ref-2")]
    outcome = second.do(flags[0])
    (note,) = outcome.follow_ups
    assert isinstance(note, PossibleDuplicateFlagged)
    assert note.owner == "ngo-th"
    first.do(flags[1])
    assert first.case.possible_duplicate_of == ("ref-2",)
    assert second.case.possible_duplicate_of == ("ref-1",)
    assert first.case.case_id != second.case.case_id  # two cases remain
    assert first.do(flags[1]).rejection is not None  # flagged once
    first.ok(DuplicateReviewed, "sw-th", other_case_id="ref-2", same_person=True)
    assert first.case.possible_duplicate_of == ()
    assert first.case.same_person_as == ("ref-2",)
    assert first.refused(DuplicateReviewed, "sw-th", other_case_id="ref-2", same_person=True) == (
        RejectionReason.GUARD_FAILED
    )


def test_a_case_is_not_flagged_as_its_own_duplicate() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    assert duplicate_flags("ref-1", ["ref-1"]) == []
    self_flag = act(FlagPossibleDuplicate, run.case, SYSTEM_AGENCY, other_case_id="ref-1")
    assert decide(run.case, self_flag, now=T0, ctx=CTX).rejection is not None


def test_person_key_ignores_accents_case_punctuation_and_name_order() -> None:
    a = PersonRef(given_name="Thị Mai", family_name="Trần", date_of_birth=dt.date(1990, 5, 4))
    b = PersonRef(given_name="TRAN", family_name="thi-mai", date_of_birth=dt.date(1990, 5, 4))
    assert normalise_name("Thị Mai", "Trần") == "mai thi tran"
    assert person_key(a, SECRET) == person_key(b, SECRET)


def test_person_key_depends_on_the_secret_and_the_birth_date() -> None:
    other_day = ADULT.model_copy(update={"date_of_birth": dt.date(1990, 5, 5)})
    assert person_key(ADULT, SECRET) != person_key(ADULT, b"x" * 32)
    assert person_key(ADULT, SECRET) != person_key(other_day, SECRET)
    key = person_key(ADULT, SECRET)
    assert key is not None
    assert key.startswith("pk1:")
    assert "mai" not in key.lower()


def test_no_person_key_without_a_name_and_a_birth_date() -> None:
    assert person_key(PersonRef(age_estimate=30, given_name="Mai"), SECRET) is None
    assert person_key(PersonRef(date_of_birth=dt.date(1990, 1, 1)), SECRET) is None


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        person_key(ADULT, b"short")
