"""Recording what console users do, in the audit log, before they get an answer.

Like the auditors' API, the console publishes each record to Kafka (acks=all) and the audit
consumer appends it: the console needs no write access to the log, and a read that cannot be
recorded is refused (503) rather than answered unrecorded.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from schemas.console import ACTIVITY_EVENT_TYPE, ACTIVITY_SOURCE, ConsoleActivity
from schemas.envelope import Envelope, encode_binary
from schemas.topics import CONSOLE_ACTIVITY
from services.runtime.kafka import KafkaPublisher, Outgoing


def activity_record(activity: ConsoleActivity) -> Outgoing:
    envelope = Envelope.new(
        source=ACTIVITY_SOURCE, event_type=ACTIVITY_EVENT_TYPE, subject=activity.case_id
    )
    headers, value = encode_binary(envelope, activity)
    return Outgoing(
        topic=CONSOLE_ACTIVITY.name,
        value=value,
        key=(activity.agency or "").encode() or None,
        headers={name: raw.decode() for name, raw in headers},
    )


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ActivityLog(Protocol):
    """Durably records one activity; raises if it cannot."""

    async def record(self, activity: ConsoleActivity) -> None: ...


class KafkaActivityLog:
    """Publishes as the console's own principal, which may write this one topic only."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self._publisher = publisher

    async def record(self, activity: ConsoleActivity) -> None:
        await self._publisher.publish_all([activity_record(activity)])


class MemoryActivityLog:
    """Keeps activities in a list: for unit tests of the pages and the API."""

    def __init__(self) -> None:
        self.activities: list[ConsoleActivity] = []

    async def record(self, activity: ConsoleActivity) -> None:
        self.activities.append(activity)
