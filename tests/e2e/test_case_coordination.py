"""Case coordination end to end on the real broker and database: a SAR incident through
disembarkation, a survivor identified as a victim and referred to a shelter that accepts, a
return with reintegration monitoring; what each agency's updates topic carries; rebuilding
state from the log; conflicting concurrent updates; deadlines surviving a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from schemas.topics import rejections_topic
from services.bootstrap import build
from services.cases.domain import FakeClock
from services.cases.rebuild import rebuild
from services.cases.watch import FeedItem, read_feeds
from services.demo import coordination
from services.demo.scenario import AgencyMessage, agency_event
from services.privacy.vault import person_vault
from services.routing.policy import RoutingPolicy, load_policy
from services.runtime.credentials import OWNER_ROLE
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings
from tests.support.pipeline import Record, publish, read_topic, running
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SERVICES = ("intake", "router", "audit", "cases")
ENFORCEMENT = {"police", "immigration", "labour_inspectorate", "prosecutor"}
VICTIM_STATUS = {
    "trafficking_status",
    "status_decided_by",
    "indicators",
    "type_of_exploitation",
    "methods_of_control",
    "recruitment_methods",
    "trafficking_victim",
    "person",
}
PERSONAL_VALUES = (b"Synthetic", b"Survivor-D", b"Survivor-E")


@dataclass
class World:
    settings: Settings
    conn: asyncpg.Connection
    policy: RoutingPolicy
    run: str

    async def send(self, messages: Sequence[AgencyMessage]) -> None:
        """Each message as its own agency, to its own inbound topic."""
        for m in messages:
            await publish(self.settings, [Record(m.topic, m.value, m.key, m.headers)])


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    db = await stack.create_database()
    settings = stack.deployment(
        database=db,
        topic_prefix=ns,
        group_prefix=ns + "cb",
        person_key_secret="k" * 40,
        deadline_tick_s=0.5,
    )
    conn = await asyncpg.connect(asyncpg_dsn(stack.url(OWNER_ROLE, db)))  # the test's view
    run = uuid.uuid4().hex[:6].upper()
    w = World(settings, conn, load_policy(settings.routing_policy_path), run)
    try:
        async with running(settings, *SERVICES):
            for steps in (
                coordination.sar_steps(run),
                coordination.referral_steps(run),
                coordination.return_steps(run),
            ):
                assert await coordination.play(steps, w.send, conn), (
                    "every step of the scenario takes effect"
                )
            yield w
    finally:
        await conn.close()


async def feeds(w: World) -> dict[str, list[FeedItem]]:
    await asyncio.sleep(1.0)  # the outbox relays right after each transaction
    mine = set(vars(coordination.cases_of(w.run)).values())
    everything = await read_feeds(w.settings, [a.id for a in w.policy.agencies])
    return {a: [i for i in items if i.case_id in mine] for a, items in everything.items()}


async def test_scenario_reaches_its_final_states(world: World) -> None:
    cases = coordination.cases_of(world.run)
    states = dict(
        await world.conn.fetch(
            "SELECT case_id, state FROM case_state WHERE case_id = ANY($1::text[])",
            [cases.sar, cases.referral, cases.returns],
        )
    )
    assert states == {
        cases.sar: "disembarked",
        cases.referral: "assistance_planned",
        cases.returns: "monitoring",
    }
    owner = await world.conn.fetchval(
        "SELECT owner FROM case_state WHERE case_id = $1", cases.returns
    )
    assert owner == "mm-return-reception", "arrival hands the return over to the home agency"


async def test_each_agency_sees_exactly_its_cases(world: World) -> None:
    cases = coordination.cases_of(world.run)
    seen = {a: {i.case_id for i in items} for a, items in (await feeds(world)).items()}
    expected = {
        "au-jrcc": {cases.sar},
        "id-rcc-jakarta": {cases.sar},
        "id-national-referral": {cases.sar},  # screening referral after disembarkation
        "id-child-protection": {cases.sar},  # children were reported on board
        "id-shelter-ngo": {cases.sar, cases.referral},
        "th-shelter-ngo": {cases.referral},  # from the protection referral it accepted
        "id-police-aht": {cases.referral},
        "id-labour-inspectorate": {cases.referral},
        "id-return-programme": {cases.returns},
        "mm-return-reception": {cases.returns},
        "id-immigration": set(),
        "th-police-aht": set(),
        "th-child-protection": set(),
        "regional-support-office": set(),  # every case here has agencies in its country
        "id-civil-registry": set(),
        "mm-civil-registry": set(),
        "th-seafood-exporter": set(),
        "au-apparel-retailer": set(),
    }
    assert seen == expected


async def test_no_withheld_field_reaches_an_agency(world: World) -> None:
    kinds = {a.id: str(a.kind) for a in world.policy.agencies}
    checked = 0
    for agency, items in (await feeds(world)).items():
        for item in items:
            withheld = set(item.body.get("withheld", ()))
            assert not withheld & set(item.body), f"{agency} got a withheld field"
            if kinds[agency] in ENFORCEMENT:
                assert not VICTIM_STATUS & set(item.body), (
                    f"victim-status details reached {agency} without a permitted purpose"
                )
                assert not any(v in item.raw for v in PERSONAL_VALUES)
            checked += 1
    assert checked > 30


async def test_entitled_agencies_do_see_what_the_others_do_not(world: World) -> None:
    """The check above is not vacuous: the owning shelter sees the decision and the person,
    and the receiving shelter sees them only once it has accepted the referral."""
    f = await feeds(world)
    owner_decided = [
        i.body
        for i in f["id-shelter-ngo"]
        if i.body.get("trafficking_status") == "ActualVictimOfTrafficking"
    ]
    assert owner_decided
    assert all("person" in b for b in owner_decided)
    th = f["th-shelter-ngo"]
    assert [i.body["role"] for i in th] == ["pending", "assigned", "assigned"]
    assert "person" not in th[0].body
    assert "person" in th[1].body


async def test_disembarkation_opens_screening_referrals(world: World) -> None:
    f = await feeds(world)
    for agency in ("id-national-referral", "id-shelter-ngo", "id-child-protection"):
        kinds = [i.event_type for i in f[agency]]
        assert "org.casebridge.cases.screening_referral_opened.v1" in kinds, agency


async def test_rebuilding_every_case_from_the_log_gives_identical_state(world: World) -> None:
    report = await rebuild(world.conn, person_vault(world.settings))
    assert report.cases >= 3
    assert report.ok
    assert report.identical == report.cases


async def test_concurrent_conflicting_updates_one_wins_one_is_rejected(world: World) -> None:
    case_id = coordination.cases_of(world.run).referral
    version = await coordination.case_version(world.conn, case_id)
    implement = coordination.action_step(
        world.run,
        case_id,
        "id-shelter-ngo",
        "assistance_implemented",
        0,
        services=["Health"],
        expected_version=version,
    )
    close = coordination.action_step(
        world.run,
        case_id,
        "id-shelter-ngo",
        "case_closed",
        0,
        closure="Closed",
        expected_version=version,
    )
    await asyncio.gather(world.send([implement.message]), world.send([close.message]))

    reached = await coordination.wait_for_version(world.conn, case_id, version + 1)
    assert reached == version + 1
    items = (await feeds(world))["id-shelter-ngo"]
    rejected = [i.body for i in items if i.event_type.endswith("transition_rejected.v1")]
    assert [r["reason"] for r in rejected] == ["STALE_VERSION"]
    await asyncio.sleep(0.5)
    assert await coordination.case_version(world.conn, case_id) == version + 1


async def test_an_agency_acting_as_another_is_refused_at_intake(world: World) -> None:
    """Immigration, on its own topic (the only one it may write), claims to be the receiving
    agency closing a return: intake rejects it, immigration sees why on its rejections topic,
    and the case does not change."""
    case_id = coordination.cases_of(world.run).returns
    version = await coordination.case_version(world.conn, case_id)
    forged = agency_event(
        "id-immigration closes a return as mm-return-reception",
        "id-immigration",
        "x",
        "org.casebridge.case.case_closed.v1",
        {"case_id": case_id, "reporting_agency": "mm-return-reception", "closure": "Closed"},
    )
    mismatches = _counted(
        "casebridge_dead_letters_total", service="intake", reason="AGENCY_MISMATCH"
    )
    await world.send([forged])
    rejections = rejections_topic("id-immigration")
    mine: list[ConsumerRecord[Any, Any]] = []
    for _ in range(50):
        own = await read_topic(world.settings, rejections, principal="id-immigration")
        mine = [r for r in own if dict(r.headers).get("cb_original_id") == forged.event_id.encode()]
        if mine:
            break
    [rejection] = mine
    assert dict(rejection.headers)["cb_error_code"] == b"AGENCY_MISMATCH"
    assert await coordination.case_version(world.conn, case_id) == version
    await _until_counted(
        "casebridge_dead_letters_total", mismatches + 1, service="intake", reason="AGENCY_MISMATCH"
    )


async def test_an_agency_without_standing_is_refused_by_the_case(world: World) -> None:
    """Immigration, as itself, tries to close a return it takes no part in: NOT_AUTHORISED on
    its own updates topic, and the case does not change."""
    case_id = coordination.cases_of(world.run).returns
    version = await coordination.case_version(world.conn, case_id)
    step = coordination.action_step(
        world.run, case_id, "id-immigration", "case_closed", 0, closure="Closed"
    )
    refused = _counted("casebridge_case_transitions_rejected_total", reason="NOT_AUTHORISED")
    await world.send([step.message])
    items: list[FeedItem] = []
    for _ in range(50):
        items = (await feeds(world))["id-immigration"]
        if any(i.body.get("reason") == "NOT_AUTHORISED" for i in items):
            break
    assert any(i.body.get("reason") == "NOT_AUTHORISED" for i in items)
    assert await coordination.case_version(world.conn, case_id) == version
    name = "casebridge_case_transitions_rejected_total"
    assert _counted(name, reason="NOT_AUTHORISED") == refused + 1  # counted once committed


async def test_deadline_survives_a_restart_and_escalates(stack: Stack) -> None:
    """A referral nobody acknowledges escalates to the owner and its fallback once the
    deadline passes, even though the service restarted in between (fake clock, no sleep
    until the deadline)."""
    ns = f"t{uuid.uuid4().hex[:10]}."
    db = await stack.create_database()
    settings = stack.deployment(
        database=db, topic_prefix=ns, group_prefix=ns + "cb", deadline_tick_s=3600
    )
    run = uuid.uuid4().hex[:6].upper()
    clock = FakeClock(dt.datetime.now(dt.UTC))
    opening = coordination.referral_steps(run)[0]
    conn = await asyncpg.connect(asyncpg_dsn(stack.url(OWNER_ROLE, db)))
    try:
        app, _ = build(*SERVICES, settings=settings, clock=clock)
        await app.start()
        try:
            await publish(
                settings,
                [
                    Record(
                        opening.message.topic,
                        opening.message.value,
                        opening.message.key,
                        opening.message.headers,
                    )
                ],
            )
            assert await coordination.wait_for_version(conn, opening.case_id, 1) == 1
        finally:
            await app.stop()
        pending = await conn.fetchval(
            "SELECT count(*) FROM case_deadline WHERE case_id = $1 AND raised_at IS NULL",
            opening.case_id,
        )
        assert pending >= 1, "the acknowledgement deadline is stored, not held in memory"

        clock.advance(dt.timedelta(hours=25))
        breached = _counted("casebridge_case_deadlines_breached_total")
        notices = _counted("casebridge_case_escalations_total")
        app, wiring = build(*SERVICES, settings=settings, clock=clock)
        await app.start()
        try:
            assert wiring.coordinator is not None
            # The service's own deadline clock ticks once at start-up and may raise it first.
            await wiring.coordinator.tick()
            raised = await conn.fetchval(
                "SELECT count(*) FROM case_deadline WHERE case_id = $1 AND raised_at IS NOT NULL",
                opening.case_id,
            )
            assert raised >= 1
            assert await wiring.coordinator.tick() == 0, "an escalation is raised once"
            assert _counted("casebridge_case_deadlines_breached_total") == breached + raised
            assert _counted("casebridge_case_escalations_total") >= notices + 2
        finally:
            await app.stop()
        escalations = {
            a: [
                orjson.loads(i.raw)
                for i in items
                if i.event_type.endswith("escalation_raised.v1") and i.case_id == opening.case_id
            ]
            for a, items in (
                await read_feeds(settings, ["id-shelter-ngo", "id-national-referral"])
            ).items()
        }
        assert escalations["id-shelter-ngo"], "the owning agency is told"
        assert escalations["id-national-referral"], "and its fallback agency"
        assert escalations["id-shelter-ngo"][0]["rule_id"]
    finally:
        await conn.close()


async def test_referrals_of_one_person_are_flagged_on_both_cases_never_merged(
    world: World,
) -> None:
    """Two agencies refer the same (synthetic) person: both cases are flagged for review."""
    first, second = f"REF-{world.run}-21", f"REF-{world.run}-22"
    person = {
        "given_name": "Synthetic",
        "family_name": "Twice-Referred",
        "date_of_birth": "1996-03-04",
        "gender": "Feminine",
        "nationality": "KH",
    }
    for case_id, agency in ((first, "id-police-aht"), (second, "id-labour-inspectorate")):
        step = coordination.referral_steps(world.run)[0]
        data = orjson.loads(step.message.value)
        data.update(case_id=case_id, reporting_agency=agency, person=person)
        message = agency_event(
            "same person", agency, "x", "org.casebridge.referral.submitted.v1", data
        )
        await world.send([message])
        assert await coordination.wait_for_version(world.conn, case_id, 1) >= 1
    await coordination.wait_for_version(world.conn, first, 2)
    rows = dict(
        await world.conn.fetch(
            "SELECT case_id, snapshot::jsonb->'possible_duplicate_of' FROM case_state"
            " WHERE case_id = ANY($1::text[])",
            [first, second],
        )
    )
    assert orjson.loads(rows[first]) == [second]
    assert orjson.loads(rows[second]) == [first]
    keys = await world.conn.fetch(
        "SELECT DISTINCT person_key FROM case_state WHERE case_id = ANY($1::text[])",
        [first, second],
    )
    assert len(keys) == 1
    assert keys[0][0].startswith("pk1:"), "a keyed hash, not the name"


def _counted(name: str, **labels: str) -> float:
    """The sum of a metric's series in this process whose labels include `labels`."""
    return sum(
        s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


async def _until_counted(name: str, at_least: float, **labels: str) -> None:
    for _ in range(50):
        if _counted(name, **labels) >= at_least:
            return
        await asyncio.sleep(0.1)
    assert _counted(name, **labels) >= at_least
