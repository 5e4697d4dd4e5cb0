"""Case actions as the console sends them: validated here, published as the agency itself.

An action becomes the same CloudEvent an agency's own system would publish
(`org.casebridge.case.<action>.v1`, source `urn:casebridge:agency:<id>:console`) on the
agency's own inbound topic, produced with the agency's own Kafka credentials: the broker's ACLs
then let the console do for a caseworker exactly what their agency may do, and intake, the
cases service and the audit treat it like any other agency event. The caseworker's version
travels as `expected_version`, so the cases service refuses it if the case moved meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.cases import CaseAction, CaseActionUnion, action_type
from schemas.envelope import Envelope, encode_binary
from schemas.identity import agency_source
from schemas.topics import inbound_topic
from services.cases.domain.offers import action_name
from services.runtime.credentials import kafka_client
from services.runtime.kafka import KafkaPublisher, Outgoing
from services.runtime.settings import Settings

SYSTEM = "console"
"""The agency system name in the source of actions the console sends."""
_FILLED_IN = frozenset({"action", "case_id", "reporting_agency", "expected_version"})
"""Fields the console sets itself: which case, which agency, which version."""

ACTIONS: dict[str, type[CaseAction]] = {
    action_name(cls): cls for cls in typing.get_args(typing.get_args(CaseActionUnion)[0])
}
"""Every action by its name (`handover_accepted`)."""


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of an action's form: what a page needs to draw an input for it."""

    name: str
    label: str
    required: bool
    kind: str
    """`text`, `number`, `checkbox`, `date` or `select`."""
    choices: tuple[str, ...] = ()
    description: str = ""


def _scalar(annotation: Any) -> tuple[Any, bool]:
    """The field's type without Optional/Annotated, and whether None is allowed."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def form_fields(action: type[CaseAction]) -> tuple[FormField, ...] | None:
    """The fields a person fills in, or None when one is not a plain value (a list, a nested
    record): such an action is sent through the JSON API, not a web form."""
    fields: list[FormField] = []
    for name, info in action.model_fields.items():
        if name in _FILLED_IN:
            continue
        annotation, optional = _scalar(info.annotation)
        label = name.replace("_", " ").capitalize()
        required = info.is_required() and not optional
        description = info.description or ""
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            choices = tuple(str(m.value) for m in annotation)
            fields.append(FormField(name, label, required, "select", choices, description))
        elif annotation is bool:
            fields.append(FormField(name, label, False, "checkbox", (), description))
        elif annotation is int or annotation is float:
            fields.append(FormField(name, label, required, "number", (), description))
        elif annotation is str:
            fields.append(FormField(name, label, required, "text", (), description))
        elif getattr(annotation, "__name__", "") == "date":
            fields.append(FormField(name, label, required, "date", (), description))
        else:
            return None
    return tuple(fields)


def from_form(action: type[CaseAction], form: Mapping[str, str]) -> dict[str, Any]:
    """A web form's strings as the action's fields (empty optional fields left out)."""
    fields = form_fields(action) or ()
    data: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f.name, "")
        if f.kind == "checkbox":
            data[f.name] = raw in ("on", "true", "1")
        elif raw == "":
            continue
        elif f.kind == "number":
            try:
                data[f.name] = int(raw) if raw.lstrip("-").isdigit() else float(raw)
            except ValueError:
                data[f.name] = raw  # the model says why it is not a number
        else:
            data[f.name] = raw
    return data


def build_action(
    action: type[CaseAction],
    fields: Mapping[str, Any],
    *,
    case_id: str,
    agency: str,
    expected_version: int,
) -> CaseAction:
    """The validated action (raises `ValidationError` with what is wrong)."""
    unknown = set(fields) & _FILLED_IN
    if unknown:
        raise ValueError(f"{sorted(unknown)} are set by the console")
    data = {
        **fields,
        "case_id": case_id,
        "reporting_agency": agency,
        "expected_version": expected_version,
    }
    built: CaseAction = action.model_validate(data)
    return built


def action_record(action: CaseAction) -> tuple[str, Outgoing]:
    """The action's CloudEvent id and its record for the agency's inbound topic."""
    agency = action.reporting_agency
    envelope = Envelope.new(
        source=agency_source(agency, SYSTEM), event_type=action_type(action), subject=action.case_id
    )
    headers, value = encode_binary(envelope, action)
    record = Outgoing(
        topic=inbound_topic(agency),
        value=value,
        key=action.case_id.encode(),
        headers={name: raw.decode() for name, raw in headers},
    )
    return envelope.id, record


class AgencyPublishers:
    """One producer per agency, each with that agency's own credentials (its client file in
    the deployment's secrets); started on first use, kept for the console's life."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._publishers: dict[str, KafkaPublisher] = {}
        self._lock = asyncio.Lock()

    async def publish(self, agency: str, record: Outgoing) -> None:
        async with self._lock:
            publisher = self._publishers.get(agency)
            if publisher is None:
                client = kafka_client(self._settings, agency)
                publisher = KafkaPublisher(self._settings, client)
                await publisher.start()
                self._publishers[agency] = publisher
        await publisher.publish_all([record])

    async def stop(self) -> None:
        for publisher in self._publishers.values():
            await publisher.stop()
        self._publishers.clear()


def errors_of(exc: ValidationError | ValueError) -> list[dict[str, str]]:
    """A validation failure as `[{name, reason}]`, naming fields, never echoing values."""
    if isinstance(exc, ValidationError):
        return [
            {"name": ".".join(str(p) for p in e["loc"]) or "body", "reason": e["msg"]}
            for e in exc.errors(include_input=False)
        ]
    return [{"name": "body", "reason": str(exc)}]
