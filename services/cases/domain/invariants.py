"""What must hold of every case, however it was reached. Property tests drive random action
sequences through ``decide`` and check these; the lead may also check a rebuilt case."""

from __future__ import annotations

from schemas.cases import CaseKind, CaseState, HandoverMode, ReturnRiskLevel
from schemas.vocab import AgencyKind
from services.cases.domain.model import (
    STATES,
    VICTIM_STATUSES,
    Agencies,
    Case,
    HandoverStatus,
)

_AFTER_DEPARTURE = frozenset(
    {CaseState.travel, CaseState.post_arrival, CaseState.reintegration, CaseState.monitoring}
)
_AFTER_ARRIVAL = _AFTER_DEPARTURE - {CaseState.travel}


def violations(case: Case, agencies: Agencies | None = None) -> list[str]:
    """Impossible-state findings (empty when the case is consistent). With ``agencies``, also
    checks that a child's case has a child-protection agency if the directory has one."""
    found: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            found.append(message)

    need(case.version >= 1, "version below 1")
    need(case.state in STATES[case.kind], f"state {case.state} is not a {case.kind} state")
    present = {
        CaseKind.referral: case.referral is not None,
        CaseKind.returns: case.returns is not None,
        CaseKind.sar: case.sar is not None,
        CaseKind.business_report: case.business_report is not None,
        CaseKind.document_request: case.document_request is not None,
    }
    need(present == {k: k == case.kind for k in CaseKind}, "facts do not match the kind")
    need(case.owner not in case.assigned, "owner is also assigned")
    need(case.reporter is None or case.reporter not in case.members, "the reporter is a member")
    need(list(case.assigned) == sorted(set(case.assigned)), "assigned not sorted and unique")
    pending = case.requested_handovers()
    need(len({h.to_agency for h in pending}) == len(pending), "two open requests to one agency")
    need(all(h.to_agency != case.owner for h in pending), "open request to the owner")
    need(sum(h.mode == HandoverMode.transfer for h in pending) <= 1, "two pending transfers")
    need(
        all(
            h.to_agency in case.members
            for h in case.handovers
            if h.status == HandoverStatus.accepted and h is case.latest_handover_to(h.to_agency)
        ),
        "an accepting agency is not on the case",
    )
    need(not (pending and not case.is_open), "closed with a handover unanswered")
    if agencies is not None and case.child:
        directory_has = any(a.kind == AgencyKind.child_protection for a in agencies.values())
        on_case = any(
            a in agencies and agencies[a].kind == AgencyKind.child_protection for a in case.members
        )
        need(on_case or not directory_has, "a child's case has no child-protection agency")
    if case.referral is not None:
        r = case.referral
        if case.state in (CaseState.assistance_planned, CaseState.assistance_in_progress):
            need(r.trafficking_status in VICTIM_STATUSES, "assistance for a non-victim")
        need(set(r.services_implemented) <= set(r.services_planned), "unplanned service")
    if case.returns is not None:
        t = case.returns
        if case.state in _AFTER_DEPARTURE:
            need(t.departed_at is not None, "past departure without a departure time")
            need(t.travel_documents_ready and t.fit_to_travel is True, "departed unready")
            need(t.risk_level != ReturnRiskLevel.high, "departed at high risk")
            need(not t.trafficking_victim or t.risk_level is not None, "departed unassessed")
            need(t.receiving_agency is not None, "departed with no receiving agency")
            need(not t.open_travel_document_requests(), "departed awaiting a travel document")
        if case.state == CaseState.withdrawn:
            need(t.departed_at is None, "withdrawn after departure")
        if case.state in _AFTER_ARRIVAL:
            need(t.arrived_at is not None, "past arrival without an arrival time")
        if case.state == CaseState.monitoring:
            need(bool(t.monitoring_visits), "monitoring without a visit")
    if case.business_report is not None:
        b = case.business_report
        if case.state in (CaseState.inspected, CaseState.closed) and b.inspected_on is not None:
            need(b.inspection_outcome is not None, "inspected without an outcome")
        if case.state == CaseState.inspection_scheduled:
            need(b.inspection_scheduled_for is not None, "scheduled without a date")
        if case.state == CaseState.closed:
            need(not b.presumed_victims or bool(b.linked_referrals), "victims left unreferred")
    if case.sar is not None:
        s = case.sar
        need(0 <= s.persons_disembarked <= s.persons_rescued, "more landed than rescued")
        if case.state == CaseState.disembarked:
            need(s.persons_disembarked == s.persons_rescued > 0, "disembarked with some aboard")
        if case.state == CaseState.persons_rescued:
            need(s.persons_rescued > s.persons_disembarked, "no one aboard awaiting landing")
        if case.state == CaseState.concluded:
            need(s.persons_rescued == s.persons_disembarked, "concluded with persons aboard")
        if case.state in (CaseState.alert_received, CaseState.coordinated):
            need(s.persons_rescued == 0, "rescued before the rescue started")
        if case.state == CaseState.alert_received:
            need(not s.coordination_accepted, "alert state with coordination accepted")
        elif case.state != CaseState.concluded:
            need(s.coordination_accepted, "SAR under way without an accepting RCC")
    return found
