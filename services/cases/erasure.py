"""Erasure requests on the wire, and `casebridge person erase`, the data-protection officer's
command.

The officer publishes a request on `casebridge.erasures` as the `casebridge-dpo` principal (the
only one that may write there); the cases service carries it out atomically with the case log
(services/cases/coordinator.py). The command then watches `data_key`, read-only as the auditor
role, until the keys of the cases concerned are destroyed, and reports which, and when.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas.envelope import JSON_CONTENT_TYPE, Envelope, decode_kafka_record, encode_binary
from schemas.errors import EventRejected, RejectionCode
from schemas.privacy import ERASURE_REQUESTED, ErasureRequested
from schemas.topics import ERASURES
from services.cases import store
from services.privacy.vault import case_subject
from services.runtime.credentials import AUDITOR_ROLE, DPO, database_url, kafka_client
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings

SOURCE = "urn:casebridge:dpo"
"""`ce_source` of erasure requests: the data-protection officer, not an agency."""


def erasure_record(request: ErasureRequested) -> tuple[list[tuple[str, bytes]], bytes]:
    """Kafka headers and value (CloudEvents binary mode; `ce_id` is the request id)."""
    envelope = Envelope(
        id=request.request_id,
        source=SOURCE,
        type=ERASURE_REQUESTED,
        time=request.requested_at,
        subject=request.case_id,
        datacontenttype=JSON_CONTENT_TYPE,
    )
    return encode_binary(envelope, request)


def parse_erasure_request(
    headers: Sequence[tuple[str, bytes | None]], value: bytes | None
) -> ErasureRequested:
    """The request a record carries; raises `EventRejected` (never with an input value)."""
    envelope, data = decode_kafka_record(headers, value)
    if envelope.type != ERASURE_REQUESTED:
        raise EventRejected(
            RejectionCode.UNKNOWN_TYPE, f"{ERASURES.name} carries {ERASURE_REQUESTED} only"
        )
    try:
        return ErasureRequested.model_validate(data)
    except ValidationError as exc:
        raise EventRejected.from_validation_error(exc, title=ERASURE_REQUESTED) from None


# --- the officer's command -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErasedKey:
    case_id: str
    key_id: int
    erased_at: dt.datetime


async def publish_request(settings: Settings, request: ErasureRequested) -> None:
    """As `casebridge-dpo`, idempotent and acknowledged by every replica."""
    producer = AIOKafkaProducer(
        **kafka_client(settings, DPO).aiokafka(), enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        headers, value = erasure_record(request)
        await producer.send_and_wait(settings.topic_prefix + ERASURES.name, value, headers=headers)
    finally:
        await producer.stop()


async def erased_keys(conn: Any, case_ids: Sequence[str]) -> dict[str, ErasedKey] | None:
    """The destroyed key of each case once none of them has a live one; None until then."""
    rows = await conn.fetch(
        "SELECT subject, key_id, erased_at FROM data_key WHERE subject = ANY($1::text[])"
        " ORDER BY key_id",
        [case_subject(c) for c in case_ids],
    )
    by_subject = {case_subject(c): c for c in case_ids}
    live = {r[0] for r in rows if r[2] is None}
    erased = {by_subject[r[0]]: ErasedKey(by_subject[r[0]], r[1], r[2]) for r in rows if r[2]}
    if live or set(erased) != set(case_ids):
        return None
    return erased


async def erase(
    settings: Settings,
    *,
    case_id: str | None,
    person_key: str | None,
    reason: str,
    requested_by: str,
    timeout_s: float,
    out: Callable[[str], None] = print,
) -> int:
    """Request the erasure and wait for it; 0 when done, 1 on timeout, 3 when nothing
    matched (2 is argparse's, for usage errors)."""
    try:
        request = ErasureRequested(
            request_id=str(uuid.uuid4()),
            case_id=case_id,
            person_key=person_key,
            reason=reason,
            requested_by=requested_by,
            requested_at=dt.datetime.now(dt.UTC),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc']}: {e['msg']}" for e in _details(exc))
        out(f"not a valid erasure request: {problems}")
        return 2
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        concerned = await store.cases_to_erase(conn, case_id=case_id, person_key=person_key)
        await publish_request(settings, request)
        out(f"erasure request {request.request_id} published")
        if not concerned:
            named = "case id" if case_id is not None else "person key"
            out(
                f"nothing matched: no referral or return case has that {named}; the cases "
                f"service dead-letters the request ({RejectionCode.NO_MATCHING_CASE})"
            )
            return 3
        deadline = time.monotonic() + timeout_s
        done = await erased_keys(conn, concerned)
        while done is None and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            done = await erased_keys(conn, concerned)
    finally:
        await conn.close()
    if done is None:
        out(
            f"timed out after {timeout_s:g} s: the data keys of {', '.join(concerned)} are not "
            "all erased yet (is the cases service running?); the request stays on the topic "
            "and is carried out when it is"
        )
        return 1
    for key in sorted(done.values(), key=lambda k: k.case_id):
        out(f"erased: case {key.case_id}, data key {key.key_id}, at {key.erased_at.isoformat()}")
    return 0


def _details(exc: ValidationError) -> list[dict[str, str]]:
    return EventRejected.from_validation_error(exc, title="erasure request").details
