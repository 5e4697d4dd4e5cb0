"""Router's handler on FastStream's in-memory TestKafkaBroker, with the shipped policies.

What a valid event becomes: one routing decision (identifiers only) and, on each chosen
agency's inbox, the event cut to what that agency may be told, with what was cut named.
`publish_all` is replaced by a sequential publish the test broker can run (see
tests/unit/test_intake_handlers.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from schemas.common import PersonRef
from schemas.errors import RejectionCode
from schemas.registry import EVENT_TYPES
from schemas.topics import DEADLETTER, EVENTS_VALID, ROUTING_DECISIONS
from services.demo.scenario import AgencyMessage, build_scenario
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.router.decisions import ROUTING_DECISION_TYPE
from services.router.handlers import Router, build_router
from services.routing.policy import load_policy
from services.runtime.kafka import batch_of
from services.runtime.settings import Settings
from tests.support.memory_broker import BrokerPublisher

SETTINGS = Settings(retry_backoff_s=0.0)
POLICY = load_policy(SETTINGS.routing_policy_path, known_event_types=EVENT_TYPES)
SHARING = load_data_sharing_policy(SETTINGS.data_sharing_policy_path)
INBOX_PATTERN = r"casebridge\.inbox\..+"


def text_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {name: (value or b"").decode() for name, value in record.headers}


@dataclass
class Harness:
    broker: KafkaBroker
    decisions: list[ConsumerRecord[Any, Any]] = field(default_factory=list)
    inbox: list[ConsumerRecord[Any, Any]] = field(default_factory=list)
    dead: list[ConsumerRecord[Any, Any]] = field(default_factory=list)

    async def send(self, m: AgencyMessage, *, value: bytes | None = None) -> None:
        """Publish `m` as intake forwards it: on the valid-event topic, keyed by case."""
        headers = {name: raw.decode() for name, raw in m.headers}
        headers["cb_origin"] = f"{m.topic}/0/0"
        await self.broker.publish(
            m.value if value is None else value, EVENTS_VALID.name, key=m.key, headers=headers
        )

    def decision(self) -> tuple[dict[str, str], dict[str, Any]]:
        [record] = self.decisions
        return text_headers(record), orjson.loads(record.value)

    def inbox_by_agency(self) -> dict[str, ConsumerRecord[Any, Any]]:
        return {r.topic.removeprefix("casebridge.inbox."): r for r in self.inbox}


@pytest.fixture
async def router(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    broker = KafkaBroker()
    broker.include_router(build_router(Router(BrokerPublisher(broker), POLICY, SHARING), SETTINGS))
    harness = Harness(broker=broker)

    @broker.subscriber(ROUTING_DECISIONS.name, batch=True)
    async def on_decision(message: KafkaMessage) -> None:
        harness.decisions.extend(batch_of(message))

    @broker.subscriber(pattern=INBOX_PATTERN, batch=True)
    async def on_inbox(message: KafkaMessage) -> None:
        harness.inbox.extend(batch_of(message))

    @broker.subscriber(DEADLETTER.name, batch=True)
    async def on_dead(message: KafkaMessage) -> None:
        harness.dead.extend(batch_of(message))

    async with TestKafkaBroker(broker) as test_broker:
        harness.broker = test_broker
        yield harness


def scenario() -> dict[str, AgencyMessage]:
    return dict(
        zip(("sar", "child", "adult", "return", "malformed"), build_scenario("r"), strict=True)
    )


async def test_child_referral_goes_to_child_protection_at_once_and_to_police(
    router: Harness,
) -> None:
    m = scenario()["child"]
    await router.send(m)

    _, decision = router.decision()
    assert {d["agency"]: d["priority"] for d in decision["deliveries"]} == {
        "id-child-protection": "immediate",
        "id-police-aht": "high",
    }
    assert set(router.inbox_by_agency()) == {"id-child-protection", "id-police-aht"}
    assert router.dead == []


async def test_each_inbox_record_is_the_event_minus_what_is_withheld_plus_why(
    router: Harness,
) -> None:
    m = scenario()["child"]
    await router.send(m)

    decision_headers, decision = router.decision()
    rules = {d["agency"]: d["rule"] for d in decision["deliveries"]}
    withheld = {d["agency"]: d["withheld"] for d in decision["deliveries"]}
    event = orjson.loads(m.value)
    for agency, record in router.inbox_by_agency().items():
        headers = text_headers(record)
        named = [f for f in headers["cb_withheld"].split(",") if f]
        assert record.key == m.case_id.encode()
        assert orjson.loads(record.value) == {k: v for k, v in event.items() if k not in named}
        assert named == withheld[agency]
        for name, raw in m.headers:
            assert headers[name] == raw.decode(), name
        assert headers["cb_rule"] == rules[agency]
        assert headers["cb_decision_id"] == decision_headers["ce_id"]
        assert headers["cb_priority"] in {"immediate", "high", "normal"}
    # The child-protection owner gets the person; the police, with no purpose recorded, not.
    copies = router.inbox_by_agency()
    assert "person" in orjson.loads(copies["id-child-protection"].value)
    police = orjson.loads(copies["id-police-aht"].value)
    assert "person" not in police
    assert "trafficking_status" not in police


async def test_decision_event_names_its_cause_and_carries_no_personal_field(
    router: Harness,
) -> None:
    m = scenario()["child"]
    await router.send(m)

    headers, decision = router.decision()
    record = router.decisions[0]
    assert record.key == m.case_id.encode()
    assert headers["ce_type"] == ROUTING_DECISION_TYPE
    assert headers["ce_source"] == "casebridge/router"
    assert headers["ce_causationid"] == m.event_id
    assert headers["ce_subject"] == m.case_id
    assert set(decision) == {
        "event_id",
        "event_source",
        "event_type",
        "case_id",
        "policy_version",
        "matched_rules",
        "deliveries",
    }
    assert decision["policy_version"] == f"{POLICY.version}+{SHARING.version}"
    assert decision["matched_rules"] == [
        "child-referral-to-child-protection",
        "child-referral-to-police",
        "sexual-exploitation-to-police",
    ]
    text = record.value.decode() + orjson.dumps(headers).decode()
    person = orjson.loads(m.value)["person"]
    for name in PersonRef.model_fields:
        assert f'"{name}"' not in text, name
    for value in (person["given_name"], person["family_name"], person["nationality"]):
        assert value not in text, value


async def test_sar_distress_goes_to_the_coordinating_rcc_immediately(router: Harness) -> None:
    await router.send(scenario()["sar"])

    _, decision = router.decision()
    # au-jrcc reported it: it is never sent its own alert, not even as a neighbouring RCC.
    assert decision["deliveries"] == [
        {
            "agency": "id-rcc-jakarta",
            "priority": "immediate",
            "rule": "sar-distress-to-coordinating-rcc",
            "via": None,
            "withheld": [],
        }
    ]
    assert set(router.inbox_by_agency()) == {"id-rcc-jakarta"}


async def test_reporting_agency_is_not_sent_its_own_referral(router: Harness) -> None:
    m = scenario()["adult"]  # forced labour, reported by the labour inspectorate itself
    await router.send(m)

    _, decision = router.decision()
    assert "labour-exploitation-to-inspectorate" in decision["matched_rules"]
    assert [d["agency"] for d in decision["deliveries"]] == ["id-shelter-ngo"]
    assert "id-labour-inspectorate" not in router.inbox_by_agency()


async def test_return_goes_to_programmes_in_host_and_origin_country(router: Harness) -> None:
    await router.send(scenario()["return"])  # reported by id-return-programme

    _, decision = router.decision()
    assert [d["agency"] for d in decision["deliveries"]] == ["mm-return-reception"]


async def test_replayed_event_gets_the_same_decision_id(router: Harness) -> None:
    m = scenario()["child"]
    await router.send(m)
    await router.send(m)

    first, second = (text_headers(r)["ce_id"] for r in router.decisions)
    assert first == second


async def test_event_that_no_longer_validates_is_dead_lettered_by_router(router: Harness) -> None:
    m = scenario()["malformed"]  # as if the contract had changed after intake accepted it
    await router.send(m)

    assert router.decisions == []
    assert router.inbox == []
    [record] = router.dead
    body = orjson.loads(record.value)
    assert text_headers(record)["cb_error_code"] == RejectionCode.INVALID_PAYLOAD
    assert body["rejected_by"] == "router"
    assert body["original"]["topic"] == EVENTS_VALID.name


async def test_valid_event_value_that_is_not_json_is_dead_lettered(router: Harness) -> None:
    await router.send(scenario()["child"], value=b"\xff not json")

    [record] = router.dead
    assert text_headers(record)["cb_error_code"] == RejectionCode.NOT_JSON
    assert router.decisions == []
