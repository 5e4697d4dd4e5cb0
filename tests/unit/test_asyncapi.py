"""The generated AsyncAPI contract: up to date, complete, secured, and true to what the services
subscribe to and write."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
import structlog
from aiokafka import ConsumerRecord
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.kafka import KafkaBroker
from faststream.security import SASLScram512

from schemas.cases import EMITTED_EVENT_TYPES
from schemas.errors import EventRejected, RejectionCode
from schemas.identity import agency_of_source, agency_source
from schemas.registry import EVENT_TYPES
from schemas.topics import (
    CASE_EVENTS,
    DEADLETTER,
    EVENTS_VALID,
    INBOUND_PREFIX,
    INBOX_PREFIX,
    REJECTIONS_PREFIX,
    ROUTING_DECISIONS,
    UPDATES_PREFIX,
    inbox_topic,
    rejections_topic,
)
from services.asyncapi import (
    AGENCY_PARAMETER,
    CASE_EVENT_MODELS,
    HEADER_SCHEMAS,
    OUTPUT,
    PLACEHOLDER_PASSWORD,
    SOURCE_PATTERN,
    UPDATE_MODELS,
    DeadLetterBody,
    RoutingDecisionBody,
    agency_address,
    asyncapi_document,
    asyncapi_text,
    documentation_broker,
    main,
)
from services.bootstrap import SERVICES, wire
from services.demo.scenario import build_scenario
from services.privacy.keys import ensure_deployment_keys
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.router.copies import inbox_copy
from services.router.decisions import routing_records
from services.routing.facts import opening_of
from services.routing.policy import load_policy, opening_owner, route
from services.runtime import credentials
from services.runtime.credentials import (
    KafkaClientConfig,
    kafka_client_file,
    service_principal,
    service_role,
    write_secret,
)
from services.runtime.dead_letter import dead_letter
from services.runtime.settings import Settings

POLICY = load_policy(Settings().routing_policy_path, known_event_types=EVENT_TYPES)
SHARING = load_data_sharing_policy()
AGENCIES = sorted(a.id for a in POLICY.agencies)
PER_AGENCY = {
    INBOUND_PREFIX: "receive",
    INBOX_PREFIX: "send",
    UPDATES_PREFIX: "send",
    REJECTIONS_PREFIX: "send",
}
"""Each per-agency kind, and what CaseBridge does on it."""


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


def test_generation_reads_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Documentation is built where no secret exists: no client file, password or CA is read."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the AsyncAPI build read a secret")

    monkeypatch.setattr(credentials.KafkaClientConfig, "load", refuse)
    monkeypatch.setattr(credentials.KafkaClientConfig, "ssl_context", refuse)
    monkeypatch.setattr(credentials, "database_password", refuse)
    assert asyncapi_text() == OUTPUT.read_text(encoding="utf-8")


def test_document_is_asyncapi_3_for_casebridge(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "CaseBridge"
    assert document["defaultContentType"] == "application/json"


def test_the_server_requires_sasl_ssl_with_scram_sha_512(document: dict[str, Any]) -> None:
    (server,) = document["servers"].values()
    assert server["protocol"] == "kafka-secure"  # TLS
    assert server["host"] == Settings.model_construct().kafka_bootstrap
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == ["scram512"]
    assert schemes["scram512"]["type"] == "scramSha512"
    assert server["security"] == [{"$ref": "#/components/securitySchemes/scram512"}]
    assert "casebridge agencies sync" in schemes["scram512"]["description"]
    # Placeholder credentials document the mechanism; no value of any kind is written.
    text = json.dumps(document)
    assert PLACEHOLDER_PASSWORD not in text
    assert "sasl.password=" not in text


def test_every_topic_is_a_channel(document: dict[str, Any]) -> None:
    addresses = {c["address"] for c in document["channels"].values()}
    expected = {
        EVENTS_VALID.name,
        ROUTING_DECISIONS.name,
        DEADLETTER.name,
        CASE_EVENTS.name,
        *(agency_address(prefix) for prefix in PER_AGENCY),
    }
    assert expected <= addresses


def _operations_on(document: dict[str, Any], address: str) -> set[str]:
    names = {n for n, c in document["channels"].items() if c["address"] == address}
    return {
        op["action"]
        for op in document["operations"].values()
        if unquote(op["channel"]["$ref"]).removeprefix("#/channels/") in names
    }


def test_per_agency_topics_are_parameterised_channels(document: dict[str, Any]) -> None:
    channels = list(document["channels"].values())
    for prefix, action in PER_AGENCY.items():
        address = agency_address(prefix)
        assert address == f"{prefix}{{agency}}"
        matching = [c for c in channels if c["address"] == address]
        assert len(matching) == 1, address
        parameter = matching[0]["parameters"][AGENCY_PARAMETER]
        assert parameter["enum"] == AGENCIES  # the registry, sorted
        assert "topic" not in matching[0]["bindings"]["kafka"]
        assert _operations_on(document, address) == {action}, address
    # One channel per kind, not one per agency.
    literal = {inbox_topic(a) for a in AGENCIES} | {rejections_topic(a) for a in AGENCIES}
    assert not literal & {c["address"] for c in channels}


def test_every_service_has_operations(document: dict[str, Any]) -> None:
    for service in SERVICES:
        assert any(name.startswith(service) for name in document["operations"]), service
    actions = {op["action"] for op in document["operations"].values()}
    assert actions == {"send", "receive"}


def test_inbound_channel_carries_every_event_type_and_its_identity_rule(
    document: dict[str, Any],
) -> None:
    messages = document["components"]["messages"]
    inbound = messages["intake:SubscribeMessage"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in inbound["payload"]["anyOf"]} == {
        m.__name__ for m in EVENT_TYPES.values()
    }
    assert inbound["headers"] == {"$ref": "#/components/schemas/InboundEventHeaders"}
    headers = document["components"]["schemas"]["InboundEventHeaders"]
    assert set(headers["required"]) == {"ce_id", "ce_source", "ce_specversion", "ce_type"}
    assert headers["properties"]["ce_source"]["pattern"] == SOURCE_PATTERN
    for model in EVENT_TYPES.values():
        assert model.__name__ in document["components"]["schemas"]


@pytest.mark.parametrize(
    "source",
    [
        agency_source("id-police-aht"),
        agency_source("id-police-aht", "records"),
        agency_source("a", "sys.v2_x-y"),
        "urn:agency:id-police-aht",
        "urn:casebridge:agency:ID-POLICE",
        "urn:casebridge:agency:id-police-aht:",
        "urn:casebridge:agency:id-police-aht:a:b",
        "https://police.example/records",
    ],
)
def test_documented_source_pattern_is_the_identity_rule(source: str) -> None:
    documented = re.fullmatch(SOURCE_PATTERN.removeprefix("^").removesuffix("$"), source)
    assert (documented is not None) == (agency_of_source(source) is not None)


def test_cases_outputs_are_documented(document: dict[str, Any]) -> None:
    assert set(CASE_EVENT_MODELS) | set(UPDATE_MODELS) == set(EMITTED_EVENT_TYPES.values())
    schemas = document["components"]["schemas"]
    for model in {*CASE_EVENT_MODELS, *UPDATE_MODELS}:
        assert model.__name__ in schemas
    assert _operations_on(document, CASE_EVENTS.name) == {"send"}


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
            node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
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


def test_documented_rejection_matches_what_intake_writes() -> None:
    m = build_scenario("a")[4]
    error = EventRejected(
        RejectionCode.AGENCY_MISMATCH, "1 error", [{"loc": "a", "type": "b", "msg": "c"}]
    )
    out = dead_letter(
        _record(m.topic, m.headers, m.value), error, rejected_by="intake", agency=m.agency
    )
    DeadLetterBody.model_validate_json(out.value)
    schema = HEADER_SCHEMAS["RejectionHeaders"]
    assert set(schema["required"]) <= set(out.headers)
    assert set(out.headers) <= set(schema["properties"])
    assert out.headers["cb_error_code"] in schema["properties"]["cb_error_code"]["enum"]
    assert out.headers["ce_type"] == schema["properties"]["ce_type"]["const"]


def test_documented_decision_body_and_inbox_headers_match_what_the_router_writes() -> None:
    m = build_scenario("a")[1]
    forwarded = [*m.headers, ("cb_agency", m.agency.encode()), ("cb_origin", b"t/0/0")]
    record = _record(EVENTS_VALID.name, forwarded, m.value)
    opening = opening_of(record)
    chosen = route(POLICY, opening.facts)
    owner = opening_owner(opening.payload, [d.agency for d in chosen.deliveries])
    copies = {
        d.agency: inbox_copy(opening, d.agency, owner=owner, sharing=SHARING, directory=POLICY)
        for d in chosen.deliveries
    }
    out = routing_records(record, chosen, copies, case_id=m.case_id, policy_version=POLICY.version)
    decision = RoutingDecisionBody.model_validate_json(out[0].value)
    assert decision.deliveries
    assert any(d.withheld for d in decision.deliveries)  # the police copy leaves data out
    assert orjson.loads(out[0].value)["case_id"] == m.case_id
    schema = HEADER_SCHEMAS["InboxHeaders"]
    for inbox in out[1:]:
        assert set(schema["required"]) <= set(inbox.headers)


# --- the documentation broker is the services' wiring ------------------------------------------


def _ca_certificate(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config() if structlog.is_configured() else None
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    if config is None:
        structlog.reset_defaults()
    else:
        structlog.configure(**config)


def _subscriptions(broker: KafkaBroker) -> set[tuple[tuple[str, ...], bool, str | None]]:
    subscribers: list[Any] = list(broker.subscribers)  # Kafka subscribers: topics, group
    return {(tuple(s.topic_names), s.pattern is not None, s.group_id) for s in subscribers}


def test_documentation_broker_subscribes_as_the_wired_services_do(
    tmp_path: Path, restored_logging: None
) -> None:
    """`wire` (with throw-away credentials: it reads them) and the documentation broker (which
    reads none) include the same subscribers, and every service's broker uses SCRAM-SHA-512
    over TLS, as the document says."""
    settings = Settings.model_construct(run_dir=tmp_path)
    ca = tmp_path / "tls" / "ca.pem"
    _ca_certificate(ca)
    ensure_deployment_keys(settings.secrets_dir)  # the person vault's key-encryption key
    for service in SERVICES:
        principal = service_principal(service)
        KafkaClientConfig(settings.kafka_bootstrap, principal, "pw", ca).write(
            kafka_client_file(settings, principal)
        )
        role = service_role(service)
        write_secret(settings.secrets_dir / "postgres" / f"{role}.password", "pw")
    wiring = wire(settings, SERVICES)
    wired: set[tuple[tuple[str, ...], bool, str | None]] = set()
    for one in wiring.services.values():
        security = one.broker.specification.security
        assert isinstance(security, SASLScram512), one.name
        assert security.use_ssl, one.name
        wired |= _subscriptions(one.broker)
    documented = documentation_broker(settings, wiring.policy)
    assert _subscriptions(documented) == wired
    assert len(wired) == len(SERVICES)


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
