"""Which (source, id) pairs intake has seen, and where each was first seen.

Remembering the first record's position, not just the pair, is what makes intake safe across a
crash: if intake records a pair and dies before forwarding it, the redelivered record finds its
own position stored and is forwarded again; only a *different* record with the same pair is a
duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.runtime.database import Database


@dataclass(frozen=True, slots=True)
class Sighting:
    source: str
    event_id: str
    topic: str
    partition: int
    offset: int

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


_CLAIM = """
INSERT INTO intake_seen_event (source, event_id, kafka_topic, kafka_partition, kafka_offset)
SELECT DISTINCT ON (s, i) s, i, t, p, o
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[]) AS x(s, i, t, p, o)
ORDER BY s, i, t, p, o
ON CONFLICT (source, event_id) DO NOTHING
"""

_FIRST_SEEN = """
SELECT e.source, e.event_id, e.kafka_topic, e.kafka_partition, e.kafka_offset
FROM intake_seen_event e
JOIN unnest($1::text[], $2::text[]) AS x(s, i) ON e.source = x.s AND e.event_id = x.i
"""


class SeenEvents:
    """The durable record of first sightings (table `intake_seen_event`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def first_sightings(self, sightings: Sequence[Sighting]) -> list[bool]:
        """Record `sightings`; return, for each, whether it is the first record of its pair."""
        if not sightings:
            return []
        sources = [s.source for s in sightings]
        ids = [s.event_id for s in sightings]
        async with self._db.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _CLAIM,
                sources,
                ids,
                [s.topic for s in sightings],
                [s.partition for s in sightings],
                [s.offset for s in sightings],
            )
            rows = await conn.fetch(_FIRST_SEEN, sources, ids)
        first = {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}
        return [first.get((s.source, s.event_id)) == s.position for s in sightings]
