"""The business report and document request payloads, and who intake lets send a business
report: a report never names a person, and only a business sends one (and nothing else)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import pytest
from pydantic import BaseModel

from schemas.business import FORCED_LABOUR_REPORTED, PERSONAL_FIELDS, ForcedLabourReported
from schemas.cases import ReportAcknowledged
from schemas.common import PersonRef
from schemas.documents import DOCUMENT_REQUESTED, DocumentRequested, DocumentType
from schemas.errors import EventRejected, RejectionCode
from schemas.referral import VictimReferralSubmitted
from schemas.registry import EVENT_TYPES, validate_payload
from services.intake.registry import Registry
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.routing.policy import load_policy
from services.runtime.settings import Settings

REPORT: dict[str, Any] = {
    "case_id": "REP-TH-2025-0001",
    "reporting_agency": "th-seafood-exporter",
    "reported_at": "2025-03-01T08:00:00Z",
    "site": {
        "country": "ID",
        "sector": "fishing_and_seafood",
        "supplier_tier": "tier_2",
        "site_reference": "sup_0042",
    },
    "indicators": [
        {"indicator": "debt_bondage", "strength": "strong"},
        {"indicator": "retention_of_identity_documents", "strength": "medium"},
    ],
    "workers_affected": "11-50",
}
NAME = "Somchai Kaewmanee"
"""A worker's name a careless report might carry; it must never be echoed back."""
DEPTH = 5000


def report(**changes: Any) -> dict[str, Any]:
    return copy.deepcopy(REPORT) | changes


def rejected(data: Any) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        validate_payload(FORCED_LABOUR_REPORTED, data)
    return info.value


def nested_lists(depth: int, leaf: Any = None) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    if leaf is not None:
        inner.append(leaf)
    return outer


def nested_dicts(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    outer: dict[str, Any] = {}
    inner = outer
    for _ in range(depth - 1):
        inner["more"] = {}
        inner = inner["more"]
    inner.update(leaf)
    return outer


# --- ForcedLabourReported ------------------------------------------------------------------------


def test_a_clean_report_is_accepted() -> None:
    payload = validate_payload(FORCED_LABOUR_REPORTED, report())
    assert isinstance(payload, ForcedLabourReported)
    assert payload.site.country == "ID"
    assert len(payload.indicators) == 2


def test_the_report_is_a_registered_event_type() -> None:
    assert EVENT_TYPES[FORCED_LABOUR_REPORTED] is ForcedLabourReported
    assert EVENT_TYPES[DOCUMENT_REQUESTED] is DocumentRequested


PERSONAL: dict[str, dict[str, Any]] = {
    "person_at_top": report(person={"given_name": "Somchai", "family_name": "Kaewmanee"}),
    "worker_names_at_top": report(worker_names=[NAME]),
    "worker_names_in_site": report(site=REPORT["site"] | {"worker_names": [NAME]}),
    "person_in_an_indicator": report(
        indicators=[REPORT["indicators"][0] | {"person": {"given_name": NAME}}]
    ),
    "name_deep_in_a_list": report(extra=[[{"notes": [{"name": NAME}]}]]),
}


@pytest.mark.parametrize("data", PERSONAL.values(), ids=PERSONAL.keys())
def test_a_personal_field_anywhere_is_refused_as_personal_data(data: dict[str, Any]) -> None:
    error = rejected(data)
    assert error.code is RejectionCode.INVALID_PAYLOAD
    assert [d["type"] for d in error.details] == ["personal_data_not_allowed"]


@pytest.mark.parametrize("data", PERSONAL.values(), ids=PERSONAL.keys())
def test_the_refusal_never_echoes_the_personal_value(data: dict[str, Any]) -> None:
    text = json.dumps(rejected(data).to_dict())
    assert "Somchai" not in text
    assert "Kaewmanee" not in text


@pytest.mark.parametrize("field", sorted(PERSONAL_FIELDS))
def test_every_personal_field_name_is_refused(field: str) -> None:
    error = rejected(report(site=REPORT["site"] | {field: "x"}))
    assert {d["type"] for d in error.details} == {"personal_data_not_allowed"}


@pytest.mark.parametrize("data", PERSONAL.values(), ids=PERSONAL.keys())
def test_the_refusal_says_it_is_personal_data(data: dict[str, Any]) -> None:
    [detail] = rejected(data).details
    assert "personal data" in detail["msg"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (PERSONAL["worker_names_at_top"], "worker_names"),
        (PERSONAL["worker_names_in_site"], "worker_names"),
        (report(site=REPORT["site"] | {"passport_number": "mm1234567"}), "passport_number"),
    ],
    ids=["worker_names_at_top", "worker_names_in_site", "passport_number_in_site"],
)
def test_the_rejection_sent_back_names_the_field(data: dict[str, Any], field: str) -> None:
    named = re.compile(rf"(^|[^a-z_]){field}($|[^a-z_])")
    error = rejected(data)
    assert any(named.search(d["msg"]) or named.search(d["loc"]) for d in error.details)
    assert "mm1234567" not in json.dumps(error.to_dict())


def test_a_personal_field_in_a_list_of_the_wrong_shape_is_still_refused() -> None:
    """The scan is of the raw data, before any field's own validation could stop at it."""
    error = rejected(report(indicators=[{"worker": NAME}]))
    assert {d["type"] for d in error.details} == {"personal_data_not_allowed"}


@pytest.mark.parametrize(
    "data",
    [
        report(notes=nested_lists(DEPTH)),
        report(indicators=nested_lists(DEPTH)),
        report(site=REPORT["site"] | {"site_reference": nested_lists(DEPTH, "sup_1")}),
    ],
    ids=["unknown_field", "indicators", "site_reference"],
)
def test_deep_nesting_is_a_clean_rejection(data: dict[str, Any]) -> None:
    error = rejected(data)
    assert error.code is RejectionCode.INVALID_PAYLOAD
    assert error.details


def test_a_personal_field_at_great_depth_is_found() -> None:
    error = rejected(report(notes=nested_dicts(DEPTH, {"worker_names": [NAME]})))
    assert {d["type"] for d in error.details} == {"personal_data_not_allowed"}


def test_a_personal_field_under_deep_lists_is_found() -> None:
    error = rejected(report(notes=nested_lists(DEPTH, {"person": {"given_name": NAME}})))
    assert {d["type"] for d in error.details} == {"personal_data_not_allowed"}


def test_deep_nesting_in_json_bytes_is_a_clean_rejection() -> None:
    raw = (
        json.dumps(report(notes=None))
        .encode()
        .replace(b'"notes": null', b'"notes": ' + b"[" * DEPTH + b"]" * DEPTH)
    )
    assert b"[[[" in raw
    with pytest.raises(EventRejected) as info:
        validate_payload(FORCED_LABOUR_REPORTED, raw)
    assert info.value.code in (RejectionCode.INVALID_PAYLOAD, RejectionCode.NOT_JSON)


def test_a_report_names_at_least_one_indicator() -> None:
    error = rejected(report(indicators=[]))
    assert {d["loc"] for d in error.details} == {"indicators"}


def test_workers_affected_is_a_band_not_a_count() -> None:
    error = rejected(report(workers_affected=37))
    assert {d["loc"] for d in error.details} == {"workers_affected"}


# --- DocumentRequested ---------------------------------------------------------------------------


def document(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "case_id": "DOC-TH-2025-0007",
        "reporting_agency": "id-return-programme",
        "requested_at": "2025-03-01T08:00:00Z",
        "person": {"given_name": "Mai", "family_name": "Tran", "date_of_birth": "1990-05-04"},
        "document": "travel_document",
        "issuing_country": "MM",
        "location_country": "ID",
        "for_return": "IOM-ID-2025-12",
        "consent_to_share": True,
    }
    return data | changes


def rejected_document(data: dict[str, Any]) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        validate_payload(DOCUMENT_REQUESTED, data)
    assert info.value.code is RejectionCode.INVALID_PAYLOAD
    return info.value


def test_a_document_request_is_accepted_with_or_without_a_return() -> None:
    payload = validate_payload(DOCUMENT_REQUESTED, document())
    assert isinstance(payload, DocumentRequested)
    assert payload.document == DocumentType.travel_document
    assert payload.for_return == "IOM-ID-2025-12"
    alone = validate_payload(DOCUMENT_REQUESTED, document(for_return=None))
    assert isinstance(alone, DocumentRequested)
    assert alone.for_return is None


def test_a_document_request_names_a_known_document() -> None:
    error = rejected_document(document(document="driving_licence"))
    assert {d["loc"] for d in error.details} == {"document"}


def test_a_document_request_needs_explicit_consent() -> None:
    data = document()
    del data["consent_to_share"]
    error = rejected_document(data)
    assert {d["loc"] for d in error.details} == {"consent_to_share"}
    refused = rejected_document(document(consent_to_share=False))
    assert {d["loc"] for d in refused.details} == {"consent_to_share"}


def test_a_document_request_for_a_child_involves_a_child() -> None:
    payload = validate_payload(
        DOCUMENT_REQUESTED, document(person={"given_name": "Lin", "age_estimate": 12})
    )
    assert isinstance(payload, DocumentRequested)
    assert payload.involves_child()


# --- Intake: who may send a business report ------------------------------------------------------

SETTINGS = Settings()
REGISTRY = Registry(
    load_policy(SETTINGS.routing_policy_path, known_event_types=EVENT_TYPES),
    load_data_sharing_policy(SETTINGS.data_sharing_policy_path),
)
T0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)


def referral_from(agency: str) -> VictimReferralSubmitted:
    return VictimReferralSubmitted(
        case_id="REF-ID-2025-0003",
        reporting_agency=agency,
        referred_at=T0,
        person=PersonRef(given_name="Mai", family_name="Tran", age_estimate=30),
        location_country="ID",
        consent_to_share=True,
        adult_consent=True,
    )


def refused_sender(payload: BaseModel) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        REGISTRY.check(payload)
    assert info.value.code is RejectionCode.SENDER_NOT_PERMITTED
    return info.value


def refusal(payload: BaseModel) -> RejectionCode | None:
    """The code intake's registry check refuses the payload with, or None if it passes."""
    try:
        REGISTRY.check(payload)
    except EventRejected as error:
        return error.code
    return None


def test_a_business_may_send_a_report() -> None:
    payload = ForcedLabourReported.model_validate(report())
    assert refusal(payload) is None


def test_only_a_business_may_send_a_report() -> None:
    error = refused_sender(
        ForcedLabourReported.model_validate(report(reporting_agency="id-police-aht"))
    )
    assert [d["loc"] for d in error.details] == ["reporting_agency"]


def test_an_unregistered_sender_may_not_send_a_report() -> None:
    refused_sender(ForcedLabourReported.model_validate(report(reporting_agency="not-an-agency")))


def test_a_business_may_not_send_a_referral() -> None:
    error = refused_sender(referral_from("th-seafood-exporter"))
    assert [d["loc"] for d in error.details] == ["reporting_agency"]


def test_an_agency_may_still_send_a_referral() -> None:
    """The control for the test above: the sender check is about the business."""
    assert refusal(referral_from("id-police-aht")) is None


def test_a_business_may_not_act_on_a_case() -> None:
    refused_sender(
        ReportAcknowledged(case_id="REP-TH-2025-0001", reporting_agency="th-seafood-exporter")
    )


def test_a_business_may_not_request_a_document() -> None:
    payload = validate_payload(DOCUMENT_REQUESTED, document(reporting_agency="th-seafood-exporter"))
    refused_sender(payload)
