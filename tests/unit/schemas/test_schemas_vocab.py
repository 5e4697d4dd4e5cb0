"""Vocabularies: HTCDS values must match the published field standard verbatim."""

from __future__ import annotations

import csv
import inspect
from enum import StrEnum
from pathlib import Path

import pytest

from schemas import vocab
from schemas.vocab import HTCDS_FIELDS

HTCDS_TSV = (
    Path(__file__).parents[3] / ".." / "shared" / "reference" / "htcds" / "field-standards-2.0.tsv"
)


def htcds_picklists() -> dict[str, list[str]]:
    """Field name (with prefix) -> picklist value names, from the HTCDS 2.0 sheet."""
    if not HTCDS_TSV.is_file():
        pytest.skip(f"HTCDS field standard not found at {HTCDS_TSV.resolve()}")
    with HTCDS_TSV.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    header = next(row for row in rows if "Field Name including Prefix" in row)
    name_col = header.index("Field Name including Prefix")
    values_col = header.index("Value Names (if picklist)")
    picklists: dict[str, list[str]] = {}
    for row in rows:
        if len(row) > values_col and row[name_col] and row[values_col]:
            values = [v.strip() for v in row[values_col].split(" / ")]
            picklists[row[name_col]] = [v for v in values if v]
    return picklists


@pytest.mark.parametrize("enum", list(HTCDS_FIELDS), ids=lambda e: e.__name__)
def test_htcds_enum_matches_the_sheet_verbatim(enum: type[StrEnum]) -> None:
    sheet = htcds_picklists()[HTCDS_FIELDS[enum]]
    assert [member.value for member in enum] == sheet


def test_every_enum_is_documented_and_names_equal_values() -> None:
    enums = [
        obj
        for _, obj in inspect.getmembers(vocab, inspect.isclass)
        if issubclass(obj, StrEnum) and obj is not StrEnum
    ]
    assert len(enums) >= 15
    for enum in enums:
        assert enum.__doc__, enum
        assert enum.__doc__ != StrEnum.__doc__, enum
        assert all(member.name == member.value for member in enum), enum
