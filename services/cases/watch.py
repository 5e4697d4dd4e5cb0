"""Reading an agency's updates feed: `casebridge watch --agency <id>` and the demo's summary.

A caseworker's tool subscribes to `casebridge.updates.<agency>`; what arrives there is only
what that agency may see (withheld fields are absent and named in `withheld`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from schemas.topics import updates_topic
from services.runtime.credentials import kafka_client
from services.runtime.kafka import header_map
from services.runtime.settings import Settings


@dataclass(frozen=True)
class FeedItem:
    event_type: str
    case_id: str
    body: dict[str, Any]
    raw: bytes

    def line(self) -> str:
        b = self.body
        kind = self.event_type.removeprefix("org.casebridge.cases.").removesuffix(".v1")
        parts = [f"{kind:<27}", f"case {self.case_id:<16}"]
        for key in ("version", "state", "role", "reason", "rule_id", "owner"):
            if key in b:
                parts.append(f"{key}={b[key]}")
        if "change" in b:
            parts.append(f"change={b['change'].removeprefix('org.casebridge.case.')}")
        withheld = b.get("withheld") or []
        if withheld:
            shown = [f for f in ("person", "trafficking_status", "state") if f in withheld]
            parts.append(f"withheld {len(withheld)} fields (incl. {', '.join(shown) or '-'})")
        return "  ".join(parts)


def _item(record: Any) -> FeedItem:
    headers = header_map(record)
    return FeedItem(
        event_type=headers.get("ce_type", b"").decode(),
        case_id=headers.get("ce_subject", b"").decode(),
        body=orjson.loads(record.value),
        raw=record.value,
    )


async def read_feed(settings: Settings, agency: str, *, idle_s: float = 1.0) -> list[FeedItem]:
    """Everything on an agency's updates topic so far, in order per case, read as that agency
    (its own credentials: the broker lets it read its own topics and no others)."""
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + updates_topic(agency),
        **kafka_client(settings, agency).aiokafka(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    feed: list[FeedItem] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=5000)
            if not batch:
                return feed
            for records in batch.values():
                feed.extend(_item(r) for r in records)
    finally:
        await consumer.stop()


async def read_feeds(
    settings: Settings, agencies: Iterable[str], *, idle_s: float = 1.0
) -> dict[str, list[FeedItem]]:
    """Each agency's feed (see `read_feed`), read concurrently."""
    wanted = list(agencies)
    feeds = await asyncio.gather(*(read_feed(settings, a, idle_s=idle_s) for a in wanted))
    return dict(zip(wanted, feeds, strict=True))


async def watch(settings: Settings, agency: str, *, from_beginning: bool) -> None:
    """Print an agency's live feed, one line per update, until interrupted. Connects as the
    agency (its client file under the run directory): it can see its own feed only."""
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + updates_topic(agency),
        **kafka_client(settings, agency).aiokafka(),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        async for record in consumer:
            print(_item(record).line(), flush=True)
    except asyncio.CancelledError:
        pass
    finally:
        await consumer.stop()
