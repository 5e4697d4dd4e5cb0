"""The signer against every place it exports heads to (its file, the table, the Kafka topic),
on the real broker and database: it refuses to sign when a place holds a head it did not
sign or another head for a size it signed, exports again a head a place lacks, and, run by
the audit service, a signer that dies turns the service unhealthy and stops its consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from schemas.topics import AUDIT_TREE_HEADS
from services.audit import signer as signer_module
from services.audit.config import AuditSettings
from services.audit.queries import all_tree_heads
from services.audit.signer import (
    KafkaTreeHeads,
    SigningRefusedError,
    TreeHeadSigner,
    signer_connections,
)
from services.audit.tree_head import (
    SignedTreeHead,
    generate_keypair,
    private_key_pem,
    sign_tree_head,
    sth_from_json,
)
from services.audit.verify_stored import read_tree_heads_file
from services.bootstrap import build
from services.runtime.credentials import kafka_client, service_principal
from services.runtime.database import Database, asyncpg_dsn
from services.runtime.settings import Settings
from tests.integration.audit.support import KEY, AuditDb, append, make_row
from tests.support.pipeline import read_topic, wait_for
from tests.support.stack import Stack

VERIFICATION_FAILURES = "casebridge_audit_verification_failures_total"

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

OTHER_KEY, _ = generate_keypair()


def heads_topic(settings: Settings) -> KafkaTreeHeads:
    """The topic as a new signer process sees it (reading from its start)."""
    client = kafka_client(settings, service_principal("signer"))
    return KafkaTreeHeads(client, topic_prefix=settings.topic_prefix)


class Deployment:
    """A deployment of the test's own (topics, ACLs) over the test's database, with the
    signer's database pool."""

    def __init__(self, settings: Settings, db: Database, export_dir: Path) -> None:
        self.settings = settings
        self.db = db
        self.export_dir = export_dir
        self._topics: list[KafkaTreeHeads] = []

    def signer(self, *, kafka: bool = True, **kwargs: Any) -> TreeHeadSigner:
        topic = None
        if kafka:
            topic = heads_topic(self.settings)
            self._topics.append(topic)
        return TreeHeadSigner(self.db.pool, KEY, export_dir=self.export_dir, topic=topic, **kwargs)

    async def in_kafka(self) -> list[SignedTreeHead]:
        records = await read_topic(self.settings, AUDIT_TREE_HEADS.name)
        return [sth_from_json(r.value) for r in records]

    async def close(self) -> None:
        for topic in self._topics:
            await topic.close()


@pytest.fixture
async def deployment(
    stack: Stack, audit_db: AuditDb, tmp_path: Path, namespace: str
) -> AsyncIterator[Deployment]:
    settings = stack.deployment(database=audit_db.name, topic_prefix=namespace)
    db, _ = signer_connections(settings)
    await db.start()
    d = Deployment(settings, db, tmp_path)
    try:
        yield d
    finally:
        await d.close()
        await db.close()


async def signed_at_12(d: Deployment, audit_db: AuditDb) -> SignedTreeHead:
    await append(audit_db, [make_row(s) for s in range(12)])
    signer = d.signer()
    await signer.start()
    await signer.poll()
    head = await signer.sign()
    assert signer.unpublished == 0
    return head


async def test_the_signer_refuses_when_kafka_holds_a_conflicting_head(
    deployment: Deployment, audit_db: AuditDb
) -> None:
    head = await signed_at_12(deployment, audit_db)
    await deployment.signer().start()  # positive control: every place agrees
    # Validly signed (the key was used elsewhere), same size, another time: only in Kafka.
    other = sign_tree_head(KEY, 12, head.root_hash, head.timestamp + 1)
    publisher = heads_topic(deployment.settings)
    try:
        await publisher.publish(other)
    finally:
        await publisher.close()
    with pytest.raises(SigningRefusedError) as refused:
        await deployment.signer().start()
    assert refused.value.place == "kafka"
    assert "another head of size 12" in refused.value.detail


async def test_the_signer_refuses_before_signing_when_kafka_gains_a_foreign_head(
    deployment: Deployment, audit_db: AuditDb
) -> None:
    await signed_at_12(deployment, audit_db)
    signer = deployment.signer(every_records=1)
    await signer.start()
    await append(audit_db, [make_row(12)])
    await signer.poll()
    foreign = sign_tree_head(OTHER_KEY, 5, bytes(32), 1)
    publisher = heads_topic(deployment.settings)
    try:
        await publisher.publish(foreign)
    finally:
        await publisher.close()
    with pytest.raises(SigningRefusedError) as refused:
        await signer.sign()
    assert refused.value.place == "kafka"
    assert "not signed by its key" in refused.value.detail
    sizes = [h.tree_size for h in await all_tree_heads(deployment.db.pool)]
    assert sizes == [12]  # nothing was signed over it


async def test_the_signer_refuses_a_head_in_the_table_not_signed_by_its_key(
    deployment: Deployment, audit_db: AuditDb
) -> None:
    await signed_at_12(deployment, audit_db)
    forged = sign_tree_head(OTHER_KEY, 11, bytes(32), 1)
    conn = await asyncpg.connect(asyncpg_dsn(audit_db.owner))
    try:
        await conn.execute(
            "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature, key_id)"
            " VALUES ($1, $2, $3, $4, $5)",
            forged.tree_size,
            forged.root_hash,
            forged.timestamp,
            forged.signature,
            forged.key_id,
        )
    finally:
        await conn.close()
    with pytest.raises(SigningRefusedError) as refused:
        await deployment.signer().start()
    assert refused.value.place == "table"
    # Running, it refuses the same way, and the refusal is counted for the alert.
    failures = {"check": "table"}
    before = REGISTRY.get_sample_value(VERIFICATION_FAILURES, failures) or 0.0
    with pytest.raises(SigningRefusedError):
        await deployment.signer().run(asyncio.Event(), poll_interval=0.1)
    assert REGISTRY.get_sample_value(VERIFICATION_FAILURES, failures) == before + 1


async def test_a_head_missing_from_a_place_is_exported_there_again(
    deployment: Deployment, audit_db: AuditDb
) -> None:
    """Signed while Kafka was not configured, and the file lost: a signer that starts with
    every place finds the head in the table and puts it back in the file and on the topic."""
    await append(audit_db, [make_row(s) for s in range(7)])
    offline = deployment.signer(kafka=False)
    await offline.start()
    await offline.poll()
    head = await offline.sign()
    assert await deployment.in_kafka() == []
    (deployment.export_dir / "tree-heads.jsonl").unlink()
    signer = deployment.signer()
    await signer.start()
    await signer.flush()
    assert read_tree_heads_file(deployment.export_dir / "tree-heads.jsonl") == [head]
    assert await deployment.in_kafka() == [head]
    assert signer.unpublished == 0


async def test_a_killed_signer_turns_the_audit_service_unhealthy_and_stops_its_consumer(
    stack: Stack,
    audit_db: AuditDb,
    tmp_path: Path,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def error(self, event: str, **fields: Any) -> None:
            errors.append((event, fields))

        def __getattr__(self, _: str) -> Any:
            return lambda *args, **kwargs: None

    monkeypatch.setattr(signer_module, "log", Log())
    settings = stack.deployment(
        database=audit_db.name, topic_prefix=namespace, group_prefix=namespace + "cb"
    )
    audit = AuditSettings(
        signing_key=SecretStr(private_key_pem(KEY)),
        export_dir=tmp_path,
        poll_interval_s=0.05,
        sth_every_seconds=0.1,
    )
    app, wiring = build("audit", settings=settings, audit=audit)
    await app.start()
    try:
        health = wiring.signer_health
        db = Database(audit_db.signer)
        await db.start()
        try:  # the signer runs: it signs the empty log
            sizes = await wait_for(lambda: all_tree_heads(db.pool), bool, within_s=20)
        finally:
            await db.close()
        assert [h.tree_size for h in sizes] == [0]
        assert (health.healthy, health.signing, health.problem) == (True, True, None)
        broker = wiring.services["audit"].broker
        assert all(s.running for s in broker.subscribers)
        (task,) = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "run_signer"]
        task.cancel()
        await wait_for(_now, lambda _: not health.healthy, within_s=5)
        assert health.problem == "the signer task was cancelled"
        assert errors[0][1] == {"problem": "the signer task was cancelled"}
        await wait_for(_now, lambda _: not any(s.running for s in broker.subscribers), within_s=10)
        assert not any(s.running for s in broker.subscribers)
    finally:
        await app.stop()


async def _now() -> None:
    return None
