"""Three Kafka brokers on one machine (`KAFKA_BROKERS=3 infra/stack.sh up`): one KRaft cluster,
secured like the single broker, that keeps every acknowledged write when a partition's leader
is SIGKILLed.

The same set-up as `casebridge agencies sync` gives every topic 3 replicas and
min.insync.replicas 2, so an acks=all producer is acknowledged only once two brokers have a
record; with one broker gone the other two still take writes. All three share one kernel: a host
crash can still lose writes not yet flushed to disk (this test kills a process, not the host).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from confluent_kafka.admin import AdminClient, ConfigResource

from schemas.topics import TopicSpec, inbound_topic, inbox_topic
from services.access import broker
from services.access.plan import AccessPlan, group_prefix_of
from services.runtime.credentials import (
    OPERATOR,
    KafkaClientConfig,
    kafka_client,
    service_principal,
)
from services.runtime.settings import Settings
from tests.support.stack import Stack, kafka_node_pid

T = TypeVar("T")

pytestmark = [pytest.mark.kafka]

AGENCY = "id-police-aht"


@pytest.fixture(scope="module")
def deployment(cluster: Stack) -> Settings:
    """Topics, credentials and ACLs of the registry's agencies, as `casebridge agencies sync`."""
    ns = f"t{uuid.uuid4().hex[:10]}."
    settings = cluster.settings(topic_prefix=ns, group_prefix=ns + "cb")
    broker.sync(settings, broker.deployment_plan(settings))
    return settings


def _admin(settings: Settings) -> AdminClient:
    return broker.admin_client(settings)


def _producer(client: KafkaClientConfig, **extra: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**client.aiokafka(), enable_idempotence=True, acks="all", **extra)


def test_every_topic_has_three_replicas_and_two_in_sync(deployment: Settings) -> None:
    admin = _admin(deployment)
    meta = admin.list_topics(timeout=30)
    assert sorted(meta.brokers) == [1, 2, 3]
    plan = broker.deployment_plan(deployment)
    assert len(plan.topics) > 10
    # The group coordinator's and transaction coordinator's topics too (the cluster's defaults).
    names = [t.name for t in plan.topics] + ["__consumer_offsets"]
    for name in names:
        partitions = meta.topics[name].partitions
        assert partitions, name
        for p in partitions.values():
            assert sorted(p.replicas) == [1, 2, 3], (name, p.id)
            assert sorted(p.isrs) == [1, 2, 3], (name, p.id)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    for resource, future in admin.describe_configs(resources).items():
        config = future.result(timeout=30)
        assert config["min.insync.replicas"].value == "2", resource.name
    for t in plan.topics:
        assert len(meta.topics[t.name].partitions) == t.partitions, t.name


async def _once_authorised(send: Callable[[], Awaitable[T]], *, within_s: float = 20.0) -> T:
    """`send()`, retried while the cluster still refuses it: an ACL just granted reaches the
    other brokers through the metadata log a moment later, so a fresh grant may be refused by
    a broker that has not seen it yet (a refusal tested below cannot come from that lag: no
    grant for it exists at all)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await send()
        except TopicAuthorizationFailedError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def test_an_agency_produces_and_consumes_and_no_credentials_are_refused(
    deployment: Settings,
) -> None:
    ns = deployment.topic_prefix
    agency = kafka_client(deployment, AGENCY)
    # Positive control: the agency writes its inbound topic on the cluster ...
    producer = _producer(agency)
    await producer.start()
    try:
        sent = await _once_authorised(
            lambda: producer.send_and_wait(ns + inbound_topic(AGENCY), b"{}", key=b"K-1")
        )
        assert sent.offset >= 0
        # ... but not its inbox (only the router may): the brokers' ACLs hold on every node.
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(ns + inbox_topic(AGENCY), b"{}")
    finally:
        await producer.stop()
    # ... and reads its inbox (written by the router) in a consumer group of its own, which
    # commits to the three-replica offsets topic.
    router = _producer(kafka_client(deployment, service_principal("router")))
    await router.start()
    try:
        await router.send_and_wait(ns + inbox_topic(AGENCY), b'{"n":1}', key=b"K-1")
    finally:
        await router.stop()
    consumer = AIOKafkaConsumer(
        ns + inbox_topic(AGENCY),
        **agency.aiokafka(),
        group_id=group_prefix_of(AGENCY, ns) + "reader",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got: list[Any] = []
        for _ in range(40):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
            if got:
                break
        assert [r.value for r in got] == [b'{"n":1}']
        await consumer.commit()
    finally:
        await consumer.stop()
    # Without credentials (plaintext, or TLS with a wrong password) no node lets a client in.
    for address in deployment.kafka_bootstrap.split(","):
        plain = AIOKafkaProducer(bootstrap_servers=address, request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await plain.start()
        await plain.stop()
    wrong = KafkaClientConfig(
        deployment.kafka_bootstrap, AGENCY, "not-the-password", agency.ca_file
    )
    impostor = AIOKafkaProducer(**wrong.aiokafka(), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await impostor.start()
    await impostor.stop()


def _leader(admin: AdminClient, topic: str, partition: int) -> tuple[int, list[int]]:
    p = admin.list_topics(topic, timeout=10).topics[topic].partitions[partition]
    return p.leader, sorted(p.isrs)


async def _send(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> list[int]:
    futures = [await producer.send(topic, v, key=v, partition=0) for v in values]
    return [m.offset for m in await asyncio.gather(*futures)]


async def _read_partition(
    settings: Settings, topic: str, until: int, *, within_s: float = 30.0
) -> list[Any]:
    """Partition 0 from the start, as the read-only operator, until offset `until` is read."""
    consumer = AIOKafkaConsumer(
        **kafka_client(settings, OPERATOR).aiokafka(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    tp = TopicPartition(topic, 0)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        out: list[Any] = []
        deadline = time.monotonic() + within_s
        while (not out or out[-1].offset < until) and time.monotonic() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def test_acknowledged_writes_survive_a_sigkilled_leader(
    cluster: Stack, deployment: Settings
) -> None:
    topic = deployment.topic_prefix + inbound_topic(AGENCY)
    admin = _admin(deployment)
    leader, isr = _leader(admin, topic, 0)
    assert leader in (1, 2, 3)
    assert isr == [1, 2, 3]
    run = uuid.uuid4().hex[:8]
    producer = _producer(kafka_client(deployment, AGENCY), linger_ms=5)
    await producer.start()
    try:
        before = [f"{run}-before-{i}".encode() for i in range(300)]
        offsets_before = await _send(producer, topic, before)

        os.kill(kafka_node_pid(cluster, leader), signal.SIGKILL)
        killed_at = time.monotonic()

        # The same producer keeps writing; acks=all with 2 of 3 replicas in sync still
        # acknowledges, once the controller has moved the partition to a surviving broker.
        after = [f"{run}-after-{i}".encode() for i in range(300)]
        offsets_after = await asyncio.wait_for(_send(producer, topic, after), timeout=60)
        failover_s = time.monotonic() - killed_at
    finally:
        await producer.stop()

    new_leader, new_isr = _leader(admin, topic, 0)
    assert new_leader not in (leader, -1)
    assert leader not in new_isr
    assert len(new_isr) == 2
    assert failover_s < 60, failover_s

    acknowledged = dict(zip(offsets_before + offsets_after, before + after, strict=True))
    assert len(acknowledged) == len(before) + len(after)  # no offset handed out twice
    records = await _read_partition(deployment, topic, max(acknowledged))
    read = {r.offset: r.value for r in records}
    assert {o: read.get(o) for o in acknowledged} == acknowledged
    # Idempotent producer: nothing written twice despite the retries across the failover.
    mine = [r.value for r in records if r.value.startswith(run.encode())]
    assert sorted(mine) == sorted(before + after)

    # Set-up on the degraded cluster still gives a new topic the cluster's 3 replicas: the
    # controller places one on the registered but fenced broker, which catches up once back.
    extra = TopicSpec(deployment.topic_prefix + "casebridge.extra", 1, "", "")
    broker.create_topics(admin, AccessPlan(topics=(extra,), principals=(), grants=()))
    p = admin.list_topics(extra.name, timeout=10).topics[extra.name].partitions[0]
    assert sorted(p.replicas) == [1, 2, 3]
    assert leader not in p.isrs
    assert p.leader not in (leader, -1)
