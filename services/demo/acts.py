"""The demo's acts for the remaining ministerial priorities, played after the case
coordination: a business's report of forced labour, a returnee's travel document gating her
departure, and a regional statistics release.

Each act prints what happened in the coordination part's style and returns whether it went as
it should: every step took effect, each agency saw what it may see and nothing more, the
refused departure was refused for the document, the release reached the partner. All data is
synthetic; no personal value is printed (field names, states, case ids and counts only).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from schemas.topics import STATISTICS_REGIONAL, updates_topic
from services.cases.watch import FeedItem, read_feeds
from services.demo import coordination, priorities
from services.demo.scenario import AgencyMessage
from services.routing.policy import deployment_policy
from services.runtime.credentials import kafka_client
from services.runtime.dead_letter import derived_id
from services.runtime.kafka import header_map
from services.runtime.settings import Settings
from services.statistics import feed

UPDATE = "org.casebridge.cases.case_update.v1"
REPORT_STATES = (
    "received",
    "acknowledged",
    "assessed",
    "inspection_scheduled",
    "inspected",
    "closed",
)
"""What the business should be told of its report, one update per status, in order."""
NEVER_TO_THE_BUSINESS = ("presumed_victims", "linked_referrals")
WAIT_S = 30.0


async def _report_feeds(
    settings: Settings, report: str, *, within_s: float = WAIT_S
) -> tuple[list[FeedItem], list[FeedItem]]:
    """The business's and the inspectorate's updates on the report, once both have been
    relayed up to its closure (or the time is up)."""
    deadline = time.monotonic() + within_s
    while True:
        feeds = await read_feeds(settings, [priorities.BUSINESS, priorities.INSPECTORATE])
        business, inspectorate = (
            [i for i in feeds[a] if i.event_type == UPDATE and i.case_id == report]
            for a in (priorities.BUSINESS, priorities.INSPECTORATE)
        )
        done = (
            business
            and business[-1].body.get("state") == "closed"
            and inspectorate
            and inspectorate[-1].body.get("state") == "closed"
        )
        if done or time.monotonic() >= deadline:
            return business, inspectorate
        await asyncio.sleep(0.5)


async def business_report_act(
    settings: Settings, conn: asyncpg.Connection, run: str, publish: coordination.Publish
) -> bool:
    """A seafood exporter reports a supplier's site; the inspectorate inspects, refers the
    presumed victim it found and closes the report; the business is told statuses only."""
    print("\n== A business reports forced labour ==")
    cases = priorities.priority_cases_of(run)
    steps = priorities.business_report_steps(run)
    ok = await coordination.play(steps, publish, conn, report=coordination.print_step)
    business, inspectorate = await _report_feeds(settings, cases.report)

    print(f"\n{priorities.BUSINESS}: {len(business)} updates on its report {cases.report}")
    for item in business:
        print(f"    {item.line()}")
    states = tuple(str(i.body.get("state")) for i in business)
    told = states == REPORT_STATES
    print(
        f"  {'ok ' if told else '!! '} statuses it was told: {' -> '.join(states) or 'none'}"
        + ("" if told else f" (expected {' -> '.join(REPORT_STATES)})")
    )
    fields: set[str] = set().union(*(i.body for i in business)) if business else set()
    print(f"  fields it got: {', '.join(sorted(fields))}")
    seen = [f for f in NEVER_TO_THE_BUSINESS if f in fields]
    if any(cases.inspection_referral.encode() in i.raw for i in business):
        seen.append(cases.inspection_referral)
    print(
        "  ok  never the presumed victims, nor the referral they led to"
        if not seen
        else f"  !!  the business saw {', '.join(seen)}"
    )
    ok = ok and told and not seen

    last: dict[str, Any] = inspectorate[-1].body if inspectorate else {}
    found = last.get("presumed_victims")
    linked = last.get("linked_referrals")
    right = found == 1 and linked == [cases.inspection_referral] and last.get("role") == "owner"
    print(f"\n{priorities.INSPECTORATE}: {len(inspectorate)} updates on the report; the last:")
    if inspectorate:
        print(f"    {inspectorate[-1].line()}")
    print(f"  {'ok ' if right else '!! '} presumed_victims={found}  linked_referrals={linked}")
    return ok and right


async def rejection_of(
    settings: Settings, message: AgencyMessage, *, within_s: float = WAIT_S
) -> dict[str, Any] | None:
    """The TransitionRejected answering `message`, read as its sender from the sender's own
    updates topic (its id derives from the message's), or None if none came in time."""
    source = dict(message.headers)["ce_source"].decode()
    answer = derived_id("rejected", source, message.event_id).encode()
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + updates_topic(message.agency),
        **kafka_client(settings, message.agency).aiokafka(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for record in records:
                    if header_map(record).get("ce_id") == answer:
                        body: dict[str, Any] = orjson.loads(record.value)
                        return body
        return None
    finally:
        await consumer.stop()


async def document_act(
    settings: Settings, conn: asyncpg.Connection, run: str, publish: coordination.Publish
) -> bool:
    """A return waits for its travel document: the departure is refused while Myanmar's civil
    registry has not issued it, and allowed once it is collected."""
    print("\n== A returnee's travel document gates her departure ==")
    cases = priorities.priority_cases_of(run)
    before, refused, after = priorities.document_request_steps(run)
    ok = await coordination.play(before, publish, conn, report=coordination.print_step)
    await publish([refused])
    rejection = await rejection_of(settings, refused)
    reason = None if rejection is None else rejection.get("reason")
    gated = reason == "DOCUMENT_REQUEST_OPEN"
    print(
        f"  {'ok ' if gated else '!! '} refused: {refused.label} "
        f"(reason {reason or 'none received'})"
    )
    ok = ok and gated
    ok &= await coordination.play(after, publish, conn, report=coordination.print_step)
    ret = await conn.fetchrow(
        "SELECT state, owner, version FROM case_state WHERE case_id = $1", cases.returns
    )
    doc = await conn.fetchrow(
        "SELECT state, owner FROM case_state WHERE case_id = $1", cases.document
    )
    ret_state = None if ret is None else ret["state"]
    doc_state = None if doc is None else doc["state"]
    print(
        f"  return {cases.returns}: state {ret_state}"
        + ("" if ret is None else f", owner {ret['owner']}, v{ret['version']}")
    )
    print(
        f"  travel document request {cases.document}: state {doc_state}"
        + ("" if doc is None else f", owner {doc['owner']}")
    )
    return ok and ret_state == "travel" and doc_state == "collected"


async def _published_release(
    settings: Settings, reader: str, release_id: str, *, within_s: float = WAIT_S
) -> bool:
    """Whether `reader` (the partner) reads the release `release_id` on the regional topic."""
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + STATISTICS_REGIONAL.name,
        **kafka_client(settings, reader).aiokafka(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                if any(header_map(r).get("ce_id") == release_id.encode() for r in records):
                    return True
        return False
    finally:
        await consumer.stop()


async def statistics_act(settings: Settings) -> bool:
    """One release, as `casebridge statistics release --publish` makes it: every case counted
    under k-anonymity against the last releases, published on the regional topic, which the
    regional coordinator (the partner) then reads."""
    print("\n== A regional statistics release ==")
    done = await feed.release_now(settings, csv_path=None, publish=True)
    release, record, cases = done.release, done.record, done.cases
    partner = deployment_policy(settings).regional_coordinator
    topic = settings.topic_prefix + STATISTICS_REGIONAL.name
    print(
        f"  release {record.release_id}: {cases} cases counted; cells published: "
        f"{len(release.cells)}, suppressed: {len(release.withheld)}; k = {release.k}"
    )
    if not release.cells:
        why = (
            f"fewer than k = {release.k} cases in all"
            if cases < release.k
            else f"the total moved by fewer than k = {release.k} since a past release"
        )
        print(f"  the release is empty by design: {why} (an empty release never means a few)")
    counted = not release.cells or release.cells[()] == cases
    read = await _published_release(settings, partner, record.release_id)
    print(
        f"  {'ok ' if read else '!! '} published on {topic}, "
        + ("read by" if read else "NOT read by")
        + f" the partner {partner}"
    )
    if not counted:
        print(f"  !!  the published total {release.cells[()]} is not the {cases} cases")
    return read and counted
