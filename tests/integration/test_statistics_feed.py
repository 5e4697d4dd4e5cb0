"""The regional statistics feed on the real broker and database: `casebridge statistics
release --publish` publishes a release that the partner (the regional coordinator) reads, and
the broker refuses it to another agency, and refuses an agency writing there."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from schemas.envelope import decode_kafka_record
from schemas.statistics import STATISTICS_RELEASED, StatisticsCell, StatisticsRelease
from schemas.topics import STATISTICS_REGIONAL
from services.runtime.credentials import kafka_client
from services.runtime.settings import Settings
from services.statistics import feed
from services.statistics.cli import release_once
from services.statistics.release import CaseFacts, make_release
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka]

PARTNER = "regional-support-office"
"""The routing policy's regional coordinator: the access plan's statistics reader."""
OTHER = "id-police-aht"


@pytest.fixture
async def deployment(stack: Stack) -> AsyncIterator[Settings]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    database = await stack.create_database()  # no cases: the release is known in advance
    try:
        yield stack.deployment(database=database, topic_prefix=ns, group_prefix=ns + "cb")
    finally:
        await stack.drop_database(database)


async def _read(settings: Settings, principal: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + STATISTICS_REGIONAL.name,
        **kafka_client(settings, principal).aiokafka(),
        group_id=None,
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
            if len(out) >= 2:
                break
        return out
    finally:
        await consumer.stop()


def _releases(records: list[Any]) -> list[StatisticsRelease]:
    out = []
    for record in records:
        envelope, data = decode_kafka_record(record.headers, record.value)
        assert envelope.type == STATISTICS_RELEASED
        out.append(StatisticsRelease.model_validate(data))
    return out


async def test_the_partner_reads_the_release_and_another_agency_cannot(
    deployment: Settings, tmp_path: Path
) -> None:
    # The command, end to end: the auditor role reads no case, so an empty release.
    csv_path = tmp_path / "release.csv"
    line = await release_once(deployment, csv_path=csv_path, publish=True)
    assert "0 cases, 0 cells published" in line
    rows = list(csv.reader(csv_path.open(encoding="utf-8")))
    assert rows == [[*feed.DIMENSIONS, "count"]]
    assert [r.cells for r in feed.load_history(deployment)] == [[]]
    # A second release with counts, published as the statistics principal.
    population = [
        CaseFacts("TH", "2026-11", "referral", "ForcedLabour", "adult", "Feminine", "Active")
    ] * 12 + [
        CaseFacts("TH", "2026-11", "referral", "ForcedLabour", "adult", "Masculine", "Active")
    ] * 3
    counted = make_release(population)
    await feed.publish_release(deployment, feed.to_record(counted, "r-counted"))

    releases = _releases(await _read(deployment, PARTNER))  # positive control
    assert [r.release_id for r in releases][1:] == ["r-counted"]
    assert releases[0].cells == []
    assert releases[1].cells[0] == StatisticsCell(values=[], count=15)
    assert feed.from_record(releases[1]).cells == counted.cells
    assert all(c.count >= 11 for c in releases[1].cells)
    assert not any("Masculine" in c.values for c in releases[1].cells)

    with pytest.raises(TopicAuthorizationFailedError):
        await _read(deployment, OTHER)


async def test_an_agency_cannot_publish_statistics(deployment: Settings) -> None:
    producer = AIOKafkaProducer(**kafka_client(deployment, PARTNER).aiokafka(), acks="all")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(deployment.topic_prefix + STATISTICS_REGIONAL.name, b"{}")
    finally:
        await producer.stop()
    # Positive control: the statistics job's principal can.
    await feed.publish_release(deployment, feed.to_record(make_release([]), "r-empty"))
