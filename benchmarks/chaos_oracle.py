"""The chaos run's oracle: what the system did, read from where it leaves its effects.

Nothing here trusts a delivery flag or a consumer's word. The audit log is read as the
read-only auditor (`AuditTracker`, incrementally by `seq`, which is gapless and committed in
order), the case tables as the auditor too, the agencies' inbox topics and the dead-letter
topic as the Kafka super user (every partition, from the start to the high watermark), and
intake's and the cases service's idempotency tables as the database owner (to prove that a
rejected record left no partial write).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from benchmarks.chaos_stream import Effect, Expected, Msg
from schemas.topics import CASE_EVENTS, DEADLETTER, INBOX_PREFIX, REJECTIONS_PREFIX, UPDATES_PREFIX
from services.runtime.credentials import ADMIN, AUDITOR_ROLE, OWNER_ROLE, database_url, kafka_client
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings

TRANSITION_REJECTED = "org.casebridge.cases.transition_rejected.v1"
_ROWS = """
SELECT seq, outcome, event_id, reason_code, agency, kafka_topic,
       attributes->>'ce_causationid', attributes->>'cb_original_id',
       attributes->>'ce_source', attributes->>'ce_type'
FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2
"""


def effect_of(row: asyncpg.Record, prefix: str) -> Effect | None:
    """The effect an audit row records, in `chaos_stream`'s terms (None: not one we check)."""
    _, outcome, event_id, reason, agency, topic, cause, original, source, ce_type = row
    topic = topic.removeprefix(prefix)
    if outcome in ("received", "validated"):
        return (outcome, event_id)
    if outcome == "routed":
        return ("routed", cause or "")
    if outcome == "delivered":
        return ("delivered", event_id, agency or "")
    if outcome == "rejected":
        service = (source or "").removeprefix("casebridge/")
        # `event_source` holds the original's source; the dead letter's own is in attributes.
        return ("dead-letter", event_id, reason or "", service)
    if outcome != "published":
        return None
    if topic.startswith(REJECTIONS_PREFIX):
        return ("rejection-copy", original or "")
    if topic == CASE_EVENTS.name and cause:
        return ("case-event", cause)
    if topic.startswith(UPDATES_PREFIX) and ce_type == TRANSITION_REJECTED and cause:
        return ("case-rejected", cause)
    return None


class AuditTracker:
    """Follows the audit log as the auditor; knows which events have all their audit effects.

    `order` is the main stream in publish order, so `done_through()` says how long a prefix of
    the stream is complete: recovery is measured as the time until the prefix published before
    a fault ended is complete. A record is complete when each effect it adds is in the log as
    many times as the records up to it add that effect (the second copy of an event needs two
    sightings, not the third copy's dead letter, which is published later).
    """

    def __init__(self, settings: Settings, expected: Expected, order: Sequence[Msg]) -> None:
        self._dsn = asyncpg_dsn(database_url(settings, AUDITOR_ROLE))
        self._prefix = settings.topic_prefix
        self._want = expected.audit
        self._ids = [m.event_id for m in order]
        self._needs: list[list[tuple[Effect, int]]] = []
        so_far: Counter[Effect] = Counter()
        for m in order:
            adds = expected.by_record.get(id(m), Counter())
            so_far.update(adds)
            self._needs.append([(e, so_far[e]) for e in adds])
        self._cursor = 0
        self._conn: asyncpg.Connection | None = None
        self.got: Counter[Effect] = Counter()
        self.last_seq = -1
        self.rows = 0
        self.changed_at = time.monotonic()
        self.errors = 0

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def poll(self, limit: int = 50_000) -> int:
        """Read rows appended since the last poll; how many. Survives the database going
        away (recipe 3): a failed poll reads nothing and reconnects next time."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._dsn, timeout=5)
            rows = await self._conn.fetch(_ROWS, self.last_seq, limit)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            self.errors += 1
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            return 0
        for row in rows:
            effect = effect_of(row, self._prefix)
            if effect is not None:
                self.got[effect] += 1
        if rows:
            self.last_seq = rows[-1][0]
            self.rows += len(rows)
            self.changed_at = time.monotonic()
        return len(rows)

    async def follow(self, every_s: float = 0.25) -> None:
        """Poll until cancelled."""
        while True:
            while await self.poll() >= 50_000:
                pass
            await asyncio.sleep(every_s)

    def done_through(self) -> int:
        """How many records of the main stream, from its start, have every audit effect."""
        needs, got = self._needs, self.got
        while self._cursor < len(needs) and all(got[e] >= n for e, n in needs[self._cursor]):
            self._cursor += 1
        return self._cursor

    def complete(self) -> bool:
        """Every expected audit effect is in the log (at least as often as expected)."""
        return self.done_through() == len(self._needs) and self.missing() == 0

    def missing(self) -> int:
        return sum(max(0, n - self.got[e]) for e, n in self._want.items())

    def missing_by_kind(self) -> dict[str, int]:
        """Expected audit effects not yet in the log, by kind (for progress lines)."""
        out: Counter[str] = Counter()
        for effect, n in self._want.items():
            if self.got[effect] < n:
                out[effect[0]] += n - self.got[effect]
        return dict(out)

    def stuck_on(self) -> str:
        """The first incomplete record of the stream and the effects it still lacks (ids,
        agencies and reasons only), for a timeout message."""
        at = self.done_through()
        if at >= len(self._needs):
            return "no record of the stream"
        lacking = [(e, n - self.got[e]) for e, n in self._needs[at] if self.got[e] < n]
        return f"record {at} ({self._ids[at]}) lacks {lacking}"

    def has(self, effects: Iterable[Effect]) -> bool:
        return all(self.got[e] > 0 for e in effects)


# --- Kafka: topics and consumer groups, as the super user -------------------------------------


def _consumer(settings: Settings) -> Consumer:
    config = kafka_client(settings, ADMIN).librdkafka()
    return Consumer(
        {
            **config,
            "group.id": f"chaos-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )


Headers = dict[str, bytes]


RawHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None


def _headers(raw: RawHeaders) -> Headers:
    pairs = raw.items() if isinstance(raw, dict) else raw or ()
    return {k: v if isinstance(v, bytes) else v.encode() for k, v in pairs if v is not None}


def read_headers(settings: Settings, topics: Sequence[str]) -> list[tuple[str, Headers]]:
    """(topic, headers) of every record on `topics` (full names), read as the super user from
    each partition's start to its high watermark at the time of reading. Values are skipped:
    the oracle counts ids, it never looks at a payload."""
    consumer = _consumer(settings)
    try:
        metadata = consumer.list_topics(timeout=30)
        assigned: list[TopicPartition] = []
        remaining: dict[tuple[str, int], int] = {}
        for topic in topics:
            info = metadata.topics.get(topic)
            if info is None:
                continue
            for p in info.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                if high > low:
                    assigned.append(TopicPartition(topic, p, low))
                    remaining[(topic, p)] = high
        consumer.assign(assigned)
        out: list[tuple[str, Headers]] = []
        idle_since = time.monotonic()
        while remaining:
            batch = consumer.consume(num_messages=10_000, timeout=1.0)
            if not batch and time.monotonic() - idle_since > 60:
                raise TimeoutError(f"reading {sorted(remaining)[:3]}... stalled")
            for m in batch:
                error = m.error()
                topic, partition = m.topic() or "", m.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.pop((topic, partition), None)
                        continue
                    raise RuntimeError(f"reading {topic}: {error}")
                idle_since = time.monotonic()
                offset = m.offset() or 0
                end = remaining.get((topic, partition))
                if end is None or offset >= end:
                    continue
                out.append((topic, _headers(m.headers())))
                if offset + 1 >= end:
                    remaining.pop((topic, partition), None)
        return out
    finally:
        consumer.close()


def headers_at(settings: Settings, positions: Sequence[tuple[str, int, int]]) -> list[Headers]:
    """The headers of the records at these (topic, partition, offset) positions."""
    if not positions:
        return []
    consumer = _consumer(settings)
    try:
        consumer.assign([TopicPartition(t, p, o) for t, p, o in positions])
        wanted = {(t, p): o for t, p, o in positions}
        out: list[Headers] = []
        deadline = time.monotonic() + 10
        while wanted and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=100, timeout=0.5):
                if m.error() is not None:
                    continue
                key = (m.topic() or "", m.partition() or 0)
                if wanted.get(key) == m.offset():
                    wanted.pop(key)
                    out.append(_headers(m.headers()))
        return out
    finally:
        consumer.close()


def partitions_of(admin: AdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    metadata = admin.list_topics(timeout=30)
    return [
        TopicPartition(t, p)
        for t in topics
        if t in metadata.topics
        for p in metadata.topics[t].partitions
    ]


def high_watermarks(
    admin: AdminClient, partitions: Sequence[TopicPartition]
) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    futures = admin.list_offsets(dict.fromkeys(partitions, latest))
    return {(tp.topic, tp.partition): f.result(timeout=30).offset for tp, f in futures.items()}


def committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets (none: an empty dict)."""
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(timeout=30)
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in (result.topic_partitions or ())
        if tp.offset >= 0
    }


def members_with_partitions(admin: AdminClient, group: str) -> int:
    """How many of the group's members hold at least one partition now."""
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return sum(1 for m in described.members if m.assignment and m.assignment.topic_partitions)


def lag(admin: AdminClient, group: str, partitions: Sequence[TopicPartition]) -> int:
    """Records on `partitions` the group has not committed past."""
    done = committed(admin, group)
    ends = high_watermarks(admin, partitions)
    return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())


# --- the verdict ---------------------------------------------------------------------------


@dataclass
class Tally:
    """Missing and extra effects in one place the oracle looks."""

    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    notes: list[str] = field(default_factory=list)

    def compare(self, want: Counter[tuple[str, ...]], got: Counter[tuple[str, ...]]) -> None:
        for key, n in want.items():
            have = got.get(key, 0)
            self.lost += max(0, n - have)
            self.duplicated += max(0, have - n)
        self.unexpected += sum(n for key, n in got.items() if key not in want)

    def describe(self, name: str) -> str | None:
        if not (self.lost or self.duplicated or self.unexpected or self.notes):
            return None
        parts = [f"lost {self.lost}", f"duplicated {self.duplicated}"]
        if self.unexpected:
            parts.append(f"unexpected {self.unexpected}")
        return f"{name}: " + ", ".join(parts) + "".join(f"; {n}" for n in self.notes)


@dataclass
class Verdict:
    audit: Tally = field(default_factory=Tally)
    cases: Tally = field(default_factory=Tally)
    inbox: Tally = field(default_factory=Tally)
    dead_letters: Tally = field(default_factory=Tally)
    case_events: Tally = field(default_factory=Tally)
    partial_writes: int = 0
    relay_copies: int = 0
    """Records the cases outbox relay published again under the same id (at least once: a
    relay that dies between publishing and deleting its rows sends them again). Not lost or
    duplicated effects (consumers drop a repeated id), so reported, not failed."""

    @property
    def parts(self) -> dict[str, Tally]:
        return {
            "audit log": self.audit,
            "case tables": self.cases,
            "inbox topics": self.inbox,
            "dead-letter topic": self.dead_letters,
            "case events topic": self.case_events,
        }

    @property
    def lost(self) -> int:
        return sum(t.lost for t in self.parts.values())

    @property
    def duplicated(self) -> int:
        return sum(t.duplicated for t in self.parts.values())

    @property
    def unexpected(self) -> int:
        return sum(t.unexpected for t in self.parts.values()) + self.partial_writes

    def lines(self) -> list[str]:
        out = [d for name, t in self.parts.items() if (d := t.describe(name)) is not None]
        if self.partial_writes:
            out.append(f"partial writes of rejected records: {self.partial_writes}")
        return out

    def remarks(self) -> list[str]:
        """What is worth saying but is no failure."""
        if not self.relay_copies:
            return []
        return [f"{self.relay_copies} case events published again under the same id (relay)"]


async def check_cases(settings: Settings, expected: Expected, tally: Tally) -> None:
    """One case per opening, one case event per accepted action, versions in publish order,
    and each case's final state and version what the serial replay says."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        states = {
            r[0]: (r[1], r[2], r[3])
            for r in await conn.fetch("SELECT case_id, kind, state, version FROM case_state")
        }
        got = {
            (r[0], r[1]): (r[2], r[3])
            for r in await conn.fetch(
                "SELECT case_id, version, event_type, coalesce(event->>'action_type', '')"
                " FROM case_event"
            )
        }
    finally:
        await conn.close()
    want = {
        (case_id, version): event
        for case_id, case in expected.cases.items()
        for version, event in enumerate(case.events, start=1)
    }
    misordered = 0
    for at, event in want.items():
        if at not in got:
            tally.lost += 1
        elif got[at] != event:
            misordered += 1
    for at in got.keys() - want.keys():
        # A version the replay does not have: an effect applied twice on a case we know, or
        # a case that should not exist at all.
        if at[0] in expected.cases:
            tally.duplicated += 1
        else:
            tally.unexpected += 1
    tally.lost += sum(1 for case_id in expected.cases if case_id not in states)
    wrong_state = sum(
        1
        for case_id, case in expected.cases.items()
        if case_id in states and states[case_id] != (case.kind, case.state, case.version)
    )
    tally.unexpected += sum(1 for case_id in states if case_id not in expected.cases)
    if misordered:
        tally.notes.append(f"{misordered} case versions hold another event than publish order")
        tally.unexpected += misordered
    if wrong_state:
        tally.notes.append(f"{wrong_state} cases not in the state a serial replay gives")
        tally.unexpected += wrong_state


async def partial_writes(settings: Settings, expected: Expected) -> int:
    """Rejected or set-aside records that left a trace where they must not: a first sighting
    in intake's table, or a claim in the cases service's."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, OWNER_ROLE)))
    try:
        found = 0
        if expected.no_sighting:
            found += await conn.fetchval(
                "SELECT count(*) FROM intake_seen_event WHERE event_id = ANY($1::text[])",
                sorted(expected.no_sighting),
            )
        if expected.no_claim:
            found += await conn.fetchval(
                "SELECT count(*) FROM case_message_seen WHERE event_id = ANY($1::text[])",
                sorted(expected.no_claim),
            )
        return int(found)
    finally:
        await conn.close()


def check_topics(
    settings: Settings, expected: Expected, verdict: Verdict, agencies: Sequence[str]
) -> None:
    """Each expected inbox copy exactly once on its agency's inbox topic, each dead letter
    exactly once on the dead-letter topic, each case event the cases service publishes once
    on its topic (counted by the ids in their headers)."""
    prefix = settings.topic_prefix
    inbox, dead_letters = verdict.inbox, verdict.dead_letters
    got_inbox: Counter[tuple[str, ...]] = Counter()
    for topic, headers in read_headers(settings, [prefix + INBOX_PREFIX + a for a in agencies]):
        agency = topic.removeprefix(prefix + INBOX_PREFIX)
        got_inbox[(_text(headers, "ce_id"), agency)] += 1
    inbox.compare(Counter(expected.inbox), got_inbox)
    _note_copies(inbox, got_inbox)
    got_dead: Counter[tuple[str, ...]] = Counter()
    for _, headers in read_headers(settings, [prefix + DEADLETTER.name]):
        service = _text(headers, "ce_source").removeprefix("casebridge/")
        got_dead[(_text(headers, "cb_original_id"), _text(headers, "cb_error_code"), service)] += 1
    dead_letters.compare(Counter(expected.dead_letters), got_dead)
    _note_copies(dead_letters, got_dead)
    # Case events by cause; a record sent again under its id is a relay copy, not an effect.
    seen: set[str] = set()
    got_events: Counter[tuple[str, ...]] = Counter()
    for _, headers in read_headers(settings, [prefix + CASE_EVENTS.name]):
        event_id = _text(headers, "ce_id")
        if event_id in seen:
            verdict.relay_copies += 1
            continue
        seen.add(event_id)
        got_events[("case-event", _text(headers, "ce_causationid"))] += 1
    want_events = Counter({k: n for k, n in expected.audit.items() if k[0] == "case-event"})
    verdict.case_events.compare(want_events, got_events)


def _note_copies(tally: Tally, got: Counter[tuple[str, ...]]) -> None:
    repeated = sum(1 for n in got.values() if n > 1)
    if repeated and tally.duplicated:
        tally.notes.append(f"{repeated} ids on the topic more than once (same ce_id each time)")


def _text(headers: Headers, name: str) -> str:
    return headers.get(name, b"").decode("utf-8", "replace")


def audit_tally(tracker: AuditTracker, expected: Expected, tally: Tally) -> None:
    tally.compare(expected.audit, tracker.got)
