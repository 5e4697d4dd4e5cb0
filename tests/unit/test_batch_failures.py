"""How the shared batch runner (`services.runtime.kafka.handle_batch`) treats each kind of
failure: infrastructure pauses the batch, a bad record is set aside at once, anything else is
retried a bounded number of times and then isolated to the one record that causes it. Plain
calls with in-memory records; FastStream's own parser is run on records it cannot decode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from aiokafka import errors as kafka_errors
from faststream.kafka import KafkaMessage
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser

from schemas.errors import EventRejected, RejectionCode
from services.runtime.failures import is_infrastructure
from services.runtime.kafka import _parse_without_headers, handle_batch

TOPIC = "casebridge.events.valid"


def record(offset: int, *, key: bytes = b"CASE-1", headers: Any = ()) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, key, b"{}", None, len(key), 2, tuple(headers))


def message(*records: ConsumerRecord[Any, Any]) -> KafkaMessage:
    @dataclass
    class Batch:
        raw_message: tuple[ConsumerRecord[Any, Any], ...]

    return cast(KafkaMessage, Batch(records))


@dataclass
class Service:
    """A `process` that fails on chosen offsets, and a quarantine that records what it got."""

    fail_on: dict[int, Exception] = field(default_factory=dict)
    fail_times: int = 1_000_000
    """How many calls fail before the failure goes away."""
    calls: list[list[int]] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    quarantined: list[tuple[int, RejectionCode]] = field(default_factory=list)
    quarantine_error: Exception | None = None

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        self.calls.append([r.offset for r in records])
        for r in records:
            error = self.fail_on.get(r.offset)
            if error is not None and len(self.calls) <= self.fail_times:
                raise error
            self.done.append(r.offset)

    async def quarantine(self, r: ConsumerRecord[Any, Any], error: EventRejected) -> None:
        if self.quarantine_error is not None:
            raise self.quarantine_error
        self.quarantined.append((r.offset, error.code))


async def run(service: Service, *records: ConsumerRecord[Any, Any], attempts: int = 3) -> None:
    await handle_batch(
        service.process,
        message(*records),
        service="test",
        pause_s=0.0,
        quarantine=service.quarantine,
        attempts=attempts,
    )


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        kafka_errors.KafkaConnectionError(),
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.TopicAuthorizationFailedError(),
    ],
    ids=type,
)
async def test_infrastructure_failure_pauses_the_batch_without_moving_on(
    error: Exception,
) -> None:
    service = Service(fail_on={1: error})
    with pytest.raises(type(error)):
        await run(service, record(0), record(1), record(2))
    assert service.calls == [[0, 1, 2]], "one attempt, then the batch is fetched again"
    assert service.quarantined == []


@pytest.mark.parametrize(
    ("error", "infrastructure"),
    [
        (ValueError("bug"), False),
        (KeyError("ce_id"), False),
        (asyncpg.CharacterNotInRepertoireError("invalid byte sequence"), False),
        (kafka_errors.MessageSizeTooLargeError(), False),
        (EventRejected(RejectionCode.NOT_JSON, "not JSON"), False),
        (OSError("no route to host"), True),
        (asyncpg.SerializationError("could not serialize access"), True),
        (asyncpg.InsufficientPrivilegeError("permission denied"), True),
        (kafka_errors.NotEnoughReplicasError(), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_failures_are_classified_by_whether_waiting_heals_them(
    error: Exception, infrastructure: bool
) -> None:
    assert is_infrastructure(error) is infrastructure


def wrapped(error: Exception, *, suppress_context: bool) -> RuntimeError:
    try:
        raise error
    except Exception as cause:
        outer = RuntimeError("while handling")
        outer.__context__ = cause
        outer.__suppress_context__ = suppress_context
        return outer


def test_a_failure_raised_while_handling_an_infrastructure_failure_is_one() -> None:
    assert is_infrastructure(wrapped(ConnectionResetError(), suppress_context=False))
    assert not is_infrastructure(wrapped(ConnectionResetError(), suppress_context=True))
    assert not is_infrastructure(wrapped(ValueError(), suppress_context=False))


async def test_a_record_that_keeps_failing_is_isolated_and_dead_lettered() -> None:
    service = Service(fail_on={2: ValueError("bug")})
    await run(service, record(0), record(1), record(2), record(3), attempts=3)
    assert service.calls[:3] == [[0, 1, 2, 3]] * 3, "the batch is tried `attempts` times"
    assert service.calls[3:] == [[0, 1], [2, 3], [2], [3]], "then halves, in order"
    assert service.quarantined == [(2, RejectionCode.PROCESSING_FAILED)]
    assert service.done[-3:] == [0, 1, 3], "the others have their effect, in order"


async def test_attempts_are_configurable() -> None:
    service = Service(fail_on={0: ValueError("bug")})
    await run(service, record(0), attempts=1)
    assert service.calls == [[0]]
    assert service.quarantined == [(0, RejectionCode.PROCESSING_FAILED)]


async def test_a_failure_that_goes_away_is_not_dead_lettered() -> None:
    service = Service(fail_on={1: ValueError("flaky")}, fail_times=2)
    await run(service, record(0), record(1), attempts=3)
    assert service.calls == [[0, 1]] * 3
    assert service.quarantined == []
    assert service.done[-2:] == [0, 1]


async def test_a_bad_record_raised_out_of_process_is_set_aside_with_its_reason_at_once() -> None:
    rejected = EventRejected(RejectionCode.UNKNOWN_TYPE, "unknown event type")
    service = Service(fail_on={1: rejected})
    await run(service, record(0), record(1), record(2), attempts=3)
    assert service.calls == [[0, 1, 2], [0], [1, 2], [1], [2]], (
        "a record that does not parse is not retried; halves find it"
    )
    assert service.quarantined == [(1, RejectionCode.UNKNOWN_TYPE)]


async def test_infrastructure_failure_while_isolating_retries_the_batch() -> None:
    service = Service(fail_on={0: ValueError("bug"), 1: ConnectionResetError()})
    with pytest.raises(ConnectionResetError):
        await run(service, record(0), record(1), attempts=2)
    assert service.calls == [[0, 1], [0, 1], [0], [1]]


async def test_without_a_quarantine_the_batch_is_retried_rather_than_skipped() -> None:
    service = Service(fail_on={0: ValueError("bug")})
    with pytest.raises(ValueError, match="bug"):
        await handle_batch(
            service.process, message(record(0)), service="test", pause_s=0.0, attempts=2
        )
    assert service.calls == [[0], [0]]


async def test_a_record_that_cannot_even_be_dead_lettered_is_left_behind() -> None:
    service = Service(
        fail_on={0: kafka_errors.MessageSizeTooLargeError()},
        quarantine_error=kafka_errors.MessageSizeTooLargeError(),
    )
    await run(service, record(0), record(1), attempts=1)
    assert service.done[-1:] == [1], "the partition moves on"


async def test_dead_lettering_that_fails_on_infrastructure_retries_the_batch() -> None:
    service = Service(fail_on={0: ValueError("bug")}, quarantine_error=ConnectionResetError())
    with pytest.raises(ConnectionResetError):
        await run(service, record(0), attempts=1)


async def test_faststream_parses_a_batch_whose_headers_are_not_text() -> None:
    """FastStream's parser decodes every header as UTF-8 (and reads `reply_to`); the records
    it is shown carry no headers, and the handler gets the untouched originals."""
    odd = [
        ("ce_id", b"\xff\xfe"),
        ("ce_type", None),
        ("reply_to", b"casebridge.deadletter"),
        ("n\x00ul", b"\x00"),
    ]
    records = (record(0, headers=odd), record(1, key=b"\xc3\x28"))
    parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
    parsed = await _parse_without_headers(records, parser.parse_batch)
    assert parsed.raw_message is records
    assert parsed.raw_message[0].headers == tuple(odd)
    assert parsed.reply_to == ""
    assert parsed.headers == {}


async def test_isolation_costs_a_few_calls_per_bad_record_not_one_per_record() -> None:
    """Two poison records in a batch of 64: found by halving (at most 2 log2(64) calls each),
    the other 62 each have their effect once the isolation is done, in order."""
    service = Service(fail_on={9: ValueError("bug"), 40: ValueError("bug")})
    await run(service, *(record(i) for i in range(64)), attempts=1)
    isolation = service.calls[1:]
    assert len(isolation) <= 2 * 2 * 6
    assert service.quarantined == [
        (9, RejectionCode.PROCESSING_FAILED),
        (40, RejectionCode.PROCESSING_FAILED),
    ]
    # Every record but the two had its effect in a call that succeeded, in offset order.
    succeeded = [c for c in isolation if 9 not in c and 40 not in c]
    assert [o for c in succeeded for o in c] == [i for i in range(64) if i not in (9, 40)]
