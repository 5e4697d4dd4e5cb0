"""Links between cases: what one case's change asks of another, as actions to decide there.

A referral naming a business report is linked to the report; a document request naming a
return makes the return wait for it, and settles that when the document is collected or
refused. The lead decides each action against the other case in the same transaction, so the
two never disagree; a link the other case refuses (no standing on it, an unknown case) goes
back to the agency that asked, as any refusal does.
"""

from __future__ import annotations

from schemas.cases import (
    SYSTEM_AGENCY,
    CaseAction,
    CaseState,
    DocumentRequestLinked,
    DocumentRequestSettled,
    ReferralLinked,
)
from schemas.documents import DocumentRequested
from schemas.referral import VictimReferralSubmitted
from services.cases.domain.model import Case

_SETTLED = frozenset({CaseState.collected, CaseState.refused})


def link_actions(before: Case | None, after: Case, message: object) -> list[CaseAction]:
    """The actions on other cases that an accepted change of `after` calls for."""
    if before is None and isinstance(message, VictimReferralSubmitted):
        if message.business_report_id is None:
            return []
        return [
            ReferralLinked(
                case_id=message.business_report_id,
                reporting_agency=message.reporting_agency,
                referral_case_id=message.case_id,
            )
        ]
    if before is None and isinstance(message, DocumentRequested):
        if message.for_return is None:
            return []
        return [
            DocumentRequestLinked(
                case_id=message.for_return,
                reporting_agency=message.reporting_agency,
                request_case_id=message.case_id,
                document=message.document,
            )
        ]
    request = after.document_request
    if (
        before is None
        or request is None
        or request.for_return is None
        or after.state not in _SETTLED
        or before.state in _SETTLED
    ):
        return []
    return [
        DocumentRequestSettled(
            case_id=request.for_return,
            reporting_agency=SYSTEM_AGENCY,
            request_case_id=after.case_id,
            collected=after.state == CaseState.collected,
        )
    ]
