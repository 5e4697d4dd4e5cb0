"""One rule for who an event is from: `urn:casebridge:agency:<id>[:<system>]`."""

from __future__ import annotations

import pytest

from schemas.identity import agency_of_source, agency_source


def test_the_documented_forms_name_the_agency() -> None:
    assert agency_source("id-police-aht") == "urn:casebridge:agency:id-police-aht"
    with_system = "urn:casebridge:agency:id-police-aht:records"
    assert agency_source("id-police-aht", "records") == with_system
    assert agency_of_source("urn:casebridge:agency:id-police-aht") == "id-police-aht"
    assert agency_of_source("urn:casebridge:agency:id-police-aht:case.mgmt_2") == "id-police-aht"


@pytest.mark.parametrize(
    "source",
    [
        "urn:agency:id-police-aht",  # the old, undocumented form
        "urn:casebridge:agency:",
        "urn:casebridge:agency:ID-Police",
        "urn:casebridge:agency:id-police-aht:a:b",
        "urn:casebridge:agency:id-police-aht:",
        "https://id-police-aht.example/",
        " urn:casebridge:agency:id-police-aht",
    ],
)
def test_anything_else_names_no_agency(source: str) -> None:
    assert agency_of_source(source) is None


def test_an_invalid_agency_source_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="not a valid agency source"):
        agency_source("id-police-aht", "a:b")
