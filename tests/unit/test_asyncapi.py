"""The generated AsyncAPI contract: up to date, complete, and true to what the services write."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from schemas.errors import EventRejected, RejectionCode
from schemas.registry import EVENT_TYPES
from schemas.topics import (
    DEADLETTER,
    EVENTS_VALID,
    INBOUND_REFERRALS,
    INBOUND_TOPICS,
    ROUTING_DECISIONS,
    inbox_topic,
)
from services.asyncapi import (
    OUTPUT,
    DeadLetterBody,
    RoutingDecisionBody,
    asyncapi_document,
    asyncapi_text,
    main,
)
from services.bootstrap import SERVICES
from services.demo.scenario import build_scenario
from services.router.decisions import routing_records
from services.router.policy import Facts, load_policy, route
from services.runtime.dead_letter import dead_letter
from services.runtime.settings import Settings

POLICY = load_policy(Settings().routing_policy_path, known_event_types=EVENT_TYPES)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


def test_checked_in_document_is_up_to_date() -> None:
    assert main(["--check"]) == 0, "run: python -m services.asyncapi"
    assert OUTPUT.is_file()


def test_check_fails_on_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi" / "casebridge.json"
    assert main(["--check", "--output", str(target)]) == 1  # missing
    assert not target.exists()
    target.parent.mkdir()
    target.write_text('{"asyncapi": "3.0.0"}\n', encoding="utf-8")
    assert main(["--check", "--output", str(target)]) == 1  # outdated
    assert main(["--output", str(target)]) == 0
    assert main(["--check", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == OUTPUT.read_text(encoding="utf-8")


def test_generation_is_deterministic_and_sorted() -> None:
    text = asyncapi_text()
    assert text == asyncapi_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_generation_leaves_logging_as_it_found_it() -> None:
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    asyncapi_document()
    assert (root.handlers[:], root.level) == before


def test_document_is_asyncapi_3_for_casebridge(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "CaseBridge"
    assert document["defaultContentType"] == "application/json"


def test_every_topic_is_a_channel(document: dict[str, Any]) -> None:
    addresses = {c["address"] for c in document["channels"].values()}
    expected = {t.name for t in INBOUND_TOPICS} | {
        EVENTS_VALID.name,
        ROUTING_DECISIONS.name,
        DEADLETTER.name,
        *(inbox_topic(a.id) for a in POLICY.agencies),
    }
    assert expected <= addresses


def test_every_service_has_operations(document: dict[str, Any]) -> None:
    for service in SERVICES:
        assert any(name.startswith(service) for name in document["operations"]), service
    actions = {op["action"] for op in document["operations"].values()}
    assert actions == {"send", "receive"}


def test_inbound_channels_carry_their_event_types(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    referral = messages[f"intake:{INBOUND_REFERRALS.name}:SubscribeMessage"]
    assert referral["payload"] == {"$ref": "#/components/schemas/VictimReferralSubmitted"}
    assert referral["headers"] == {"$ref": "#/components/schemas/InboundEventHeaders"}
    headers = document["components"]["schemas"]["InboundEventHeaders"]
    assert set(headers["required"]) == {"ce_id", "ce_source", "ce_specversion", "ce_type"}
    for model in EVENT_TYPES.values():
        assert model.__name__ in document["components"]["schemas"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_no_payload_is_left_empty(document: dict[str, Any]) -> None:
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part]
    assert "EmptyPayload" not in json.dumps(document)


def _record(topic: str, headers: list[tuple[str, bytes]], value: bytes) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=5,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=b"REF-1",
        value=value,
        checksum=None,
        serialized_key_size=5,
        serialized_value_size=len(value),
        headers=headers,
    )


def test_documented_dead_letter_body_matches_what_dead_letter_writes() -> None:
    m = build_scenario("a")[4]
    error = EventRejected(
        RejectionCode.INVALID_PAYLOAD, "1 error", [{"loc": "a", "type": "b", "msg": "c"}]
    )
    out = dead_letter(_record(m.topic, m.headers, m.value), error, rejected_by="intake")
    DeadLetterBody.model_validate_json(out.value)


def test_documented_decision_body_matches_what_the_router_writes() -> None:
    m = build_scenario("a")[1]
    event_type = dict(m.headers)["ce_type"].decode()
    facts = Facts(event_type=event_type, reporting_agency="x", child=True)
    out = routing_records(
        _record(EVENTS_VALID.name, m.headers, m.value),
        route(POLICY, facts),
        case_id=m.case_id,
        policy_version=POLICY.version,
    )
    decision = RoutingDecisionBody.model_validate_json(out[0].value)
    assert decision.deliveries
    assert orjson.loads(out[0].value)["case_id"] == m.case_id


def test_schemas_package_imports_neither_services_nor_faststream() -> None:
    code = (
        "import sys, schemas.generate, schemas.registry, schemas.envelope\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('services', 'faststream'))\n"
        "sys.exit(repr(bad) if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
