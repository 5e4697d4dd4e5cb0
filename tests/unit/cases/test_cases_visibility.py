"""Need-to-know case updates: nothing withheld leaks, for any agency kind and role."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.cases import (
    AssistancePlanned,
    CaseUpdate,
    ConsentRecorded,
    HandoverDeclined,
    HandoverMode,
    HandoverRequested,
    PermittedPurposeRecorded,
    ReferralAcknowledged,
    ScreeningRecorded,
    SupportPlanType,
    TraffickingStatusDecided,
)
from schemas.referral import IndicatorHit
from schemas.vocab import AgencyKind
from services.cases.domain import (
    Case,
    case_updates,
    decide,
    view_for,
)
from services.cases.domain.model import PermittedPurpose
from services.cases.domain.visibility import Role
from services.privacy.disclosure import Recipient, Situation, withheld_fields
from services.privacy.policy import CASE_UPDATE
from tests.unit.cases.case_builders import AGENCIES, CTX, T0, Run, referral, sar_alert

HIT = IndicatorHit(
    dimension="coercion_at_destination", indicator="confiscation_of_documents", strength="strong"
)
# Values that would betray victim status or identity if they reached the wrong agency.
SECRETS = {
    "victim_status": ["ActualVictimOfTrafficking", "confiscation_of_documents", "Health"],
    "personal": ["Mai", "Tran", "1990-05-04", "pk1:"],
    "lifecycle": ["assistance_planned"],
}


def protected_case() -> Case:
    """A referral in assistance, with personal data, an immigration and a police member."""
    run = Run(referral(), routed_to=["sw-th", "imm-th", "ngo-th"])
    run.ok(ReferralAcknowledged, "sw-th")
    run.ok(ScreeningRecorded, "sw-th", indicators=(HIT,))
    run.ok(
        TraffickingStatusDecided,
        "sw-th",
        trafficking_status="ActualVictimOfTrafficking",
        status_decided_by="NGO",
    )
    run.ok(AssistancePlanned, "sw-th", services=(SupportPlanType.Health,))
    return run.case


CASE = protected_case()


def leaked(update: CaseUpdate, group: str) -> list[str]:
    text = update.model_dump_json()
    return [s for s in SECRETS[group] if s in text]


def view(case: Case, agency: str) -> CaseUpdate:
    return view_for(
        case, agency, change="org.casebridge.case.assistance_planned.v1", occurred_at=T0, ctx=CTX
    )


def test_owner_sees_everything() -> None:
    update = view(CASE, "sw-th")
    assert update.withheld == ()
    assert update.trafficking_status == "ActualVictimOfTrafficking"
    assert update.person is not None
    assert update.person.given_name == "Mai"


@pytest.mark.parametrize("agency", ["imm-th", "police-th"])
def test_immigration_and_police_see_no_victim_status_personal_data_or_referral_state(
    agency: str,
) -> None:
    update = view(CASE, agency)
    assert update.role == "assigned"
    assert leaked(update, "victim_status") == leaked(update, "personal") == []
    assert leaked(update, "lifecycle") == []
    assert update.state is None
    assert update.change is None
    assert {"trafficking_status", "person", "state"} <= set(update.withheld)
    assert update.owner == "sw-th"  # operational facts still flow


def test_a_recorded_permitted_purpose_opens_the_view_for_that_agency_only() -> None:
    purpose = PermittedPurposeRecorded(
        case_id=CASE.case_id,
        reporting_agency="sw-th",
        for_agency="imm-th",
        purpose="residence_permit_for_victim",
        legal_basis="Immigration Act s.7",
    )
    case = decide(CASE, purpose, now=T0, ctx=CTX).case
    assert case is not None
    opened = view(case, "imm-th")
    assert opened.trafficking_status == "ActualVictimOfTrafficking"
    assert opened.person is not None
    assert leaked(view(case, "police-th"), "victim_status") == []


def test_a_member_sees_personal_data_only_while_consent_stands() -> None:
    assert view(CASE, "ngo-th").person is not None
    withdrawn = ConsentRecorded(
        case_id=CASE.case_id, reporting_agency="sw-th", consent_to_share=False
    )
    case = decide(CASE, withdrawn, now=T0, ctx=CTX).case
    assert case is not None
    update = view(case, "ngo-th")
    assert leaked(update, "personal") == []
    assert update.trafficking_status is not None  # still a member: victim status is needed
    assert view(case, "sw-th").person is not None  # the owner holds the data


def test_a_pending_receiver_sees_only_operational_facts_until_it_accepts() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(HandoverRequested, "sw-th", to_agency="cp-th", mode=HandoverMode.transfer)
    update = view(run.case, "cp-th")
    assert update.role == "pending"
    assert leaked(update, "personal") == []
    assert update.trafficking_status is None
    assert update.state == "submitted"


def test_updates_reach_every_involved_agency_including_one_just_declined() -> None:
    run = Run(referral(), routed_to=["sw-th"])
    run.ok(HandoverRequested, "sw-th", to_agency="ngo-th", mode=HandoverMode.referral)
    before = run.case
    run.ok(HandoverDeclined, "ngo-th", reason="no_capacity")
    updates = case_updates(before, run.case, change="x", occurred_at=T0, ctx=CTX)
    roles = {u.recipient: u.role for u in updates}
    assert roles == {"sw-th": "owner", "police-th": "assigned", "ngo-th": "former"}
    former = next(u for u in updates if u.recipient == "ngo-th")
    assert former.person is None
    assert former.trafficking_status is None


def test_sar_updates_quote_the_phase_to_every_recipient() -> None:
    run = Run(sar_alert(), routed_to=["jrcc-hq"])
    updates = case_updates(None, run.case, change=None, occurred_at=T0, ctx=CTX)
    assert {u.recipient for u in updates} == {"rcc-a", "jrcc-hq"}
    assert all(u.phase == "DETRESFA" for u in updates)


@given(
    agency=st.sampled_from(sorted(AGENCIES)),
    role=st.sampled_from(["owner", "assigned", "pending", "former"]),
    consent=st.booleans(),
    purpose=st.booleans(),
)
def test_no_withheld_field_ever_carries_a_value(
    agency: str, role: Role, consent: bool, purpose: bool
) -> None:
    case = replace(
        CASE,
        consent_to_share=consent,
        owner="sw-national",
        assigned=(),
        handovers=(),
        permitted_purposes=(),
    )
    if role == "owner":
        case = replace(case, owner=agency)
    elif role == "assigned":
        case = replace(case, assigned=(agency,))
    if purpose:
        case = decide_purpose(case, agency)
    update = view(case, agency)
    defaults = {n: f.default for n, f in CaseUpdate.model_fields.items()}
    for name in update.withheld:
        assert getattr(update, name) == defaults[name], name
    kind = AGENCIES[agency].kind
    restricted = kind in CTX.data_sharing.restricted_kinds
    if restricted and not purpose:
        assert leaked(update, "victim_status") == leaked(update, "personal") == []
        assert leaked(update, "lifecycle") == []
    if update.role in ("pending", "former"):
        assert leaked(update, "victim_status") == leaked(update, "personal") == []
    if update.role == "assigned" and not consent:
        assert leaked(update, "personal") == []


def decide_purpose(case: Case, agency: str) -> Case:
    purpose = PermittedPurpose(agency, "non_punishment_review", "law", "sw-th", T0)
    return replace(case, permitted_purposes=(purpose,))


def test_unknown_agencies_are_treated_as_restricted() -> None:
    situation = Situation(
        is_referral=True, role="assigned", case_country="TH", consent_to_share=True
    )
    unknown = withheld_fields(
        CTX.data_sharing, CASE_UPDATE, Recipient("nobody", None, "TH"), situation
    )
    social = withheld_fields(
        CTX.data_sharing,
        CASE_UPDATE,
        Recipient("sw-th", AgencyKind.social_welfare, "TH"),
        situation,
    )
    assert "trafficking_status" in unknown
    assert "person" in unknown
    assert social == frozenset()
