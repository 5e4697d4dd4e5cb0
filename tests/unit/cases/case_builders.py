"""A small agency directory, the packaged policy, builders for inbound messages, and a
``Run`` that drives one case the way the lead's handler will (checking invariants each step)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from schemas.business import ForcedLabourReported
from schemas.cases import CaseAction
from schemas.common import PersonRef
from schemas.documents import DocumentRequested, DocumentType
from schemas.referral import VictimReferralSubmitted
from schemas.returns import ReturnRequested
from schemas.sar import SarAlertReceived
from schemas.vocab import AgencyKind, SarPhase, SarPriority
from services.cases.domain import (
    AgencyInfo,
    Case,
    CaseContext,
    Decision,
    Message,
    decide,
    load_policy,
    violations,
)

T0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
SECRET = b"k" * 32

AGENCIES: dict[str, AgencyInfo] = {
    a.agency_id: a
    for a in (
        AgencyInfo("sw-th", AgencyKind.social_welfare, "TH", fallback="sw-national"),
        AgencyInfo("sw-national", AgencyKind.social_welfare, "TH"),
        AgencyInfo("cp-id", AgencyKind.child_protection, "ID"),
        AgencyInfo("cp-th", AgencyKind.child_protection, "TH"),
        AgencyInfo("ngo-th", AgencyKind.shelter_ngo, "TH"),
        AgencyInfo("police-th", AgencyKind.police, "TH"),
        AgencyInfo("imm-th", AgencyKind.immigration, "TH"),
        AgencyInfo("pros-th", AgencyKind.prosecutor, "TH"),
        AgencyInfo("iom-th", AgencyKind.return_programme, "TH", fallback="iom-hq"),
        AgencyInfo("iom-hq", AgencyKind.return_programme, "CH"),
        AgencyInfo("recv-mm", AgencyKind.social_welfare, "MM", fallback="recv-mm-hq"),
        AgencyInfo("recv-mm-hq", AgencyKind.social_welfare, "MM"),
        AgencyInfo("rcc-a", AgencyKind.rcc, "ID", fallback="jrcc-hq"),
        AgencyInfo("rcc-b", AgencyKind.rcc, "AU"),
        AgencyInfo("jrcc-hq", AgencyKind.rcc, "ID"),
        AgencyInfo("li-id", AgencyKind.labour_inspectorate, "ID", fallback="li-id-hq"),
        AgencyInfo("li-id-hq", AgencyKind.labour_inspectorate, "ID"),
        AgencyInfo("biz-th", AgencyKind.business, "TH"),
        AgencyInfo("reg-mm", AgencyKind.civil_registry, "MM", fallback="reg-mm-hq"),
        AgencyInfo("reg-mm-hq", AgencyKind.civil_registry, "MM"),
    )
}
POLICY = load_policy()
CTX = CaseContext(agencies=AGENCIES, policy=POLICY, person_key_secret=SECRET)

ADULT = PersonRef(
    given_name="Mai", family_name="Tran", date_of_birth=dt.date(1990, 5, 4), nationality="MM"
)
CHILD = PersonRef(given_name="Lin", family_name="Aung", age_estimate=15)


def referral(case_id: str = "ref-1", **changes: Any) -> VictimReferralSubmitted:
    data: dict[str, Any] = {
        "case_id": case_id,
        "reporting_agency": "police-th",
        "referred_at": T0,
        "person": ADULT,
        "location_country": "TH",
        "consent_to_share": True,
        "adult_consent": True,
    }
    return VictimReferralSubmitted(**(data | changes))


def return_request(case_id: str = "ret-1", **changes: Any) -> ReturnRequested:
    data: dict[str, Any] = {
        "case_id": case_id,
        "reporting_agency": "iom-th",
        "requested_at": T0,
        "person": ADULT,
        "origin_country": "MM",
        "host_country": "TH",
        "voluntariness_confirmed": True,
        "trafficking_victim": True,
        "receiving_agency": "recv-mm",
        "consent_to_share": True,
    }
    return ReturnRequested(**(data | changes))


def sar_alert(case_id: str = "sar-1", **changes: Any) -> SarAlertReceived:
    data: dict[str, Any] = {
        "case_id": case_id,
        "reporting_agency": "rcc-a",
        "sitrep_number": 1,
        "phase": SarPhase.DETRESFA,
        "priority": SarPriority.DISTRESS,
        "observed_at": T0,
        "position": {"lat": -8.5, "lon": 115.2},
        "persons_at_risk": 40,
        "coordinating_rcc": "rcc-a",
        "search_region_country": "ID",
    }
    return SarAlertReceived(**(data | changes))


def business_report(case_id: str = "rep-1", **changes: Any) -> ForcedLabourReported:
    """A business's report of a site in ID (route it to ``li-id``)."""
    data: dict[str, Any] = {
        "case_id": case_id,
        "reporting_agency": "biz-th",
        "reported_at": T0,
        "site": {"country": "ID", "sector": "fishing_and_seafood", "supplier_tier": "tier_2"},
        "indicators": [{"indicator": "debt_bondage", "strength": "strong"}],
        "workers_affected": "11-50",
    }
    return ForcedLabourReported.model_validate(data | changes)


def document_request(case_id: str = "doc-1", **changes: Any) -> DocumentRequested:
    """A travel document asked of MM's registry for the adult of ``return_request``
    (route it to ``reg-mm``)."""
    data: dict[str, Any] = {
        "case_id": case_id,
        "reporting_agency": "iom-th",
        "requested_at": T0,
        "person": ADULT,
        "document": DocumentType.travel_document,
        "issuing_country": "MM",
        "location_country": "TH",
        "for_return": "ret-1",
        "consent_to_share": True,
    }
    return DocumentRequested(**(data | changes))


def act(cls: type[CaseAction], case: Case | str, actor: str, **fields: Any) -> CaseAction:
    """An action on a case by an agency; without expected_version unless given."""
    case_id = case if isinstance(case, str) else case.case_id
    return cls(case_id=case_id, reporting_agency=actor, **fields)


class Run:
    """Drives one case through decisions, keeping its log, like the lead's handler would."""

    def __init__(self, opening: Message, *, routed_to: Iterable[str] = (), at: dt.datetime = T0):
        self.now = at
        first = decide(None, opening, now=at, ctx=CTX, routed_to=tuple(routed_to))
        assert first.accepted
        assert first.case is not None
        self.case: Case = first.case
        self.log = list(first.events)
        self.last = first

    def tick(self, delta: dt.timedelta) -> None:
        self.now += delta

    def do(self, message: Message) -> Decision:
        decision = decide(self.case, message, now=self.now, ctx=CTX)
        self.last = decision
        if decision.accepted:
            assert decision.case is not None
            self.case = decision.case
            self.log.extend(decision.events)
        assert violations(self.case, AGENCIES) == []
        return decision

    def ok(self, cls: type[CaseAction], actor: str, **fields: Any) -> Case:
        decision = self.do(act(cls, self.case, actor, **fields))
        assert decision.rejection is None, decision.rejection
        return self.case

    def refused(self, cls: type[CaseAction], actor: str, **fields: Any) -> str:
        before = self.case
        decision = self.do(act(cls, self.case, actor, **fields))
        assert decision.rejection is not None, f"{cls.__name__} was accepted"
        assert decision.events == ()
        assert decision.case == before
        return decision.rejection.reason
