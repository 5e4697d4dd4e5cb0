"""The scenario's acts for the remaining ministerial priorities: a business report of
forced-labour indicators that leads to an inspection and a referral, and a returnee's travel
document request that gates departure. All data is synthetic.

Steps are played like the coordination scenario's (`coordination.play`): each waits for the
case version it brings about. A step that links two cases waits on the one it names: opening
the request bumps the return it serves, and the inspectorate's referral bumps the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.demo.coordination import Step, action_step
from services.demo.scenario import AgencyMessage, agency_event

BUSINESS = "th-seafood-exporter"
INSPECTORATE = "id-labour-inspectorate"
PROGRAMME = "id-return-programme"
REGISTRY = "mm-civil-registry"
REPORT = "org.casebridge.business.forced_labour_reported.v1"
DOCUMENT = "org.casebridge.document.requested.v1"


@dataclass(frozen=True)
class PriorityCases:
    report: str
    inspection_referral: str
    returns: str
    document: str


def priority_cases_of(run: str) -> PriorityCases:
    return PriorityCases(
        report=f"BR-{run}-20",
        inspection_referral=f"REF-{run}-20",
        returns=f"RET-{run}-30",
        document=f"DOC-{run}-30",
    )


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def business_report(run: str, *, case_id: str | None = None, **changes: Any) -> AgencyMessage:
    """The business's report: a tier-2 seafood processor in Indonesia, no personal data."""
    data: dict[str, Any] = {
        "case_id": case_id or priority_cases_of(run).report,
        "reporting_agency": BUSINESS,
        "reported_at": datetime.now(UTC).isoformat(),
        "site": {
            "country": "ID",
            "sector": "fishing_and_seafood",
            "supplier_tier": "tier_2",
            "site_reference": "supplier_site_0042",
        },
        "indicators": [
            {"indicator": "retention_of_identity_documents", "strength": "strong"},
            {"indicator": "debt_bondage", "strength": "strong"},
            {"indicator": "excessive_overtime", "strength": "medium"},
        ],
        "workers_affected": "11-50",
        **changes,
    }
    return agency_event(
        f"{BUSINESS} reports forced-labour indicators at a supplier's site",
        BUSINESS,
        "supplier-due-diligence",
        REPORT,
        data,
    )


def business_report_steps(run: str) -> list[Step]:
    """Report, acknowledgement, assessment, inspection that finds one presumed victim, her
    referral (linked to the report), and the report's closure."""
    cases = priority_cases_of(run)
    r = cases.report
    referral = agency_event(
        f"{INSPECTORATE} refers the presumed victim the inspection found",
        INSPECTORATE,
        "inspections",
        "org.casebridge.referral.submitted.v1",
        {
            "case_id": cases.inspection_referral,
            "reporting_agency": INSPECTORATE,
            "referred_at": datetime.now(UTC).isoformat(),
            "person": {
                "given_name": "Synthetic",
                "family_name": "Worker-F",
                "age_estimate": 34,
                "gender": "Masculine",
                "nationality": "MM",
            },
            "type_of_exploitation": ["ForcedLabour"],
            "location_country": "ID",
            "country_of_exploitation": "ID",
            "consent_to_share": True,
            "adult_consent": True,
            "business_report_id": r,
        },
    )
    return [
        Step(business_report(run), r, 1),
        action_step(run, r, INSPECTORATE, "report_acknowledged", 2),
        action_step(run, r, INSPECTORATE, "report_assessed", 3, assessment="inspection_warranted"),
        action_step(run, r, INSPECTORATE, "inspection_scheduled", 4, scheduled_for=_today()),
        action_step(
            run,
            r,
            INSPECTORATE,
            "inspection_recorded",
            5,
            inspected_on=_today(),
            outcome="forced_labour_identified",
            indicators_confirmed=["retention_of_identity_documents", "debt_bondage"],
            presumed_victims=1,
        ),
        Step(referral, r, 6),  # the referral opens, and is linked to the report
        action_step(run, r, INSPECTORATE, "case_closed", 7, closure="Closed"),
    ]


def document_request_steps(run: str) -> tuple[list[Step], AgencyMessage, list[Step]]:
    """A return whose travel document Myanmar's civil registry must issue: the steps up to the
    departure attempt, the departure refused while the request is open, and the steps from
    the registry's work to the departure."""
    cases = priority_cases_of(run)
    ret, doc = cases.returns, cases.document
    person = {
        "given_name": "Synthetic",
        "family_name": "Returnee-G",
        "date_of_birth": "1999-07-14",
        "gender": "Feminine",
        "nationality": "MM",
    }
    opening = agency_event(
        f"{PROGRAMME} requests a voluntary return to Myanmar, with no travel document held",
        PROGRAMME,
        "avrr",
        "org.casebridge.return.requested.v1",
        {
            "case_id": ret,
            "reporting_agency": PROGRAMME,
            "requested_at": datetime.now(UTC).isoformat(),
            "person": person,
            "origin_country": "MM",
            "host_country": "ID",
            "voluntariness_confirmed": True,
            "trafficking_victim": True,
            "receiving_agency": "mm-return-reception",
            "travel_document_held": False,
            "consent_to_share": True,
        },
    )
    request = agency_event(
        f"{PROGRAMME} asks {REGISTRY} for her travel document",
        PROGRAMME,
        "avrr",
        DOCUMENT,
        {
            "case_id": doc,
            "reporting_agency": PROGRAMME,
            "requested_at": datetime.now(UTC).isoformat(),
            "person": person,
            "document": "travel_document",
            "issuing_country": "MM",
            "location_country": "ID",
            "for_return": ret,
            "consent_to_share": True,
        },
    )
    before = [
        Step(opening, ret, 1),
        Step(request, ret, 2),  # the request opens, and the return now waits for it
        action_step(run, ret, PROGRAMME, "return_risk_assessed", 3, risk_level="low"),
        action_step(run, ret, PROGRAMME, "fitness_to_travel_assessed", 4, fit_to_travel=True),
    ]
    refused = action_step(run, ret, PROGRAMME, "return_departed", 0).message
    after = [
        action_step(run, doc, REGISTRY, "identity_verified", 2),
        action_step(run, doc, REGISTRY, "document_issued", 3),
        # Collected: the request is settled on the return, which may now depart.
        Step(action_step(run, doc, PROGRAMME, "document_collected", 0).message, ret, 5),
        action_step(run, ret, PROGRAMME, "return_departed", 6),
    ]
    return before, refused, after
