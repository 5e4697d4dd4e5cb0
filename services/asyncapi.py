"""CaseBridge's Kafka contract as AsyncAPI 3.0: ``python -m services.asyncapi [--check]``.

The document is FastStream's own AsyncAPI output for a documentation broker that carries the
routers of every service (``build_router`` of each, the same functions ``services.bootstrap``
includes), completed with what FastStream cannot see:

- the server's security: SASL_SSL with SCRAM-SHA-512. The documentation broker is given
  FastStream's ``SASLScram512`` security with placeholder credentials (``<username>``,
  ``<password>``), so the document is built on any machine, without a secret file, a CA or a
  broker, and no real credential can end up in it. Nothing connects;
- per-agency channels as parameterised addresses (``casebridge.in.{agency}``, ``.inbox.``,
  ``.updates.``, ``.rejections.``) with the registered agencies as the parameter's values: one
  channel per kind instead of four per agency. FastStream writes literal addresses (intake
  subscribes by a regular expression), so the parameters are added here;
- the records the services *write*: they publish through ``publish_all``, not through FastStream
  publishers, so documentation-only publishers are registered on the broker, one per
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
import importlib.metadata
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union
from urllib.parse import unquote

from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.security import SASLScram512
from faststream.specification import AsyncAPI
from pydantic import BaseModel, ConfigDict

from schemas.cases import (
    ACTION_TYPE_PREFIX,
    EMITTED_EVENT_TYPES,
    CaseOpened,
    CaseUpdate,
    EscalationRaised,
    PossibleDuplicateFlagged,
    ScreeningReferralOpened,
    TransitionRecorded,
    TransitionRejected,
)
from schemas.common import AGENCY_ID_PATTERN
from schemas.console import ConsoleActivity
from schemas.envelope import envelope_json_schema
from schemas.errors import RejectionCode
from schemas.generate import dump
from schemas.identity import AGENCY_URN_PREFIX
from schemas.privacy import ERASURE_REQUESTED, ErasureRequested
from schemas.registry import EVENT_TYPES
from schemas.statistics import StatisticsRelease
from schemas.topics import (
    AGENCY_TOPIC_KINDS,
    CASE_EVENTS,
    CONSOLE_ACTIVITY,
    DEADLETTER,
    ERASURES,
    EVENTS_VALID,
    INBOUND_PREFIX,
    INBOX_PREFIX,
    REJECTIONS_PREFIX,
    ROUTING_DECISIONS,
    STATISTICS_REGIONAL,
    UPDATES_PREFIX,
)
from services.audit.handlers import AuditRecorder
from services.audit.handlers import build_router as audit_router
from services.audit.store import AuditLog
from services.bootstrap import SERVICES
from services.cases.coordinator import CaseCoordinator, directory_of
from services.cases.domain import CaseContext, SystemClock
from services.cases.domain import load_policy as load_case_policy
from services.cases.erasure import SOURCE as ERASURE_SOURCE
from services.cases.handlers import build_router as cases_router
from services.cases.records import SOURCE as CASES_SOURCE
from services.intake.handlers import Intake
from services.intake.handlers import build_router as intake_router
from services.intake.registry import Registry
from services.intake.seen_events import SeenEvents
from services.privacy.keys import KEY_BYTES, LocalKek
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.privacy.vault import PersonVault
from services.router.decisions import ROUTING_DECISION_TYPE
from services.router.handlers import Router
from services.router.handlers import build_router as router_router
from services.routing.policy import Priority, RoutingPolicy, deployment_policy
from services.runtime.credentials import KafkaClientConfig
from services.runtime.database import Database
from services.runtime.dead_letter import DEAD_LETTER_TYPE
from services.runtime.kafka import KafkaPublisher
from services.runtime.settings import REPO_ROOT, Settings

__all__ = [
    "AGENCY_PARAMETER",
    "CASE_EVENT_MODELS",
    "HEADER_SCHEMAS",
    "OUTPUT",
    "PLACEHOLDER_PASSWORD",
    "PLACEHOLDER_USERNAME",
    "SOURCE_PATTERN",
    "UPDATE_MODELS",
    "DeadLetterBody",
    "RoutingDecisionBody",
    "agency_address",
    "asyncapi_document",
    "asyncapi_text",
    "documentation_broker",
    "main",
]

OUTPUT = REPO_ROOT / "schemas" / "asyncapi" / "casebridge.json"

PLACEHOLDER_USERNAME = "<username>"
PLACEHOLDER_PASSWORD = "<password>"  # noqa: S105 - a placeholder, never a credential
"""The documentation broker's credentials: FastStream documents the mechanism, not the values,
and this module never reads a secret file."""

AGENCY_PARAMETER = "agency"

_DESCRIPTION = (
    "Event-driven case coordination for counter-trafficking referrals, returns and SAR "
    "incidents. Each agency connects as its own principal (SASL_SSL, SCRAM-SHA-512) and "
    "publishes CloudEvents 1.0 (Kafka binding; binary content mode preferred), events and case "
    "actions alike, to its own `casebridge.in.{agency}`, the only topic it may write. Intake "
    "takes the acting agency from that topic: `ce_source` must be "
    "`urn:casebridge:agency:<agency>[:<system>]` and `reporting_agency` the agency id, or the "
    "record is rejected (AGENCY_MISMATCH). Intake forwards valid events keyed by case id and "
    "rejects the rest, to the full dead-letter topic (operators) and to the agency's own "
    "`casebridge.rejections.{agency}`; router sends each valid event to the agency inboxes its "
    "policy names, with a routing decision saying why; cases applies case actions and sends "
    "each agency what it may see on `casebridge.updates.{agency}`; audit appends every record "
    "to an append-only log. An agency reads only its own inbox, updates and rejections, with "
    "consumer groups named `<agency>.<anything>`. How to get and use credentials: "
    "docs/schemas.md. Payload schemas are also published as JSON Schema under "
    "schemas/jsonschema/."
)

_SERVER_DESCRIPTION = (
    "The broker's client listener: TLS (SASL_SSL) with a certificate from the deployment's own "
    "CA, and SASL/SCRAM-SHA-512. There is no unauthenticated listener. Every principal (one per "
    "agency, named by the agency id, and one per CaseBridge service) gets a client settings "
    "file from `casebridge agencies sync`: bootstrap, CA, username and password. The broker "
    "authorises with ACLs and denies what no ACL allows."
)

_SECURITY_DESCRIPTION = (
    "SASL/SCRAM-SHA-512 over TLS (security.protocol=SASL_SSL, sasl.mechanisms=SCRAM-SHA-512). "
    "Username: the agency id (or the CaseBridge service's principal); password and CA "
    "certificate: from the client settings file the operator hands over "
    "(`<run dir>/secrets/kafka/<principal>.properties`, written by `casebridge agencies sync`). "
    "A wrong password fails authentication; a topic or consumer group outside the principal's "
    "ACLs fails with TOPIC_AUTHORIZATION_FAILED or GROUP_AUTHORIZATION_FAILED."
)

_SYSTEM_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
SOURCE_PATTERN = (
    "^"
    + re.escape(AGENCY_URN_PREFIX)
    + AGENCY_ID_PATTERN.removeprefix("^").removesuffix("$")
    + f"(:{_SYSTEM_PATTERN})?$"
)
"""`ce_source` of an agency's event, as a JSON Schema pattern (`schemas.identity` is the rule:
the agency part must also be the agency whose topic carries the event)."""

CASE_EVENT_MODELS: tuple[type[BaseModel], ...] = (
    CaseOpened,
    TransitionRecorded,
    PossibleDuplicateFlagged,
    ScreeningReferralOpened,
)
"""What the cases service writes to its event log (`casebridge.cases.events`)."""
UPDATE_MODELS: tuple[type[BaseModel], ...] = (
    CaseUpdate,
    TransitionRejected,
    EscalationRaised,
    PossibleDuplicateFlagged,
    ScreeningReferralOpened,
)
"""What the cases service writes to an agency's `casebridge.updates.<agency>`."""


def agency_address(prefix: str) -> str:
    """A per-agency topic kind as a parameterised AsyncAPI address: `casebridge.in.{agency}`."""
    return f"{prefix}{{{AGENCY_PARAMETER}}}"


def _channel_name(prefix: str) -> str:
    # Channel, operation and message ids stay plain words: no braces to percent-encode.
    return f"{prefix}per-agency"


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
    """Body of a record on the dead-letter topic and on an agency's rejections topic."""

    error: Rejection
    rejected_by: str
    """The service that rejected the record, e.g. ``intake``. When: the ``ce_time`` header
    (the body holds nothing that changes when the same record is rejected again, so a
    redelivered rejection is recognisably the same record)."""
    original: OriginalRecord


class RoutedDelivery(_Doc):
    agency: str
    priority: Priority
    rule: str
    """The policy rule that chose the agency (``default-route`` when none matched)."""
    via: str | None
    """Why an agency outside the event's country is on the route: a sharing agreement's name,
    or ``regional-coordinator``; null for an agency in the country."""
    withheld: list[str]
    """The payload fields this agency's inbox copy does not carry (need to know)."""


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
    ce_type: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    schema = _cloudevent_headers()
    schema["description"] = description
    schema["properties"].update({name: dict(value) for name, value in extra.items()})
    schema["required"] = sorted({*schema["required"], *required})
    if isinstance(ce_type, str):
        schema["properties"]["ce_type"] = {"const": ce_type}
    elif ce_type is not None:
        schema["properties"]["ce_type"] = {"enum": sorted(ce_type)}
    return schema


_ORIGIN = {"type": "string", "description": "`topic/partition/offset` of the inbound record."}
_AGENCY = {
    "type": "string",
    "pattern": AGENCY_ID_PATTERN,
    "description": "The agency whose inbound topic carried the record: the acting agency.",
}
_DEAD_LETTER_EXTRA: dict[str, dict[str, Any]] = {
    "cb_agency": {
        **_AGENCY,
        "description": "The agency whose inbound topic carried the record (absent when the "
        "rejecting service could not tell).",
    },
    "cb_error_code": {"enum": [c.value for c in RejectionCode]},
    "cb_error_message": {**_TEXT, "maxLength": 512},
    "cb_origin": _ORIGIN,
    "cb_original_id": {**_TEXT, "description": "Rejected record's ce_id (may be empty)."},
    "cb_original_source": _TEXT,
    "cb_original_type": _TEXT,
    "ce_subject": {**_TEXT, "description": "The rejected record's ce_id, if it had one."},
}
_DEAD_LETTER_REQUIRED = (
    "cb_error_code",
    "cb_error_message",
    "cb_origin",
    "cb_original_id",
    "cb_original_source",
    "cb_original_type",
    "ce_time",
)

HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "InboundEventHeaders": _headers(
        "An agency's CloudEvent in binary content mode (structured mode: `content-type: "
        "application/cloudevents+json` and the whole event as the value). `ce_source` names "
        "the agency whose topic this is, optionally one of its systems.",
        {
            "ce_source": {
                "type": "string",
                "maxLength": 256,
                "pattern": SOURCE_PATTERN,
                "description": "CloudEvents `source`: `urn:casebridge:agency:<agency>` or "
                "`urn:casebridge:agency:<agency>:<system>`, where <agency> is the agency "
                "whose `casebridge.in.<agency>` carries the event (else AGENCY_MISMATCH).",
            }
        },
    ),
    "ValidEventHeaders": _headers(
        "The validated event, re-encoded in binary content mode.",
        {"cb_origin": _ORIGIN, "cb_agency": _AGENCY},
        required=("cb_agency", "cb_origin", "content-type"),
    ),
    "InboxHeaders": _headers(
        "The validated event's headers, plus why this agency receives it and what its copy "
        "leaves out.",
        {
            "cb_agency": _AGENCY,
            "cb_origin": _ORIGIN,
            "cb_priority": {"enum": [p.value for p in Priority]},
            "cb_rule": {**_TEXT, "description": "The policy rule that chose this agency."},
            "cb_decision_id": {**_TEXT, "description": "`ce_id` of the routing decision."},
            "cb_withheld": {
                "type": "string",
                "maxLength": 1024,
                "description": "Comma-separated payload fields absent from this copy because "
                "the data-sharing policy withholds them from this agency (empty: none).",
            },
        },
        required=(
            "cb_agency",
            "cb_origin",
            "cb_priority",
            "cb_rule",
            "cb_decision_id",
            "cb_withheld",
        ),
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
        _DEAD_LETTER_EXTRA,
        required=_DEAD_LETTER_REQUIRED,
        ce_type=DEAD_LETTER_TYPE,
    ),
    "RejectionHeaders": _headers(
        "One of the agency's own rejected records: the same record as on the dead-letter "
        "topic, which only operators may read.",
        _DEAD_LETTER_EXTRA,
        required=(*_DEAD_LETTER_REQUIRED, "cb_agency"),
        ce_type=DEAD_LETTER_TYPE,
    ),
    "CaseEventHeaders": _headers(
        "A record of the cases service; `ce_subject` is the case id, `ce_causationid` the id "
        "of the event that caused it (absent for escalations, which a deadline raises).",
        {"ce_source": {"const": CASES_SOURCE}},
        required=("ce_subject", "ce_time", "content-type"),
        ce_type=[t for t, m in EMITTED_EVENT_TYPES.items() if m in CASE_EVENT_MODELS],
    ),
    "ErasureRequestHeaders": _headers(
        "A data-protection officer's erasure request (binary content mode); only the officer's "
        "principal, `casebridge-dpo`, may write the topic, and the cases service carries it "
        "out. `ce_id` is the request id.",
        {"ce_source": {"const": ERASURE_SOURCE}},
        required=("content-type",),
        ce_type=ERASURE_REQUESTED,
    ),
    "CaseUpdateHeaders": _headers(
        "A record of the cases service for one agency; `ce_subject` is the case id, "
        "`ce_causationid` the id of the event that caused it (absent for escalations).",
        {"ce_source": {"const": CASES_SOURCE}},
        required=("ce_subject", "ce_time", "content-type"),
        ce_type=[t for t, m in EMITTED_EVENT_TYPES.items() if m in UPDATE_MODELS],
    ),
}


# --- building ------------------------------------------------------------------------------------


def _event_union(models: Sequence[type[BaseModel]]) -> Any:
    return models[0] if len(models) == 1 else Union[tuple(models)]  # noqa: UP007


def _opening_models() -> list[type[BaseModel]]:
    """Events that open a case: the router delivers these (case actions go to the cases
    service, which answers on the updates topics)."""
    return [EVENT_TYPES[t] for t in sorted(EVENT_TYPES) if not t.startswith(ACTION_TYPE_PREFIX)]


def documentation_broker(settings: Settings, policy: RoutingPolicy) -> KafkaBroker:
    """A broker with every service's router, as `services.bootstrap.wire` includes them, built
    on connections that are never opened: placeholder credentials, no secret file read."""
    broker = KafkaBroker(
        settings.kafka_bootstrap,
        security=SASLScram512(PLACEHOLDER_USERNAME, PLACEHOLDER_PASSWORD, use_ssl=True),
        description=_SERVER_DESCRIPTION,
    )
    client = KafkaClientConfig(
        bootstrap=settings.kafka_bootstrap,
        username=PLACEHOLDER_USERNAME,
        password=PLACEHOLDER_PASSWORD,
        ca_file=settings.run_dir / "tls" / "ca.pem",
    )
    publisher = KafkaPublisher(settings, client)
    db = Database(settings.database_url)
    prefix = settings.topic_prefix
    sharing = load_data_sharing_policy(settings.data_sharing_policy_path)

    def cases() -> KafkaRouter:
        context = CaseContext(
            agencies=directory_of(policy),
            policy=load_case_policy(settings.case_policy_path),
            person_key_secret=None,
            data_sharing=sharing,
        )
        coordinator = CaseCoordinator(
            publisher=publisher,
            db=db,
            vault=PersonVault(LocalKek(bytes(KEY_BYTES))),  # documentation only: seals nothing
            ctx=context,
            routing=policy,
            clock=SystemClock(),
        )
        return cases_router(coordinator, settings)

    routers: dict[str, Callable[[], KafkaRouter]] = {
        "intake": lambda: intake_router(
            Intake(publisher, SeenEvents(db), Registry(policy, sharing), topic_prefix=prefix),
            settings,
        ),
        "router": lambda: router_router(Router(publisher, policy, sharing), settings),
        "audit": lambda: audit_router(
            AuditRecorder(
                # Documentation only: nothing is appended, so a throwaway key will do.
                AuditLog(
                    db,
                    PersonVault(LocalKek(bytes(KEY_BYTES))),
                    consumer=f"{settings.group_prefix}.audit",
                ),
                topic_prefix=prefix,
            ),
            settings,
        ),
        "cases": cases,
    }
    for service in SERVICES:
        broker.include_router(routers[service]())
    return broker


def _documented_publishers(broker: KafkaBroker) -> None:
    """Register one publisher per (service, topic) written; per-agency topics parameterised."""
    events = _event_union([EVENT_TYPES[t] for t in sorted(EVENT_TYPES)])
    writes: dict[str, list[tuple[str, str, Any, str]]] = {
        "intake": [
            (EVENTS_VALID.name, EVENTS_VALID.name, events, EVENTS_VALID.description),
            (DEADLETTER.name, DEADLETTER.name, DeadLetterBody, DEADLETTER.description),
            (
                _channel_name(REJECTIONS_PREFIX),
                agency_address(REJECTIONS_PREFIX),
                DeadLetterBody,
                AGENCY_TOPIC_KINDS["rejections"][1],
            ),
        ],
        "router": [
            (
                ROUTING_DECISIONS.name,
                ROUTING_DECISIONS.name,
                RoutingDecisionBody,
                ROUTING_DECISIONS.description,
            ),
            (DEADLETTER.name, DEADLETTER.name, DeadLetterBody, DEADLETTER.description),
            (
                _channel_name(INBOX_PREFIX),
                agency_address(INBOX_PREFIX),
                _event_union(_opening_models()),
                AGENCY_TOPIC_KINDS["inbox"][1],
            ),
        ],
        "cases": [
            (
                CASE_EVENTS.name,
                CASE_EVENTS.name,
                _event_union(CASE_EVENT_MODELS),
                CASE_EVENTS.description,
            ),
            (
                _channel_name(UPDATES_PREFIX),
                agency_address(UPDATES_PREFIX),
                _event_union(UPDATE_MODELS),
                AGENCY_TOPIC_KINDS["updates"][1],
            ),
            # Erasure requests it cannot carry out (malformed, or naming no case).
            (DEADLETTER.name, DEADLETTER.name, DeadLetterBody, DEADLETTER.description),
        ],
        "console": [
            (
                CONSOLE_ACTIVITY.name,
                CONSOLE_ACTIVITY.name,
                ConsoleActivity,
                CONSOLE_ACTIVITY.description,
            ),
        ],
        "statistics": [
            (
                STATISTICS_REGIONAL.name,
                STATISTICS_REGIONAL.name,
                StatisticsRelease,
                STATISTICS_REGIONAL.description,
            ),
        ],
    }
    for service in (*SERVICES, "console", "statistics"):
        for name, topic, schema, description in writes.get(service, []):
            broker.publisher(
                topic, title=f"{service}:{name}", description=description, schema=schema
            )


_PER_AGENCY_PREFIXES = (INBOUND_PREFIX, INBOX_PREFIX, UPDATES_PREFIX, REJECTIONS_PREFIX)


def _per_agency_prefix(address: str) -> str | None:
    """The per-agency kind of a channel: its parameterised address, or the regular expression
    a subscriber matches its topics with (`casebridge\\.in\\.[a-z0-9]...`)."""
    for prefix in _PER_AGENCY_PREFIXES:
        if address == agency_address(prefix) or address.startswith(re.escape(prefix)):
            return prefix
    return None


def _parameterise(channel: dict[str, Any], prefix: str, agencies: Sequence[str]) -> None:
    pattern = channel["address"]
    channel["address"] = agency_address(prefix)
    channel["parameters"] = {
        AGENCY_PARAMETER: {
            "description": "An agency id (the agency's Kafka principal): one of the agencies "
            "registered in the routing policy (`agencies:`), for which `casebridge agencies "
            "sync` created the topic.",
            "enum": list(agencies),
            "examples": list(agencies[:1]),
        }
    }
    # The Kafka binding names one literal topic; the address with its parameter says it here.
    channel.get("bindings", {}).get("kafka", {}).pop("topic", None)
    if pattern != channel["address"]:
        note = f"Subscribed by the pattern `{pattern}`."
        channel["description"] = f"{channel.get('description', '')} {note}".strip()


def _payload_refs(address: str) -> list[str]:
    """The payload models a consumed topic carries ([] when any record may appear)."""
    if address in (EVENTS_VALID.name, agency_address(INBOUND_PREFIX)):
        return [EVENT_TYPES[t].__name__ for t in sorted(EVENT_TYPES)]
    if address == ERASURES.name:
        return [ErasureRequested.__name__]
    return []


_HEADERS_BY_ADDRESS = {
    agency_address(INBOUND_PREFIX): "InboundEventHeaders",
    EVENTS_VALID.name: "ValidEventHeaders",
    ROUTING_DECISIONS.name: "RoutingDecisionHeaders",
    DEADLETTER.name: "DeadLetterHeaders",
    agency_address(INBOX_PREFIX): "InboxHeaders",
    agency_address(REJECTIONS_PREFIX): "RejectionHeaders",
    CASE_EVENTS.name: "CaseEventHeaders",
    ERASURES.name: "ErasureRequestHeaders",
    agency_address(UPDATES_PREFIX): "CaseUpdateHeaders",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _complete(doc: dict[str, Any], policy: RoutingPolicy) -> dict[str, Any]:
    """Parameterise per-agency channels; fill in payloads, headers and the security scheme."""
    agencies = sorted(a.id for a in policy.agencies)
    schemas: dict[str, Any] = doc["components"]["schemas"]
    messages: dict[str, Any] = doc["components"]["messages"]
    schemas.update(HEADER_SCHEMAS)
    # Read, never written, by a service: FastStream has no model to take it from.
    schemas[ErasureRequested.__name__] = ErasureRequested.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for scheme in doc["components"].get("securitySchemes", {}).values():
        scheme["description"] = _SECURITY_DESCRIPTION
    for channel in doc["channels"].values():
        prefix = _per_agency_prefix(channel["address"])
        if prefix is not None:
            _parameterise(channel, prefix, agencies)
        address: str = channel["address"]
        for ref in channel["messages"].values():
            message = messages[unquote(ref["$ref"].rsplit("/", 1)[1])]
            if message["payload"] == _ref("EmptyPayload"):
                names = _payload_refs(address)
                missing = [n for n in names if n not in schemas]
                if missing:
                    raise RuntimeError(f"payload schemas not generated: {missing}")
                if len(names) == 1:
                    message["payload"] = _ref(names[0])
                elif names:
                    message["payload"] = {"anyOf": [_ref(n) for n in names]}
                else:
                    message["payload"] = {
                        "description": "Any record on an audited topic, stored as received "
                        "(its bytes, digest and, when JSON, a queryable copy)."
                    }
            headers = _HEADERS_BY_ADDRESS.get(address)
            if headers is not None:
                message["headers"] = _ref(headers)
    used = dump(doc)
    if '"#/components/schemas/EmptyPayload"' not in used:
        schemas.pop("EmptyPayload", None)
    return doc


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as JSON-ready data.

    Settings are the defaults (no environment is read), so the document does not depend on
    where it is generated; no secret file is read, and nothing connects.
    """
    settings = Settings.model_construct()
    policy = deployment_policy(settings)
    broker = documentation_broker(settings, policy)
    _documented_publishers(broker)
    spec = AsyncAPI(
        broker,
        title="CaseBridge",
        version=importlib.metadata.version("casebridge"),
        description=_DESCRIPTION,
        identifier="urn:casebridge:asyncapi",
        schema_version="3.0.0",
    ).to_specification()
    document: dict[str, Any] = spec.to_jsonable()
    return _complete(document, policy)


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
