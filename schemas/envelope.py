"""CloudEvents 1.0 over Kafka: decode inbound records, encode outbound ones.

Binary content mode (preferred): each attribute is a ``ce_<attribute>`` header, the JSON data is
the record value and ``datacontenttype`` travels as the ``content-type`` header. Structured
mode: ``content-type: application/cloudevents+json`` and the value is the whole event as JSON.

``decode_kafka_record`` returns the envelope and the data *already parsed* (dict, list, ...):
the value is parsed exactly once, here, which works the same for both modes (structured data is
embedded in the event, so there are no raw data bytes to hand on without parsing twice).
``registry.validate_payload`` then validates the parsed object. Checks run cheapest first:
size, attributes, content type, then JSON.

Unknown extension attributes are ignored (the CloudEvents spec allows consumers to).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import from_json, to_json

from schemas.errors import EventRejected, RejectionCode
from schemas.vocab import DataClassification

__all__ = [
    "JSON_CONTENT_TYPE",
    "MAX_ATTRIBUTE_CHARS",
    "MAX_URI_CHARS",
    "MAX_VALUE_BYTES",
    "SPECVERSION",
    "STRUCTURED_CONTENT_TYPE",
    "Envelope",
    "decode_kafka_record",
    "encode_binary",
    "encode_structured",
    "envelope_attributes",
    "envelope_json_schema",
]

MAX_VALUE_BYTES = 256 * 1024
"""Largest accepted record value; checked before anything is parsed."""
MAX_ATTRIBUTE_CHARS = 256
"""Limit for id, source, type, subject, correlationid, causationid and datacontenttype."""
MAX_URI_CHARS = 2048
"""Limit for dataschema."""
SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

_REQUIRED = ("id", "source", "specversion", "type")
# Attribute name -> Kafka header name (CloudEvents Kafka protocol binding 1.0).
_ATTRIBUTE_HEADERS: Mapping[str, str] = {
    "id": "ce_id",
    "source": "ce_source",
    "specversion": "ce_specversion",
    "type": "ce_type",
    "time": "ce_time",
    "subject": "ce_subject",
    "datacontenttype": "content-type",
    "dataschema": "ce_dataschema",
    "correlationid": "ce_correlationid",
    "causationid": "ce_causationid",
    "dataclassification": "ce_dataclassification",
}
_HEADER_ATTRIBUTES: Mapping[str, str] = {h: a for a, h in _ATTRIBUTE_HEADERS.items()}
_STRUCTURED_LABELS: Mapping[str, str] = {a: a for a in _ATTRIBUTE_HEADERS}
_JSON_TYPES_FAST = frozenset(
    {
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=utf-8",
        "application/json; charset=UTF-8",
        "application/json;charset=UTF-8",
    }
)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_CLASSIFICATIONS: Mapping[str, DataClassification] = {c.value: c for c in DataClassification}


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The CloudEvents context attributes CaseBridge uses. Keyword-only to avoid mix-ups.

    ``source`` + ``id`` identify an event: a repeated pair is a duplicate.
    """

    id: str
    source: str
    specversion: str = SPECVERSION
    type: str
    time: dt.datetime | None = None
    """Timezone-aware occurrence time."""
    subject: str | None = None
    """Recommended: the case id, so brokers and tools can filter without reading data."""
    datacontenttype: str | None = None
    dataschema: str | None = None
    correlationid: str | None = None
    """Shared by all events of one chain of referrals."""
    causationid: str | None = None
    """The id of the event that caused this one."""
    dataclassification: DataClassification | None = None

    @classmethod
    def new(
        cls,
        *,
        source: str,
        event_type: str,
        subject: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        dataclassification: DataClassification | None = None,
        dataschema: str | None = None,
    ) -> Envelope:
        """A fresh envelope for publishing: random UUID id, current UTC time."""
        return cls(
            id=str(uuid.uuid4()),
            source=source,
            type=event_type,
            time=dt.datetime.now(dt.UTC),
            subject=subject,
            datacontenttype=JSON_CONTENT_TYPE,
            dataschema=dataschema,
            correlationid=correlationid,
            causationid=causationid,
            dataclassification=dataclassification,
        )


# --- attribute checks (shared by both decode modes and by the encoders) ----------------------


def _invalid(message: str) -> EventRejected:
    return EventRejected(RejectionCode.INVALID_ATTRIBUTE, message)


def _text(value: object, label: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{label} must be a string")
    if not value:
        raise _invalid(f"{label} must not be empty")
    if len(value) > limit:
        raise _invalid(f"{label} is longer than {limit} characters")
    if not value.isprintable():
        raise _invalid(f"{label} contains control characters")
    return value


def _uri(value: object, label: str, limit: int) -> str:
    text = _text(value, label, limit)
    if " " in text:
        raise _invalid(f"{label} must be a URI-reference (no spaces)")
    return text


def _time(value: object, label: str) -> dt.datetime:
    text = _text(value, label, 64)
    if _RFC3339.fullmatch(text) is not None:
        try:
            return dt.datetime.fromisoformat(text.upper())
        except ValueError:
            pass
    raise _invalid(f"{label} must be an RFC 3339 timestamp with offset")


def _is_json_media_type(content_type: str) -> bool:
    if content_type in _JSON_TYPES_FAST:
        return True
    media, _, params = content_type.partition(";")
    if media.strip().lower() != JSON_CONTENT_TYPE:
        return False
    for param in params.split(";"):
        if not param.strip():
            continue
        key, _, val = param.partition("=")
        if key.strip().lower() != "charset" or val.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _envelope_from(attrs: Mapping[str, object], labels: Mapping[str, str]) -> Envelope:
    get = attrs.get
    missing = [labels[name] for name in _REQUIRED if get(name) is None]
    if missing:
        raise EventRejected(
            RejectionCode.MISSING_ATTRIBUTE,
            f"missing required attribute{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
        )
    if attrs["specversion"] != SPECVERSION:
        raise EventRejected(
            RejectionCode.UNSUPPORTED_SPECVERSION,
            f"{labels['specversion']} must be {SPECVERSION!r}",
        )
    event_id = _text(attrs["id"], labels["id"], MAX_ATTRIBUTE_CHARS)
    source = _uri(attrs["source"], labels["source"], MAX_ATTRIBUTE_CHARS)
    event_type = _text(attrs["type"], labels["type"], MAX_ATTRIBUTE_CHARS)

    value = get("time")
    time = None if value is None else _time(value, labels["time"])
    value = get("subject")
    subject = None if value is None else _text(value, labels["subject"], MAX_ATTRIBUTE_CHARS)
    value = get("datacontenttype")
    content_type = None
    if value is not None:
        content_type = _text(value, labels["datacontenttype"], MAX_ATTRIBUTE_CHARS)
        if not _is_json_media_type(content_type):
            raise EventRejected(
                RejectionCode.UNSUPPORTED_CONTENT_TYPE,
                f"{labels['datacontenttype']} must be {JSON_CONTENT_TYPE} (charset utf-8)",
            )
    value = get("dataschema")
    dataschema = None if value is None else _uri(value, labels["dataschema"], MAX_URI_CHARS)
    value = get("correlationid")
    correlationid = (
        None if value is None else _text(value, labels["correlationid"], MAX_ATTRIBUTE_CHARS)
    )
    value = get("causationid")
    causationid = (
        None if value is None else _text(value, labels["causationid"], MAX_ATTRIBUTE_CHARS)
    )
    value = get("dataclassification")
    classification = None
    if value is not None:
        classification = _CLASSIFICATIONS.get(value) if isinstance(value, str) else None
        if classification is None:
            raise _invalid(
                f"{labels['dataclassification']} must be one of " + ", ".join(_CLASSIFICATIONS)
            )
    return Envelope(
        id=event_id,
        source=source,
        specversion=SPECVERSION,
        type=event_type,
        time=time,
        subject=subject,
        datacontenttype=content_type,
        dataschema=dataschema,
        correlationid=correlationid,
        causationid=causationid,
        dataclassification=classification,
    )


def _parse_json(value: bytes | None, what: str) -> Any:
    if value is None:
        raise EventRejected(RejectionCode.NOT_JSON, "record value is null")
    try:
        # Keys repeat across events and are worth caching; values (names, ids) are not.
        return from_json(value, allow_inf_nan=False, cache_strings="keys")
    except ValueError as exc:  # message holds only a position, never input text
        raise EventRejected(RejectionCode.NOT_JSON, f"{what} is not valid JSON: {exc}") from None


# --- decoding ------------------------------------------------------------------------------------


def decode_kafka_record(
    headers: Sequence[tuple[str, bytes | None]], value: bytes | None
) -> tuple[Envelope, Any]:
    """Decode a Kafka record carrying a CloudEvent; return the envelope and the parsed data.

    Raises ``EventRejected`` (TOO_LARGE, MISSING_ATTRIBUTE, INVALID_ATTRIBUTE,
    UNSUPPORTED_SPECVERSION, UNSUPPORTED_CONTENT_TYPE, NOT_JSON) and nothing else. The data is
    never None; it is not yet validated against the event type (see registry.validate_payload).
    """
    if value is not None and len(value) > MAX_VALUE_BYTES:
        raise EventRejected(
            RejectionCode.TOO_LARGE,
            f"record value is {len(value)} bytes; the limit is {MAX_VALUE_BYTES}",
        )
    attrs: dict[str, str] = {}
    for name, raw in headers:
        attr = _HEADER_ATTRIBUTES.get(name)
        if attr is None:
            lowered = name.lower()
            if lowered == name:
                continue
            attr = _HEADER_ATTRIBUTES.get(lowered)
            if attr is None:
                continue
        if attr in attrs:  # two values for one attribute: refuse to guess which one counts
            raise _invalid(f"header {_ATTRIBUTE_HEADERS[attr]} appears more than once")
        if raw is None:
            raise _invalid(f"header {_ATTRIBUTE_HEADERS[attr]} has a null value")
        try:
            attrs[attr] = raw.decode()
        except UnicodeDecodeError:
            raise _invalid(f"header {_ATTRIBUTE_HEADERS[attr]} is not UTF-8") from None

    if attrs.get("datacontenttype") == "":
        # Some producers (FastStream's among them) send an empty content-type for a bytes
        # body; datacontenttype is optional, so empty means absent, i.e. JSON.
        del attrs["datacontenttype"]
    content_type = attrs.get("datacontenttype")
    if content_type is not None and content_type[:23].lower() == "application/cloudevents":
        return _decode_structured(content_type, value)

    envelope = _envelope_from(attrs, _ATTRIBUTE_HEADERS)
    data = _parse_json(value, "record value")
    if data is None:
        raise EventRejected(RejectionCode.NOT_JSON, "data is JSON null")
    return envelope, data


def _decode_structured(content_type: str, value: bytes | None) -> tuple[Envelope, Any]:
    if not content_type.lower().startswith(STRUCTURED_CONTENT_TYPE):
        raise EventRejected(
            RejectionCode.UNSUPPORTED_CONTENT_TYPE,
            f"structured mode must use {STRUCTURED_CONTENT_TYPE} (no batches, no other formats)",
        )
    event = _parse_json(value, "structured event")
    if not isinstance(event, dict):
        raise _invalid("a structured-mode event must be a JSON object")
    if "data_base64" in event:
        raise EventRejected(
            RejectionCode.UNSUPPORTED_CONTENT_TYPE, "data_base64 is not supported; send JSON data"
        )
    envelope = _envelope_from(event, _STRUCTURED_LABELS)
    data = event.get("data")
    if data is None:
        raise EventRejected(RejectionCode.NOT_JSON, "structured event has no data")
    return envelope, data


# --- encoding ------------------------------------------------------------------------------------


def _format_time(time: dt.datetime) -> str:
    offset = time.utcoffset()
    if offset is None:
        raise _invalid("time must be timezone-aware")
    text = time.isoformat()
    return text[:-6] + "Z" if offset == dt.timedelta(0) and text.endswith("+00:00") else text


def envelope_attributes(envelope: Envelope) -> dict[str, str]:
    """The envelope's present attributes as strings, keyed by CloudEvents attribute name."""
    attrs = {
        "id": envelope.id,
        "source": envelope.source,
        "specversion": envelope.specversion,
        "type": envelope.type,
    }
    if envelope.time is not None:
        attrs["time"] = _format_time(envelope.time)
    optional = {
        "subject": envelope.subject,
        "datacontenttype": envelope.datacontenttype,
        "dataschema": envelope.dataschema,
        "correlationid": envelope.correlationid,
        "causationid": envelope.causationid,
        "dataclassification": envelope.dataclassification,
    }
    attrs.update({k: str(v) for k, v in optional.items() if v is not None})
    return attrs


def _data_bytes(data: Mapping[str, Any] | BaseModel | bytes) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        value = bytes(data)
    elif isinstance(data, BaseModel):
        value = data.model_dump_json().encode()
    else:
        value = to_json(data if isinstance(data, dict) else dict(data))
    if len(value) > MAX_VALUE_BYTES:
        raise EventRejected(
            RejectionCode.TOO_LARGE, f"data is {len(value)} bytes; the limit is {MAX_VALUE_BYTES}"
        )
    return value


def encode_binary(
    envelope: Envelope, data: Mapping[str, Any] | BaseModel | bytes
) -> tuple[list[tuple[str, bytes]], bytes]:
    """Kafka headers and value for a binary-mode CloudEvent (the record key is up to you:
    use the case id).

    ``data`` may be a mapping or a model (serialised to JSON) or ready JSON bytes. Runs the
    consumer's envelope checks, raising the same ``EventRejected`` a consumer would.
    """
    value = _data_bytes(data)
    attrs = envelope_attributes(envelope)
    attrs.setdefault("datacontenttype", JSON_CONTENT_TYPE)
    _envelope_from(attrs, _ATTRIBUTE_HEADERS)
    headers = [(_ATTRIBUTE_HEADERS[name], text.encode()) for name, text in attrs.items()]
    return headers, value


def encode_structured(
    envelope: Envelope, data: Mapping[str, Any] | BaseModel
) -> tuple[list[tuple[str, bytes]], bytes]:
    """Headers and value for a structured-mode CloudEvent (for publishers that prefer it)."""
    attrs = envelope_attributes(envelope)
    _envelope_from(attrs, _STRUCTURED_LABELS)
    payload = from_json(_data_bytes(data))
    value = to_json({**attrs, "data": payload})
    if len(value) > MAX_VALUE_BYTES:
        raise EventRejected(
            RejectionCode.TOO_LARGE, f"event is {len(value)} bytes; the limit is {MAX_VALUE_BYTES}"
        )
    return [("content-type", f"{STRUCTURED_CONTENT_TYPE}; charset=utf-8".encode())], value


# --- JSON Schema of the envelope (published next to the payload schemas) ---------------------


def envelope_json_schema() -> dict[str, Any]:
    """JSON Schema of the attributes CaseBridge accepts, in structured-mode form.

    In binary mode the same attributes travel as Kafka headers (``x-kafka-header``).
    """

    def attr(description: str, max_length: int = MAX_ATTRIBUTE_CHARS) -> dict[str, Any]:
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "description": description,
        }

    properties: dict[str, Any] = {
        "id": attr("Event id; unique per source. A repeated (source, id) is a duplicate."),
        "source": attr("URI-reference identifying the publishing system."),
        "specversion": {"const": SPECVERSION, "description": "CloudEvents version."},
        "type": attr("Event type, e.g. org.casebridge.referral.submitted.v1."),
        "time": {
            "type": "string",
            "format": "date-time",
            "pattern": _RFC3339.pattern,
            "description": "RFC 3339 occurrence time with offset.",
        },
        "subject": attr("Recommended: the case id."),
        "datacontenttype": {
            "type": "string",
            "enum": sorted(_JSON_TYPES_FAST),
            "description": "Absent means application/json. Only JSON (UTF-8) is accepted.",
        },
        "dataschema": attr("URI of the data's schema.", MAX_URI_CHARS),
        "correlationid": attr("Extension: shared by a chain of related events."),
        "causationid": attr("Extension: id of the event that caused this one."),
        "dataclassification": {
            "enum": [c.value for c in DataClassification],
            "description": "Extension: sensitivity of the data.",
        },
        "data": {"type": "object", "description": "The payload; see the event type's schema."},
    }
    for name, header in _ATTRIBUTE_HEADERS.items():
        properties[name]["x-kafka-header"] = header
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:casebridge:schema:envelope",
        "title": "CaseBridge CloudEvents 1.0 envelope",
        "description": "CloudEvents attributes CaseBridge accepts, in structured-mode form; in "
        "binary mode each travels as the Kafka header named by x-kafka-header.",
        "type": "object",
        "properties": properties,
        "required": [*_REQUIRED, "data"],
        "x-max-value-bytes": MAX_VALUE_BYTES,
    }
