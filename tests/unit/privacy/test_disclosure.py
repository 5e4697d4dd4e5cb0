"""The data-sharing policy and the need-to-know decision, situation by situation.

Expected field sets are written out here, independently of policy.yaml, so that a change to
the policy that widens what an agency is told fails a test someone has to read.
"""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from pydantic import ValidationError

from schemas.referral import REFERRAL_SUBMITTED
from schemas.returns import RETURN_REQUESTED
from schemas.vocab import AgencyKind
from services.privacy.disclosure import Recipient, Role, Situation, withheld_fields
from services.privacy.policy import (
    CASE_UPDATE,
    DOCUMENTS,
    POLICY_PATH,
    load_policy,
    parse_policy,
)

POLICY = load_policy()
PERSONAL = {"person"}
VICTIM = {
    "type_of_exploitation",
    "country_of_exploitation",
    "indicators",
    "trafficking_status",
    "status_decided_by",
    "methods_of_control",
    "recruitment_methods",
}
NOTHING: set[str] = set()
ON = dt.date(2026, 12, 1)

ID_SHELTER = Recipient("id-shelter-ngo", AgencyKind.shelter_ngo, "ID")
ID_POLICE = Recipient("id-police-aht", AgencyKind.police, "ID")
ID_LABOUR = Recipient("id-labour-inspectorate", AgencyKind.labour_inspectorate, "ID")
ID_IMMIGRATION = Recipient("id-immigration", AgencyKind.immigration, "ID")
ID_CHILD = Recipient("id-child-protection", AgencyKind.child_protection, "ID")
TH_SHELTER = Recipient("th-shelter-ngo", AgencyKind.shelter_ngo, "TH")
TH_CHILD = Recipient("th-child-protection", AgencyKind.child_protection, "TH")
COORDINATOR = Recipient("regional-support-office", AgencyKind.social_welfare, "TH")


def referral(
    role: Role = "assigned",
    *,
    consent: bool = True,
    child: bool = False,
    adult_consent: bool | None = True,
    purpose: bool = False,
    country: str = "ID",
) -> Situation:
    return Situation(
        is_referral=True,
        role=role,
        case_country=country,
        consent_to_share=consent,
        child=child,
        adult_consent=None if child else adult_consent,
        purpose_recorded=purpose,
        on=ON,
    )


CASES: list[tuple[str, Recipient, Situation, set[str]]] = [
    ("shelter owner, adult, consent", ID_SHELTER, referral("owner"), NOTHING),
    ("shelter owner, adult, no consent", ID_SHELTER, referral("owner", consent=False), NOTHING),
    ("shelter member, adult, consent", ID_SHELTER, referral(), NOTHING),
    ("shelter member, adult, no consent", ID_SHELTER, referral(consent=False), PERSONAL),
    ("child protection owner, child", ID_CHILD, referral("owner", child=True), NOTHING),
    ("police, child, no purpose", ID_POLICE, referral(child=True), PERSONAL | VICTIM),
    ("police, child, purpose", ID_POLICE, referral(child=True, purpose=True), NOTHING),
    (
        "police, child, purpose, no consent to share",
        ID_POLICE,
        referral(child=True, purpose=True, consent=False),
        PERSONAL,
    ),
    ("police, adult, no purpose", ID_POLICE, referral(), PERSONAL | VICTIM),
    ("police, adult, purpose, adult consent", ID_POLICE, referral(purpose=True), NOTHING),
    (
        "police, adult, purpose, no adult consent",
        ID_POLICE,
        referral(purpose=True, adult_consent=None),
        PERSONAL,
    ),
    ("police owner, adult, no purpose", ID_POLICE, referral("owner"), PERSONAL | VICTIM),
    ("labour inspectorate, adult, no purpose", ID_LABOUR, referral(), PERSONAL | VICTIM),
    ("immigration, adult, no purpose", ID_IMMIGRATION, referral(), PERSONAL | VICTIM),
    ("immigration, adult, purpose", ID_IMMIGRATION, referral(purpose=True), NOTHING),
    ("pending receiver", ID_SHELTER, referral("pending"), PERSONAL | VICTIM),
    ("shelter abroad under an agreement", TH_SHELTER, referral(), NOTHING),
    ("child protection abroad, no agreement", TH_CHILD, referral(child=True), PERSONAL | VICTIM),
    (
        "regional coordinator, referral from a country with no agencies",
        COORDINATOR,
        referral("owner", country="GR"),
        PERSONAL | VICTIM,
    ),
]


@pytest.mark.parametrize(
    ("recipient", "situation", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_inbox_copies_of_a_referral_withhold_exactly_what_the_situation_demands(
    recipient: Recipient, situation: Situation, expected: set[str]
) -> None:
    assert withheld_fields(POLICY, REFERRAL_SUBMITTED, recipient, situation) == expected


def test_an_expired_agreement_no_longer_opens_the_border() -> None:
    later = Situation(
        is_referral=True,
        role="assigned",
        case_country="ID",
        consent_to_share=True,
        adult_consent=True,
        on=dt.date(2031, 1, 1),
    )
    assert withheld_fields(POLICY, REFERRAL_SUBMITTED, TH_SHELTER, later) == PERSONAL | VICTIM


def test_a_return_abroad_needs_its_agreement() -> None:
    situation = Situation(
        is_referral=False, role="assigned", case_country="ID", consent_to_share=True, on=ON
    )
    reception = Recipient("mm-return-reception", AgencyKind.return_programme, "MM")
    other = Recipient("mm-other-office", AgencyKind.return_programme, "MM")
    assert withheld_fields(POLICY, RETURN_REQUESTED, reception, situation) == frozenset()
    assert withheld_fields(POLICY, RETURN_REQUESTED, other, situation) == {
        "person",
        "trafficking_victim",
        "reintegration_needs",
    }


def test_case_updates_are_cut_by_the_same_decision() -> None:
    withheld = withheld_fields(POLICY, CASE_UPDATE, ID_POLICE, referral())
    assert {"person", "person_key", "trafficking_status", "state", "change"} <= withheld
    assert withheld_fields(POLICY, CASE_UPDATE, ID_SHELTER, referral()) == frozenset()


def test_every_document_field_is_in_exactly_one_class() -> None:
    for document, (model, envelope) in DOCUMENTS.items():
        listed = [f for per in POLICY.classes.values() for f in per.get(document, ())]
        assert sorted(listed) == sorted(set(model.model_fields) - envelope), document


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw["classes"]["personal"]["case_update"].remove("person"), "unclassified"),
        (
            lambda raw: raw["classes"]["personal"][REFERRAL_SUBMITTED].append("location_country"),
            "listed twice",
        ),
        (
            lambda raw: raw["classes"]["operational"][REFERRAL_SUBMITTED].append("nickname"),
            "unknown",
        ),
        (
            lambda raw: raw["permitted_purposes"].update(shelter_access=["shelter_ngo"]),
            "not restricted",
        ),
        (
            lambda raw: raw["sharing_agreements"][0].update(to_country="MM"),
            "exactly one of to_country, to_agency",
        ),
    ],
)
def test_a_policy_that_could_widen_disclosure_unnoticed_is_refused(edit, message) -> None:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(POLICY_PATH.read_text())
    edit(raw)
    with pytest.raises(ValidationError, match=message):
        parse_policy(yaml.safe_dump(raw))
