"""The erasure request on the wire: exactly one subject, codes not free text, and a record
that reads back as the request it was built from (or is refused with a reason code)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.errors import EventRejected, RejectionCode
from schemas.privacy import ERASURE_REQUESTED, ErasureRequested
from schemas.registry import EVENT_TYPES
from services.cases.erasure import SOURCE, erasure_record, parse_erasure_request

AT = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
KEY = "pk1:" + "ab" * 32


def request(**changes: Any) -> ErasureRequested:
    data: dict[str, Any] = {
        "request_id": "req-1",
        "case_id": "REF-1",
        "reason": "subject_request",
        "requested_by": "dpo-1",
        "requested_at": AT,
    }
    return ErasureRequested(**(data | changes))


def test_a_request_names_exactly_one_subject() -> None:
    assert request().case_id == "REF-1"
    assert request(case_id=None, person_key=KEY).person_key == KEY
    for changes in ({"person_key": KEY}, {"case_id": None}):
        with pytest.raises(ValidationError, match="exactly one of case_id and person_key"):
            request(**changes)


def test_reason_is_a_code_and_the_person_key_a_pseudonym() -> None:
    with pytest.raises(ValidationError):
        request(reason="Asked by Mai Tran on the phone")
    with pytest.raises(ValidationError):
        request(case_id=None, person_key="Mai Tran 1990-05-04")


def test_the_record_reads_back_as_the_request() -> None:
    headers, value = erasure_record(request())
    assert dict(headers)["ce_type"] == ERASURE_REQUESTED.encode()
    assert dict(headers)["ce_source"] == SOURCE.encode()
    assert dict(headers)["ce_id"] == b"req-1"
    assert parse_erasure_request(headers, value) == request()


def test_a_bad_record_is_refused_with_a_reason_and_without_its_values() -> None:
    headers, value = erasure_record(request())
    other_type = [(k, b"org.casebridge.case.case_closed.v1" if k == "ce_type" else v)
                  for k, v in headers]  # fmt: skip
    with pytest.raises(EventRejected) as unknown:
        parse_erasure_request(other_type, value)
    assert unknown.value.code == RejectionCode.UNKNOWN_TYPE
    bad = value.replace(b"subject_request", b"Mai Tran")
    with pytest.raises(EventRejected) as invalid:
        parse_erasure_request(headers, bad)
    assert invalid.value.code == RejectionCode.INVALID_PAYLOAD
    assert "Mai" not in str(invalid.value.to_dict())
    with pytest.raises(EventRejected) as not_json:
        parse_erasure_request(headers, b"{")
    assert not_json.value.code == RejectionCode.NOT_JSON


def test_no_agency_topic_can_carry_a_request() -> None:
    assert ERASURE_REQUESTED not in EVENT_TYPES
