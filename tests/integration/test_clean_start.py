"""Services started while set-up is still creating their topics log nothing at ERROR.

An operator reads an ERROR line as something to act on, so a healthy start must print none.
The services here start before their topics exist (credentials and ACLs are in place, as
when `casebridge agencies sync` and the services are started together) and the topics are
then created with no wait for their leaders: consumers that started first logged dozens of
aiokafka `NotLeaderForPartitionError` lines while the leaders came up. Every record that
reaches the root logger is captured, from structlog and the standard library alike; the
positive control is a real error (the broker refusing an agency a topic that is not its own)
captured by the same capture.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from confluent_kafka.admin import NewTopic

from schemas.topics import inbound_topic
from services.access.broker import CLUSTER_DEFAULT, admin_client, deployment_plan, sync
from services.bootstrap import SERVICES, build_app
from services.runtime.credentials import kafka_client
from services.runtime.settings import Settings
from tests.support.pipeline import Record, adult_referral, audit_rows, publish, wait_for
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class Capture(logging.Handler):
    """Every record the root logger passes on, whatever logged it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()[:300]}" for r in self.records if r.levelno >= logging.ERROR
        ]


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    yield handler
    logging.getLogger().removeHandler(handler)


def _referral(run: str) -> Record:
    return adult_referral(f"CS-{run}", f"{run}-1", system="clean-start")


def _create_topics_now(settings: Settings) -> None:
    """The deployment's topics, created in one request with no wait for their leaders."""
    admin = admin_client(settings)
    new = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=CLUSTER_DEFAULT)
        for t in deployment_plan(settings).topics
    ]
    for future in admin.create_topics(new).values():
        future.result(timeout=60)


async def _publish_to_another_agencys_topic(settings: Settings) -> None:
    """A real error: the broker refuses id-police-aht a topic only id-immigration may write."""
    producer = AIOKafkaProducer(**kafka_client(settings, "id-police-aht").aiokafka())
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(
                settings.topic_prefix + inbound_topic("id-immigration"), b"{}"
            )
    finally:
        await producer.stop()


async def test_services_started_on_fresh_topics_log_no_error(
    stack: Stack, namespace: str, capture: Capture
) -> None:
    settings = stack.settings(topic_prefix=namespace, group_prefix=namespace + "cb")
    plan = deployment_plan(settings)
    await asyncio.to_thread(sync, settings, replace(plan, topics=()))  # credentials, ACLs
    app = build_app(*SERVICES, settings=settings)  # configures logging: capture after it
    logging.getLogger().addHandler(capture)
    run = uuid.uuid4().hex[:8]
    starting = asyncio.create_task(app.start())
    try:
        await asyncio.sleep(1.0)  # the services are waiting for topics that do not exist
        assert not starting.done(), "the services waited for their topics"
        await asyncio.to_thread(_create_topics_now, settings)
        await asyncio.wait_for(starting, 60)
        await publish(settings, [_referral(run)])
        rows = await wait_for(
            lambda: audit_rows(settings, "event_id = $1", f"{run}-1"),
            lambda rows: {"received", "validated"} <= {r["outcome"] for r in rows},
            within_s=60,
        )
        assert {"received", "validated"} <= {r["outcome"] for r in rows}, "the services work"
        assert not capture.errors(), capture.errors()
        assert any(r.name.startswith("casebridge") for r in capture.records), "services captured"

        await _publish_to_another_agencys_topic(settings)
        assert any(
            line.startswith("aiokafka") and "not authorized" in line for line in capture.errors()
        ), capture.errors()
    finally:
        if not starting.done():
            starting.cancel()
        await app.stop()
