"""CaseBridge's Kafka contract as AsyncAPI 3.0: ``python -m services.asyncapi [--check]``.

The document is FastStream's own AsyncAPI output for the broker that ``services.bootstrap.wire``
assembles for every service (nothing connects), completed with what FastStream cannot see:

- the records the services *write*: they publish through ``publish_all``, not through FastStream
  publishers, so documentation-only publishers are registered on this throw-away broker, one per
  (service, topic), with the body's schema;
- the payloads the services *read*: handlers take raw records (no decoding, so a bad body still
  reaches the dead-letter topic), so FastStream finds no payload type; each channel's message is
  given the event types its topic carries;
- the Kafka headers: in CloudEvents binary mode the envelope travels in ``ce_*`` headers, and
  CaseBridge adds ``cb_*`` headers of its own.

Output is deterministic (sorted keys, 2-space indent, trailing newline) so the checked-in file can
be compared in CI: ``--check`` writes nothing and exits 1 when the file is stale.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Union

import structlog
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, ConfigDict

from schemas.envelope import envelope_json_schema
from schemas.errors import RejectionCode
from schemas.generate import dump
from schemas.registry import EVENT_TYPES
from schemas.topics import (
    DEADLETTER,
    EVENTS_VALID,
    INBOUND_TOPICS,
    ROUTING_DECISIONS,
    inbound_topic_for,
    inbox_topic,
)
from services.bootstrap import SERVICES, wire
from services.router.decisions import ROUTING_DECISION_TYPE
from services.router.policy import Priority, RoutingPolicy
from services.runtime.dead_letter import DEAD_LETTER_TYPE
from services.runtime.settings import REPO_ROOT, Settings

__all__ = [
    "OUTPUT",
    "DeadLetterBody",
    "RoutingDecisionBody",
    "asyncapi_document",
    "asyncapi_text",
    "main",
]

OUTPUT = REPO_ROOT / "schemas" / "asyncapi" / "casebridge.json"

_DESCRIPTION = (
    "Event-driven case coordination for counter-trafficking referrals, returns and SAR "
    "incidents. Agencies publish CloudEvents 1.0 (Kafka binding; binary content mode preferred) "
    "to the inbound topics; intake validates them, forwards valid events keyed by case id and "
    "dead-letters the rest; router sends each valid event to the agency inboxes its policy "
    "names, with a routing decision saying why; audit appends every record to an append-only "
    "log. Payload schemas are also published as JSON Schema under schemas/jsonschema/."
)


# --- bodies CaseBridge writes (no model exists in the services: they build dicts) -------------
# The unit tests validate real dead-letter and routing-decision bodies against these models, so
# the documentation cannot drift from the code unnoticed.


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RejectionDetail(_Doc):
    loc: str
    type: str
    msg: str


class Rejection(_Doc):
    code: RejectionCode
    message: str
    """Safe to log and to return to the publisher: built from schema constraints, not input."""
    details: list[RejectionDetail]


class OriginalRecord(_Doc):
    """The rejected record, whole: it can be repaired and published again."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key_b64: str | None
    headers: list[tuple[str, str | None]]
    """Header names with base64 values, in the original order (repeats kept)."""
    value_b64: str | None


class DeadLetterBody(_Doc):
    """Body of a record on the dead-letter topic."""

    error: Rejection
    rejected_by: str
    """The service that rejected the record, e.g. ``intake``."""
    rejected_at: datetime
    original: OriginalRecord


class RoutedDelivery(_Doc):
    agency: str
    priority: Priority
    rule: str
    """The policy rule that chose the agency (``default-route`` when none matched)."""


class RoutingDecisionBody(_Doc):
    """Why an event went where it went: identifiers only, never the payload."""

    event_id: str
    event_source: str
    event_type: str
    case_id: str
    policy_version: str
    matched_rules: list[str]
    deliveries: list[RoutedDelivery]


# --- headers -------------------------------------------------------------------------------------

_TEXT: dict[str, Any] = {"type": "string"}


def _cloudevent_headers() -> dict[str, Any]:
    """Binary content mode: each CloudEvents attribute as the Kafka header the binding names."""
    envelope = envelope_json_schema()
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, attribute in envelope["properties"].items():
        header = attribute.get("x-kafka-header")
        if header is None:
            continue
        schema = {k: v for k, v in attribute.items() if k != "x-kafka-header"}
        schema["description"] = f"CloudEvents `{name}`. " + schema.get("description", "")
        properties[header] = schema
        if name in envelope["required"]:
            required.append(header)
    return {"type": "object", "properties": properties, "required": sorted(required)}


def _headers(
    description: str,
    extra: Mapping[str, Mapping[str, Any]],
    *,
    required: Sequence[str] = (),
    ce_type: str | None = None,
) -> dict[str, Any]:
    schema = _cloudevent_headers()
    schema["description"] = description
    schema["properties"].update({name: dict(value) for name, value in extra.items()})
    schema["required"] = sorted({*schema["required"], *required})
    if ce_type is not None:
        schema["properties"]["ce_type"] = {"const": ce_type}
    return schema


_ORIGIN = {"type": "string", "description": "`topic/partition/offset` of the inbound record."}

HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "InboundEventHeaders": _headers(
        "An agency's CloudEvent in binary content mode (structured mode: `content-type: "
        "application/cloudevents+json` and the whole event as the value).",
        {},
    ),
    "ValidEventHeaders": _headers(
        "The validated event, re-encoded in binary content mode.",
        {"cb_origin": _ORIGIN},
        required=("cb_origin", "content-type"),
    ),
    "InboxHeaders": _headers(
        "The validated event's headers, plus why this agency receives it.",
        {
            "cb_origin": _ORIGIN,
            "cb_priority": {"enum": [p.value for p in Priority]},
            "cb_rule": {**_TEXT, "description": "The policy rule that chose this agency."},
            "cb_decision_id": {**_TEXT, "description": "`ce_id` of the routing decision."},
        },
        required=("cb_origin", "cb_priority", "cb_rule", "cb_decision_id"),
    ),
    "RoutingDecisionHeaders": _headers(
        "A routing decision event; `ce_causationid` is the routed event's id.",
        {},
        required=("ce_subject", "ce_causationid", "ce_time"),
        ce_type=ROUTING_DECISION_TYPE,
    ),
    "DeadLetterHeaders": _headers(
        "A dead-letter event; `ce_id` is derived from the rejected record's position, so a "
        "replay repeats it. The reason is in the headers too, for tools that only read headers.",
        {
            "cb_error_code": {"enum": [c.value for c in RejectionCode]},
            "cb_error_message": {**_TEXT, "maxLength": 512},
            "cb_origin": _ORIGIN,
            "cb_original_id": {**_TEXT, "description": "Rejected record's ce_id (may be empty)."},
            "cb_original_source": _TEXT,
            "cb_original_type": _TEXT,
            "ce_subject": {**_TEXT, "description": "The rejected record's ce_id, if it had one."},
        },
        required=(
            "cb_error_code",
            "cb_error_message",
            "cb_origin",
            "cb_original_id",
            "cb_original_source",
            "cb_original_type",
            "ce_time",
        ),
        ce_type=DEAD_LETTER_TYPE,
    ),
}


# --- building ------------------------------------------------------------------------------------


def _event_union(models: Sequence[type[BaseModel]]) -> Any:
    return models[0] if len(models) == 1 else Union[tuple(models)]  # noqa: UP007


def _documented_publishers(broker: KafkaBroker, policy: RoutingPolicy) -> None:
    """Register, on this throw-away broker, one publisher per (service, topic) written."""
    events = _event_union([EVENT_TYPES[t] for t in sorted(EVENT_TYPES)])
    writes: dict[str, list[tuple[str, Any, str]]] = {
        "intake": [
            (EVENTS_VALID.name, events, EVENTS_VALID.description),
            (DEADLETTER.name, DeadLetterBody, DEADLETTER.description),
        ],
        "router": [
            (ROUTING_DECISIONS.name, RoutingDecisionBody, ROUTING_DECISIONS.description),
            (DEADLETTER.name, DeadLetterBody, DEADLETTER.description),
            *(
                (inbox_topic(a.id), events, f"Events addressed to {a.name} (`{a.id}`).")
                for a in sorted(policy.agencies, key=lambda a: a.id)
            ),
        ],
    }
    for service in SERVICES:
        for topic, schema, description in writes.get(service, []):
            broker.publisher(
                topic, title=f"{service}:{topic}", description=description, schema=schema
            )


def _payload_refs(address: str) -> list[str]:
    """The payload models a consumed topic carries ([] when any record may appear)."""
    if address == EVENTS_VALID.name:
        return [EVENT_TYPES[t].__name__ for t in sorted(EVENT_TYPES)]
    return [
        EVENT_TYPES[t].__name__ for t in sorted(EVENT_TYPES) if inbound_topic_for(t).name == address
    ]


def _headers_ref(address: str, inboxes: frozenset[str]) -> str | None:
    if address in {t.name for t in INBOUND_TOPICS}:
        return "InboundEventHeaders"
    if address == EVENTS_VALID.name:
        return "ValidEventHeaders"
    if address == ROUTING_DECISIONS.name:
        return "RoutingDecisionHeaders"
    if address == DEADLETTER.name:
        return "DeadLetterHeaders"
    if address in inboxes:
        return "InboxHeaders"
    return None


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _complete(doc: dict[str, Any], policy: RoutingPolicy) -> dict[str, Any]:
    """Fill in the payloads of consumed topics and the headers of every message."""
    inboxes = frozenset(inbox_topic(a.id) for a in policy.agencies)
    schemas: dict[str, Any] = doc["components"]["schemas"]
    messages: dict[str, Any] = doc["components"]["messages"]
    schemas.update(HEADER_SCHEMAS)
    for channel in doc["channels"].values():
        address: str = channel["address"]
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            if message["payload"] == _ref("EmptyPayload"):
                names = _payload_refs(address)
                missing = [n for n in names if n not in schemas]
                if missing:
                    raise RuntimeError(f"payload schemas not generated: {missing}")
                if len(names) == 1:
                    message["payload"] = _ref(names[0])
                elif names:
                    message["payload"] = {"anyOf": [_ref(n) for n in names]}
                elif address in {t.name for t in INBOUND_TOPICS}:
                    message["payload"] = {
                        "description": "No event type is registered for this topic yet: "
                        "intake dead-letters every record on it (UNKNOWN_TYPE)."
                    }
                else:
                    message["payload"] = {
                        "description": "Any record on an audited topic, stored as received "
                        "(its bytes, digest and, when JSON, a queryable copy)."
                    }
            headers = _headers_ref(address, inboxes)
            if headers is not None:
                message["headers"] = _ref(headers)
    used = dump(doc)
    if '"#/components/schemas/EmptyPayload"' not in used:
        schemas.pop("EmptyPayload", None)
    return doc


@contextlib.contextmanager
def _logging_untouched() -> Iterator[None]:
    """`wire` configures logging for a service process; a document build must not."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiokafka_level = logging.getLogger("aiokafka").level
    structlog_config = structlog.get_config() if structlog.is_configured() else None
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("aiokafka").setLevel(aiokafka_level)
        if structlog_config is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**structlog_config)


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as JSON-ready data.

    Settings are the defaults (no environment is read), so the document does not depend on
    where it is generated.
    """
    settings = Settings.model_construct()
    with _logging_untouched():
        wiring = wire(settings, SERVICES)
    _documented_publishers(wiring.broker, wiring.policy)
    spec = AsyncAPI(
        wiring.broker,
        title="CaseBridge",
        version=importlib.metadata.version("casebridge"),
        description=_DESCRIPTION,
        identifier="urn:casebridge:asyncapi",
        schema_version="3.0.0",
    ).to_specification()
    document: dict[str, Any] = spec.to_jsonable()
    return _complete(document, wiring.policy)


def asyncapi_text() -> str:
    """The document in its canonical, checked-in text form."""
    return dump(asyncapi_document())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.asyncapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    output: Path = args.output
    text = asyncapi_text()
    current = output.read_text(encoding="utf-8") if output.is_file() else None
    if args.check:
        if current != text:
            sys.stderr.write(f"stale: {output}\nrun: python -m services.asyncapi\n")
            return 1
        return 0
    if current != text:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
