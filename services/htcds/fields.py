"""The HTCDS 2.0 field list (`field-standards-2.0.tsv` beside this module) and checking records
against it.

A record is a JSON object whose keys are fields, named by the sheet's "Field Name including
Prefix" (``vic_TraffickingStatus``), or sections of the sheet that HTCDS keeps as related
records (``"Support Plan"``: a list of objects of that section's fields, one per plan). A
picklist value must be one of its "Value Names"; a multiselect picklist is a list of them.
Fields whose values come from a code standard instead of a list (ISO 3166 countries, ISO 639
languages) are checked for the code's shape only.

Problems name the field and what is wrong, never the value: a record holds personal data.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

FIELD_LIST_PATH = Path(__file__).resolve().parent / "field-standards-2.0.tsv"

_NAME = 6  # "Field Name including Prefix"
_TYPE = 7  # "Field Type"
_VALUES = 9  # "Value Names (if picklist)"
_ISO_3166 = re.compile(r"^[A-Z]{2,3}$")
_ISO_639 = re.compile(r"^[a-z]{2,3}$")


class Kind(StrEnum):
    """How a field's value is written in a record."""

    text = "text"
    picklist = "picklist"
    multiselect = "multiselect"
    checkbox = "checkbox"
    date = "date"
    number = "number"


_KINDS = {
    "Text": Kind.text,
    "Long Text": Kind.text,
    "Picklist or Text": Kind.text,
    "Picklist": Kind.picklist,
    "Multiselect Picklist": Kind.multiselect,
    "Checkbox": Kind.checkbox,
    "Date": Kind.date,
    "Number": Kind.number,
    "Geolocation": Kind.number,
}


@dataclass(frozen=True, slots=True)
class Field:
    """One row of the sheet."""

    name: str
    section: str
    field_type: str
    values: frozenset[str] = frozenset()
    """The picklist's value names; empty when the values come from a code standard."""
    code_standard: str | None = None
    """``ISO 3166`` or ``ISO 639`` when the sheet says to use that standard's codes."""

    @property
    def kind(self) -> Kind:
        if self.field_type.startswith("Lookup"):
            return Kind.text  # an id of the organisation, user or person looked up
        return _KINDS[self.field_type]


@dataclass(frozen=True, slots=True)
class FieldList:
    fields: Mapping[str, Field]
    sections: frozenset[str]

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def __getitem__(self, name: str) -> Field:
        return self.fields[name]


def parse_fields(text: str) -> FieldList:
    """The sheet's fields: rows with a "Field Name including Prefix" (placeholder rows, "N/A",
    and the one row without it, ``per_Organisation``, define no field)."""
    fields: dict[str, Field] = {}
    sections: set[str] = set()
    section = ""
    for line in text.splitlines()[2:]:  # a sheet title, then the header row
        cells = line.split("\t")
        if cells[0].strip():
            section = cells[0].strip()
            sections.add(section)
            continue
        name = cells[_NAME].strip() if len(cells) > _NAME else ""
        if not name or name == "N/A":
            continue
        field_type = cells[_TYPE].strip()
        raw = cells[_VALUES].strip() if len(cells) > _VALUES else ""
        standard = next((s for s in ("ISO 3166", "ISO 639") if raw.startswith(f"Use {s}")), None)
        values = frozenset() if standard else frozenset(v.strip() for v in raw.split(" / "))
        fields[name] = Field(
            name=name,
            section=section,
            field_type=field_type,
            values=values - {""},
            code_standard=standard,
        )
    return FieldList(fields=fields, sections=frozenset(sections))


def load_fields(path: Path = FIELD_LIST_PATH) -> FieldList:
    """Read the packaged field list (or another copy of the sheet)."""
    return parse_fields(path.read_text(encoding="utf-8"))


FIELDS = load_fields()
"""HTCDS 2.0, as shipped with CaseBridge."""


def validate(record: Mapping[str, Any], fields: FieldList = FIELDS) -> list[str]:
    """Every way `record` departs from the field list (empty: it conforms)."""
    problems: list[str] = []
    for key, value in record.items():
        if key in fields.sections:
            problems += _related(key, value, fields)
        elif key not in fields:
            problems.append(f"{key}: not a field of HTCDS 2.0")
        else:
            problems += _value(fields[key], value, where=key)
    return problems


def _related(section: str, value: Any, fields: FieldList) -> list[str]:
    if not isinstance(value, list):
        return [f"{section}: related records should be a list of objects"]
    problems: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            problems.append(f"{section}[{i}]: should be an object")
            continue
        for key, field_value in item.items():
            where = f"{section}[{i}].{key}"
            if key not in fields:
                problems.append(f"{where}: not a field of HTCDS 2.0")
            elif fields[key].section != section:
                problems.append(f"{where}: a field of {fields[key].section!r}, not {section!r}")
            else:
                problems += _value(fields[key], field_value, where=where)
    return problems


def _value(field: Field, value: Any, *, where: str) -> list[str]:
    kind = field.kind
    if kind == Kind.multiselect:
        if not isinstance(value, list) or not value:
            return [f"{where}: a multiselect picklist should be a non-empty list"]
        if len(set(map(str, value))) != len(value):
            return [f"{where}: a value is repeated"]
        return [p for i, v in enumerate(value) for p in _choice(field, v, where=f"{where}[{i}]")]
    if kind == Kind.picklist:
        return _choice(field, value, where=where)
    if kind == Kind.text:
        ok = isinstance(value, str) and value != ""
        return [] if ok else [f"{where}: should be non-empty text"]
    if kind == Kind.checkbox:
        return [] if isinstance(value, bool) else [f"{where}: a checkbox should be true or false"]
    if kind == Kind.number:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: should be a number"]
    return [] if _is_date(value) else [f"{where}: a date should be YYYY-MM-DD"]


def _choice(field: Field, value: Any, *, where: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: a picklist value should be text"]
    if field.code_standard == "ISO 3166":
        ok = _ISO_3166.fullmatch(value) is not None
    elif field.code_standard == "ISO 639":
        ok = _ISO_639.fullmatch(value) is not None
    else:
        ok = value in field.values
    if ok:
        return []
    expected = field.code_standard + " code" if field.code_standard else "one of its value names"
    return [f"{where}: not {expected} (HTCDS 2.0 {field.name})"]


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != len("2000-01-01"):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True
