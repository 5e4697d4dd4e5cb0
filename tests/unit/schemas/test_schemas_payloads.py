"""Payload models, the registry, child detection and leak-free validation errors."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.errors import MAX_DETAILS, EventRejected, RejectionCode
from schemas.referral import REFERRAL_SUBMITTED, VictimReferralSubmitted
from schemas.registry import EVENT_TYPES, case_id_of, validate_payload
from schemas.returns import RETURN_REQUESTED, ReturnRequested
from schemas.sar import SAR_ALERT
from tests.unit.schemas.schema_samples import SAMPLES, sample


def invalid(event_type: str, data: Any) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        validate_payload(event_type, data)
    assert info.value.code is RejectionCode.INVALID_PAYLOAD
    return info.value


def error_types(error: EventRejected) -> set[str]:
    return {d["type"] for d in error.details}


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_samples_validate_and_yield_case_id(event_type: str) -> None:
    payload = validate_payload(event_type, sample(event_type))
    assert isinstance(payload, EVENT_TYPES[event_type])
    assert case_id_of(payload) == SAMPLES[event_type]["case_id"]


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_json_bytes_validate_the_same(event_type: str) -> None:
    raw = json.dumps(SAMPLES[event_type]).encode()
    assert validate_payload(event_type, raw) == validate_payload(event_type, sample(event_type))


def test_bad_json_bytes_are_not_json() -> None:
    with pytest.raises(EventRejected) as info:
        validate_payload(REFERRAL_SUBMITTED, b"{nope")
    assert info.value.code is RejectionCode.NOT_JSON


def test_unknown_type() -> None:
    with pytest.raises(EventRejected) as info:
        validate_payload("org.casebridge.referral.deleted.v1", sample(REFERRAL_SUBMITTED))
    assert info.value.code is RejectionCode.UNKNOWN_TYPE


def test_every_model_requires_case_id_and_reporting_agency() -> None:
    for model in EVENT_TYPES.values():
        assert {"case_id", "reporting_agency"} <= set(model.model_fields)


def test_case_id_of_rejects_models_without_one() -> None:
    class Other(BaseModel):
        x: int = 1

    with pytest.raises(TypeError):
        case_id_of(Other())


def test_payloads_are_immutable() -> None:
    payload = validate_payload(REFERRAL_SUBMITTED, sample(REFERRAL_SUBMITTED))
    with pytest.raises(ValidationError):
        payload.case_id = "other"  # type: ignore[attr-defined]


# --- child detection ---------------------------------------------------------------------------


def referral_with_person(**person: Any) -> VictimReferralSubmitted:
    data = sample(REFERRAL_SUBMITTED)
    data["referred_at"] = "2024-05-02T09:30:00+03:00"
    data["person"] = {"given_name": "Test", **person}
    model = validate_payload(REFERRAL_SUBMITTED, data)
    assert isinstance(model, VictimReferralSubmitted)
    return model


@pytest.mark.parametrize(
    ("person", "child"),
    [
        ({"age_estimate": 17}, True),
        ({"age_estimate": 18}, False),
        ({"age_estimate": 30}, False),
        ({"age_estimate": 30, "age_disputed": True}, True),
        ({"date_of_birth": "2006-05-03"}, True),  # turns 18 the day after the referral
        ({"date_of_birth": "2006-05-02"}, False),  # 18 on the referral date
        ({"date_of_birth": "1990-01-01"}, False),
        ({"date_of_birth": "1990-01-01", "age_estimate": 16}, True),  # conflicting: protect
        ({}, True),  # age unknown: presumed a child until assessed
    ],
)
def test_involves_child(person: dict[str, Any], child: bool) -> None:
    assert referral_with_person(**person).involves_child() is child


def test_child_judged_on_referral_date_in_its_own_offset() -> None:
    data = sample(REFERRAL_SUBMITTED)
    data["person"] = {"date_of_birth": "2006-05-02"}
    data["referred_at"] = "2024-05-01T23:30:00-03:00"  # 2 May in UTC, still 1 May there
    model = validate_payload(REFERRAL_SUBMITTED, data)
    assert isinstance(model, VictimReferralSubmitted)
    assert model.involves_child()


def test_return_involves_child() -> None:
    data = sample(RETURN_REQUESTED)
    data["person"] = {"age_estimate": 15}
    model = validate_payload(RETURN_REQUESTED, data)
    assert isinstance(model, ReturnRequested)
    assert model.involves_child()


# --- strictness --------------------------------------------------------------------------------


def mutate(event_type: str, path: str, value: Any) -> dict[str, Any]:
    data = sample(event_type)
    *parents, leaf = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is ...:
        del target[leaf]
    else:
        target[int(leaf) if isinstance(target, list) else leaf] = value
    return data


@pytest.mark.parametrize(
    ("event_type", "path", "value", "expected_type"),
    [
        (REFERRAL_SUBMITTED, "consent_to_share", ..., "missing"),
        (REFERRAL_SUBMITTED, "consent_to_share", "true", "bool_type"),
        (REFERRAL_SUBMITTED, "consent_to_share", 1, "bool_type"),
        (REFERRAL_SUBMITTED, "extra_field", 1, "extra_forbidden"),
        (REFERRAL_SUBMITTED, "person.nickname", "x", "extra_forbidden"),
        (
            REFERRAL_SUBMITTED,
            "type_of_exploitation",
            ["ForcedLabour", "ForcedLabour"],
            "unique_items",
        ),
        (REFERRAL_SUBMITTED, "type_of_exploitation", ["Forced Labour"], "enum"),
        (REFERRAL_SUBMITTED, "person.gender", "Female", "enum"),
        (REFERRAL_SUBMITTED, "person.age_estimate", 121, "less_than_equal"),
        (REFERRAL_SUBMITTED, "person.age_estimate", "17", "int_type"),
        (REFERRAL_SUBMITTED, "person.date_of_birth", 1577836800, "date_type"),
        (REFERRAL_SUBMITTED, "person.date_of_birth", "2001-03-14T00:00:00Z", "date_type"),
        (REFERRAL_SUBMITTED, "person.date_of_birth", "2999-01-01", "date_out_of_range"),
        (REFERRAL_SUBMITTED, "person.given_name", "", "string_too_short"),
        (REFERRAL_SUBMITTED, "person.given_name", "A\x1b[31m", "string_pattern_mismatch"),
        (REFERRAL_SUBMITTED, "person.nationality", "bd", "string_pattern_mismatch"),
        (REFERRAL_SUBMITTED, "referred_at", "2024-05-02T09:30:00", "timezone_aware"),
        (REFERRAL_SUBMITTED, "referred_at", 1714631400, "datetime_type"),
        (REFERRAL_SUBMITTED, "case_id", "-starts-with-dash", "string_pattern_mismatch"),
        (REFERRAL_SUBMITTED, "reporting_agency", "GR_Police", "string_pattern_mismatch"),
        (REFERRAL_SUBMITTED, "indicators", [{"dimension": "x"}], "enum"),
        (RETURN_REQUESTED, "voluntariness_confirmed", False, "literal_error"),
        (RETURN_REQUESTED, "voluntariness_confirmed", 1, "literal_error"),
        (RETURN_REQUESTED, "voluntariness_confirmed", ..., "missing"),
        (RETURN_REQUESTED, "origin_country", "GR", "same_country"),
        (SAR_ALERT, "position.lat", 90.5, "less_than_equal"),
        (SAR_ALERT, "position.lon", "24.5", "float_type"),
        (SAR_ALERT, "position.lon", True, "float_type"),
        (SAR_ALERT, "persons_at_risk", -1, "greater_than_equal"),
        (SAR_ALERT, "persons_at_risk", 2.0, "int_type"),
        (SAR_ALERT, "sitrep_number", 0, "greater_than_equal"),
        (SAR_ALERT, "phase", "DISTRESS", "enum"),
        (SAR_ALERT, "vessel_description", "x" * 201, "string_too_long"),
    ],
)
def test_invalid_payloads(event_type: str, path: str, value: Any, expected_type: str) -> None:
    error = invalid(event_type, mutate(event_type, path, value))
    assert expected_type in error_types(error), error.details


def test_non_finite_numbers_rejected_from_python_callers() -> None:
    error = invalid(SAR_ALERT, mutate(SAR_ALERT, "position.lat", float("nan")))
    assert error_types(error) == {"finite_number"}


def test_payload_must_be_an_object() -> None:
    assert error_types(invalid(SAR_ALERT, [1, 2])) == {"model_type"}


def test_details_locate_nested_errors() -> None:
    error = invalid(REFERRAL_SUBMITTED, mutate(REFERRAL_SUBMITTED, "indicators.1.strength", "x"))
    assert [d["loc"] for d in error.details] == ["indicators.1.strength"]
    assert error.message == f"1 validation error for {REFERRAL_SUBMITTED}"


def test_details_are_bounded() -> None:
    data = sample(REFERRAL_SUBMITTED)
    data.update({f"extra_{i}": i for i in range(50)})
    error = invalid(REFERRAL_SUBMITTED, data)
    assert len(error.details) == MAX_DETAILS
    assert "50 validation errors" in error.message


# --- personal data never leaks into rejections -------------------------------------------------

SECRET = "SECRETNAME"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("person.given_name", SECRET * 30),  # 300 characters: string_too_long
        ("person.family_name", SECRET + "\n"),
        ("person.gender", SECRET),
        ("person.nationality", SECRET),
        ("person.date_of_birth", SECRET + "!!"),
        ("person.age_estimate", SECRET),
        ("referred_at", SECRET),
        ("case_id", SECRET + " " + SECRET),
        ("type_of_exploitation", [SECRET]),
        ("indicators", [{"dimension": SECRET, "indicator": SECRET, "strength": SECRET}]),
        ("consent_to_share", SECRET),
        ("person", SECRET),
        ("unexpected", {"given_name": SECRET}),
    ],
)
def test_rejection_never_contains_the_input(path: str, value: Any) -> None:
    error = invalid(REFERRAL_SUBMITTED, mutate(REFERRAL_SUBMITTED, path, value))
    assert SECRET not in json.dumps(error.to_dict())
    assert SECRET not in str(error)


def test_input_controlled_keys_are_masked_in_loc() -> None:
    data = sample(REFERRAL_SUBMITTED)
    data["person"]["Secret Name-Smith"] = 1
    error = invalid(REFERRAL_SUBMITTED, data)
    assert [d["loc"] for d in error.details] == ["person.<key>"]


# --- personal-field catalogue ------------------------------------------------------------------


def resolve(model: type[BaseModel], path: str) -> bool:
    head, _, rest = path.partition(".")
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    annotation = field.annotation
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and resolve(annotation, rest)
    )


def test_birth_date_bounds_use_today() -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert validate_payload(
        REFERRAL_SUBMITTED, mutate(REFERRAL_SUBMITTED, "person.date_of_birth", today)
    )
