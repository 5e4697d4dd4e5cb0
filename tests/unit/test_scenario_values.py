"""The demo's personal and free-text values, as the e2e log check collects them: the collector
finds every kind of value (so that check cannot become vacuous) and spots each one in the form
a leaked record would take, without flagging short values that occur innocently."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from services.demo import coordination, priorities
from services.demo.scenario import build_scenario
from tests.support.scenario_values import ScenarioValue, demo_messages, scenario_values

VALUES = scenario_values()


def test_collector_walks_every_message_the_demo_publishes() -> None:
    document_steps = priorities.document_request_steps("X")
    expected = (
        len(build_scenario("X"))
        + len(coordination.sar_steps("X"))
        + len(coordination.referral_steps("X"))
        + len(coordination.return_steps("X"))
        + len(coordination.waiting_handover_steps("X"))
        + len(priorities.business_report_steps("X"))
        + sum(len(part) if isinstance(part, list) else 1 for part in document_steps)
    )
    assert len(demo_messages("X")) == expected


def test_collector_finds_names_dates_of_birth_nationalities_and_free_text() -> None:
    by_path: dict[str, set[Any]] = {}
    for v in VALUES:
        by_path.setdefault(v.path, set()).add(v.value)
    assert {"Synthetic"} <= by_path["person.given_name"]
    assert {
        "Person-A",
        "Person-B",
        "Person-C",
        "Person-F",
        "Survivor-D",
        "Survivor-E",
        "Survivor-W",
    } <= (by_path["person.family_name"])
    assert {"1994-07-23"} <= by_path["person.date_of_birth"]
    assert {"MM", "KH"} <= by_path["person.nationality"]
    assert {16, 34} <= by_path["person.age_estimate"]
    assert "wooden fishing vessel, engine failure, taking water" in by_path["vessel_description"]
    assert "evacuation" in by_path["assistance_required"]
    assert "Port of Benoa" in by_path["place_of_safety"]
    assert all(v.personal for v in VALUES if v.path.startswith("person."))
    assert not any(v.personal for v in VALUES if not v.path.startswith("person."))


def _raw_person_fields(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, v in value.items():
            if key == "person" and isinstance(v, dict):
                yield from v.items()
            else:
                yield from _raw_person_fields(v)
    elif isinstance(value, list):
        for v in value:
            yield from _raw_person_fields(v)


def test_collector_misses_no_person_field_in_the_raw_messages() -> None:
    """Cross-check against a schema-blind walk of the JSON: every `person` entry is collected."""
    raw = {
        (f"person.{k}", json.dumps(v))
        for m in demo_messages()
        for k, v in _raw_person_fields(orjson.loads(m.value))
    }
    collected = {(v.path, json.dumps(v.value)) for v in VALUES if v.personal}
    assert raw
    assert raw == collected


def test_long_text_is_searched_bare_and_codes_and_numbers_are_not() -> None:
    bare = {v.value for v in VALUES if v.bare}
    assert {"Synthetic", "Person-A", "1994-07-23", "Port of Benoa"} <= bare
    assert not bare & {"MM", "KH", 16, True, "Feminine"}


def _leaked_lines(v: ScenarioValue) -> dict[str, str]:
    """The value in a leaked record, as each renderer and each careless call would write it."""
    record = {"person" if v.personal else "payload": {v.key: v.value}}
    json_line = structlog.processors.JSONRenderer()(None, "", {"event": "x", v.key: v.value})
    console = structlog.dev.ConsoleRenderer(colors=False)(None, "", {"event": "x", v.key: v.value})
    return {
        "json renderer": str(json_line),
        "console renderer": str(console),
        "repr of a dict": f"detail={record!r}",
        "compact JSON bytes in a JSON line": json.dumps({"raw": orjson.dumps(record).decode()}),
        "pydantic error": f"[type=string_too_long, input_value={v.value!r}, input_type=str]",
        "errors() as JSON": json.dumps({"errors": [{"type": "x", "input": v.value}]}),
    }


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{v.path}={v.value}")
def test_every_collected_value_is_spotted_in_a_leaked_record(value: ScenarioValue) -> None:
    for form, line in _leaked_lines(value).items():
        assert value.found_in(line), f"not spotted in the {form} form: {line}"


INNOCENT = [
    '{"origin_country": "MM", "host_country": "ID", "version": 16, "persons": 34}',
    "origin_country=MM location_country=KH version=16 child=True",
    '{"nationality": "MMX", "age_estimate": 160, "gender": "Feminine-ish"}',
    '{"nationality": "[redacted]", "person": "[redacted]"}',
    "case REF-X-01 owner=id-shelter-ngo state=open role=owner",
]


@pytest.mark.parametrize("line", INNOCENT)
def test_short_values_are_not_flagged_where_they_occur_innocently(line: str) -> None:
    assert [v for v in VALUES if v.found_in(line)] == []
