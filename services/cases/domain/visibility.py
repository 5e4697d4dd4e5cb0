"""Need-to-know case updates: what each agency may see of a case after a change.

The decision is the data-sharing policy's (services/privacy/disclosure.py), the same one the
router applies to an agency's first copy; this module only states the case's situation for one
recipient: its role, consent and overrides, purposes recorded for it, where the person is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from schemas.cases import CaseKind, CaseUpdate
from services.cases.domain.model import Case, HandoverStatus
from services.cases.domain.transition import CaseContext
from services.privacy.disclosure import Recipient, Role, Situation, withheld_fields
from services.privacy.policy import CASE_UPDATE

__all__ = ["Role", "case_updates", "recipients", "role_of", "situation_of", "view_for"]


def role_of(case: Case, agency_id: str) -> Role:
    """``pending``: asked to join, or a return's receiving agency before arrival;
    ``reporter``: the business that reported."""
    if agency_id == case.reporter:
        return "reporter"
    if agency_id == case.owner:
        return "owner"
    if agency_id in case.assigned:
        return "assigned"
    if any(h.to_agency == agency_id for h in case.requested_handovers()):
        return "pending"
    r = case.returns
    if r is not None and r.receiving_agency == agency_id and r.arrived_at is None:
        return "pending"
    return "former"


def case_country(case: Case) -> str | None:
    """Where the person is (or the search region): the "from" of any cross-border sharing."""
    if case.referral is not None:
        return case.referral.location_country
    if case.returns is not None:
        return case.returns.host_country
    if case.business_report is not None:
        return case.business_report.site_country
    if case.document_request is not None:
        return case.document_request.location_country
    return case.sar.search_region_country if case.sar is not None else None


def situation_of(case: Case, agency_id: str, ctx: CaseContext, on: dt.date) -> Situation:
    info = ctx.agencies.get(agency_id)
    kind = info.kind if info else None
    return Situation(
        is_referral=case.kind == CaseKind.referral,
        role=role_of(case, agency_id),
        case_country=case_country(case),
        consent_to_share=case.consent_to_share,
        override=case.has_override_for(agency_id),
        child=case.child,
        # Returns have no referral-mechanism consent: voluntariness is confirmed to open one.
        adult_consent=case.referral.adult_consent if case.referral is not None else True,
        purpose_recorded=any(
            p.for_agency == agency_id and ctx.data_sharing.purpose_permitted(p.purpose, kind)
            for p in case.permitted_purposes
        ),
        on=on,
    )


def view_for(
    case: Case, agency_id: str, *, change: str | None, occurred_at: dt.datetime, ctx: CaseContext
) -> CaseUpdate:
    """The update one agency receives: withheld fields are left empty and named."""
    info = ctx.agencies.get(agency_id)
    recipient = Recipient(agency_id, info.kind if info else None, info.country if info else None)
    situation = situation_of(case, agency_id, ctx, occurred_at.date())
    withheld = withheld_fields(ctx.data_sharing, CASE_UPDATE, recipient, situation)
    role = situation.role
    content = {k: v for k, v in _content(case, change).items() if k not in withheld}
    return CaseUpdate(
        recipient=agency_id,
        case_id=case.case_id,
        kind=case.kind,
        version=case.version,
        status=case.status,
        occurred_at=occurred_at,
        withheld=tuple(sorted(withheld)),
        role=role,
        **content,
    )


def recipients(case: Case) -> frozenset[str]:
    """Agencies with a live role on the case: members and pending receivers."""
    candidates = {*case.members, *(h.to_agency for h in case.handovers)}
    if case.reporter is not None:
        candidates.add(case.reporter)
    if case.returns is not None and case.returns.receiving_agency is not None:
        candidates.add(case.returns.receiving_agency)
    return frozenset(a for a in candidates if role_of(case, a) != "former")


def case_updates(
    before: Case | None,
    after: Case,
    *,
    change: str | None,
    occurred_at: dt.datetime,
    ctx: CaseContext,
) -> list[CaseUpdate]:
    """One update per agency involved before or after the change, so an agency that was just
    declined, revoked or completed learns it is no longer involved."""
    involved = recipients(after) | (recipients(before) if before else frozenset())
    if after.reporter is not None and before is not None and before.state == after.state:
        involved -= {after.reporter}  # a business is told each status of its report, no more
    return [
        view_for(after, agency, change=change, occurred_at=occurred_at, ctx=ctx)
        for agency in sorted(involved)
    ]


def _content(case: Case, change: str | None) -> dict[str, Any]:
    """Every content field of CaseUpdate, before need-to-know filtering."""
    ref, ret, sar = case.referral, case.returns, case.sar
    rep, doc = case.business_report, case.document_request
    return {
        "state": case.state,
        "change": change,
        "owner": case.owner,
        "assigned": case.assigned,
        "pending_handovers": tuple(
            h.to_agency for h in case.handovers if h.status == HandoverStatus.requested
        ),
        "child": case.child,
        "consent_to_share": case.consent_to_share,
        "possible_duplicate_of": case.possible_duplicate_of,
        "location_country": (
            ref.location_country if ref else doc.location_country if doc else None
        ),
        "origin_country": ret.origin_country if ret else None,
        "host_country": ret.host_country if ret else None,
        "receiving_agency": ret.receiving_agency if ret else None,
        "departed_at": ret.departed_at if ret else None,
        "arrived_at": ret.arrived_at if ret else None,
        "phase": sar.phase if sar else None,
        "coordination_accepted": sar.coordination_accepted if sar else None,
        "sitrep_number": sar.sitrep_number if sar else None,
        "persons_at_risk": sar.persons_at_risk if sar else None,
        "persons_rescued": sar.persons_rescued if sar else None,
        "persons_disembarked": sar.persons_disembarked if sar else None,
        "children_reported": sar.children_reported if sar else None,
        "site_country": rep.site_country if rep else None,
        "sector": rep.sector if rep else None,
        "supplier_tier": rep.supplier_tier if rep else None,
        "workers_affected": rep.workers_affected if rep else None,
        "report_assessment": rep.assessment if rep else None,
        "inspection_scheduled_for": rep.inspection_scheduled_for if rep else None,
        "inspection_outcome": rep.inspection_outcome if rep else None,
        "presumed_victims": rep.presumed_victims if rep else None,
        "linked_referrals": rep.linked_referrals if rep else None,
        "document": doc.document if doc else None,
        "issuing_country": doc.issuing_country if doc else None,
        "for_return": doc.for_return if doc else None,
        "document_requests_open": ret.open_travel_document_requests() if ret else (),
        "refusal_reason": doc.refusal_reason if doc else None,
        "trafficking_status": ref.trafficking_status if ref else None,
        "status_decided_by": ref.status_decided_by if ref else None,
        "type_of_exploitation": ref.type_of_exploitation if ref else None,
        "indicators": ref.indicators if ref else None,
        "methods_of_control": ref.methods_of_control if ref else None,
        "recruitment_methods": ref.recruitment_methods if ref else None,
        "trafficking_victim": ret.trafficking_victim if ret else None,
        "services_planned": ref.services_planned if ref else None,
        "services_implemented": ref.services_implemented if ref else None,
        "return_risk_level": ret.risk_level if ret else None,
        "reintegration_plan": ret.reintegration_plan if ret else None,
        "monitoring_visits": len(ret.monitoring_visits) if ret else None,
        "person": case.person,
        "person_key": case.person_key,
    }
