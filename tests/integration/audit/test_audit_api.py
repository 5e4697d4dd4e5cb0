"""The auditors' HTTP API on the real database: auth and scopes, pagination, filters, problem
details, proofs, export, recording of every query, and no 5xx on malformed input."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.audit.api import AuditorQuery, MemoryQueryRecorder, create_api
from services.audit.config import (
    SCOPE_METADATA,
    SCOPE_PAYLOAD,
    Auditor,
    AuditorRegistry,
    AuditSettings,
    token_hash,
)
from services.audit.proof_checks import check_consistency, check_inclusion
from services.audit.queries import encode_cursor
from services.audit.tree_head import sign_tree_head, sth_from_dict
from services.runtime.database import Database, asyncpg_dsn
from tests.integration.audit.support import (
    AGENCIES,
    CASES,
    KEY,
    PUBLIC,
    T0,
    TYPES,
    AuditDb,
    append,
    make_row,
    seed_and_sign,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.postgres

META, FULL, NOSCOPE = "meta-token", "full-token", "noscope-token"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


class FailingRecorder(MemoryQueryRecorder):
    async def record(self, query: AuditorQuery) -> None:
        raise ConnectionError("kafka down")


@dataclass
class Api:
    client: httpx.AsyncClient
    recorder: MemoryQueryRecorder
    db: AuditDb

    async def get(self, path: str, token: str | None = META, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.get(path, params=params, headers=headers)


def registry() -> AuditorRegistry:
    return AuditorRegistry(
        {
            token_hash(META): Auditor("auditor-meta", frozenset({SCOPE_METADATA})),
            token_hash(FULL): Auditor("auditor-full", frozenset({SCOPE_PAYLOAD})),
            token_hash(NOSCOPE): Auditor("auditor-none", frozenset()),
        }
    )


@asynccontextmanager
async def serving(
    stack: Stack, db: AuditDb, recorder: MemoryQueryRecorder
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, behind an in-process client, reading as the auditor role
    (as `create_api` connects by default)."""
    database = Database(db.auditor)
    app = create_api(
        stack.settings(database=db.name),
        AuditSettings(page_limit_default=5, page_limit_max=50),
        recorder=recorder,
        database=database,
        auditors=registry(),
        public_key=PUBLIC,
    )
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c,
        ):
            yield c
    finally:
        await database.close()


@pytest.fixture
async def api(stack: Stack, audit_db: AuditDb, tmp_path: Path) -> AsyncIterator[Api]:
    await seed_and_sign(audit_db, tmp_path)
    recorder = MemoryQueryRecorder()
    async with serving(stack, audit_db, recorder) as client:
        yield Api(client, recorder, audit_db)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    return body


# --- authentication and scopes ----------------------------------------------------------------


async def test_a_missing_or_bad_token_is_401(api: Api) -> None:
    response = await api.get("/v1/events", token=None)
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body["instance"] == "/v1/events"
    response = await api.get("/v1/events", token="not-a-token")
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    response = await api.client.get("/v1/events", headers={"Authorization": f"Basic {META}"})
    assert_problem(response, 401)
    assert api.recorder.queries == []  # nobody to record


async def test_a_token_without_audit_scope_is_403(api: Api) -> None:
    assert_problem(await api.get("/v1/events", token=NOSCOPE), 403)


async def test_metadata_scope_never_sees_payloads(api: Api) -> None:
    page = (await api.get("/v1/events", limit=50)).json()
    assert len(page["items"]) == 40
    for item in page["items"]:
        assert item.keys().isdisjoint({"payload", "raw_value", "erased"})
    record = (await api.get("/v1/events/3")).json()["record"]
    assert record.keys().isdisjoint({"payload", "raw_value", "erased"})
    lines = (await api.get(f"/v1/cases/{CASES[0]}/export")).text.splitlines()
    assert lines
    assert all("raw_value" not in orjson.loads(line) for line in lines)


async def test_payload_scope_sees_the_exact_bytes(api: Api) -> None:
    page = (await api.get("/v1/events", token=FULL, limit=50)).json()
    for item in page["items"]:
        raw = base64.b64decode(item["raw_value"])
        assert hashlib.sha256(raw).hexdigest() == item["payload_digest"]
        assert item["payload"] == orjson.loads(raw)
        assert item["erased"] is False
    assert page["items"][7]["payload"]["n"] == 7


# --- pagination and filters -------------------------------------------------------------------


async def walk(api: Api, **params: Any) -> list[int]:
    seqs: list[int] = []
    cursor = None
    for _ in range(100):
        response = await api.get("/v1/events", **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        seqs += [item["seq"] for item in page["items"]]
        cursor = page["next_cursor"]
        assert ("link" in response.headers) == (cursor is not None)
        if cursor is None:
            return seqs
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("limit", [1, 7, 40, 50])
async def test_pagination_walks_every_record_exactly_once(api: Api, limit: int) -> None:
    assert await walk(api, limit=limit) == list(range(40))


async def test_the_default_page_size_applies(api: Api) -> None:
    page = (await api.get("/v1/events")).json()
    assert (len(page["items"]), page["limit"]) == (5, 5)
    assert await walk(api) == list(range(40))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"case_id": CASES[1]}, [s for s in range(40) if s % 3 == 1]),
        ({"agency": AGENCIES[2]}, [s for s in range(40) if s % 3 == 2]),
        ({"type": TYPES[1]}, [s for s in range(40) if s % 2 == 1]),
        ({"case_id": CASES[0], "type": TYPES[0]}, [s for s in range(40) if s % 6 == 0]),
        ({"outcome": "received"}, list(range(40))),
        ({"outcome": "query"}, []),
        ({"from_seq": 5, "to_seq": 9}, [5, 6, 7, 8, 9]),
        # Records are an hour apart from T0 (30 March): 48 hours cross into April's partition.
        (
            {"since": (T0 + timedelta(hours=10)).isoformat(), "until": "2026-04-01T00:00:00Z"},
            list(range(10, 36)),
        ),
        ({"since": "2026-04-01T00:00:00+00:00"}, list(range(36, 40))),
        ({"case_id": "CASE-UNKNOWN"}, []),
    ],
)
async def test_filters(api: Api, params: dict[str, Any], expected: list[int]) -> None:
    assert await walk(api, limit=4, **params) == expected


# --- problem details on bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/events", {"limit": 0}),
        ("/v1/events", {"limit": 51}),
        ("/v1/events", {"limit": "ten"}),
        ("/v1/events", {"from_seq": -1}),
        ("/v1/events", {"to_seq": 2**63}),
        ("/v1/events", {"from_seq": 9, "to_seq": 3}),
        ("/v1/events", {"since": "yesterday"}),
        ("/v1/events", {"since": "2026-05-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}),
        ("/v1/events", {"since": "0001-01-01T00:00:00+05:00"}),
        ("/v1/events", {"cursor": "!!!"}),
        ("/v1/events", {"cursor": encode_cursor("h", 3)}),
        ("/v1/events", {"case_id": "a\x00b"}),
        ("/v1/events", {"case_id": ""}),
        ("/v1/events", {"type": "x" * 300}),
        ("/v1/events/abc", {}),
        ("/v1/events/-1", {}),
        ("/v1/events/99999999999999999999", {}),
        ("/v1/events/3", {"proof": "perhaps"}),
        ("/v1/events/3", {"proof": "true", "tree_size": 0}),
        ("/v1/tree-heads", {"cursor": encode_cursor("e", 1)}),
        ("/v1/proofs/consistency", {}),
        ("/v1/proofs/consistency", {"first": 20, "second": 10}),
        ("/v1/proofs/consistency", {"first": "x"}),
        ("/v1/cases/a%00b/export", {}),
    ],
)
async def test_bad_parameters_are_400_problems(api: Api, path: str, params: dict[str, Any]) -> None:
    body = assert_problem(await api.get(path, **params), 400)
    assert body["invalid_params"]
    assert body["type"].endswith("/invalid-parameters")


async def test_missing_things_are_404_or_409_problems(api: Api) -> None:
    assert_problem(await api.get("/v1/events/40"), 404)
    assert_problem(await api.get("/v1/cases/CASE-NOBODY/export"), 404)
    assert_problem(await api.get("/v1/nowhere"), 404)
    assert_problem(await api.get("/v1/proofs/consistency", first=10, second=41), 409)
    assert_problem(await api.get("/v1/events/3", proof="true", tree_size=41), 409)
    await append(api.db, [make_row(40)])  # appended, not yet under a signed head
    assert (await api.get("/v1/events/40")).status_code == 200
    assert_problem(await api.get("/v1/events/40", proof="true"), 409)


# --- every query is recorded ------------------------------------------------------------------


async def test_every_authenticated_query_is_recorded_before_it_is_answered(api: Api) -> None:
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/v1/events", {"case_id": CASES[2], "limit": 3}),
        ("/v1/events/7", {"proof": "true"}),
        ("/v1/tree-heads/latest", {}),
        ("/v1/tree-heads", {}),
        ("/v1/proofs/consistency", {"first": 10}),
        (f"/v1/cases/{CASES[1]}/export", {}),
        ("/v1/events", {"limit": "bad"}),  # refused, but asked: recorded
        ("/v1/events/999", {}),
    ]
    for path, params in requests:
        await api.get(path, token=FULL, **params)
    await api.get("/v1/events", token="wrong")
    queries = api.recorder.queries
    assert [(q.path, dict(q.params)) for q in queries] == [
        (path, {k: str(v) for k, v in params.items()}) for path, params in requests
    ]
    assert {q.auditor for q in queries} == {"auditor-full"}
    assert queries[0].case_id == CASES[2]
    assert queries[5].case_id == CASES[1]
    assert queries[1].case_id is None
    for query in queries:
        data = orjson.dumps(query.data())
        assert b"raw_value" not in data
        assert b"reporting_agency" not in data  # nothing of any record's payload


async def test_an_unrecordable_query_is_refused(stack: Stack, audit_db: AuditDb) -> None:
    await append(audit_db, [make_row(s) for s in range(3)])
    async with serving(stack, audit_db, FailingRecorder()) as client:
        response = await client.get("/v1/events", headers={"Authorization": f"Bearer {FULL}"})
    body = assert_problem(response, 503)
    assert "items" not in body
    assert body["type"].endswith("/query-not-recorded")


# --- proofs and tree heads ------------------------------------------------------------------------


async def test_a_record_comes_with_a_proof_that_verifies(api: Api) -> None:
    for seq in (0, 9, 10, 21, 39):
        body = (await api.get(f"/v1/events/{seq}", proof="true")).json()
        ok, message = check_inclusion(body["record"], body["inclusion_proof"], PUBLIC)
        assert ok, message
        assert body["inclusion_proof"]["tree_size"] == 40
    body = (await api.get("/v1/events/12", proof="true", tree_size=20)).json()
    assert check_inclusion(body["record"], body["inclusion_proof"], PUBLIC)[0]
    # A served record that was altered does not verify.
    body["record"]["subject"] = "CASE-OTHER"
    assert not check_inclusion(body["record"], body["inclusion_proof"], PUBLIC)[0]


async def test_tree_heads_and_consistency_proofs(api: Api) -> None:
    latest = (await api.get("/v1/tree-heads/latest")).json()
    assert latest["tree_size"] == 40
    sizes: list[int] = []
    cursor = None
    while True:
        page = (
            await api.get("/v1/tree-heads", limit=2, **({"cursor": cursor} if cursor else {}))
        ).json()
        sizes += [h["tree_size"] for h in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [10, 20, 40]
    for first in (0, 10, 20, 40):
        body = (await api.get("/v1/proofs/consistency", first=first)).json()
        assert body["second"] == 40
        if body["first_tree_head"] is None:
            assert first == 0
            continue
        ok, message = check_consistency(
            sth_from_dict(body["first_tree_head"]),
            sth_from_dict(body["second_tree_head"]),
            [base64.b64decode(h) for h in body["proof"]],
            PUBLIC,
        )
        assert ok, message


async def test_heads_that_cannot_be_trusted_are_never_served_and_are_listed(api: Api) -> None:
    """The database owner adds heads: one no key signed, one validly signed but covering far
    more records than the log holds, one validly signed but dated before the first head.
    None becomes the latest, enters the history or backs a proof; each is listed with why."""
    assert (await api.get("/v1/tree-heads/rejected")).json() == {"items": [], "next_cursor": None}
    honest = (await api.get("/v1/tree-heads/latest")).json()
    forged = sign_tree_head(KEY, 41, hashlib.sha256(b"x").digest(), honest["timestamp"] + 1)
    forged = dataclasses.replace(forged, signature=bytes(64))
    beyond = sign_tree_head(KEY, 1000, hashlib.sha256(b"y").digest(), honest["timestamp"] + 2)
    backdated = sign_tree_head(KEY, 39, hashlib.sha256(b"z").digest(), 1)
    conn = await asyncpg.connect(asyncpg_dsn(api.db.owner))
    try:
        for head in (forged, beyond, backdated):
            await conn.execute(
                "INSERT INTO audit_tree_head (tree_size, root_hash, timestamp_ms, signature,"
                " key_id) VALUES ($1, $2, $3, $4, $5)",
                head.tree_size,
                head.root_hash,
                head.timestamp,
                head.signature,
                head.key_id,
            )
    finally:
        await conn.close()
    assert (await api.get("/v1/tree-heads/latest")).json() == honest
    page = (await api.get("/v1/tree-heads", limit=50)).json()
    assert [h["tree_size"] for h in page["items"]] == [10, 20, 40]
    body = (await api.get("/v1/events/5", proof="true")).json()
    assert body["inclusion_proof"]["tree_size"] == 40
    assert check_inclusion(body["record"], body["inclusion_proof"], PUBLIC)[0]
    assert (await api.get("/v1/proofs/consistency", first=10)).json()["second"] == 40
    assert_problem(await api.get("/v1/events/5", proof="true", tree_size=41), 409)
    rejected = (await api.get("/v1/tree-heads/rejected")).json()
    assert [(r["tree_head"]["tree_size"], r["reason"]) for r in rejected["items"]] == [
        (39, "timestamp_not_increasing"),
        (41, "bad_signature"),
        (1000, "beyond_log"),
    ]
    assert all(r["detail"] for r in rejected["items"])
    first = (await api.get("/v1/tree-heads/rejected", limit=2)).json()
    rest = (await api.get("/v1/tree-heads/rejected", cursor=first["next_cursor"])).json()
    assert first["items"] + rest["items"] == rejected["items"]


async def test_served_records_carry_their_leaf_format_and_exact_bytes(api: Api) -> None:
    """What a v2 leaf covers is served, so an auditor can recompute it (check_inclusion)."""
    body = (await api.get("/v1/events/3", proof="true")).json()
    assert (body["record"]["leaf_version"], body["record"]["original_bytes"]) == (2, None)
    assert body["record"]["attributes"]["ce_id"] == "evt-0003"
    assert check_inclusion(body["record"], body["inclusion_proof"], PUBLIC)[0]
    moved = {**body["record"], "agency": "elsewhere"}
    assert not check_inclusion(moved, body["inclusion_proof"], PUBLIC)[0]


async def test_a_case_export_is_its_whole_history_as_json_lines(api: Api) -> None:
    response = await api.get(f"/v1/cases/{CASES[0]}/export", token=FULL)
    assert response.headers["content-type"] == "application/x-ndjson"
    records = [orjson.loads(line) for line in response.text.splitlines()]
    assert [r["seq"] for r in records] == [s for s in range(40) if s % 3 == 0]
    assert all(r["subject"] == CASES[0] and r["raw_value"] for r in records)


async def test_openapi_is_published(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert set(spec["paths"]) == {
        "/v1/events",
        "/v1/events/{seq}",
        "/v1/tree-heads/latest",
        "/v1/tree-heads",
        "/v1/tree-heads/rejected",
        "/v1/proofs/consistency",
        "/v1/cases/{case_id}/export",
    }
    assert "auditorToken" in spec["components"]["securitySchemes"]


# --- fuzz: malformed input never gets a 5xx ---------------------------------------------

EVENT_PARAMS = ["case_id", "agency", "type", "outcome", "since", "until", "from_seq", "to_seq"]
PARAMS = {
    "/v1/events": [*EVENT_PARAMS, "cursor", "limit"],
    "/v1/events/{}": ["proof", "tree_size"],
    "/v1/tree-heads/latest": [],
    "/v1/tree-heads": ["cursor", "limit"],
    "/v1/tree-heads/rejected": ["cursor", "limit"],
    "/v1/proofs/consistency": ["first", "second"],
    "/v1/cases/{}/export": [],
}
EDGES = [
    "",
    "true",
    "false",
    "null",
    "0",
    "-0",
    "-1",
    "1e400",
    "NaN",
    "9223372036854775807",
    "9223372036854775808",
    "2026-04-01T00:00:00Z",
    "0001-01-01T00:00:00-12:00",
    "9999-12-31T23:59:59+14:00",
    "2026-02-30",
    "1700000000",
    "ZTox",
    "ZToxMA",
    "aDox",
    "\x00",
    "a\x00b",
    "%",
    "../../etc",
    "'; DROP TABLE audit_log; --",
    "CASE-A",
    "x" * 300,
]
VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.text(alphabet=st.sampled_from("\x00\x01\x7f\ud7ff\ufffe\U0010ffff é%&=#?/9-Z"), max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=40),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_malformed_input_never_gets_a_5xx(api: Api, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(sorted(PARAMS)))
    names = st.sampled_from([*PARAMS[path], "x"])
    params: list[tuple[str, str | int | float | bool | None]] = data.draw(
        st.lists(st.tuples(names, VALUES), max_size=4)
    )
    url = path.format(quote(data.draw(st.one_of(VALUES, st.just("39"))), safe="") or "x")
    token = data.draw(st.sampled_from([META, FULL]))
    response = await api.client.get(
        url, params=params, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code < 500, (url, params, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"


async def test_every_parameter_with_every_edge_value_never_gets_a_5xx(api: Api) -> None:
    """The exhaustive complement of the random fuzz: each parameter of each endpoint (and
    the path segment) with each edge value, one at a time."""
    failures = []
    for path, names in PARAMS.items():
        for value in EDGES:
            segment = quote(value, safe="") or "x"
            for url, params in [(path.format("39"), {name: value}) for name in [*names, "x"]] + [
                (path.format(segment), {})
            ]:
                response = await api.get(url, token=FULL, **params)
                if response.status_code >= 500:
                    failures.append((url, params, response.status_code))
                elif response.status_code >= 400:
                    assert response.headers["content-type"] == "application/problem+json"
    assert failures == []
