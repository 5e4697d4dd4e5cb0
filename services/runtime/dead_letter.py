"""Dead-lettering: a record CaseBridge cannot accept is published, whole, with its reason.

The dead-letter record is a CloudEvent of its own (type `org.casebridge.deadletter.v1`) whose
id is derived from the rejecting service and the rejected record's position, so a replay
dead-letters it under the same id and every downstream consumer can drop the repeat. The
reason is machine-readable twice: in headers (`cb_error_code`, `cb_error_message`) for tools
that only read headers, and in the JSON body together with the original key, headers and
value (base64), so that nothing about the rejected record is lost and it can be repaired and
re-published.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.errors import EventRejected
from schemas.topics import DEADLETTER
from services.runtime.kafka import Outgoing, header_map, origin_of

DEAD_LETTER_TYPE = "org.casebridge.deadletter.v1"
_NAMESPACE = uuid.UUID("6f1c2b1e-5a7d-4f0e-9a49-3c0c8f1d2e77")


def derived_id(kind: str, source: str, *parts: str) -> str:
    """A deterministic event id, so that reprocessing a record re-emits identical ids.

    `source` is the CloudEvents source of what the id answers (an agency's event, a message)
    or, for what CaseBridge originates, of its emitter: ids are unique per (source, id), so
    one agency reusing another's id must not make CaseBridge emit a colliding one (an
    agency's consumer drops an id it has seen). Each part is length-prefixed, so no two
    different inputs share a name, whatever bytes a part holds.
    """
    name = "".join(f"{len(p)}:{p}" for p in (kind, source, *parts))
    return str(uuid.uuid5(_NAMESPACE, name))


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def dead_letter(
    record: ConsumerRecord[Any, Any],
    error: EventRejected,
    *,
    rejected_by: str,
    agency: str | None = None,
) -> Outgoing:
    """The dead-letter record for `record`, rejected by service `rejected_by` for `error`;
    `agency` is the agency whose inbound topic carried it, when known."""
    headers = header_map(record)
    origin = origin_of(record)
    source = f"casebridge/{rejected_by}"
    original_id = headers.get("ce_id", b"").decode("utf-8", "replace")[:256]
    original_source = headers.get("ce_source", b"").decode("utf-8", "replace")[:256]
    original_type = headers.get("ce_type", b"").decode("utf-8", "replace")[:256]
    body = {
        "error": error.to_dict(),
        "rejected_by": rejected_by,
        "original": {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp,
            "key_b64": _b64(record.key),
            "headers": [[name, _b64(value)] for name, value in (record.headers or ())],
            "value_b64": _b64(record.value),
        },
    }
    out_headers = {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": derived_id("deadletter", source, origin),
        "ce_source": source,
        "ce_type": DEAD_LETTER_TYPE,
        "ce_time": datetime.now(UTC).isoformat(),
        "cb_error_code": str(error.code),
        "cb_error_message": error.message[:512],
        "cb_origin": origin,
        "cb_original_id": original_id,
        "cb_original_source": original_source,
        "cb_original_type": original_type,
    }
    if original_id:
        out_headers["ce_subject"] = original_id
    if agency is not None:
        out_headers["cb_agency"] = agency
    return Outgoing(
        topic=DEADLETTER.name, key=record.key, value=orjson.dumps(body), headers=out_headers
    )
