"""The broker itself refuses what a principal may not do: every refusal here is an
authentication or authorisation error from Kafka, not a check in CaseBridge's code, and each
has its positive control (the right party, the same call, succeeds).

The threat model's rows for an outsider on the network and a curious agency with valid
credentials (../shared/reference/security.md)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from schemas.topics import (
    AUDIT_QUERIES,
    AUDIT_TREE_HEADS,
    CASE_EVENTS,
    DEADLETTER,
    EVENTS_VALID,
    ROUTING_DECISIONS,
    inbound_topic,
    inbox_topic,
    rejections_topic,
    updates_topic,
)
from services.access.plan import group_prefix_of
from services.runtime.credentials import (
    KafkaClientConfig,
    kafka_client,
    kafka_client_file,
    service_principal,
)
from services.runtime.settings import Settings
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka]

A, B = "id-police-aht", "id-shelter-ngo"


@pytest.fixture(scope="module")
async def deployment(stack: Stack) -> AsyncIterator[Settings]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    settings = stack.deployment(topic_prefix=ns, group_prefix=ns + "cb")
    # Something on every per-agency topic, so a permitted read has a record to return.
    for agency in (A, B):
        await _produce(settings, service_principal("router"), inbox_topic(agency))
        await _produce(settings, service_principal("cases"), updates_topic(agency))
        await _produce(settings, service_principal("intake"), rejections_topic(agency))
    return settings


def _host_port(settings: Settings) -> tuple[str, int]:
    host, port = settings.kafka_bootstrap.rsplit(":", 1)
    return host, int(port)


async def _produce(settings: Settings, principal: str, topic: str) -> None:
    producer = AIOKafkaProducer(
        **kafka_client(settings, principal).aiokafka(), enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_prefix + topic, b"{}", key=b"K-1")
    finally:
        await producer.stop()


async def _read(
    settings: Settings, principal: str, topic: str, *, group: str | None = None
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + topic,
        **kafka_client(settings, principal).aiokafka(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
        out: list[Any] = []
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
            if out:
                break
        return out
    finally:
        await consumer.stop()


# --- an outsider on the network ----------------------------------------------------------------


async def test_a_client_without_tls_and_sasl_is_refused(deployment: Settings) -> None:
    host, port = _host_port(deployment)
    producer = AIOKafkaProducer(bootstrap_servers=f"{host}:{port}", request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()  # the SASL_SSL listener drops a plaintext client
    await producer.stop()
    client = kafka_client(deployment, A)
    tls_only = AIOKafkaProducer(
        bootstrap_servers=f"{host}:{port}",
        security_protocol="SSL",
        ssl_context=client.ssl_context(),
        request_timeout_ms=5000,
    )
    with pytest.raises(KafkaConnectionError):
        await tls_only.start()  # TLS alone is not enough: the listener wants SASL
    await tls_only.stop()
    # Positive control: the same address with the agency's credentials.
    await _produce(deployment, A, inbound_topic(A))


async def test_a_wrong_password_is_refused_by_the_broker(deployment: Settings) -> None:
    host, port = _host_port(deployment)
    right = kafka_client(deployment, A)

    async def connect(password: str) -> None:
        conn = await create_conn(
            host,
            port,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=right.username,
            sasl_plain_password=password,
            ssl_context=right.ssl_context(),
        )
        conn.close()

    with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
        await connect(right.password + "x")
    await connect(right.password)  # positive control


async def test_a_certificate_from_another_ca_is_not_trusted(deployment: Settings) -> None:
    """The client side of TLS: a client that trusts only the system CAs refuses the broker
    (nobody can slip a broker of their own between an agency and CaseBridge unnoticed)."""
    client = kafka_client(deployment, A)
    host, port = _host_port(deployment)
    with pytest.raises(ssl.SSLCertVerificationError):
        await _connect(host, port, client, ssl.create_default_context())
    await _connect(host, port, client, client.ssl_context())  # positive control


async def _connect(
    host: str, port: int, client: KafkaClientConfig, context: ssl.SSLContext
) -> None:
    conn = await create_conn(
        host,
        port,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=client.username,
        sasl_plain_password=client.password,
        ssl_context=context,
    )
    conn.close()


# --- a curious agency with valid credentials ---------------------------------------------------


async def test_an_agency_cannot_publish_to_another_agencys_topic(deployment: Settings) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(deployment, A, inbound_topic(B))
    await _produce(deployment, A, inbound_topic(A))  # positive control


@pytest.mark.parametrize(
    "topic",
    [
        EVENTS_VALID.name,
        ROUTING_DECISIONS.name,
        CASE_EVENTS.name,
        DEADLETTER.name,
        AUDIT_QUERIES.name,
        AUDIT_TREE_HEADS.name,
        inbox_topic(A),
        updates_topic(A),
        rejections_topic(A),
    ],
)
async def test_an_agency_cannot_write_internal_or_outgoing_topics(
    deployment: Settings, topic: str
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(deployment, A, topic)


async def test_the_services_write_where_agencies_may_not(deployment: Settings) -> None:
    """Positive control of the test above: the owning services' principals can."""
    await _produce(deployment, service_principal("intake"), EVENTS_VALID.name)
    await _produce(deployment, service_principal("router"), ROUTING_DECISIONS.name)
    await _produce(deployment, service_principal("cases"), CASE_EVENTS.name)
    await _produce(deployment, service_principal("signer"), AUDIT_TREE_HEADS.name)
    await _produce(deployment, service_principal("audit-api"), AUDIT_QUERIES.name)


@pytest.mark.parametrize("topic_of", [inbox_topic, updates_topic, rejections_topic])
async def test_an_agency_reads_its_own_topics_and_not_another_agencys(
    deployment: Settings, topic_of: Any
) -> None:
    assert await _read(deployment, A, topic_of(A)), "positive control: its own topic"
    with pytest.raises(TopicAuthorizationFailedError):
        await _read(deployment, A, topic_of(B))


@pytest.mark.parametrize("topic", [DEADLETTER.name, EVENTS_VALID.name, CASE_EVENTS.name])
async def test_an_agency_cannot_read_the_full_streams(deployment: Settings, topic: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await _read(deployment, A, topic)


async def test_operators_read_the_full_dead_letter_stream(deployment: Settings) -> None:
    """Positive control of the test above: the operator principal may."""
    await _produce(deployment, service_principal("intake"), DEADLETTER.name)
    assert await _read(deployment, "casebridge-operator", DEADLETTER.name)


async def test_an_agency_uses_only_its_own_consumer_groups(deployment: Settings) -> None:
    prefix = deployment.topic_prefix
    own = group_prefix_of(A, prefix) + "casework"
    assert await _read(deployment, A, inbox_topic(A), group=own), "positive control"
    for group in (group_prefix_of(B, prefix) + "casework", f"{deployment.group_prefix}.router"):
        with pytest.raises(GroupAuthorizationFailedError):
            await _read(deployment, A, inbox_topic(A), group=group)


async def test_a_revoked_agency_is_refused_and_a_rotated_password_replaces_the_old(
    stack: Stack,
) -> None:
    """Agency lifecycle on the broker: rotate, then revoke, a throwaway agency."""
    from services.access import broker

    ns = f"t{uuid.uuid4().hex[:10]}."
    agency = f"zz-test-{uuid.uuid4().hex[:6]}"
    settings = stack.settings(topic_prefix=ns, group_prefix=ns + "cb")
    stack.deploy(settings, agencies=[agency])
    client_file = kafka_client_file(settings, agency)
    assert client_file.stat().st_mode & 0o777 == 0o600, "only its owner may read a client file"
    assert client_file.parent.stat().st_mode & 0o777 == 0o700
    await _produce(settings, agency, inbound_topic(agency))
    old = kafka_client(settings, agency)

    await asyncio.to_thread(broker.rotate, settings, agency)
    new = kafka_client(settings, agency)
    assert new.password != old.password
    host, port = _host_port(settings)
    with pytest.raises(SaslAuthenticationFailed):
        await _sasl_connect(host, port, old)
    for attempt in range(50):  # the new password works, once the broker has it
        try:
            await _produce(settings, agency, inbound_topic(agency))
            break
        except KafkaConnectionError:
            if attempt == 49:
                raise
            await asyncio.sleep(0.1)

    await asyncio.to_thread(broker.revoke, settings, agency)
    with pytest.raises(SaslAuthenticationFailed):
        await _sasl_connect(host, port, new)
    assert not client_file.exists()


async def _sasl_connect(host: str, port: int, client: KafkaClientConfig) -> None:
    """Connect until the broker refuses (a credential change reaches it through its metadata
    log); return quietly if it never does, so the caller's `raises` fails."""
    for _ in range(50):
        await _connect(host, port, client, client.ssl_context())
        await asyncio.sleep(0.1)
