"""Canonical leaf encoding of an audit record (format: docs/audit-leaf-format.md).

The leaf must be byte-for-byte reproducible from the stored record years later, by any
implementation, so the encoding is deliberately dull: a version tag line followed by a compact
JSON array in a fixed field order.  An array (not an object) leaves no key-order or
duplicate-key freedom.  The raw payload is represented only by its SHA-256 digest so that
personal data can be erased from storage without breaking verification of the log.

Encoding uses orjson, whose output for these value types (str, int, null) is identical to
``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``; the tests pin this.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from services.audit.merkle import leaf_hash

__all__ = [
    "LEAF_FIELDS",
    "LEAF_VERSION_TAG",
    "AuditEntry",
    "decode_leaf",
    "encode_leaf",
    "entry_leaf_hash",
    "payload_digest",
]

LEAF_VERSION_TAG: Final = b"cb-audit-leaf-v1\n"
"""Prefix of every v1 leaf; a future format gets a new tag so old leaves still verify."""

LEAF_FIELDS: Final = (
    "seq",
    "event_id",
    "event_source",
    "event_type",
    "subject",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "recorded_at",
    "outcome",
    "reason_code",
    "payload_digest",
)
"""Field order of the JSON array in a v1 leaf."""

_MAX_INT = 2**63 - 1  # PostgreSQL bigint / Kafka int64: every integer field fits
_DIGEST_SIZE = 32


def payload_digest(raw_value: bytes) -> bytes:
    """SHA-256 of a record value exactly as received from Kafka (the ``payload_digest``)."""
    return hashlib.sha256(raw_value).digest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit log record; ``encode_leaf`` turns it into the Merkle leaf.

    ``seq`` is the gapless 0-based leaf index.  ``recorded_at`` must be timezone-aware (it is
    encoded as the UTC instant).  ``payload_digest`` is SHA-256 of the raw Kafka record value.
    Types and ranges are checked on construction so that a bad record fails where it is made,
    not later as an unverifiable leaf.
    """

    seq: int
    event_id: str
    event_source: str
    event_type: str
    subject: str | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    recorded_at: datetime
    outcome: str
    reason_code: str | None
    payload_digest: bytes

    def __post_init__(self) -> None:
        for name in ("seq", "kafka_partition", "kafka_offset"):
            value = getattr(self, name)
            # bool is an int subclass and would encode as true/false.
            if type(value) is not int or not 0 <= value <= _MAX_INT:
                raise ValueError(f"{name} must be an int in 0..2**63-1, got {value!r}")
        for name in ("event_id", "event_source", "event_type", "kafka_topic", "outcome"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be str")
        for name in ("subject", "reason_code"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be str or None")
        if not isinstance(self.recorded_at, datetime) or self.recorded_at.utcoffset() is None:
            raise ValueError("recorded_at must be a timezone-aware datetime")
        if not isinstance(self.payload_digest, bytes) or len(self.payload_digest) != _DIGEST_SIZE:
            raise ValueError("payload_digest must be 32 bytes (SHA-256)")


def _format_time(value: datetime) -> str:
    """RFC 3339, UTC, always six fractional digits and ``Z``: one spelling per instant."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # %-formatting is about twice as fast as isoformat() here, and this runs once per leaf.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def encode_leaf(entry: AuditEntry) -> bytes:
    """Deterministic v1 leaf bytes for ``entry`` (see docs/audit-leaf-format.md).

    Raises ``ValueError`` if a string cannot be encoded as UTF-8 (lone surrogates).
    """
    try:
        body = orjson.dumps(
            [
                entry.seq,
                entry.event_id,
                entry.event_source,
                entry.event_type,
                entry.subject,
                entry.kafka_topic,
                entry.kafka_partition,
                entry.kafka_offset,
                _format_time(entry.recorded_at),
                entry.outcome,
                entry.reason_code,
                entry.payload_digest.hex(),
            ]
        )
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"audit entry seq={entry.seq} is not encodable: {exc}") from exc
    return LEAF_VERSION_TAG + body


def entry_leaf_hash(entry: AuditEntry) -> bytes:
    """Merkle leaf hash of an entry: ``leaf_hash(encode_leaf(entry))``."""
    return leaf_hash(encode_leaf(entry))


def decode_leaf(leaf: bytes) -> AuditEntry:
    """Parse v1 leaf bytes back into an ``AuditEntry``.

    Strict: the result must re-encode to exactly ``leaf``, so a leaf that merely parses (extra
    whitespace, other time spellings, upper-case hex) is rejected with ``ValueError``.
    """
    if not leaf.startswith(LEAF_VERSION_TAG):
        raise ValueError("not a cb-audit-leaf-v1 leaf")
    try:
        fields = orjson.loads(leaf[len(LEAF_VERSION_TAG) :])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"leaf body is not JSON: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != len(LEAF_FIELDS):
        raise ValueError(f"leaf body must be a JSON array of {len(LEAF_FIELDS)} values")
    values = dict(zip(LEAF_FIELDS, fields, strict=True))
    recorded_at, digest = values["recorded_at"], values["payload_digest"]
    if not isinstance(recorded_at, str) or not recorded_at.endswith("Z"):
        raise ValueError("recorded_at must be an RFC 3339 UTC string ending in Z")
    if not isinstance(digest, str):
        raise ValueError("payload_digest must be a hex string")
    try:
        values["recorded_at"] = datetime.fromisoformat(recorded_at[:-1]).replace(tzinfo=UTC)
        values["payload_digest"] = bytes.fromhex(digest)
        entry = AuditEntry(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid leaf field: {exc}") from exc
    if encode_leaf(entry) != leaf:
        raise ValueError("leaf is not in canonical form")
    return entry
