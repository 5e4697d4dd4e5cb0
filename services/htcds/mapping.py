"""A case as an HTCDS 2.0 record, cut for the agency that asks. Pure: no I/O, no clock.

What is mapped (and what is not: CaseBridge facts HTCDS has no field for, such as SAR figures,
ILO/EC indicators, return risk levels, person keys and age estimates, stay out):

- Case: ``cas_Status`` (from the lifecycle state), ``cas_CaseOwner`` (the owning agency:
  CaseBridge knows agencies, not caseworkers), ``cas_ReasonForCaseClosure`` (the closing code).
- Referral details: the opening event's agency and date (``cas_ReferringOrganisation``,
  ``cas_IncomingReferralDate``); the outgoing referral (``cas_ReferredOrganisation``,
  ``cas_OutgoingReferralDate``): a return's receiving agency (reason
  ``MigrationOrChangeOfLocation``, dated on arrival), a referral closed as referred, or else
  the latest handover another agency accepted.
- Consent: ``con_Consent`` from the recorded consent to share.
- Victim context (referrals): ``vic_TraffickingStatus``,
  ``vic_TraffickingStatusDecisionMakingOrg``, ``vic_TypeOfExploitation``,
  ``vic_MethodsOfControl``, ``vic_MethodOfRecruitment``; related records: a ``"Support Plan"``
  per planned service (``spl_Type``), and a ``"Historic Trafficking Events"`` record of type
  ``Exploitation`` for the country of exploitation.
- Person: ``prs_FirstName``, ``prs_SecondName`` (family name), ``prs_Birthdate``,
  ``prs_Gender``, ``prs_Citizenship``.

Each key of a record is in one data class of the data-sharing policy (`FIELD_CLASSES`), and an
agency is given what `services.privacy.disclosure.withheld_classes` lets it see of that case,
the same decision that cuts its case updates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from schemas.cases import CaseClosed, CaseKind, CaseOpened, PersonalDataErased, TransitionRecorded
from schemas.vocab import CaseStatus
from services.cases.domain import CaseContext, CaseEvent
from services.cases.domain.model import Case, HandoverStatus
from services.cases.domain.visibility import situation_of
from services.privacy.disclosure import Recipient, withheld_classes
from services.privacy.policy import DataClass

SUPPORT_PLAN = "Support Plan"
TRAFFICKING_EVENTS = "Historic Trafficking Events"

FIELD_CLASSES: Mapping[str, DataClass] = {
    "cas_Status": DataClass.operational,
    "cas_CaseOwner": DataClass.operational,
    "cas_ReferringOrganisation": DataClass.operational,
    "cas_IncomingReferralDate": DataClass.operational,
    "cas_ReferredOrganisation": DataClass.operational,
    "cas_OutgoingReferralDate": DataClass.operational,
    "cas_ReasonForOutgoingReferral": DataClass.operational,
    "con_Consent": DataClass.operational,
    "cas_ReasonForCaseClosure": DataClass.referral_lifecycle,
    "vic_TraffickingStatus": DataClass.victim_status,
    "vic_TraffickingStatusDecisionMakingOrg": DataClass.victim_status,
    "vic_TypeOfExploitation": DataClass.victim_status,
    "vic_MethodsOfControl": DataClass.victim_status,
    "vic_MethodOfRecruitment": DataClass.victim_status,
    SUPPORT_PLAN: DataClass.victim_status,
    TRAFFICKING_EVENTS: DataClass.victim_status,
    "prs_FirstName": DataClass.personal,
    "prs_SecondName": DataClass.personal,
    "prs_Birthdate": DataClass.personal,
    "prs_Gender": DataClass.personal,
    "prs_Citizenship": DataClass.personal,
}
"""The data class of every key `htcds_record` can write; a key missing here is withheld from
every agency (fail closed), and a unit test keeps the two in step."""

_ABOUT_NO_ONE = frozenset({CaseKind.sar, CaseKind.business_report})
"""Kinds that hold no one's personal data: consent is not theirs to record."""

PersonalData = Literal["included", "withheld", "erased", "none"]
"""``none``: the case is about no one (a SAR incident) or holds no person."""


class NoStandingError(Exception):
    """The agency has no standing on the case: it is told nothing about it."""

    def __init__(self, agency_id: str, case_id: str) -> None:
        super().__init__(f"agency {agency_id} has no standing on case {case_id}: nothing exported")
        self.agency_id = agency_id
        self.case_id = case_id


@dataclass(frozen=True, slots=True)
class CaseExport:
    """One line of an export: the HTCDS record, and what was left out of it and why."""

    case_id: str
    kind: CaseKind
    agency: str | None
    """The agency the record was cut for; None: the whole record (the data controller's)."""
    personal_data: PersonalData
    withheld: tuple[str, ...]
    """HTCDS fields (and related-record sections) this agency may not see, by name."""
    record: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "kind": self.kind.value,
            "agency": self.agency,
            "personal_data": self.personal_data,
            "withheld": list(self.withheld),
            "htcds": dict(self.record),
        }


def htcds_record(case: Case, events: Sequence[CaseEvent]) -> dict[str, Any]:
    """Every HTCDS field CaseBridge knows of the case (`events`: its log, opening first)."""
    opening = events[0] if events and isinstance(events[0], CaseOpened) else None
    record: dict[str, Any] = {"cas_Status": case.status.value, "cas_CaseOwner": case.owner}
    if opening is not None:
        record |= _incoming(opening)
    closed = _closing(events)
    if closed is not None and closed.reason is not None:
        record["cas_ReasonForCaseClosure"] = closed.reason
    record |= _outgoing(case, events, closed)
    if case.kind not in _ABOUT_NO_ONE:
        record["con_Consent"] = case.consent_to_share
    record |= _victim(case, opening)
    record |= _person(case)
    return record


def is_erased(events: Sequence[CaseEvent]) -> bool:
    return any(
        isinstance(e, TransitionRecorded) and isinstance(e.action, PersonalDataErased)
        for e in events
    )


def export_for(
    case: Case,
    events: Sequence[CaseEvent],
    *,
    agency: str | None,
    ctx: CaseContext,
    on: dt.date,
) -> CaseExport:
    """The case's record as `agency` may see it on `on` (None: the whole record).

    Raises NoStandingError when the agency has no standing on the case."""
    record = htcds_record(case, events)
    withheld: frozenset[DataClass] = frozenset()
    if agency is not None:
        if not case.related(agency):
            raise NoStandingError(agency, case.case_id)
        info = ctx.agencies.get(agency)
        recipient = Recipient(agency, info.kind if info else None, info.country if info else None)
        situation = situation_of(case, agency, ctx, on)
        withheld = withheld_classes(ctx.data_sharing, recipient, situation)
    kept = {k: v for k, v in record.items() if _class_of(k) not in withheld}
    return CaseExport(
        case_id=case.case_id,
        kind=case.kind,
        agency=agency,
        personal_data=_personal_data(case, events, withheld),
        withheld=tuple(sorted(set(record) - set(kept))),
        record=kept,
    )


def _class_of(key: str) -> DataClass:
    return FIELD_CLASSES.get(key, DataClass.personal)


def _personal_data(
    case: Case, events: Sequence[CaseEvent], withheld: frozenset[DataClass]
) -> PersonalData:
    if case.kind in _ABOUT_NO_ONE:
        return "none"
    if is_erased(events):
        return "erased"
    if case.person is None:
        return "none"
    return "withheld" if DataClass.personal in withheld else "included"


def _incoming(opening: CaseOpened) -> dict[str, Any]:
    """Who opened the case and when (a SAR alert is dated when CaseBridge received it)."""
    source: str
    at: dt.datetime
    if opening.referral is not None:
        source, at = opening.referral.reporting_agency, opening.referral.referred_at
    elif opening.return_request is not None:
        source, at = opening.return_request.reporting_agency, opening.return_request.requested_at
    elif opening.business_report is not None:
        source, at = opening.business_report.reporting_agency, opening.business_report.reported_at
    elif opening.document_request is not None:
        request = opening.document_request
        source, at = request.reporting_agency, request.requested_at
    else:
        assert opening.sar_alert is not None  # CaseOpened holds exactly one source
        source, at = opening.sar_alert.reporting_agency, opening.occurred_at
    return {"cas_ReferringOrganisation": source, "cas_IncomingReferralDate": _day(at)}


def _closing(events: Sequence[CaseEvent]) -> CaseClosed | None:
    return next(
        (
            e.action
            for e in reversed(events)
            if isinstance(e, TransitionRecorded) and isinstance(e.action, CaseClosed)
        ),
        None,
    )


def _closed_at(events: Sequence[CaseEvent]) -> dt.datetime | None:
    return next(
        (
            e.occurred_at
            for e in reversed(events)
            if isinstance(e, TransitionRecorded) and isinstance(e.action, CaseClosed)
        ),
        None,
    )


def _outgoing(case: Case, events: Sequence[CaseEvent], closed: CaseClosed | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ret = case.returns
    if ret is not None and ret.receiving_agency is not None:
        out["cas_ReferredOrganisation"] = ret.receiving_agency
        out["cas_ReasonForOutgoingReferral"] = "MigrationOrChangeOfLocation"
        if ret.arrived_at is not None:
            out["cas_OutgoingReferralDate"] = _day(ret.arrived_at)
        return out
    if closed is not None and closed.closure == CaseStatus.ClosedReferred and closed.referred_to:
        out["cas_ReferredOrganisation"] = closed.referred_to
        at = _closed_at(events)
        if at is not None:
            out["cas_OutgoingReferralDate"] = _day(at)
        return out
    accepted = [
        h
        for h in case.handovers
        if h.status in (HandoverStatus.accepted, HandoverStatus.done)
        and h.to_agency != h.from_agency
    ]
    if accepted:
        latest = accepted[-1]
        out["cas_ReferredOrganisation"] = latest.to_agency
        out["cas_OutgoingReferralDate"] = _day(latest.requested_at)
    return out


def _victim(case: Case, opening: CaseOpened | None) -> dict[str, Any]:
    ref = case.referral
    if ref is None:
        return {}
    out: dict[str, Any] = {"vic_TraffickingStatus": ref.trafficking_status.value}
    if ref.status_decided_by is not None:
        out["vic_TraffickingStatusDecisionMakingOrg"] = ref.status_decided_by.value
    for key, values in (
        ("vic_TypeOfExploitation", ref.type_of_exploitation),
        ("vic_MethodsOfControl", ref.methods_of_control),
        ("vic_MethodOfRecruitment", ref.recruitment_methods),
    ):
        if values:
            out[key] = [v.value for v in values]
    if ref.services_planned:
        out[SUPPORT_PLAN] = [{"spl_Type": s.value} for s in ref.services_planned]
    country = None
    if opening is not None and opening.referral is not None:
        country = opening.referral.country_of_exploitation
    if country is not None:
        out[TRAFFICKING_EVENTS] = [{"hte_Type": "Exploitation", "hte_Country": country}]
    return out


def _person(case: Case) -> dict[str, Any]:
    person = case.person
    if person is None:
        return {}
    out: dict[str, Any] = {"prs_Gender": person.gender.value}
    if person.given_name is not None:
        out["prs_FirstName"] = person.given_name
    if person.family_name is not None:
        out["prs_SecondName"] = person.family_name
    if person.date_of_birth is not None:
        out["prs_Birthdate"] = person.date_of_birth.isoformat()
    if person.nationality is not None:
        out["prs_Citizenship"] = [person.nationality]
    return out


def _day(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).date().isoformat()
