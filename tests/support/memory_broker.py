"""Publishing through FastStream's in-memory TestKafkaBroker, for handler unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from services.runtime.kafka import Outgoing


class BrokerPublisher:
    """A `Publisher` that hands records to a (test) broker, which delivers them inline."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def publish_all(
        self, records: Sequence[Outgoing], *, consumed: Sequence[ConsumerRecord[Any, Any]] = ()
    ) -> None:
        for r in records:
            await self.broker.publish(r.value, r.topic, key=r.key, headers=r.headers)
