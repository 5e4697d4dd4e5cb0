"""Identity-document requests to a civil registry, and the travel document that gates a
return's departure until it is collected or refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.cases import (
    SYSTEM_AGENCY,
    CaseKind,
    CaseState,
    DocumentCollected,
    DocumentIssued,
    DocumentRefused,
    DocumentRequestLinked,
    DocumentRequestSettled,
    FitnessToTravelAssessed,
    IdentityVerificationFailed,
    IdentityVerified,
    PersonalDataErased,
    RejectionReason,
    ReturnDeparted,
    ReturnRiskAssessed,
    ReturnRiskLevel,
    TravelDocumentsIssued,
)
from schemas.documents import DocumentType
from schemas.vocab import AgencyKind, CaseStatus
from services.cases.domain import link_actions, view_for
from tests.unit.cases.case_builders import (
    AGENCIES,
    CHILD,
    CTX,
    Run,
    act,
    document_request,
    referral,
    return_request,
)

REGISTRY = "reg-mm"
REQUESTER = "iom-th"
TRAVEL = DocumentType.travel_document


def requested(**changes: Any) -> Run:
    return Run(document_request(**changes), routed_to=[REGISTRY])


def verified(**changes: Any) -> Run:
    run = requested(**changes)
    run.ok(IdentityVerified, REGISTRY)
    return run


def issued(**changes: Any) -> Run:
    run = verified(**changes)
    run.ok(DocumentIssued, REGISTRY)
    return run


# --- The request's lifecycle ---------------------------------------------------------------------


def test_request_runs_from_requested_to_collected() -> None:
    run = requested()
    assert run.case.kind == CaseKind.document_request
    assert run.case.state == CaseState.requested
    assert run.case.owner == REGISTRY
    assert REQUESTER in run.case.assigned
    assert run.ok(IdentityVerified, REGISTRY).state == CaseState.identity_verified
    valid_until = run.now.date() + dt.timedelta(days=3650)
    case = run.ok(DocumentIssued, REGISTRY, valid_until=valid_until)
    assert case.state == CaseState.issued
    assert case.document_request is not None
    assert case.document_request.valid_until == valid_until
    case = run.ok(DocumentCollected, REQUESTER)
    assert case.state == CaseState.collected
    assert case.status == CaseStatus.Closed
    assert not case.is_open


def test_a_document_is_not_issued_before_the_identity_is_verified() -> None:
    run = requested()
    assert run.refused(DocumentIssued, REGISTRY) == RejectionReason.INVALID_TRANSITION
    run.ok(IdentityVerificationFailed, REGISTRY, reason="no_civil_record")
    assert run.refused(DocumentIssued, REGISTRY) == RejectionReason.INVALID_TRANSITION


def test_a_failed_verification_is_recorded_with_its_reason_and_may_be_tried_again() -> None:
    run = requested()
    run.ok(IdentityVerificationFailed, REGISTRY, reason="no_civil_record")
    assert run.case.state == CaseState.verification_failed
    assert run.case.document_request is not None
    assert run.case.document_request.refusal_reason == "no_civil_record"
    again = run.ok(IdentityVerificationFailed, REGISTRY, reason="witness_unavailable")
    assert again.document_request is not None
    assert again.document_request.refusal_reason == "witness_unavailable"
    case = run.ok(IdentityVerified, REGISTRY)
    assert case.state == CaseState.identity_verified
    assert case.document_request is not None
    assert case.document_request.refusal_reason is None
    run.ok(DocumentIssued, REGISTRY)


@pytest.mark.parametrize("stage", ["requested", "verification_failed", "identity_verified"])
def test_a_document_may_be_refused_with_its_reason(stage: str) -> None:
    run = requested()
    if stage == "verification_failed":
        run.ok(IdentityVerificationFailed, REGISTRY, reason="no_civil_record")
    if stage == "identity_verified":
        run.ok(IdentityVerified, REGISTRY)
    run.ok(DocumentRefused, REGISTRY, reason="not_a_national")
    assert run.case.state == CaseState.refused
    assert run.case.status == CaseStatus.Closed
    assert run.case.document_request is not None
    assert run.case.document_request.refusal_reason == "not_a_national"


def test_a_refusal_names_its_reason() -> None:
    with pytest.raises(ValidationError):
        act(DocumentRefused, "doc-1", REGISTRY)


def test_a_refused_document_is_neither_issued_nor_collected() -> None:
    run = verified()
    run.ok(DocumentRefused, REGISTRY, reason="not_a_national")
    assert run.refused(DocumentIssued, REGISTRY) == RejectionReason.INVALID_TRANSITION
    assert run.refused(DocumentCollected, REQUESTER) == RejectionReason.INVALID_TRANSITION


def test_an_issued_document_is_not_refused() -> None:
    run = issued()
    assert run.refused(DocumentRefused, REGISTRY, reason="not_a_national") == (
        RejectionReason.INVALID_TRANSITION
    )


def test_a_document_is_collected_only_once_issued() -> None:
    run = requested()
    assert run.refused(DocumentCollected, REQUESTER) == RejectionReason.INVALID_TRANSITION
    run.ok(IdentityVerified, REGISTRY)
    assert run.refused(DocumentCollected, REQUESTER) == RejectionReason.INVALID_TRANSITION
    run.ok(DocumentIssued, REGISTRY)
    run.ok(DocumentCollected, REQUESTER)


def test_a_document_is_issued_with_a_validity_that_has_not_ended() -> None:
    run = verified()
    assert run.refused(DocumentIssued, REGISTRY, valid_until=run.now.date()) == (
        RejectionReason.GUARD_FAILED
    )
    run.ok(DocumentIssued, REGISTRY, valid_until=run.now.date() + dt.timedelta(days=1))


def test_only_the_registry_verifies_issues_and_refuses() -> None:
    run = requested()
    assert run.refused(IdentityVerified, REQUESTER) == RejectionReason.NOT_AUTHORISED
    assert run.refused(DocumentRefused, REQUESTER, reason="x") == RejectionReason.NOT_AUTHORISED
    run.ok(IdentityVerified, REGISTRY)
    assert run.refused(DocumentIssued, REQUESTER) == RejectionReason.NOT_AUTHORISED


def test_the_requester_records_collection_and_a_stranger_may_not() -> None:
    run = issued()
    assert run.refused(DocumentCollected, "police-th") == RejectionReason.NOT_AUTHORISED
    run.ok(DocumentCollected, REQUESTER)
    assert run.case.state == CaseState.collected


# --- Who is on the request, and what the registry is sent ----------------------------------------


def test_a_childs_request_is_joined_by_child_protection() -> None:
    run = requested(person=CHILD)
    assert run.case.child
    assert any(AGENCIES[a].kind == AgencyKind.child_protection for a in run.case.assigned)


def test_a_childs_request_goes_to_no_third_countrys_child_protection() -> None:
    run = requested(person=CHILD)
    joined = [a for a in run.case.assigned if AGENCIES[a].kind == AgencyKind.child_protection]
    assert joined
    assert {AGENCIES[a].country for a in joined} == {"TH"}  # where the child is


def test_a_registry_abroad_is_not_sent_the_person_without_a_sharing_agreement() -> None:
    """The person is in TH and the registry in MM: no agreement covers it in the packaged
    policy, so the person is withheld, even from the owner."""
    run = requested()
    update = view_for(run.case, REGISTRY, change=None, occurred_at=run.now, ctx=CTX)
    assert update.person is None
    assert "person" in update.withheld


def test_a_registry_in_the_persons_country_is_sent_the_person() -> None:
    run = requested(location_country="MM")
    update = view_for(run.case, REGISTRY, change=None, occurred_at=run.now, ctx=CTX)
    assert update.person is not None
    assert update.person.family_name == "Tran"


# --- The return waits for its travel document ----------------------------------------------------


def ready_but_for_the_document() -> Run:
    """A trafficking victim's return with every other pre-departure step done: a low risk
    assessment and fitness to travel. Travel documents are not yet issued."""
    run = Run(return_request())
    run.ok(ReturnRiskAssessed, REQUESTER, risk_level=ReturnRiskLevel.low)
    run.ok(FitnessToTravelAssessed, REQUESTER, fit_to_travel=True)
    return run


def linked(run: Run, request_case_id: str = "doc-1", document: DocumentType = TRAVEL) -> Run:
    run.ok(DocumentRequestLinked, REQUESTER, request_case_id=request_case_id, document=document)
    return run


def settle(run: Run, *, collected: bool, request_case_id: str = "doc-1") -> Run:
    run.ok(
        DocumentRequestSettled, SYSTEM_AGENCY, request_case_id=request_case_id, collected=collected
    )
    return run


def test_the_return_departs_with_its_documents_issued() -> None:
    """The control for the gate: with travel documents issued and nothing linked, it departs."""
    run = ready_but_for_the_document()
    run.ok(TravelDocumentsIssued, REQUESTER)
    run.ok(ReturnDeparted, REQUESTER)
    assert run.case.state == CaseState.travel


def test_an_open_travel_document_request_holds_the_departure() -> None:
    """Even with travel documents recorded as issued: the gate is the open request."""
    run = linked(ready_but_for_the_document())
    run.ok(TravelDocumentsIssued, REQUESTER)
    assert run.refused(ReturnDeparted, REQUESTER) == RejectionReason.DOCUMENT_REQUEST_OPEN
    assert run.last.rejection is not None
    assert "doc-1" in run.last.rejection.message


def test_the_link_the_opening_asks_for_is_accepted_from_the_requester() -> None:
    ret = ready_but_for_the_document()
    message = document_request()
    [link] = link_actions(None, requested().case, message)
    assert link.reporting_agency == REQUESTER
    assert ret.do(link).accepted
    assert ret.case.returns is not None
    assert ret.case.returns.open_travel_document_requests() == ("doc-1",)
    assert ret.refused(ReturnDeparted, REQUESTER) == RejectionReason.DOCUMENT_REQUEST_OPEN


def test_a_collected_travel_document_lets_the_return_depart() -> None:
    run = linked(ready_but_for_the_document())
    assert run.refused(ReturnDeparted, REQUESTER) == RejectionReason.DOCUMENT_REQUEST_OPEN
    settle(run, collected=True)
    assert run.case.returns is not None
    assert run.case.returns.travel_documents_ready
    assert run.case.returns.open_travel_document_requests() == ()
    run.ok(ReturnDeparted, REQUESTER)
    assert run.case.state == CaseState.travel


def test_a_refused_travel_document_lifts_the_gate_but_is_no_travel_document() -> None:
    run = linked(ready_but_for_the_document())
    settle(run, collected=False)
    assert run.case.returns is not None
    assert not run.case.returns.travel_documents_ready
    assert run.refused(ReturnDeparted, REQUESTER) == RejectionReason.GUARD_FAILED
    run.ok(TravelDocumentsIssued, REQUESTER)
    run.ok(ReturnDeparted, REQUESTER)


def test_every_open_travel_document_request_holds_the_departure() -> None:
    run = linked(linked(ready_but_for_the_document()), "doc-2")
    settle(run, collected=True)
    assert run.refused(ReturnDeparted, REQUESTER) == RejectionReason.DOCUMENT_REQUEST_OPEN
    settle(run, collected=False, request_case_id="doc-2")
    run.ok(ReturnDeparted, REQUESTER)


@pytest.mark.parametrize("document", [DocumentType.identity_card, DocumentType.birth_registration])
def test_a_request_for_another_document_does_not_hold_the_departure(
    document: DocumentType,
) -> None:
    run = linked(ready_but_for_the_document(), document=document)
    run.ok(TravelDocumentsIssued, REQUESTER)
    run.ok(ReturnDeparted, REQUESTER)


def test_a_collected_identity_card_is_not_a_travel_document() -> None:
    run = linked(ready_but_for_the_document(), document=DocumentType.identity_card)
    settle(run, collected=True)
    assert run.case.returns is not None
    assert not run.case.returns.travel_documents_ready
    assert run.refused(ReturnDeparted, REQUESTER) == RejectionReason.GUARD_FAILED


def test_an_agency_with_no_standing_on_the_return_cannot_link_to_it() -> None:
    run = ready_but_for_the_document()
    for stranger in (REGISTRY, "police-th"):
        assert run.refused(
            DocumentRequestLinked, stranger, request_case_id="doc-1", document=TRAVEL
        ) == (RejectionReason.NOT_AUTHORISED)
    assert run.case.returns is not None
    assert run.case.returns.document_requests == ()


def test_a_request_is_linked_once() -> None:
    run = linked(ready_but_for_the_document())
    assert run.refused(
        DocumentRequestLinked, REQUESTER, request_case_id="doc-1", document=TRAVEL
    ) == (RejectionReason.GUARD_FAILED)


def test_a_return_that_has_departed_takes_no_new_request() -> None:
    run = ready_but_for_the_document()
    run.ok(TravelDocumentsIssued, REQUESTER)
    run.ok(ReturnDeparted, REQUESTER)
    assert run.refused(
        DocumentRequestLinked, REQUESTER, request_case_id="doc-1", document=TRAVEL
    ) == (RejectionReason.INVALID_TRANSITION)


def test_only_casebridge_settles_a_request_and_only_an_open_one() -> None:
    run = linked(ready_but_for_the_document())
    assert run.refused(
        DocumentRequestSettled, REQUESTER, request_case_id="doc-1", collected=True
    ) == (RejectionReason.NOT_AUTHORISED)
    assert run.refused(
        DocumentRequestSettled, SYSTEM_AGENCY, request_case_id="doc-9", collected=True
    ) == (RejectionReason.GUARD_FAILED)
    settle(run, collected=True)
    assert run.refused(
        DocumentRequestSettled, SYSTEM_AGENCY, request_case_id="doc-1", collected=False
    ) == (RejectionReason.GUARD_FAILED)


# --- What a request's changes ask of the return --------------------------------------------------


def test_opening_a_request_for_a_return_asks_for_the_link() -> None:
    message = document_request()
    assert link_actions(None, requested().case, message) == [
        DocumentRequestLinked(
            case_id="ret-1",
            reporting_agency=REQUESTER,
            request_case_id="doc-1",
            document=TRAVEL,
        )
    ]


def test_opening_a_request_for_no_return_asks_for_nothing() -> None:
    message = document_request(for_return=None)
    assert link_actions(None, requested(for_return=None).case, message) == []


@pytest.mark.parametrize(
    ("last", "actor", "fields", "collected"),
    [
        (DocumentCollected, REQUESTER, {}, True),
        (DocumentRefused, REGISTRY, {"reason": "not_a_national"}, False),
    ],
)
def test_collection_or_refusal_settles_the_link(
    last: type[DocumentCollected | DocumentRefused],
    actor: str,
    fields: dict[str, Any],
    collected: bool,
) -> None:
    run = issued() if last is DocumentCollected else verified()
    before = run.case
    action = act(last, run.case, actor, **fields)
    assert run.do(action).accepted
    assert link_actions(before, run.case, action) == [
        DocumentRequestSettled(
            case_id="ret-1",
            reporting_agency=SYSTEM_AGENCY,
            request_case_id="doc-1",
            collected=collected,
        )
    ]


def test_steps_before_settling_ask_nothing_of_the_return() -> None:
    run = requested()
    for action in (
        act(IdentityVerificationFailed, run.case, REGISTRY, reason="no_civil_record"),
        act(IdentityVerified, run.case, REGISTRY),
        act(DocumentIssued, run.case, REGISTRY),
    ):
        before = run.case
        assert run.do(action).accepted
        assert link_actions(before, run.case, action) == []


def test_a_request_for_no_return_settles_nothing() -> None:
    run = issued(for_return=None)
    before = run.case
    action = act(DocumentCollected, run.case, REQUESTER)
    assert run.do(action).accepted
    assert link_actions(before, run.case, action) == []


def test_the_settling_the_request_asks_for_is_accepted_by_the_return() -> None:
    """End to end through link_actions: opening links, collection settles, the return departs."""
    ret = ready_but_for_the_document()
    opening = document_request()
    doc = requested()
    [link] = link_actions(None, doc.case, opening)
    assert ret.do(link).accepted
    doc.ok(IdentityVerified, REGISTRY)
    doc.ok(DocumentIssued, REGISTRY)
    before = doc.case
    collected = act(DocumentCollected, doc.case, REQUESTER)
    assert doc.do(collected).accepted
    [settled] = link_actions(before, doc.case, collected)
    assert ret.do(settled).accepted
    ret.ok(ReturnDeparted, REQUESTER)


def test_a_request_carries_the_persons_key_so_an_erasure_by_key_reaches_it() -> None:
    """The same person's return and document request share the pseudonymous key (a referral
    of someone else does not)."""
    request = requested().case
    assert request.person_key is not None
    assert request.person_key == Run(return_request()).case.person_key
    other = Run(referral(person=CHILD), routed_to=["sw-th"]).case
    assert other.person_key != request.person_key


def test_an_erasure_takes_the_person_out_of_a_request() -> None:
    """A request holds a person, so the data-protection officer's erasure applies to it as to
    a return (refused for it before, the request kept its person and key)."""
    run = issued()
    run.ok(
        PersonalDataErased,
        SYSTEM_AGENCY,
        request_id="req-doc-1",
        reason="subject_request",
    )
    assert run.case.person is None
    assert run.case.person_key is None
    assert run.case.state == CaseState.issued
