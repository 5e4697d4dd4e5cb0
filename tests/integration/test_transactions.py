"""Intake and the router publish in Kafka transactions that carry the offsets they consumed.

The window these close: a process killed after the broker has its output and before its
offsets are committed used to publish that output again when it restarted (at least once;
`make chaos` caught one dead letter sent twice). Each test runs on the real, secured broker
and reads the topics as a `read_committed` reader does (every CaseBridge consumer), with a
`read_uncommitted` reader as the control that shows what the crash left on the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import TransactionalIdAuthorizationFailed

from schemas.topics import EVENTS_VALID
from services.runtime.credentials import kafka_client, service_principal
from services.runtime.kafka import MAX_RECORD_BYTES, KafkaPublisher, Outgoing, consumer_group
from services.runtime.settings import REPO_ROOT, Settings
from tests.support.pipeline import adult_referral, publish, read_topic
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka]

INTAKE = "intake"

_HALF_DONE = """
import asyncio, sys
from aiokafka import AIOKafkaProducer
from services.runtime.credentials import KafkaClientConfig

async def main() -> None:
    client = KafkaClientConfig.load(__import__("pathlib").Path(sys.argv[1]), bootstrap=sys.argv[2])
    producer = AIOKafkaProducer(**client.aiokafka(), transactional_id=sys.argv[3])
    await producer.start()
    await producer.begin_transaction()
    for i in range(int(sys.argv[5])):
        await producer.send_and_wait(sys.argv[4], b"{}", headers=[("ce_id", f"out-{i}".encode())])
    print("sent", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""
"""A transactional producer that publishes and is then killed before it commits."""


async def _inputs(settings: Settings, n: int) -> list[ConsumerRecord[Any, Any]]:
    """`n` records on an agency's inbound topic, as intake's consumer group fetches them."""
    run = uuid.uuid4().hex[:8]
    referrals = [adult_referral(f"CR-{run}-{i}", f"{run}-{i}", system="txn") for i in range(n)]
    await publish(settings, referrals)
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + referrals[0].topic,
        **kafka_client(settings, service_principal(INTAKE)).aiokafka(),
        group_id=consumer_group(settings, INTAKE),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        fetched: list[ConsumerRecord[Any, Any]] = []
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                fetched.extend(records)
            if len(fetched) >= n:
                return fetched
        raise AssertionError(f"fetched {len(fetched)} of {n} inputs")
    finally:
        await consumer.stop()


async def _committed(settings: Settings, records: Sequence[ConsumerRecord[Any, Any]]) -> int:
    """Intake's group's committed offset on the inputs' partition (-1: none)."""
    tp = TopicPartition(records[0].topic, records[0].partition)
    consumer = AIOKafkaConsumer(
        **kafka_client(settings, service_principal(INTAKE)).aiokafka(),
        group_id=consumer_group(settings, INTAKE),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return await consumer.committed(tp) or -1
    finally:
        await consumer.stop()


def _ids(records: Sequence[ConsumerRecord[Any, Any]]) -> Counter[str]:
    return Counter(dict(r.headers).get("ce_id", b"").decode() for r in records if dict(r.headers))


def _outputs(n: int) -> list[Outgoing]:
    return [Outgoing(EVENTS_VALID.name, b"{}", headers={"ce_id": f"out-{i}"}) for i in range(n)]


@pytest.fixture
async def deployment(stack: Stack) -> Settings:
    ns = f"t{uuid.uuid4().hex[:10]}."
    return stack.deployment(topic_prefix=ns, group_prefix=ns + "cb", instance="intake-1")


async def test_a_publisher_killed_before_its_commit_publishes_nothing_twice(
    deployment: Settings,
) -> None:
    settings = deployment
    inputs = await _inputs(settings, 5)
    publisher = KafkaPublisher(
        settings,
        kafka_client(settings, service_principal(INTAKE)),
        group_id=consumer_group(settings, INTAKE),
    )
    assert publisher.transactional_id is not None
    # The first instance publishes the batch's output and is killed before committing.
    client_file = settings.secrets_dir / "kafka" / f"{service_principal(INTAKE)}.properties"
    half_done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HALF_DONE,
        str(client_file),
        settings.kafka_bootstrap,
        publisher.transactional_id,
        settings.topic_prefix + EVENTS_VALID.name,
        "5",
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert half_done.stdout is not None
        line = await asyncio.wait_for(half_done.stdout.readline(), 60)
        assert line.strip() == b"sent"
    finally:
        half_done.send_signal(signal.SIGKILL)
        await half_done.wait()
    # Its restart (same instance name) settles what the dead one left open, and does the
    # batch again: the output once, with the offsets.
    await publisher.start()
    try:
        await asyncio.wait_for(publisher.publish_all(_outputs(5), consumed=inputs), 30)
    finally:
        await publisher.stop()

    everything = await read_topic(settings, EVENTS_VALID.name, committed_only=False)
    assert _ids(everything) == Counter({f"out-{i}": 2 for i in range(5)}), (
        "control: the killed instance's output is on the log"
    )
    committed = await read_topic(settings, EVENTS_VALID.name)
    assert _ids(committed) == Counter({f"out-{i}": 1 for i in range(5)})
    assert await _committed(settings, inputs) == inputs[-1].offset + 1


async def test_a_failed_transaction_leaves_neither_records_nor_offsets(
    deployment: Settings,
) -> None:
    settings = deployment
    inputs = await _inputs(settings, 3)
    publisher = KafkaPublisher(
        settings,
        kafka_client(settings, service_principal(INTAKE)),
        group_id=consumer_group(settings, INTAKE),
    )
    await publisher.start()
    try:
        too_big = Outgoing(EVENTS_VALID.name, b"x" * (MAX_RECORD_BYTES + 1))
        with pytest.raises(Exception, match=r"(?i)too large|size"):
            await publisher.publish_all([*_outputs(2), too_big], consumed=inputs[:2])
        assert await _committed(settings, inputs) == -1
        # The same producer goes on: the next transaction commits.
        await publisher.publish_all(_outputs(3), consumed=inputs)
    finally:
        await publisher.stop()
    assert _ids(await read_topic(settings, EVENTS_VALID.name)) == Counter(
        {f"out-{i}": 1 for i in range(3)}
    )
    assert await _committed(settings, inputs) == inputs[-1].offset + 1


async def test_only_intake_may_use_intakes_transactional_ids(deployment: Settings) -> None:
    settings = deployment
    transactional_id = f"{consumer_group(settings, INTAKE)}.someone"
    refused = AIOKafkaProducer(
        **kafka_client(settings, service_principal("router")).aiokafka(),
        transactional_id=transactional_id,
    )
    with pytest.raises(TransactionalIdAuthorizationFailed):
        await refused.start()
    await refused.stop()
    # Positive control: intake, the same id.
    allowed = AIOKafkaProducer(
        **kafka_client(settings, service_principal(INTAKE)).aiokafka(),
        transactional_id=transactional_id,
    )
    await allowed.start()
    await allowed.stop()
