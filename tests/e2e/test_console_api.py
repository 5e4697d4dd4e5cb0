"""The caseworkers' API on the real stack: sign-in, need to know per endpoint (each refusal
beside the same request by the agency that may), If-Match, actions sent as the agency, and
every read and action in the audit log."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from schemas.console import ACTIVITY_EVENT_TYPE
from schemas.topics import CONSOLE_ACTIVITY, inbound_topic
from services.console.accounts import Accounts as AccountStore
from services.console.app import create_console
from services.console.config import ConsoleSettings
from services.runtime.credentials import OWNER_ROLE, database_url
from services.runtime.database import Database, asyncpg_dsn
from services.runtime.settings import Settings
from tests.support.console import (
    OUTSIDER,
    RECEIVER,
    REQUESTER,
    Accounts,
    make_accounts,
    referral_awaiting_handover,
    serving,
)
from tests.support.pipeline import audit_rows, read_topic, running, wait_for
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@dataclass
class World:
    settings: Settings
    url: str
    accounts: Accounts
    case_id: str
    tokens: dict[str, str]


async def sign_in(url: str, who: tuple[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.post("/api/v1/session", json={"username": who[0], "password": who[1]})


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    ns = f"c{uuid.uuid4().hex[:10]}."
    settings = stack.deployment(topic_prefix=ns, group_prefix=ns + "cb")
    async with running(settings, "intake", "router", "cases", "audit"):
        accounts = await make_accounts(settings)
        case_id = await referral_awaiting_handover(settings)
        app = create_console(settings, ConsoleSettings(action_wait_s=15))
        async with serving(app) as url:
            tokens = {}
            for name in ("requester", "receiver", "outsider", "auditor"):
                answer = await sign_in(url, getattr(accounts, name))
                assert answer.status_code == 201, answer.text
                tokens[name] = answer.json()["token"]
            yield World(settings, url, accounts, case_id, tokens)


async def call(w: World, method: str, path: str, who: str | None, **kwargs: Any) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))
    if who is not None:
        headers["Authorization"] = f"Bearer {w.tokens[who]}"
    async with httpx.AsyncClient(base_url=w.url, timeout=30) as client:
        return await client.request(method, path, headers=headers, **kwargs)


def problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


# --- signing in ---------------------------------------------------------------------------------


async def test_a_wrong_password_and_an_unknown_user_are_refused_alike(world: World) -> None:
    name, password = world.accounts.receiver
    assert (await sign_in(world.url, (name, password))).status_code == 201  # positive control
    wrong = await sign_in(world.url, (name, password + "x"))
    unknown = await sign_in(world.url, ("nobody-" + name, password))
    assert problem(wrong, 401)["detail"] == problem(unknown, 401)["detail"]


async def test_every_endpoint_needs_a_valid_session(world: World) -> None:
    endpoints = [
        ("GET", "/api/v1/cases"),
        ("GET", f"/api/v1/cases/{world.case_id}"),
        ("POST", f"/api/v1/cases/{world.case_id}/actions/handover_declined"),
        ("DELETE", "/api/v1/session"),
    ]
    for method, path in endpoints:
        problem(await call(world, method, path, None), 401)
        bad = {"Authorization": "Bearer not-a-session"}
        problem(await call(world, method, path, None, headers=bad), 401)
    assert (await call(world, "GET", "/api/v1/cases", "receiver")).status_code == 200


async def test_a_signed_out_or_expired_session_is_refused(world: World) -> None:
    answer = await sign_in(world.url, world.accounts.outsider)
    token = answer.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await call(world, "GET", "/api/v1/cases", None, headers=headers)).status_code == 200
    assert (
        await call(world, "DELETE", "/api/v1/session", None, headers=headers)
    ).status_code == 204
    problem(await call(world, "GET", "/api/v1/cases", None, headers=headers), 401)

    # Idle expiry, on the real session table: a store whose sessions idle out in 1 s.
    db = Database(database_url(world.settings, "casebridge_console"), max_size=1)
    await db.start()
    try:
        store = AccountStore(db, idle_s=1.0, max_s=60.0)
        session = await store.sign_in(*world.accounts.outsider)
        assert session is not None
        assert await store.session(session.token) is not None  # positive control
        await asyncio.sleep(1.5)
        assert await store.session(session.token) is None
    finally:
        await db.close()


async def test_the_console_role_cannot_change_a_password_or_make_an_account(
    world: World,
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url(world.settings, "casebridge_console")))
    try:
        name = world.accounts.outsider[0]
        await conn.execute(  # positive control: the one column it may set
            "UPDATE console_account SET last_sign_in = now() WHERE username = $1", name
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "UPDATE console_account SET password_hash = '$argon2id$x' WHERE username = $1",
                name,
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO console_account (username, agency, role, display_name,"
                " password_hash) VALUES ('mallory', 'id-police-aht', 'caseworker', 'M',"
                " '$argon2id$x')"
            )
    finally:
        await conn.close()


# --- need to know, endpoint by endpoint -------------------------------------------------------


async def test_the_case_list_shows_only_the_agencys_cases(world: World) -> None:
    def ids(answer: httpx.Response) -> set[str]:
        assert answer.status_code == 200, answer.text
        return {c["case_id"] for c in answer.json()["cases"]}

    assert world.case_id in ids(await call(world, "GET", "/api/v1/cases", "requester"))
    assert world.case_id in ids(await call(world, "GET", "/api/v1/cases", "receiver"))
    assert world.case_id not in ids(await call(world, "GET", "/api/v1/cases", "outsider"))


async def test_another_agencys_case_is_not_found(world: World) -> None:
    path = f"/api/v1/cases/{world.case_id}"
    mine = await call(world, "GET", path, "requester")
    assert mine.status_code == 200, mine.text
    assert mine.json()["case"]["owner"] == REQUESTER
    theirs = problem(await call(world, "GET", path, "outsider"), 404)
    missing = problem(await call(world, "GET", "/api/v1/cases/NO-SUCH-CASE", "outsider"), 404)
    assert theirs["detail"] == missing["detail"]  # it does not tell that the case exists


async def test_an_outsider_cannot_act_on_the_case(world: World) -> None:
    path = f"/api/v1/cases/{world.case_id}/actions/handover_declined"
    version = (await call(world, "GET", f"/api/v1/cases/{world.case_id}", "receiver")).headers[
        "ETag"
    ]
    problem(
        await call(
            world,
            "POST",
            path,
            "outsider",
            json={"reason": "no_capacity"},
            headers={"If-Match": version},
        ),
        404,
    )


async def test_auditors_do_not_work_cases(world: World) -> None:
    problem(await call(world, "GET", "/api/v1/cases", "auditor"), 403)
    assert (await call(world, "GET", "/api/v1/cases", "requester")).status_code == 200


# --- acting -------------------------------------------------------------------------------------


async def test_the_handover_is_answered_by_its_receiver_under_if_match(world: World) -> None:
    case = f"/api/v1/cases/{world.case_id}"
    seen = await call(world, "GET", case, "receiver")
    assert seen.status_code == 200, seen.text
    etag = seen.headers["ETag"]
    assert etag == '"5"'
    offered = {a["name"] for a in seen.json()["actions"]}
    assert {"handover_accepted", "handover_declined"} <= offered
    owner_view = await call(world, "GET", case, "requester")
    assert "handover_accepted" not in {a["name"] for a in owner_view.json()["actions"]}

    accept = f"{case}/actions/handover_accepted"
    # The requester may not answer its own request.
    problem(
        await call(world, "POST", accept, "requester", json={}, headers={"If-Match": etag}), 409
    )
    problem(await call(world, "POST", accept, "receiver", json={}), 428)
    stale = problem(
        await call(world, "POST", accept, "receiver", json={}, headers={"If-Match": '"4"'}), 412
    )
    assert stale["current_version"] == 5
    invalid = problem(
        await call(
            world,
            "POST",
            f"{case}/actions/handover_declined",
            "receiver",
            json={},
            headers={"If-Match": etag},
        ),
        422,
    )
    assert [p["name"] for p in invalid["invalid_params"]] == ["reason"]

    done = await call(world, "POST", accept, "receiver", json={}, headers={"If-Match": etag})
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["outcome"] == "recorded"
    assert result["version"] == 6
    assert done.headers["ETag"] == '"6"'
    after = (await call(world, "GET", case, "requester")).json()
    assert after["case"]["version"] == 6
    assert after["timeline"][-1]["actor"] == RECEIVER
    # The same If-Match again is now stale: nothing is applied twice.
    problem(await call(world, "POST", accept, "receiver", json={}, headers={"If-Match": etag}), 412)

    # Sent as the agency itself: its own inbound topic, its own source.
    async def sent() -> list[dict[str, bytes]]:
        records = await read_topic(world.settings, inbound_topic(RECEIVER), idle_s=0.5)
        return [
            dict(r.headers)
            for r in records
            if dict(r.headers).get("ce_id", b"").decode() == result["event_id"]
        ]

    [headers] = await wait_for(sent, bool, within_s=20)
    assert headers["ce_source"] == f"urn:casebridge:agency:{RECEIVER}:console".encode()
    assert headers["ce_type"] == b"org.casebridge.case.handover_accepted.v1"


async def test_reads_and_actions_are_in_the_audit_log(world: World) -> None:
    before = await call(world, "GET", f"/api/v1/cases/{world.case_id}", "requester")
    assert before.status_code == 200
    topic = world.settings.topic_prefix + CONSOLE_ACTIVITY.name

    async def activity() -> list[dict[str, Any]]:
        records = await read_topic(world.settings, CONSOLE_ACTIVITY.name, idle_s=0.5)
        return [orjson.loads(r.value) for r in records]

    seen = await wait_for(activity, lambda a: any(x["kind"] == "action_sent" for x in a))
    kinds = {(a["kind"], a["agency"]) for a in seen}
    assert ("read_case", REQUESTER) in kinds
    assert ("read_cases", OUTSIDER) in kinds
    assert ("action_sent", RECEIVER) in kinds
    assert ("action_refused", RECEIVER) in kinds  # the stale and the invalid attempts
    assert ("sign_in_refused", None) in kinds
    assert all("password" not in orjson.dumps(a).decode() for a in seen)

    rows = await wait_for(
        lambda: audit_rows(world.settings, "kafka_topic = $1", topic),
        lambda r: len(r) >= len(seen),
    )
    assert len(rows) >= len(seen)
    assert {r["event_type"] for r in rows} == {ACTIVITY_EVENT_TYPE}
    assert world.case_id in {r["subject"] for r in rows}


async def test_accounts_are_made_by_the_owner_and_disabled_at_once(world: World) -> None:
    from services.console.accounts import disable_account

    answer = await sign_in(world.url, world.accounts.outsider)
    token = answer.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await call(world, "GET", "/api/v1/cases", None, headers=headers)).status_code == 200
    conn = await asyncpg.connect(asyncpg_dsn(database_url(world.settings, OWNER_ROLE)))
    try:
        assert await disable_account(conn, world.accounts.outsider[0])
    finally:
        await conn.close()
    problem(await call(world, "GET", "/api/v1/cases", None, headers=headers), 401)
    problem(await sign_in(world.url, world.accounts.outsider), 401)
