"""Identity-document requests to a civil registry: requested, identity verified (or
verification failed, with its reason, and tried again), issued or refused (with its reason),
collected. The registry that owns the request acts; the requesting agency is on the case. A
request naming a return links itself to it; collected or refused, it settles that link, so
the return's departure guard (``returns``) sees which travel documents are still awaited."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from schemas.cases import (
    CaseKind,
    CaseState,
    DocumentCollected,
    DocumentIssued,
    DocumentRefused,
    DocumentRequestLinked,
    DocumentRequestSettled,
    IdentityVerificationFailed,
    IdentityVerified,
)
from schemas.documents import DocumentType
from services.cases.domain.model import (
    STATES,
    Case,
    DocumentRequestFacts,
    LinkedDocumentRequest,
)
from services.cases.domain.transition import (
    CaseContext,
    Refusal,
    Transition,
    Transitions,
    Who,
    guard_failed,
    to,
)

_DOCUMENT = frozenset({CaseKind.document_request})
_RETURN = frozenset({CaseKind.returns})


def facts(case: Case) -> DocumentRequestFacts:
    if case.document_request is None:
        raise ValueError(f"case {case.case_id} has no document request facts")
    return case.document_request


def _set(case: Case, **changes: Any) -> Case:
    return replace(case, document_request=replace(facts(case), **changes))


def _issue_guard(
    case: Case, action: DocumentIssued, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    if action.valid_until is not None and action.valid_until <= now.date():
        return guard_failed("a document is issued with a validity that has not ended")
    return None


def _link_guard(
    case: Case, action: DocumentRequestLinked, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    assert case.returns is not None
    if any(r.request_case_id == action.request_case_id for r in case.returns.document_requests):
        return guard_failed("the document request is already linked to this return")
    return None


def _linked(case: Case, action: DocumentRequestLinked, at: dt.datetime) -> Case:
    assert case.returns is not None
    link = LinkedDocumentRequest(action.request_case_id, action.document)
    return replace(
        case,
        returns=replace(case.returns, document_requests=(*case.returns.document_requests, link)),
    )


def _settle_guard(
    case: Case, action: DocumentRequestSettled, ctx: CaseContext, now: dt.datetime
) -> Refusal | None:
    assert case.returns is not None
    if not any(
        r.request_case_id == action.request_case_id and r.open
        for r in case.returns.document_requests
    ):
        return guard_failed("no open document request of this return has that id")
    return None


def _settled(case: Case, action: DocumentRequestSettled, at: dt.datetime) -> Case:
    """A collected travel document is the return's travel document."""
    returns = case.returns
    assert returns is not None
    links = tuple(
        replace(r, open=False, collected=action.collected)
        if r.request_case_id == action.request_case_id
        else r
        for r in returns.document_requests
    )
    ready = returns.travel_documents_ready or any(
        r.collected and r.document == DocumentType.travel_document for r in links
    )
    return replace(
        case, returns=replace(returns, document_requests=links, travel_documents_ready=ready)
    )


TRANSITIONS: Transitions = {
    IdentityVerified: Transition(
        _DOCUMENT,
        frozenset({CaseState.requested, CaseState.verification_failed}),
        Who.owner,
        to(CaseState.identity_verified),
        lambda case, a, at: _set(case, refusal_reason=None),
    ),
    IdentityVerificationFailed: Transition(
        _DOCUMENT,
        frozenset({CaseState.requested, CaseState.verification_failed}),
        Who.owner,
        to(CaseState.verification_failed),
        lambda case, a, at: _set(case, refusal_reason=a.reason),
    ),
    DocumentIssued: Transition(
        _DOCUMENT,
        frozenset({CaseState.identity_verified}),
        Who.owner,
        to(CaseState.issued),
        lambda case, a, at: _set(case, valid_until=a.valid_until),
        _issue_guard,
    ),
    DocumentRefused: Transition(
        _DOCUMENT,
        frozenset(
            {CaseState.requested, CaseState.identity_verified, CaseState.verification_failed}
        ),
        Who.owner,
        to(CaseState.refused),
        lambda case, a, at: _set(case, refusal_reason=a.reason),
    ),
    DocumentCollected: Transition(
        _DOCUMENT, frozenset({CaseState.issued}), Who.member, to(CaseState.collected)
    ),
    DocumentRequestLinked: Transition(
        _RETURN,
        frozenset({CaseState.pre_departure}),
        Who.related,
        evolve=_linked,
        guard=_link_guard,
    ),
    DocumentRequestSettled: Transition(
        _RETURN,
        STATES[CaseKind.returns],
        Who.system,
        evolve=_settled,
        guard=_settle_guard,
    ),
}
