"""A case as an HTCDS 2.0 record: what is mapped, that it conforms to the field list, and that
each agency gets only what the data-sharing policy lets it see of that case."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from schemas.cases import (
    SYSTEM_AGENCY,
    AssistancePlanned,
    CaseClosed,
    ConsentRecorded,
    FitnessToTravelAssessed,
    HandoverAccepted,
    HandoverRequested,
    PersonalDataErased,
    ReferralAcknowledged,
    ReturnArrived,
    ReturnDeparted,
    ReturnRiskAssessed,
    ScreeningRecorded,
    TraffickingStatusDecided,
    TravelDocumentsIssued,
)
from schemas.vocab import CaseStatus
from services.htcds import mapping
from services.htcds.fields import FIELDS, validate
from services.htcds.mapping import FIELD_CLASSES, NoStandingError, export_for, htcds_record
from tests.unit.cases.case_builders import (
    CTX,
    T0,
    Run,
    referral,
    return_request,
    sar_alert,
)

PERSON_FIELDS = {
    "prs_FirstName",
    "prs_SecondName",
    "prs_Birthdate",
    "prs_Gender",
    "prs_Citizenship",
}
VICTIM_FIELDS = {"vic_TraffickingStatus", "vic_TypeOfExploitation", "Support Plan"}
ON = T0.date()


def referral_run(**changes: Any) -> Run:
    """A referral owned by sw-th (police-th reported it and stays assigned), decided, planned,
    and handed to ngo-th, which accepted (with the person's consent to share)."""
    opening = referral(
        type_of_exploitation=["ForcedLabour"],
        methods_of_control=["DebtBondage", "WithholdsDocuments"],
        country_of_exploitation="MY",
        **changes,
    )
    run = Run(opening, routed_to=["sw-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(ScreeningRecorded, "sw-th")
    run.ok(
        TraffickingStatusDecided,
        "sw-th",
        trafficking_status="ActualVictimOfTrafficking",
        status_decided_by="NGO",
    )
    run.ok(AssistancePlanned, "sw-th", services=("Health", "Legal"))
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", mode="referral", reason="recovery")
    run.ok(HandoverAccepted, "ngo-th")
    return run


def withdrawn_run() -> Run:
    """`referral_run`, then the person withdraws consent to share."""
    run = referral_run()
    run.ok(ConsentRecorded, "sw-th", consent_to_share=False)
    return run


def return_run() -> Run:
    run = Run(return_request(), routed_to=["iom-th"])
    run.ok(ReturnRiskAssessed, "iom-th", risk_level="low")
    run.ok(TravelDocumentsIssued, "iom-th")
    run.ok(FitnessToTravelAssessed, "iom-th", fit_to_travel=True)
    run.ok(ReturnDeparted, "iom-th")
    run.tick(dt.timedelta(days=1))
    run.ok(ReturnArrived, "recv-mm")
    return run


def test_a_referral_maps_to_htcds_fields() -> None:
    run = referral_run()
    record = htcds_record(run.case, run.log)
    assert record == {
        "cas_Status": "Active",
        "cas_CaseOwner": "sw-th",
        "cas_ReferringOrganisation": "police-th",
        "cas_IncomingReferralDate": "2025-03-01",
        "cas_ReferredOrganisation": "ngo-th",
        "cas_OutgoingReferralDate": "2025-03-01",
        "con_Consent": True,
        "vic_TraffickingStatus": "ActualVictimOfTrafficking",
        "vic_TraffickingStatusDecisionMakingOrg": "NGO",
        "vic_TypeOfExploitation": ["ForcedLabour"],
        "vic_MethodsOfControl": ["DebtBondage", "WithholdsDocuments"],
        "Support Plan": [{"spl_Type": "Health"}, {"spl_Type": "Legal"}],
        "Historic Trafficking Events": [{"hte_Type": "Exploitation", "hte_Country": "MY"}],
        "prs_FirstName": "Mai",
        "prs_SecondName": "Tran",
        "prs_Birthdate": "1990-05-04",
        "prs_Gender": "NonSpecifiedUnknown",
        "prs_Citizenship": ["MM"],
    }
    assert validate(record) == []


def test_a_referral_closed_as_referred_names_the_referred_organisation_and_reason() -> None:
    run = referral_run()
    run.tick(dt.timedelta(days=2))
    run.ok(
        CaseClosed,
        "sw-th",
        closure=CaseStatus.ClosedReferred,
        referred_to="cp-th",
        reason="moved_to_child_services",
    )
    record = htcds_record(run.case, run.log)
    assert record["cas_Status"] == "ClosedReferred"
    assert record["cas_ReferredOrganisation"] == "cp-th"
    assert record["cas_OutgoingReferralDate"] == "2025-03-03"
    assert record["cas_ReasonForCaseClosure"] == "moved_to_child_services"
    assert validate(record) == []


def test_a_return_is_an_outgoing_referral_to_the_receiving_agency() -> None:
    run = return_run()
    record = htcds_record(run.case, run.log)
    assert record["cas_ReferringOrganisation"] == "iom-th"
    assert record["cas_ReferredOrganisation"] == "recv-mm"
    assert record["cas_ReasonForOutgoingReferral"] == "MigrationOrChangeOfLocation"
    assert record["cas_OutgoingReferralDate"] == "2025-03-02"
    assert record["cas_CaseOwner"] == "recv-mm"
    assert not set(record) & VICTIM_FIELDS  # a return records no victim status in HTCDS terms
    assert validate(record) == []


def test_a_sar_incident_has_case_fields_and_no_person() -> None:
    run = Run(sar_alert(), routed_to=["rcc-a"])
    export = export_for(run.case, run.log, agency=None, ctx=CTX, on=ON)
    assert export.personal_data == "none"
    assert set(export.record) == {
        "cas_Status",
        "cas_CaseOwner",
        "cas_ReferringOrganisation",
        "cas_IncomingReferralDate",
    }
    assert validate(export.record) == []


def test_every_key_the_mapping_writes_has_a_data_class_and_is_htcds() -> None:
    written = set()
    for run in (referral_run(), return_run(), Run(sar_alert(), routed_to=["rcc-a"])):
        written |= set(htcds_record(run.case, run.log))
    assert written <= set(FIELD_CLASSES)
    assert all(k in FIELDS or k in FIELDS.sections for k in FIELD_CLASSES)


def test_the_owner_gets_the_whole_record() -> None:
    run = referral_run()
    export = export_for(run.case, run.log, agency="sw-th", ctx=CTX, on=ON)
    assert export.personal_data == "included"
    assert export.withheld == ()
    assert set(export.record) >= PERSON_FIELDS | VICTIM_FIELDS


def test_a_member_without_consent_to_share_gets_victim_status_but_no_person() -> None:
    run = withdrawn_run()
    export = export_for(run.case, run.log, agency="ngo-th", ctx=CTX, on=ON)
    assert export.record["con_Consent"] is False
    assert export.personal_data == "withheld"
    assert not set(export.record) & PERSON_FIELDS
    assert set(export.record) >= VICTIM_FIELDS
    assert set(export.withheld) >= PERSON_FIELDS
    run = referral_run()
    consented = export_for(run.case, run.log, agency="ngo-th", ctx=CTX, on=ON)
    assert set(consented.record) >= PERSON_FIELDS, "with consent the same member gets them"


def test_police_without_a_permitted_purpose_get_neither_person_nor_victim_status() -> None:
    run = referral_run()
    export = export_for(run.case, run.log, agency="police-th", ctx=CTX, on=ON)
    assert export.personal_data == "withheld"
    assert not set(export.record) & (PERSON_FIELDS | VICTIM_FIELDS)
    assert export.record["cas_CaseOwner"] == "sw-th"  # operational facts still go


def test_an_agency_with_no_standing_gets_nothing() -> None:
    run = referral_run()
    with pytest.raises(NoStandingError, match="cp-th has no standing on case ref-1"):
        export_for(run.case, run.log, agency="cp-th", ctx=CTX, on=ON)


def test_an_erased_person_exports_without_personal_fields_and_says_so() -> None:
    run = referral_run()
    run.ok(PersonalDataErased, SYSTEM_AGENCY, request_id="req-1", reason="subject_request")
    export = export_for(run.case, run.log, agency="sw-th", ctx=CTX, on=ON)
    assert export.personal_data == "erased"
    assert not set(export.record) & PERSON_FIELDS
    assert export.record["vic_TraffickingStatus"] == "ActualVictimOfTrafficking"
    assert validate(export.record) == []


def test_a_key_without_a_data_class_is_withheld(monkeypatch: pytest.MonkeyPatch) -> None:
    run = withdrawn_run()
    unclassified = {k: v for k, v in FIELD_CLASSES.items() if k != "cas_CaseOwner"}
    monkeypatch.setattr(mapping, "FIELD_CLASSES", unclassified)
    export = export_for(run.case, run.log, agency="ngo-th", ctx=CTX, on=ON)
    assert "cas_CaseOwner" not in export.record
    assert "cas_CaseOwner" in export.withheld
