"""Every PostgreSQL table as a SQLModel model: one declaration the migrations are checked against.

The migrations (infra/migrations) create the tables, with what SQLModel cannot say: monthly
partitions, append-only triggers, grants. These models are the typed description of the same
tables, used by Alembic's autogenerate (`target_metadata`) and by a test that fails when a
migration and a model disagree. Hot paths write with asyncpg directly (COPY, unnest).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, SmallInteger, Text
from sqlalchemy.dialects.postgresql import ARRAY, INT8RANGE, JSONB, TIMESTAMP
from sqlmodel import Field, SQLModel

_TZ = TIMESTAMP(timezone=True)


def _col(type_: Any, *, pk: bool = False, nullable: bool = False) -> Any:
    return Field(sa_column=Column(type_, primary_key=pk, nullable=nullable and not pk))


class IntakeSeenEvent(SQLModel, table=True):
    """Intake's first sighting of each (source, id): where the first record sat."""

    __tablename__ = "intake_seen_event"
    source: str = _col(Text, pk=True)
    event_id: str = _col(Text, pk=True)
    kafka_topic: str = _col(Text)
    kafka_partition: int = _col(Integer)
    kafka_offset: int = _col(BigInteger)
    first_seen_at: datetime = _col(_TZ)


class AuditLogRow(SQLModel, table=True):
    """One audit record (partitioned by month on recorded_at; append-only)."""

    __tablename__ = "audit_log"
    seq: int = _col(BigInteger, pk=True)
    recorded_at: datetime = _col(_TZ, pk=True)
    event_id: str = _col(Text)
    event_source: str = _col(Text)
    event_type: str = _col(Text)
    subject: str | None = _col(Text, nullable=True)
    agency: str | None = _col(Text, nullable=True)
    outcome: str = _col(Text)
    reason_code: str | None = _col(Text, nullable=True)
    kafka_topic: str = _col(Text)
    kafka_partition: int = _col(Integer)
    kafka_offset: int = _col(BigInteger)
    attributes: dict[str, Any] = _col(JSONB)
    payload_digest: bytes = _col(LargeBinary)
    leaf_hash: bytes = _col(LargeBinary)
    sealed_value: bytes | None = _col(LargeBinary, nullable=True)
    """The value sealed under the data key of the person it is about; never plaintext."""
    data_key_id: int | None = _col(BigInteger, nullable=True)
    original_bytes: bytes | None = _col(LargeBinary, nullable=True)
    """The key and audited headers exactly as received, when the text columns could not hold
    them exactly (NUL, not UTF-8, too long, repeated); NULL when they are exact."""
    leaf_version: int = _col(SmallInteger)
    """The format of the row's Merkle leaf (docs/audit-leaf-format.md): 1 or 2."""


class AuditSeqRange(SQLModel, table=True):
    """The seqs each insert into `audit_log` used; no two overlap (an exclusion constraint,
    filled by a trigger: migration 0016), so a seq cannot be used twice."""

    __tablename__ = "audit_seq_range"
    seqs: Any = _col(INT8RANGE, pk=True)
    """No two rows overlap, so no two are equal: a key for the ORM (the table has none)."""


class AuditHead(SQLModel, table=True):
    __tablename__ = "audit_head"
    id: int = _col(SmallInteger, pk=True)
    next_seq: int = _col(BigInteger)


class AuditConsumerOffset(SQLModel, table=True):
    __tablename__ = "audit_consumer_offset"
    consumer: str = _col(Text, pk=True)
    kafka_topic: str = _col(Text, pk=True)
    kafka_partition: int = _col(Integer, pk=True)
    next_offset: int = _col(BigInteger)


class AuditEmitted(SQLModel, table=True):
    """Records already logged on a topic only CaseBridge's services write, by the digest of
    their every byte: a later identical record there is a re-published copy."""

    __tablename__ = "audit_emitted"
    kafka_topic: str = _col(Text, pk=True)
    record_digest: bytes = _col(LargeBinary, pk=True)


class AuditTreeHead(SQLModel, table=True):
    __tablename__ = "audit_tree_head"
    tree_size: int = _col(BigInteger, pk=True)
    root_hash: bytes = _col(LargeBinary)
    timestamp_ms: int = _col(BigInteger)
    signature: bytes = _col(LargeBinary)
    key_id: str = _col(Text)
    created_at: datetime = _col(_TZ)


class CaseEventRow(SQLModel, table=True):
    """The case event log: the truth a case's state is folded from."""

    __tablename__ = "case_event"
    case_id: str = _col(Text, pk=True)
    version: int = _col(Integer, pk=True)
    event_type: str = _col(Text)
    event: dict[str, Any] = _col(JSONB)
    recorded_at: datetime = _col(_TZ)
    data_key_id: int | None = _col(BigInteger, nullable=True)
    """The case's data key, which seals the person in an opening event (NULL: nothing sealed)."""


class CaseStateRow(SQLModel, table=True):
    __tablename__ = "case_state"
    case_id: str = _col(Text, pk=True)
    kind: str = _col(Text)
    state: str = _col(Text)
    version: int = _col(Integer)
    owner: str = _col(Text)
    person_key: str | None = _col(Text, nullable=True)
    snapshot: dict[str, Any] = _col(JSONB)
    updated_at: datetime = _col(_TZ)
    data_key_id: int | None = _col(BigInteger, nullable=True)
    """The case's data key, which seals `person` and `person_key` in the snapshot."""
    agencies: list[str] = _col(ARRAY(Text))
    """Who may read the case: row-level security's key (migration 0015)."""


class CaseMessageSeen(SQLModel, table=True):
    __tablename__ = "case_message_seen"
    source: str = _col(Text, pk=True)
    event_id: str = _col(Text, pk=True)


class CaseDeadlineRow(SQLModel, table=True):
    __tablename__ = "case_deadline"
    deadline_id: str = _col(Text, pk=True)
    case_id: str = _col(Text)
    due_at: datetime = _col(_TZ)
    deadline: dict[str, Any] = _col(JSONB)
    raised_at: datetime | None = _col(_TZ, nullable=True)


class CaseOutboxRow(SQLModel, table=True):
    __tablename__ = "case_outbox"
    id: int = _col(BigInteger, pk=True)
    topic: str = _col(Text)
    key: bytes | None = _col(LargeBinary, nullable=True)
    headers: dict[str, Any] = _col(JSONB)
    value: bytes = _col(LargeBinary)
    created_at: datetime = _col(_TZ)
    data_key_id: int | None = _col(BigInteger, nullable=True)
    """The key `value` is sealed with (NULL: a record about no one). Rows are deleted once
    published."""


class DataKeyRow(SQLModel, table=True):
    """A subject's data key, wrapped by the KEK; NULL once erased (crypto-shredding)."""

    __tablename__ = "data_key"
    key_id: int = _col(BigInteger, pk=True)
    subject: str = _col(Text)
    wrapped_key: bytes | None = _col(LargeBinary, nullable=True)
    kek_id: str = _col(Text)
    created_at: datetime = _col(_TZ)
    erased_at: datetime | None = _col(_TZ, nullable=True)
    erasure_reason: str | None = _col(Text, nullable=True)
    erased_by: str | None = _col(Text, nullable=True)


METADATA = SQLModel.metadata
