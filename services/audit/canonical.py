"""Canonical leaf encoding of an audit record (format: docs/audit-leaf-format.md).

The leaf must be byte-for-byte reproducible from the stored record by anyone, in any language,
for as long as the log is kept, so the encoding is deliberately dull: a version tag line
followed by a compact JSON array in a fixed field order. An array (not an object) leaves no
key-order or duplicate-key freedom. The raw payload is represented only by its SHA-256 digest
so that personal data can be erased from storage without breaking verification of the log.

Two versions exist, and a record says which one its leaf is (`leaf_version`, a column of
`audit_log` since migration 0017): v1 covers the record's identity, position, outcome and
payload digest; v2 adds what else auditors filter on and are served, so that it cannot be
changed unnoticed either: `agency`, the header `attributes` (as stored: text, with bytes
PostgreSQL cannot hold escaped, services/audit/records.py `storable`) and the digest of
`original_bytes` (the exact key and headers, kept when that text is not exact). New records
are written as v2; v1 leaves keep verifying under v1, because changing them would change
every signed root.

Encoding uses orjson, whose output for these value types (str, int, null, arrays) is
identical to ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``; the tests pin
this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from services.audit.merkle import leaf_hash

__all__ = [
    "CURRENT_LEAF_VERSION",
    "LEAF_FIELDS",
    "LEAF_FIELDS_V2",
    "LEAF_VERSION_TAG",
    "LEAF_VERSION_TAGS",
    "Attributes",
    "AuditEntry",
    "attributes_from_json",
    "canonical_attributes",
    "decode_leaf",
    "encode_leaf",
    "entry_leaf_hash",
    "original_digest",
    "payload_digest",
]

LEAF_VERSION_TAGS: Final = {1: b"cb-audit-leaf-v1\n", 2: b"cb-audit-leaf-v2\n"}
"""The tag line that starts every leaf of each version."""
LEAF_VERSION_TAG: Final = LEAF_VERSION_TAGS[1]
"""Prefix of every v1 leaf."""
CURRENT_LEAF_VERSION: Final = 2
"""The version new records are written with (`services.audit.store.entry_of`)."""

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
LEAF_FIELDS_V2: Final = (*LEAF_FIELDS, "agency", "attributes", "original_digest")
"""Field order of the JSON array in a v2 leaf: v1's, then the fields v1 left out."""

Attributes = tuple[tuple[str, str], ...]
"""CloudEvents (and CaseBridge) header attributes as (name, value) pairs sorted by name."""

_MAX_INT = 2**63 - 1  # PostgreSQL bigint / Kafka int64: every integer field fits
_DIGEST_SIZE = 32


def payload_digest(raw_value: bytes) -> bytes:
    """SHA-256 of a record value exactly as received from Kafka (the ``payload_digest``)."""
    return hashlib.sha256(raw_value).digest()


def original_digest(original_bytes: bytes | None) -> bytes | None:
    """SHA-256 of a record's `original_bytes` (its exact key and headers), None without."""
    return None if original_bytes is None else hashlib.sha256(original_bytes).digest()


def canonical_attributes(attributes: Mapping[str, str]) -> Attributes:
    """The one ordering of a name -> value map a leaf can hold: by name, in code point order
    (which is also UTF-8 byte order)."""
    pairs = tuple(sorted(attributes.items()))
    for name, value in pairs:
        if type(name) is not str or type(value) is not str:
            raise TypeError("attribute names and values must be str")
    return pairs


def attributes_from_json(text: str | bytes) -> Attributes:
    """Attributes as `audit_log.attributes` stores them (a JSON object of strings).

    A stored object is a map, so its key order and spacing carry nothing; what the leaf
    covers is every name and value, exactly (ValueError or TypeError for anything else).
    """
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"attributes are not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise TypeError("attributes must be a JSON object")
    return canonical_attributes(document)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit log record; ``encode_leaf`` turns it into the Merkle leaf.

    ``seq`` is the gapless 0-based leaf index. ``recorded_at`` must be timezone-aware (it is
    encoded as the UTC instant). ``payload_digest`` is SHA-256 of the raw Kafka record value.
    ``leaf_version`` says which fields the leaf covers: a v1 entry has no ``agency``,
    ``attributes`` or ``original_digest`` (v1 leaves never covered them), a v2 entry has them
    (``attributes`` in ``canonical_attributes`` order; ``original_digest`` SHA-256 of
    ``original_bytes``, None when the record has none). Types and ranges are checked on
    construction so that a bad record fails where it is made, not later as an unverifiable
    leaf.
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
    agency: str | None = None
    attributes: Attributes | None = None
    original_digest: bytes | None = None
    leaf_version: int = 1

    def __post_init__(self) -> None:
        for name in ("seq", "kafka_partition", "kafka_offset"):
            value = getattr(self, name)
            # bool is an int subclass and would encode as true/false.
            if type(value) is not int or not 0 <= value <= _MAX_INT:
                raise ValueError(f"{name} must be an int in 0..2**63-1, got {value!r}")
        for name in ("event_id", "event_source", "event_type", "kafka_topic", "outcome"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be str")
        for name in ("subject", "reason_code", "agency"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be str or None")
        if not isinstance(self.recorded_at, datetime) or self.recorded_at.utcoffset() is None:
            raise ValueError("recorded_at must be a timezone-aware datetime")
        if not isinstance(self.payload_digest, bytes) or len(self.payload_digest) != _DIGEST_SIZE:
            raise ValueError("payload_digest must be 32 bytes (SHA-256)")
        if self.leaf_version == 1:
            if (self.agency, self.attributes, self.original_digest) != (None, None, None):
                raise ValueError("a v1 leaf covers no agency, attributes or original bytes")
        elif self.leaf_version == 2:
            if not isinstance(self.attributes, tuple):
                raise TypeError("a v2 entry needs its attributes (canonical_attributes)")
            if canonical_attributes(dict(self.attributes)) != self.attributes:
                raise ValueError("attributes must be unique (name, value) pairs sorted by name")
            digest = self.original_digest
            if digest is not None and (not isinstance(digest, bytes) or len(digest) != 32):
                raise ValueError("original_digest must be 32 bytes (SHA-256) or None")
        else:
            raise ValueError(f"unknown leaf version {self.leaf_version!r}")


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
    """Deterministic leaf bytes for ``entry`` in its ``leaf_version`` (see
    docs/audit-leaf-format.md).

    Raises ``ValueError`` if a string cannot be encoded as UTF-8 (lone surrogates) or the
    version is unknown.
    """
    version = entry.leaf_version
    fields: list[Any] = [
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
    if version == 2:
        attributes = entry.attributes  # read once: a row standing in for an entry parses it
        if attributes is None:
            raise ValueError(f"audit entry seq={entry.seq} is v2 without attributes")
        original = entry.original_digest
        fields += [
            entry.agency,
            attributes,  # pairs of str: orjson writes tuples as arrays
            None if original is None else original.hex(),
        ]
    elif version != 1:
        raise ValueError(f"audit entry seq={entry.seq} has unknown leaf version {version!r}")
    try:
        body = orjson.dumps(fields)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"audit entry seq={entry.seq} is not encodable: {exc}") from exc
    return LEAF_VERSION_TAGS[version] + body


def entry_leaf_hash(entry: AuditEntry) -> bytes:
    """Merkle leaf hash of an entry: ``leaf_hash(encode_leaf(entry))``."""
    return leaf_hash(encode_leaf(entry))


def _decode_attributes(value: Any) -> Attributes:
    if not isinstance(value, list):
        raise TypeError("attributes must be an array of [name, value] pairs")
    pairs = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise TypeError("attributes must be an array of [name, value] pairs")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def decode_leaf(leaf: bytes) -> AuditEntry:
    """Parse v1 or v2 leaf bytes back into an ``AuditEntry``.

    Strict: the result must re-encode to exactly ``leaf``, so a leaf that merely parses (extra
    whitespace, other time spellings, upper-case hex, unsorted attributes) is rejected with
    ``ValueError``.
    """
    version = next((v for v, tag in LEAF_VERSION_TAGS.items() if leaf.startswith(tag)), None)
    if version is None:
        raise ValueError("not a cb-audit-leaf-v1 or -v2 leaf")
    names = LEAF_FIELDS if version == 1 else LEAF_FIELDS_V2
    try:
        fields = orjson.loads(leaf[len(LEAF_VERSION_TAGS[version]) :])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"leaf body is not JSON: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != len(names):
        raise ValueError(f"leaf body must be a JSON array of {len(names)} values")
    values = dict(zip(names, fields, strict=True))
    recorded_at, digest = values["recorded_at"], values["payload_digest"]
    if not isinstance(recorded_at, str) or not recorded_at.endswith("Z"):
        raise ValueError("recorded_at must be an RFC 3339 UTC string ending in Z")
    if not isinstance(digest, str):
        raise ValueError("payload_digest must be a hex string")
    try:
        values["recorded_at"] = datetime.fromisoformat(recorded_at[:-1]).replace(tzinfo=UTC)
        values["payload_digest"] = bytes.fromhex(digest)
        if version == 2:
            values["attributes"] = _decode_attributes(values["attributes"])
            original = values["original_digest"]
            if original is not None:
                if not isinstance(original, str):
                    raise TypeError("original_digest must be a hex string or null")
                values["original_digest"] = bytes.fromhex(original)
        entry = AuditEntry(**values, leaf_version=version)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid leaf field: {exc}") from exc
    if encode_leaf(entry) != leaf:
        raise ValueError("leaf is not in canonical form")
    return entry
