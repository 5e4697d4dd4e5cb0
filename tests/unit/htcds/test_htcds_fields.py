"""The packaged HTCDS 2.0 field list, and checking records against it: a field not in the list
and a value not in its picklist are each reported; conforming records are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.htcds.fields import FIELD_LIST_PATH, FIELDS, Kind, load_fields, validate

SHARED_COPY = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "htcds"


def test_the_field_list_holds_the_sheets_fields_by_their_prefixed_names() -> None:
    assert len(FIELDS.fields) == 83  # rows with a prefixed name, placeholders ("N/A") aside
    assert FIELDS["vic_TraffickingStatus"].values == {
        "PossibleVictimOfTrafficking",
        "ActualVictimOfTrafficking",
        "NotAVictimOfTrafficking",
    }
    assert FIELDS["vic_TypeOfExploitation"].kind == Kind.multiselect
    assert FIELDS["prs_Citizenship"].code_standard == "ISO 3166"
    assert FIELDS["cas_CaseOwner"].kind == Kind.text  # a lookup: an id
    assert FIELDS["spl_Type"].values >= {"Health", "Legal"}
    assert "" not in FIELDS["spl_Type"].values  # the sheet's trailing " / " is no value
    assert "N/A" not in FIELDS
    assert "per_Organisation" not in FIELDS  # the one row without a prefixed name
    assert {"Support Plan", "Historic Trafficking Events"} <= FIELDS.sections


def test_the_packaged_sheet_is_the_reference_copy() -> None:
    reference = SHARED_COPY / "field-standards-2.0.tsv"
    if not reference.exists():
        pytest.skip("no shared reference copy on this machine")
    assert FIELD_LIST_PATH.read_bytes() == reference.read_bytes()
    assert load_fields(reference) == FIELDS


GOOD = {
    "cas_Status": "Active",
    "cas_CaseOwner": "id-shelter-ngo",
    "cas_IncomingReferralDate": "2026-12-03",
    "con_Consent": True,
    "vic_TypeOfExploitation": ["ForcedLabour", "ForcedBegging"],
    "prs_Citizenship": ["MM"],
    "Support Plan": [{"spl_Type": "Health"}, {"spl_Type": "Legal"}],
    "Historic Trafficking Events": [{"hte_Type": "Exploitation", "hte_Country": "TH"}],
}


def test_a_conforming_record_has_no_problems() -> None:
    assert validate(GOOD) == []


def test_a_field_not_in_the_list_is_reported() -> None:
    problems = validate(GOOD | {"vic_Nickname": "x"})
    assert problems == ["vic_Nickname: not a field of HTCDS 2.0"]


def test_a_field_without_its_prefix_is_not_a_field() -> None:
    assert validate({"TraffickingStatus": "ActualVictimOfTrafficking"}) == [
        "TraffickingStatus: not a field of HTCDS 2.0"
    ]


def test_a_value_not_in_its_picklist_is_reported() -> None:
    problems = validate(GOOD | {"cas_Status": "Open"})
    assert problems == ["cas_Status: not one of its value names (HTCDS 2.0 cas_Status)"]


def test_a_multiselect_value_not_in_its_picklist_is_reported_by_position() -> None:
    problems = validate(GOOD | {"vic_TypeOfExploitation": ["ForcedLabour", "forced_labour"]})
    assert problems == [
        "vic_TypeOfExploitation[1]: not one of its value names (HTCDS 2.0 vic_TypeOfExploitation)"
    ]


def test_picklist_values_are_case_sensitive_as_in_the_sheet() -> None:
    assert validate({"prs_Gender": "feminine"}) != []
    assert validate({"prs_Gender": "Feminine"}) == []


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"vic_TypeOfExploitation": "ForcedLabour"}, "should be a non-empty list"),
        ({"vic_MethodsOfControl": ["DebtBondage", "DebtBondage"]}, "a value is repeated"),
        ({"con_Consent": "yes"}, "a checkbox should be true or false"),
        ({"cas_IncomingReferralDate": "2026-02-30"}, "a date should be YYYY-MM-DD"),
        ({"cas_IncomingReferralDate": "2026-12-03T10:00:00Z"}, "a date should be YYYY-MM-DD"),
        ({"prs_Citizenship": ["Myanmar"]}, "not ISO 3166 code"),
        ({"hte_Latitude": True}, "should be a number"),
        ({"cas_CaseOwner": ""}, "should be non-empty text"),
        ({"Support Plan": {"spl_Type": "Health"}}, "should be a list of objects"),
        ({"Support Plan": [{"spl_Type": "Shelter"}]}, "not one of its value names"),
        ({"Support Plan": [{"hte_Type": "Transit"}]}, "a field of 'Historic Trafficking"),
        ({"Support Plan": [{"spl_Kind": "Health"}]}, "not a field of HTCDS 2.0"),
    ],
)
def test_each_kind_of_value_is_checked(record: dict[str, object], problem: str) -> None:
    problems = validate(record)
    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_problems_never_repeat_the_value() -> None:
    problems = validate({"prs_Gender": "Survivor-Secret", "prs_Citizenship": ["Secretland"]})
    assert len(problems) == 2
    assert not any("Secret" in p for p in problems)
