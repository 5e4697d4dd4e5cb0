"""Which failures waiting can heal: the line between pausing a partition and moving past a record.

A consumer that fails on infrastructure (the database or the broker unreachable, slow, or
refusing this principal) must stop and retry the same records: moving on would lose them, and
every later record would fail the same way. Anything else raised while processing a record says
something about that record (or about a bug it triggers); retrying it forever would stall its
partition, so the batch runner (`services.runtime.kafka.handle_batch`) retries it a few times
and then dead-letters it.
"""

from __future__ import annotations

import asyncpg
from aiokafka import errors as kafka_errors

_DATABASE: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,  # the connection is closed or broken on the client's side
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InvalidAuthorizationSpecificationError,  # class 28: the role cannot log in
    asyncpg.InsufficientPrivilegeError,  # a grant is missing: an operator fixes it, not a record
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.InsufficientResourcesError,  # class 53: disk full, too many connections
    asyncpg.OperatorInterventionError,  # class 57: shutdown, cannot connect now, timeouts
    asyncpg.LockNotAvailableError,  # lock_timeout
    asyncpg.PostgresSystemError,  # class 58: I/O error
)

_RECORD_SIZED_KAFKA_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTimestampError,
    kafka_errors.CorruptRecordException,
)
"""Broker and producer errors about one record CaseBridge tried to publish, not about the
broker: they recur whatever the wait, so they count as that record's failure."""


def is_infrastructure(error: BaseException) -> bool:
    """True when `error`, or an exception it was raised from or while handling (unless raised
    `from None`), is one that a pause and a retry can heal: connection errors, timeouts, the
    database or the broker refusing this principal."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _heals_with_time(current):
            return True
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return False


def _heals_with_time(error: BaseException) -> bool:
    if isinstance(error, kafka_errors.KafkaError):
        return not isinstance(error, _RECORD_SIZED_KAFKA_ERRORS)
    return isinstance(error, (OSError, *_DATABASE))
