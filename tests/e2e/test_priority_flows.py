"""The remaining ministerial priorities end to end, on the real broker and database: a
business's report of forced-labour indicators routed to the right country's labour
inspectorate, inspected, its presumed victim referred and linked; the business told statuses
only; a returnee's departure refused while her travel-document request is open, then allowed.

Expected field sets and states are written out here, not computed by the code under test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from schemas.topics import rejections_topic, updates_topic
from services.cases.erasure import erase
from services.cases.rebuild import rebuild
from services.cases.watch import FeedItem, read_feeds
from services.demo import coordination, priorities
from services.demo.coordination import action_step
from services.demo.scenario import AgencyMessage, agency_event
from services.privacy.vault import person_vault
from services.runtime.credentials import OWNER_ROLE
from services.runtime.database import asyncpg_dsn
from services.runtime.dead_letter import derived_id
from services.runtime.settings import Settings
from tests.support.pipeline import Record, publish, read_topic, running
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SERVICES = ("intake", "router", "cases")
BUSINESS = priorities.BUSINESS
INSPECTORATE = priorities.INSPECTORATE
UPDATE = "org.casebridge.cases.case_update.v1"
UPDATE_ENVELOPE = {"recipient", "case_id", "kind", "version", "status", "occurred_at"}
UPDATE_ENVELOPE |= {"withheld", "role"}
BUSINESS_MAY_SEE = UPDATE_ENVELOPE | {
    "state",
    "change",
    "owner",
    "site_country",
    "sector",
    "supplier_tier",
    "workers_affected",
    "report_assessment",
    "inspection_scheduled_for",
    "inspection_outcome",
}


@dataclass
class World:
    settings: Settings
    conn: asyncpg.Connection
    run: str
    refused_departure: AgencyMessage

    async def send(self, messages: Sequence[AgencyMessage]) -> None:
        for m in messages:
            await publish(self.settings, [Record(m.topic, m.value, m.key, m.headers)])

    async def state(self, case_id: str) -> tuple[str, str] | None:
        row = await self.conn.fetchrow(
            "SELECT state, owner FROM case_state WHERE case_id = $1", case_id
        )
        return None if row is None else (row[0], row[1])


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    ns = f"p{uuid.uuid4().hex[:10]}."
    db = await stack.create_database()
    settings = stack.deployment(
        database=db, topic_prefix=ns, group_prefix=ns + "cb", person_key_secret="k" * 40
    )
    conn = await asyncpg.connect(asyncpg_dsn(stack.url(OWNER_ROLE, db)))
    run = uuid.uuid4().hex[:6].upper()
    before, refused, after = priorities.document_request_steps(run)
    w = World(settings, conn, run, refused)
    try:
        async with running(settings, *SERVICES):
            assert await coordination.play(priorities.business_report_steps(run), w.send, conn)
            assert await coordination.play(before, w.send, conn)
            await w.send([refused])
            await _rejection_in_feed(w, priorities.PROGRAMME, refused)
            assert await coordination.play(after, w.send, conn)
            yield w
    finally:
        await conn.close()


async def _feed(w: World, agency: str) -> list[FeedItem]:
    return (await read_feeds(w.settings, [agency]))[agency]


async def _rejection_in_feed(w: World, agency: str, message: AgencyMessage) -> dict[str, Any]:
    """The TransitionRejected answering `message` (its id derives from the message's), from
    the agency's own updates topic."""
    headers = dict(message.headers)
    answer = derived_id("rejected", headers["ce_source"].decode(), message.event_id).encode()
    for _ in range(100):
        own = await read_topic(w.settings, updates_topic(agency), idle_s=0.3, principal=agency)
        for r in own:
            if dict(r.headers).get("ce_id") == answer:
                body: dict[str, Any] = orjson.loads(r.value)
                return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"no rejection for {message.label}")


async def _intake_rejection(w: World, message: AgencyMessage) -> tuple[str, dict[str, Any]]:
    """Intake's code and error for `message`, from the dead letter its sender reads."""
    for _ in range(60):
        own = await read_topic(
            w.settings, rejections_topic(message.agency), principal=message.agency
        )
        for r in own:
            headers = dict(r.headers)
            if headers.get("cb_original_id") == message.event_id.encode():
                return headers["cb_error_code"].decode(), orjson.loads(r.value)["error"]
    raise AssertionError(f"intake did not reject {message.label}")


# --- Business reports ----------------------------------------------------------------------


async def test_report_goes_to_the_site_countrys_inspectorate_and_closes_after_referral(
    world: World,
) -> None:
    cases = priorities.priority_cases_of(world.run)
    assert await world.state(cases.report) == ("closed", INSPECTORATE)
    # The inspection's presumed victim is a referral of her own, routed like any other.
    assert await world.state(cases.inspection_referral) == ("submitted", "id-shelter-ngo")
    snapshot = await world.conn.fetchval(
        "SELECT snapshot FROM case_state WHERE case_id = $1", cases.report
    )
    facts = orjson.loads(snapshot)["business_report"]
    assert facts["linked_referrals"] == [cases.inspection_referral]
    assert facts["presumed_victims"] == 1


async def test_a_site_in_a_country_without_an_inspectorate_goes_to_the_regional_coordinator(
    world: World,
) -> None:
    case_id = f"BR-{world.run}-21"
    site = {"country": "MM", "sector": "textiles_and_garments", "supplier_tier": "tier_1"}
    await world.send([priorities.business_report(world.run, case_id=case_id, site=site)])
    assert await coordination.wait_for_version(world.conn, case_id, 1) == 1
    assert await world.state(case_id) == ("received", "regional-support-office")


async def test_the_business_is_told_statuses_only(world: World) -> None:
    """One update per status of its report, each holding that status and nothing else; the
    inspectorate's updates of the same report (the positive control) carry what it found."""
    cases = priorities.priority_cases_of(world.run)
    mine = [i for i in await _feed(world, BUSINESS) if i.event_type == UPDATE]
    report = [i for i in mine if i.case_id == cases.report]
    assert [i.body["state"] for i in report] == [
        "received",
        "acknowledged",
        "assessed",
        "inspection_scheduled",
        "inspected",
        "closed",
    ]
    for item in report:
        assert item.body["role"] == "reporter"
        assert set(item.body) <= BUSINESS_MAY_SEE, set(item.body) - BUSINESS_MAY_SEE
    assert report[4].body["inspection_outcome"] == "forced_labour_identified"
    assert all(i.case_id.startswith("BR-") for i in mine), "never the referral it led to"
    inspectorate = [
        i
        for i in await _feed(world, INSPECTORATE)
        if i.event_type == UPDATE and i.case_id == cases.report
    ]
    assert inspectorate[-1].body["presumed_victims"] == 1
    assert inspectorate[-1].body["linked_referrals"] == [cases.inspection_referral]
    assert inspectorate[-1].body["role"] == "owner"


async def test_report_transitions_out_of_turn_are_refused(world: World) -> None:
    """The business cannot act on its report (intake admits only reports from a business);
    the inspectorate cannot schedule an inspection before assessing, nor after assessing
    that none is warranted; it may then close."""
    case_id = f"BR-{world.run}-22"
    await world.send([priorities.business_report(world.run, case_id=case_id)])
    assert await coordination.wait_for_version(world.conn, case_id, 1) == 1

    async def refused(agency: str, action: str, **fields: Any) -> str:
        step = action_step(world.run, case_id, agency, action, 0, **fields)
        await world.send([step.message])
        return str((await _rejection_in_feed(world, agency, step.message))["reason"])

    by_business = action_step(world.run, case_id, BUSINESS, "report_acknowledged", 0).message
    await world.send([by_business])
    assert (await _intake_rejection(world, by_business))[0] == "SENDER_NOT_PERMITTED"
    today = priorities._today()
    assert await refused(INSPECTORATE, "inspection_scheduled", scheduled_for=today) == (
        "INVALID_TRANSITION"
    )
    steps = [
        action_step(world.run, case_id, INSPECTORATE, "report_acknowledged", 2),
        action_step(
            world.run,
            case_id,
            INSPECTORATE,
            "report_assessed",
            3,
            assessment="insufficient_information",
        ),
    ]
    assert await coordination.play(steps, world.send, world.conn)
    assert await refused(INSPECTORATE, "inspection_scheduled", scheduled_for=today) == (
        "GUARD_FAILED"
    )
    close = [action_step(world.run, case_id, INSPECTORATE, "case_closed", 4, closure="Closed")]
    assert await coordination.play(close, world.send, world.conn)
    assert await world.state(case_id) == ("closed", INSPECTORATE)


async def test_intake_refuses_personal_data_and_the_wrong_senders(world: World) -> None:
    """A report naming workers, a report from the police and a referral from a business are
    each refused with a code the sender can act on; the business's clean report (the world's
    first) was accepted."""
    named = priorities.business_report(
        world.run,
        case_id=f"BR-{world.run}-23",
        workers=[{"given_name": "Synthetic", "family_name": "Worker-X"}],
    )
    await world.send([named])
    code, error = await _intake_rejection(world, named)
    assert code == "INVALID_PAYLOAD"
    assert [d["type"] for d in error["details"]] == ["personal_data_not_allowed"]
    assert b"Worker-X" not in orjson.dumps(error), "the error never repeats the value"
    report = orjson.loads(priorities.business_report(world.run).value)
    police = agency_event(
        "police report as a business",
        "id-police-aht",
        "x",
        priorities.REPORT,
        report | {"case_id": f"BR-{world.run}-24", "reporting_agency": "id-police-aht"},
    )
    await world.send([police])
    assert (await _intake_rejection(world, police))[0] == "SENDER_NOT_PERMITTED"
    referral = agency_event(
        "a business submits a referral",
        BUSINESS,
        "x",
        "org.casebridge.referral.submitted.v1",
        {
            "case_id": f"REF-{world.run}-25",
            "reporting_agency": BUSINESS,
            "referred_at": report["reported_at"],
            "person": {"age_estimate": 30},
            "location_country": "ID",
            "consent_to_share": False,
        },
    )
    await world.send([referral])
    assert (await _intake_rejection(world, referral))[0] == "SENDER_NOT_PERMITTED"
    for case_id in (f"BR-{world.run}-23", f"BR-{world.run}-24", f"REF-{world.run}-25"):
        assert await world.state(case_id) is None
    assert await world.state(priorities.priority_cases_of(world.run).report) is not None


# --- Document requests ---------------------------------------------------------------------


async def test_departure_waits_for_the_travel_document(world: World) -> None:
    """The departure attempted while the request was open was refused with its own reason;
    once the document was collected, the same departure was accepted."""
    rejection = await _rejection_in_feed(world, priorities.PROGRAMME, world.refused_departure)
    assert rejection["reason"] == "DOCUMENT_REQUEST_OPEN"
    cases = priorities.priority_cases_of(world.run)
    assert await world.state(cases.document) == ("collected", priorities.REGISTRY)
    assert await world.state(cases.returns) == ("travel", priorities.PROGRAMME)


async def test_the_request_goes_to_the_issuing_countrys_registry_which_alone_decides(
    world: World,
) -> None:
    """Routed to Myanmar's registry, which owns it: the requesting programme cannot verify
    the identity, and nothing is issued before the identity is verified."""
    case_id = f"DOC-{world.run}-31"
    before, _, _ = priorities.document_request_steps(world.run)
    message = orjson.loads(before[1].message.value) | {"case_id": case_id, "for_return": None}
    opening = agency_event(
        "a birth registration request",
        priorities.PROGRAMME,
        "avrr",
        priorities.DOCUMENT,
        message | {"document": "birth_registration"},
    )
    await world.send([opening])
    assert await coordination.wait_for_version(world.conn, case_id, 1) == 1
    assert await world.state(case_id) == ("requested", priorities.REGISTRY)

    async def refused(agency: str, action: str, **fields: Any) -> str:
        step = action_step(world.run, case_id, agency, action, 0, **fields)
        await world.send([step.message])
        return str((await _rejection_in_feed(world, agency, step.message))["reason"])

    assert await refused(priorities.PROGRAMME, "identity_verified") == "NOT_AUTHORISED"
    assert await refused(priorities.REGISTRY, "document_issued") == "INVALID_TRANSITION"
    registry = priorities.REGISTRY
    steps = [
        action_step(
            world.run, case_id, registry, "identity_verification_failed", 2, reason="no_record"
        ),
        action_step(world.run, case_id, registry, "identity_verified", 3),
        action_step(
            world.run,
            case_id,
            registry,
            "document_refused",
            4,
            reason="late_registration_needs_court_order",
        ),
    ]
    assert await coordination.play(steps, world.send, world.conn)
    assert await world.state(case_id) == ("refused", registry)


async def test_rebuilding_the_new_kinds_from_the_log_gives_identical_state(world: World) -> None:
    report = await rebuild(world.conn, person_vault(world.settings))
    assert report.cases >= 5
    assert report.ok
    assert report.identical == report.cases


async def test_erasing_the_returnee_by_her_person_key_reaches_her_document_request(
    world: World,
) -> None:
    """The data-protection officer names the person, not the cases: her return and the
    registry's request both lose her data. (Last in this module: it erases the world's
    returnee.)"""
    cases = priorities.priority_cases_of(world.run)
    keys = dict(
        await world.conn.fetch(
            "SELECT case_id, person_key FROM case_state WHERE case_id = ANY($1::text[])",
            [cases.returns, cases.document, cases.inspection_referral],
        )
    )
    key = keys[cases.returns]
    assert key is not None
    assert keys[cases.document] == key
    assert keys[cases.inspection_referral] is None  # no date of birth: no key, never matched
    said: list[str] = []
    code = await erase(
        world.settings,
        case_id=None,
        person_key=key,
        reason="subject_request",
        requested_by="dpo-test",
        timeout_s=30,
        out=said.append,
    )
    assert code == 0, said
    after = dict(
        await world.conn.fetch(
            "SELECT case_id, person_key FROM case_state WHERE case_id = ANY($1::text[])",
            [cases.returns, cases.document, cases.inspection_referral],
        )
    )
    assert after[cases.returns] is None
    assert after[cases.document] is None
    worker = await world.conn.fetchval(
        "SELECT snapshot::jsonb -> 'person' FROM case_state WHERE case_id = $1",
        cases.inspection_referral,
    )
    assert worker is not None, "another person's case keeps her data"
