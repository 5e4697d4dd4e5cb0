"""Intake's handler on FastStream's in-memory TestKafkaBroker: what it forwards, what it rejects.

The broker, router and subscriber options are the real ones (`build_router`); only the
database-backed `SeenEvents` is replaced by an in-memory twin with the same contract, and
`publish_all` by a sequential publish the test broker can run (see
`test_publish_all_runs_on_the_test_broker`). Test subscribers on the valid-event and dead-letter
topics see the records as a downstream consumer would.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from schemas.envelope import MAX_VALUE_BYTES
from schemas.errors import RejectionCode
from schemas.topics import DEADLETTER, EVENTS_VALID, inbound_topic, rejections_topic
from services.demo.scenario import AgencyMessage, build_scenario
from services.intake.handlers import Intake, build_router
from services.intake.registry import Registry
from services.intake.seen_events import Sighting
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.routing.policy import load_policy
from services.runtime.dead_letter import DEAD_LETTER_TYPE
from services.runtime.kafka import batch_of
from services.runtime.settings import Settings
from tests.support.memory_broker import BrokerPublisher

SETTINGS = Settings(retry_backoff_s=0.0)
REGISTRY = Registry(
    load_policy(SETTINGS.routing_policy_path),
    load_data_sharing_policy(SETTINGS.data_sharing_policy_path),
)


class FakeSeenEvents:
    """`SeenEvents` in memory: the first position recorded for a (source, id) pair wins, and a
    sighting is "first" when it *is* that position (so a redelivered record is first again).
    Within one call the lowest position wins, as with the SQL's `DISTINCT ON ... ORDER BY`."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], tuple[str, int, int]] = {}

    async def first_sightings(self, sightings: Sequence[Sighting]) -> list[bool]:
        for s in sorted(sightings, key=lambda s: s.position):
            self.first.setdefault((s.source, s.event_id), s.position)
        return [self.first[(s.source, s.event_id)] == s.position for s in sightings]


@dataclass
class Harness:
    broker: KafkaBroker
    seen: FakeSeenEvents
    valid: list[ConsumerRecord[Any, Any]] = field(default_factory=list)
    dead: list[ConsumerRecord[Any, Any]] = field(default_factory=list)
    shelter_rejections: list[ConsumerRecord[Any, Any]] = field(default_factory=list)

    async def send(
        self,
        value: bytes,
        headers: dict[str, str],
        *,
        key: bytes | None = b"REF-1",
        topic: str = inbound_topic("id-shelter-ngo"),
        partition: int | None = None,
    ) -> None:
        await self.broker.publish(value, topic, key=key, headers=headers, partition=partition)

    async def send_message(self, m: AgencyMessage, *, partition: int | None = None) -> None:
        await self.send(
            m.value, as_headers(m.headers), key=m.key, topic=m.topic, partition=partition
        )

    def only_rejection(self) -> tuple[dict[str, str], dict[str, Any]]:
        assert self.valid == []
        assert len(self.dead) == 1
        record = self.dead[0]
        return text_headers(record), orjson.loads(record.value)


def as_headers(pairs: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    return {name: value.decode() for name, value in pairs}


def text_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {name: (value or b"").decode() for name, value in record.headers}


def build_broker(seen: FakeSeenEvents) -> tuple[KafkaBroker, Harness]:
    broker = KafkaBroker()
    publisher = BrokerPublisher(broker)
    broker.include_router(build_router(Intake(publisher, seen, REGISTRY), SETTINGS))  # type: ignore[arg-type]
    harness = Harness(broker=broker, seen=seen)

    @broker.subscriber(EVENTS_VALID.name, batch=True)
    async def on_valid(message: KafkaMessage) -> None:
        harness.valid.extend(batch_of(message))

    @broker.subscriber(DEADLETTER.name, batch=True)
    async def on_dead(message: KafkaMessage) -> None:
        harness.dead.extend(batch_of(message))

    @broker.subscriber(rejections_topic("id-shelter-ngo"), batch=True)
    async def on_shelter_rejection(message: KafkaMessage) -> None:
        harness.shelter_rejections.extend(batch_of(message))

    return broker, harness


@pytest.fixture
async def intake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    broker, harness = build_broker(FakeSeenEvents())
    async with TestKafkaBroker(broker) as test_broker:
        harness.broker = test_broker
        yield harness


def scenario() -> dict[str, AgencyMessage]:
    """The demo's agency messages by role: sar, child, adult, return, malformed."""
    return dict(
        zip(("sar", "child", "adult", "return", "malformed"), build_scenario("u"), strict=True)
    )


def child_referral() -> tuple[bytes, dict[str, str]]:
    m = scenario()["child"]
    return m.value, as_headers(m.headers)


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


# --- valid events ------------------------------------------------------------------------------


async def test_valid_events_are_forwarded_keyed_by_case_with_their_attributes(
    intake: Harness,
) -> None:
    messages = [m for m in scenario().values() if m.expect == "routed"]
    for m in messages:
        await intake.send_message(m)

    assert intake.dead == []
    assert [r.key for r in intake.valid] == [m.case_id.encode() for m in messages]
    for m, record in zip(messages, intake.valid, strict=True):
        sent, got = as_headers(m.headers), text_headers(record)
        for name in ("ce_id", "ce_source", "ce_type", "ce_specversion", "ce_subject"):
            assert got[name] == sent[name], name
        # The time is re-encoded (UTC as "Z"), but it is the same instant.
        assert dt.datetime.fromisoformat(got["ce_time"]) == dt.datetime.fromisoformat(
            sent["ce_time"]
        )
        assert got["content-type"] == "application/json"
        assert got["cb_origin"] == f"{m.topic}/0/0"
        assert orjson.loads(record.value) == orjson.loads(m.value)


async def test_structured_mode_event_is_accepted_and_forwarded_in_binary_mode(
    intake: Harness,
) -> None:
    m = scenario()["adult"]
    sent = as_headers(m.headers)
    event = {
        "specversion": "1.0",
        "id": sent["ce_id"],
        "source": sent["ce_source"],
        "type": sent["ce_type"],
        "time": sent["ce_time"],
        "subject": m.case_id,
        "datacontenttype": "application/json",
        "data": orjson.loads(m.value),
    }
    await intake.send(
        orjson.dumps(event),
        {"content-type": "application/cloudevents+json; charset=UTF-8"},
        key=m.key,
        topic=m.topic,
    )

    assert intake.dead == []
    [record] = intake.valid
    got = text_headers(record)
    assert record.key == m.case_id.encode()
    assert (got["ce_id"], got["ce_source"], got["ce_type"]) == (
        event["id"],
        event["source"],
        event["type"],
    )
    assert got["content-type"] == "application/json"
    assert orjson.loads(record.value) == event["data"]


# --- rejections ----------------------------------------------------------------------------------


def _not_json() -> tuple[bytes, dict[str, str]]:
    _, headers = child_referral()
    return b'{"case_id": "REF-1", ', headers


def _missing(header: str) -> Any:
    def build() -> tuple[bytes, dict[str, str]]:
        value, headers = child_referral()
        return value, without(headers, header)

    return build


def _header(name: str, text: str) -> Any:
    def build() -> tuple[bytes, dict[str, str]]:
        value, headers = child_referral()
        return value, {**headers, name: text}

    return build


def _too_large() -> tuple[bytes, dict[str, str]]:
    _, headers = child_referral()
    filler = b"x" * (MAX_VALUE_BYTES + 1)
    return b'{"filler": "' + filler + b'"}', headers


def _invalid_enum() -> tuple[bytes, dict[str, str]]:
    value, headers = child_referral()
    data = orjson.loads(value)
    data["person"]["gender"] = "Unspecified-ish"
    return orjson.dumps(data), headers


REJECTIONS = {
    "not JSON": (_not_json, RejectionCode.NOT_JSON, "not valid JSON"),
    "no ce_id": (_missing("ce_id"), RejectionCode.MISSING_ATTRIBUTE, "ce_id"),
    "no ce_source": (_missing("ce_source"), RejectionCode.MISSING_ATTRIBUTE, "ce_source"),
    "no ce_type": (_missing("ce_type"), RejectionCode.MISSING_ATTRIBUTE, "ce_type"),
    "no ce_specversion": (
        _missing("ce_specversion"),
        RejectionCode.MISSING_ATTRIBUTE,
        "ce_specversion",
    ),
    "unknown type": (
        _header("ce_type", "org.casebridge.referral.withdrawn.v9"),
        RejectionCode.UNKNOWN_TYPE,
        "org.casebridge.referral.withdrawn.v9",
    ),
    "specversion 0.3": (
        _header("ce_specversion", "0.3"),
        RejectionCode.UNSUPPORTED_SPECVERSION,
        "'1.0'",
    ),
    "too large": (_too_large, RejectionCode.TOO_LARGE, str(MAX_VALUE_BYTES)),
    "invalid enum": (_invalid_enum, RejectionCode.INVALID_PAYLOAD, "validation error"),
}


@pytest.mark.parametrize("case", REJECTIONS.values(), ids=REJECTIONS.keys())
async def test_bad_input_is_dead_lettered_with_its_code_in_header_and_body(
    intake: Harness, case: Any
) -> None:
    build, code, message_part = case
    value, headers = build()
    await intake.send(value, headers, key=b"REF-u-01")

    dl_headers, body = intake.only_rejection()
    assert dl_headers["cb_error_code"] == code.value
    assert body["error"]["code"] == code.value
    assert message_part in body["error"]["message"]
    assert dl_headers["cb_error_message"] == body["error"]["message"][:512]
    assert dl_headers["ce_type"] == DEAD_LETTER_TYPE
    assert dl_headers["ce_source"] == "casebridge/intake"
    assert body["rejected_by"] == "intake"
    assert dl_headers["cb_original_id"] == headers.get("ce_id", "")
    # The rejected record survives whole: key, value and headers, byte for byte.
    original = body["original"]
    assert original["topic"] == inbound_topic("id-shelter-ngo")
    assert base64.b64decode(original["value_b64"]) == value
    assert base64.b64decode(original["key_b64"]) == b"REF-u-01"
    sent_headers = {n: base64.b64decode(v).decode() for n, v in original["headers"]}
    assert {n: sent_headers[n] for n in headers} == headers
    assert intake.dead[0].key == b"REF-u-01"


async def test_invalid_enum_detail_names_the_field_not_the_value(intake: Harness) -> None:
    value, headers = _invalid_enum()
    await intake.send(value, headers)

    _, body = intake.only_rejection()
    [detail] = body["error"]["details"]
    assert detail["loc"] == "person.gender"
    assert detail["type"] == "enum"
    assert "Unspecified-ish" not in orjson.dumps(body["error"]).decode()


async def test_dead_letter_error_never_repeats_personal_fields(intake: Harness) -> None:
    value, headers = child_referral()
    data = orjson.loads(value)
    person = {
        "given_name": "Zainab\u0007",  # control character: fails the name pattern
        "family_name": "Quarantotto-Syntheticperson" * 5,  # too long
        "date_of_birth": "2999-02-30",  # not a date
        "nationality": "Narnia",  # not a country code
        "gender": "Feminine",
    }
    data["person"] = person
    await intake.send(orjson.dumps(data), headers)

    dl_headers, body = intake.only_rejection()
    assert body["error"]["code"] == RejectionCode.INVALID_PAYLOAD
    assert {d["loc"] for d in body["error"]["details"]} >= {
        "person.given_name",
        "person.family_name",
        "person.date_of_birth",
        "person.nationality",
    }
    reported = orjson.dumps(body["error"]).decode() + orjson.dumps(dl_headers).decode()
    for secret in ("Zainab", "Quarantotto", "2999-02-30", "Narnia"):
        assert secret not in reported, secret
    # ...while the original bytes, kept for repair, still hold them.
    assert b"Zainab" in base64.b64decode(body["original"]["value_b64"])


# --- duplicates ----------------------------------------------------------------------------------


async def test_second_record_with_same_source_and_id_is_a_duplicate(intake: Harness) -> None:
    m = scenario()["child"]
    await intake.send_message(m, partition=0)
    await intake.send_message(m, partition=1)  # another record: another position

    assert len(intake.valid) == 1
    assert text_headers(intake.valid[0])["cb_origin"] == f"{m.topic}/0/0"
    dl_headers, body = _rejection(intake)
    assert dl_headers["cb_error_code"] == RejectionCode.DUPLICATE_EVENT
    assert body["error"]["code"] == RejectionCode.DUPLICATE_EVENT
    assert dl_headers["cb_origin"] == f"{m.topic}/1/0"
    assert dl_headers["cb_original_id"] == m.event_id


def _rejection(h: Harness) -> tuple[dict[str, str], dict[str, Any]]:
    [record] = h.dead
    return text_headers(record), orjson.loads(record.value)


async def test_redelivered_record_is_forwarded_again_not_a_duplicate(intake: Harness) -> None:
    m = scenario()["child"]
    await intake.send_message(m)
    await intake.send_message(m)  # same topic, partition and offset: a redelivery

    assert intake.dead == []
    assert len(intake.valid) == 2
    assert {text_headers(r)["ce_id"] for r in intake.valid} == {m.event_id}


async def test_same_id_from_another_source_is_not_a_duplicate(intake: Harness) -> None:
    m = scenario()["child"]
    headers = as_headers(m.headers)
    await intake.send(m.value, headers, key=m.key, partition=0)
    await intake.send(
        m.value,
        {**headers, "ce_source": "urn:casebridge:agency:id-shelter-ngo:other-system"},
        key=m.key,
        partition=1,
    )

    assert intake.dead == []
    assert len(intake.valid) == 2


# --- FastStream's test broker quirks -------------------------------------------------------------


async def test_empty_content_type_header_counts_as_absent(intake: Harness) -> None:
    value, headers = child_referral()
    await intake.send(value, without(headers, "content-type"))  # the broker adds ""

    assert intake.dead == [], orjson.loads(intake.dead[0].value)["error"]
    assert len(intake.valid) == 1


# --- identity: the topic names the agency ------------------------------------------------------


async def test_valid_event_carries_the_agency_of_its_topic(intake: Harness) -> None:
    m = scenario()["child"]
    await intake.send_message(m)

    [record] = intake.valid
    assert text_headers(record)["cb_agency"] == "id-shelter-ngo"
    assert intake.shelter_rejections == []


async def test_source_of_another_agency_is_rejected_and_told_to_the_sender(
    intake: Harness,
) -> None:
    m = scenario()["child"]  # published by id-shelter-ngo, on its own topic
    headers = {**as_headers(m.headers), "ce_source": "urn:casebridge:agency:id-police-aht"}
    await intake.send(m.value, headers, key=m.key, topic=m.topic)

    dl_headers, body = intake.only_rejection()
    assert dl_headers["cb_error_code"] == RejectionCode.AGENCY_MISMATCH
    assert body["error"]["details"][0]["loc"] == "ce_source"
    assert dl_headers["cb_agency"] == "id-shelter-ngo"
    [copy] = intake.shelter_rejections  # the sender sees its own rejection
    assert copy.value == intake.dead[0].value


async def test_reporting_agency_of_another_agency_is_rejected(intake: Harness) -> None:
    m = scenario()["child"]
    data = {**orjson.loads(m.value), "reporting_agency": "id-police-aht"}
    await intake.send(orjson.dumps(data), as_headers(m.headers), key=m.key, topic=m.topic)

    dl_headers, body = intake.only_rejection()
    assert dl_headers["cb_error_code"] == RejectionCode.AGENCY_MISMATCH
    assert body["error"]["details"][0]["loc"] == "reporting_agency"
    assert len(intake.shelter_rejections) == 1


async def test_an_event_valid_for_one_agency_is_refused_on_another_agencys_topic(
    intake: Harness,
) -> None:
    m = scenario()["child"]  # id-shelter-ngo's event, replayed on id-police-aht's topic
    await intake.send(
        m.value, as_headers(m.headers), key=m.key, topic=inbound_topic("id-police-aht")
    )

    dl_headers, _ = intake.only_rejection()
    assert dl_headers["cb_error_code"] == RejectionCode.AGENCY_MISMATCH
    assert dl_headers["cb_agency"] == "id-police-aht"
    assert intake.shelter_rejections == []  # told to the topic's owner, not to the shelter
