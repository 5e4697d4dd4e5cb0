"""Erasure on the case: the person, the person key and the duplicate links leave the erased
case, the cases linked to it lose their link, and the log still replays to the same case,
even when the sealed person in the opening event reads as erased (an empty PersonRef)."""

from __future__ import annotations

import datetime as dt

from schemas.cases import (
    SYSTEM_AGENCY,
    CaseClosed,
    CaseOpened,
    DuplicateLinkRemoved,
    DuplicateReviewed,
    PersonalDataErased,
    RejectionReason,
    TransitionRecorded,
    action_type,
)
from schemas.common import PersonRef
from services.cases.domain import CaseEvent, case_updates, duplicate_flags, replay
from services.cases.domain.lifecycle.erasure import linked_cases, unlink_actions
from tests.unit.cases.case_builders import CTX, Run, referral, return_request, sar_alert

ERASE = {"request_id": "req-1", "reason": "subject_request"}


def linked_pair() -> tuple[Run, Run]:
    """Two referrals of one person by different agencies, flagged both ways; the first then
    reviewed as the same person."""
    first = Run(referral("ref-1"), routed_to=["sw-th"])
    second = Run(referral("ref-2", reporting_agency="imm-th"), routed_to=["ngo-th"])
    flags = duplicate_flags("ref-2", ["ref-1"])
    second.do(flags[0])
    first.do(flags[1])
    first.ok(DuplicateReviewed, "sw-th", other_case_id="ref-2", same_person=True)
    return first, second


def as_erased(log: list[CaseEvent]) -> list[CaseEvent]:
    """The log as the store reads it once the case's data key is destroyed."""
    opened = log[0]
    assert isinstance(opened, CaseOpened)
    assert opened.referral is not None
    erased = opened.model_copy(
        update={
            "person_key": None,
            "referral": opened.referral.model_copy(update={"person": PersonRef()}),
        }
    )
    return [erased, *log[1:]]


def test_erasure_clears_the_person_the_key_and_the_links() -> None:
    first, _ = linked_pair()
    assert first.case.person is not None
    assert first.case.person_key is not None
    assert first.case.same_person_as == ("ref-2",)
    first.tick(dt.timedelta(days=3))
    erased = first.ok(PersonalDataErased, SYSTEM_AGENCY, **ERASE)
    assert erased.person is None
    assert erased.person_key is None
    assert erased.possible_duplicate_of == erased.same_person_as == ()
    # The case and its coordination stay: same state, owner and agencies.
    (event,) = first.last.events
    assert isinstance(event, TransitionRecorded)
    assert event.state == event.previous_state
    assert erased.owner == "sw-th"


def test_erasure_is_an_internal_action_agencies_cannot_take() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    assert run.refused(PersonalDataErased, "sw-th", **ERASE) == RejectionReason.NOT_AUTHORISED
    assert run.refused(DuplicateLinkRemoved, "sw-th", other_case_id="ref-2") == (
        RejectionReason.NOT_AUTHORISED
    )
    assert run.case.person is not None


def test_a_case_erased_before_has_nothing_left_to_erase() -> None:
    run = Run(return_request(), routed_to=["recv-mm"])
    run.ok(PersonalDataErased, SYSTEM_AGENCY, **ERASE)
    assert run.refused(PersonalDataErased, SYSTEM_AGENCY, **ERASE) == RejectionReason.GUARD_FAILED


def test_sar_incidents_hold_no_person_to_erase() -> None:
    run = Run(sar_alert())
    assert run.refused(PersonalDataErased, SYSTEM_AGENCY, **ERASE) == (
        RejectionReason.INVALID_TRANSITION
    )


def test_erasure_is_possible_in_any_state_even_after_closure() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(CaseClosed, "sw-th", closure="Closed")
    assert run.ok(PersonalDataErased, SYSTEM_AGENCY, **ERASE).person is None


def test_the_linked_case_loses_its_links_to_the_erased_one() -> None:
    first, second = linked_pair()
    second.tick(dt.timedelta(hours=1))
    actions = unlink_actions(second.case, ["ref-1"])
    assert [(a.case_id, a.other_case_id) for a in actions] == [("ref-2", "ref-1")]
    for action in actions:
        assert second.do(action).accepted
    assert linked_cases(second.case) == ()
    assert second.case.person is not None, "the other person's data stays"
    assert unlink_actions(second.case, ["ref-1"]) == []
    assert second.refused(DuplicateLinkRemoved, SYSTEM_AGENCY, other_case_id="ref-1") == (
        RejectionReason.GUARD_FAILED
    )
    # A same-person link goes too (the first case reviewed the pair as one person).
    assert unlink_actions(first.case, ["ref-2", "ref-9"])[0].other_case_id == "ref-2"
    first.do(unlink_actions(first.case, ["ref-2"])[0])
    assert first.case.same_person_as == ()


def test_replay_equals_the_state_and_needs_no_person() -> None:
    first, _ = linked_pair()
    first.ok(PersonalDataErased, SYSTEM_AGENCY, **ERASE)
    assert replay(first.log) == first.case
    # Once the key is destroyed the opening event's person reads as an empty PersonRef and the
    # person key as None: the fold is still exactly the stored state.
    assert replay(as_erased(first.log)) == first.case
    wire = [type(e).model_validate_json(e.model_dump_json()) for e in as_erased(first.log)]
    assert replay(wire) == first.case


def test_agencies_are_told_with_the_action_as_the_change() -> None:
    first, _ = linked_pair()
    before = first.case
    erased = first.ok(PersonalDataErased, SYSTEM_AGENCY, **ERASE)
    change = action_type(PersonalDataErased)  # what the coordinator passes
    updates = case_updates(before, erased, change=change, occurred_at=first.now, ctx=CTX)
    assert {u.recipient for u in updates} >= {"sw-th"}
    told = [u for u in updates if "change" not in u.withheld]
    assert told
    assert all(u.change == change for u in told)
    assert all(u.person is None and u.person_key is None for u in updates)
    assert all(u.possible_duplicate_of == () for u in updates)
