"""The regional statistics feed: read the cases, make a release, write CSV, publish it.

The cases are read as the read-only auditor role, as `casebridge cases rebuild` does, and each
snapshot is reduced to its `CaseFacts` at once: the only personal value kept is the gender,
opened with the person vault (an erased person counts as unknown). The age band is the case's
own `child` flag (the best-interests rule: a person of unknown or disputed age counts as a
minor), not a date of birth.

The previous releases (for the differencing rule, services/statistics/release.py) are the last
ones released, kept in `<run_dir>/statistics/<topic prefix>releases.json`: a release is recorded
there when its CSV is written or it is published, never on a dry run.
"""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import TypeAdapter

from schemas.cases import CaseKind
from schemas.envelope import JSON_CONTENT_TYPE, Envelope, encode_binary
from schemas.statistics import STATISTICS_RELEASED, StatisticsCell, StatisticsRelease
from schemas.topics import STATISTICS_REGIONAL
from services.cases import store
from services.cases.domain.model import Case
from services.cases.domain.visibility import case_country
from services.privacy.vault import PersonVault
from services.runtime.credentials import kafka_client, service_principal
from services.runtime.settings import Settings
from services.statistics.release import DIMENSIONS, CaseFacts, Release, make_release

SOURCE = "urn:casebridge:statistics"
"""`ce_source` of the releases."""
PRINCIPAL = service_principal("statistics")
TOTAL = "*"
"""A CSV column a cell does not split by (the cell counts every value of it)."""
NOT_APPLICABLE = "not_applicable"
UNKNOWN = "unknown"


def facts_of(case: Case) -> CaseFacts:
    """What one case contributes: where, when opened, what kind, and how it stands."""
    exploitation, age_band, gender = NOT_APPLICABLE, NOT_APPLICABLE, NOT_APPLICABLE
    country = case_country(case) or UNKNOWN
    if case.referral is not None:
        types = case.referral.type_of_exploitation
        exploitation = (
            "not_recorded" if not types else types[0].value if len(types) == 1 else "multiple"
        )
    if case.kind not in (CaseKind.sar, CaseKind.business_report):
        age_band = "minor" if case.child else "adult"
        gender = case.person.gender.value if case.person is not None else UNKNOWN
    return CaseFacts(
        country=country,
        month=case.opened_at.strftime("%Y-%m"),
        case_type=case.kind.value,
        exploitation_type=exploitation,
        age_band=age_band,
        gender=gender,
        outcome=case.status.value,
    )


async def read_population(conn: Any, vault: PersonVault) -> list[CaseFacts]:
    """Every case's facts, from its current snapshot (run in a read-only transaction)."""
    return [facts_of(case) for case in (await store.snapshots(conn, vault)).values()]


def to_record(release: Release, release_id: str | None = None) -> StatisticsRelease:
    made_at = release.made_at or dt.datetime.now(dt.UTC)
    return StatisticsRelease(
        release_id=release_id or f"{made_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        made_at=made_at,
        k=release.k,
        dimensions=list(release.dimensions),
        cells=[
            StatisticsCell(values=list(node), count=count)
            for node, count in sorted(release.cells.items())
        ],
    )


def from_record(record: StatisticsRelease) -> Release:
    return Release(
        k=record.k,
        cells={tuple(c.values): c.count for c in record.cells},
        made_at=record.made_at,
        dimensions=tuple(record.dimensions),
    )


def csv_rows(release: Release) -> Iterable[list[str]]:
    """A header, then one row per published cell: the values it splits by, `*` for the
    others, and the count."""
    yield [*release.dimensions, "count"]
    for node, count in sorted(release.cells.items(), key=lambda item: (len(item[0]), item[0])):
        yield [*node, *[TOTAL] * (len(release.dimensions) - len(node)), str(count)]


def write_csv(release: Release, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(csv_rows(release))


KEPT_RELEASES = 12
"""Past releases each new one is checked against (a year of monthly releases)."""
_HISTORY = TypeAdapter(list[StatisticsRelease])


def state_file(settings: Settings) -> Path:
    """This deployment's (topic prefix's) last releases, for the differencing rule."""
    return settings.run_dir / "statistics" / f"{settings.topic_prefix}releases.json"


def load_history(settings: Settings) -> list[StatisticsRelease]:
    """The last releases made, oldest first ([] before the first)."""
    path = state_file(settings)
    return _HISTORY.validate_json(path.read_bytes()) if path.exists() else []


def save_history(settings: Settings, history: list[StatisticsRelease]) -> None:
    """Keep the last `KEPT_RELEASES` (written whole, then renamed into place)."""
    path = state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(_HISTORY.dump_json(history[-KEPT_RELEASES:]))
    temporary.replace(path)


def release_message(record: StatisticsRelease) -> tuple[list[tuple[str, bytes]], bytes]:
    """Kafka headers and value (CloudEvents binary mode; `ce_id` is the release id)."""
    envelope = Envelope(
        id=record.release_id,
        source=SOURCE,
        type=STATISTICS_RELEASED,
        time=record.made_at,
        datacontenttype=JSON_CONTENT_TYPE,
    )
    return encode_binary(envelope, record)


async def publish_release(settings: Settings, record: StatisticsRelease) -> None:
    """As `casebridge-statistics`, idempotent and acknowledged by every replica."""
    producer = AIOKafkaProducer(
        **kafka_client(settings, PRINCIPAL).aiokafka(), enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        headers, value = release_message(record)
        await producer.send_and_wait(
            settings.topic_prefix + STATISTICS_REGIONAL.name, value, headers=headers
        )
    finally:
        await producer.stop()


__all__ = [
    "DIMENSIONS",
    "PRINCIPAL",
    "SOURCE",
    "Released",
    "csv_rows",
    "facts_of",
    "from_record",
    "load_history",
    "publish_release",
    "read_population",
    "release_message",
    "release_now",
    "save_history",
    "state_file",
    "to_record",
    "write_csv",
]


@dataclass(frozen=True, slots=True)
class Released:
    """One release as made: how many cases it counted, the release, and where it went."""

    cases: int
    release: Release
    record: StatisticsRelease
    written_to: tuple[str, ...]


async def release_now(settings: Settings, *, csv_path: Path | None, publish: bool) -> Released:
    """Read the cases (read-only, as the auditor role), make a release against the last ones,
    write it as CSV and/or publish it; a release written anywhere joins the history."""
    import asyncpg

    from services.privacy.vault import person_vault
    from services.runtime.credentials import AUDITOR_ROLE, database_url
    from services.runtime.database import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, AUDITOR_ROLE)))
    try:
        async with conn.transaction(readonly=True):
            population = await read_population(conn, person_vault(settings))
    finally:
        await conn.close()
    history = load_history(settings)
    release = make_release(
        population,
        previous=from_record(history[-1]) if history else None,
        earlier=[from_record(r) for r in history[:-1]],
        made_at=dt.datetime.now(dt.UTC),
    )
    record = to_record(release)
    if csv_path is not None:
        write_csv(release, csv_path)
    if publish:
        await publish_release(settings, record)
    if csv_path is not None or publish:
        save_history(settings, [*history, record])
    where = [str(csv_path)] if csv_path else []
    where += [settings.topic_prefix + STATISTICS_REGIONAL.name] if publish else []
    return Released(len(population), release, record, tuple(where))
