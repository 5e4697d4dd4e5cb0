"""Need-to-know case updates: what each agency may see of a case after a change.

Fields fall into the classes of ``policy.yaml`` (operational, referral lifecycle, victim
status, personal). An agency sees personal data only as owner, or as a member with consent to
share or an override for it. Victim-status details go to members only. Immigration and
enforcement agencies (``restricted_kinds``) see neither, nor a referral's state, unless a
permitted purpose is recorded for them on that case (non-punishment principle).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from schemas.cases import CaseKind, CaseUpdate
from schemas.vocab import AgencyKind
from services.cases.domain.model import Case, HandoverStatus
from services.cases.domain.policy import VisibilityPolicy
from services.cases.domain.transition import CaseContext

Role = Literal["owner", "assigned", "pending", "former"]


def role_of(case: Case, agency_id: str) -> Role:
    """``pending``: asked to join, or a return's receiving agency before arrival."""
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


def withheld_fields(
    case_kind: CaseKind,
    agency_kind: AgencyKind | None,
    *,
    role: Role,
    sharing_permitted: bool,
    purpose_recorded: bool,
    policy: VisibilityPolicy,
) -> frozenset[str]:
    """The CaseUpdate fields an agency must not receive. An agency missing from the directory
    (``agency_kind`` None) is treated as restricted."""
    restricted = agency_kind is None or agency_kind in policy.restricted_kinds
    unpurposed = restricted and not purpose_recorded
    member = role in ("owner", "assigned")
    withheld: set[str] = set()
    if not sharing_permitted or unpurposed:
        withheld |= policy.personal_fields
    if not member or unpurposed:
        withheld |= policy.victim_status_fields
    if case_kind == CaseKind.referral and unpurposed:
        withheld |= policy.referral_lifecycle_fields
    return frozenset(withheld)


def view_for(
    case: Case, agency_id: str, *, change: str | None, occurred_at: dt.datetime, ctx: CaseContext
) -> CaseUpdate:
    """The update one agency receives: withheld fields are left empty and named."""
    role = role_of(case, agency_id)
    info = ctx.agencies.get(agency_id)
    withheld = withheld_fields(
        case.kind,
        info.kind if info else None,
        role=role,
        sharing_permitted=role == "owner"
        or (role == "assigned" and case.may_receive_personal_data(agency_id)),
        purpose_recorded=case.has_purpose_for(agency_id),
        policy=ctx.policy.visibility,
    )
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
    return [
        view_for(after, agency, change=change, occurred_at=occurred_at, ctx=ctx)
        for agency in sorted(involved)
    ]


def _content(case: Case, change: str | None) -> dict[str, Any]:
    """Every content field of CaseUpdate, before need-to-know filtering."""
    ref, ret, sar = case.referral, case.returns, case.sar
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
        "location_country": ref.location_country if ref else None,
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
