"""Auditor tokens and scopes, and the API's answers that need no database: 401/403 as
problem details, recording before answering, the published OpenAPI document."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.audit.api import AuditorQuery, MemoryQueryRecorder, create_api
from services.audit.config import (
    SCOPE_METADATA,
    SCOPE_PAYLOAD,
    Auditor,
    AuditorRegistry,
    AuditSettings,
    token_hash,
)
from services.audit.tree_head import generate_keypair, private_key_pem
from services.runtime.database import Database
from services.runtime.settings import Settings

TOKEN = "cba_secret-token"


def config(*entries: dict[str, Any]) -> str:
    return orjson.dumps({"auditors": list(entries)}).decode()


def entry(ident: str = "a1", token: str = TOKEN, scopes: Any = None) -> dict[str, Any]:
    return {"id": ident, "token_sha256": token_hash(token), "scopes": scopes or [SCOPE_METADATA]}


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_tokens_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "auditors.json"
    path.write_text(config(entry("from-file", "t1")))
    settings = AuditSettings(
        tokens_file=path, tokens=config(entry("from-env", "t2", [SCOPE_PAYLOAD]))
    )
    registry = settings.auditors()
    assert len(registry) == 2
    assert registry.authenticate("t1") == Auditor("from-file", frozenset({SCOPE_METADATA}))
    assert registry.authenticate("t2") == Auditor("from-env", frozenset({SCOPE_PAYLOAD}))
    assert registry.authenticate("t3") is None
    assert registry.authenticate(token_hash("t1")) is None  # the stored hash is not a token


def test_the_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBRIDGE_AUDIT_TOKENS", config(entry()))
    assert AuditSettings().auditors().authenticate(TOKEN) is not None


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        '{"auditors": {}}',
        "[]",
        config({"id": "a1", "token_sha256": TOKEN, "scopes": [SCOPE_METADATA]}),  # plain token
        config(entry(scopes=["audit:everything"])),
        config({**entry(), "scopes": []}),
        config(entry(ident="has space")),
        config(entry("a1", "t1"), entry("a1", "t2")),
        config(entry("a1", "t1"), entry("a2", "t1")),
        config({**entry(), "token_sha256": token_hash(TOKEN).upper()}),
    ],
)
def test_malformed_token_configuration_is_refused(document: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        AuditSettings(tokens=document).auditors()


def test_the_signing_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    private, public = generate_keypair()
    pem = private_key_pem(private)
    from_env = AuditSettings(signing_key=pem).private_key()
    path = tmp_path / "key.pem"
    path.write_text(pem)
    from_file = AuditSettings(signing_key_file=path).private_key()
    assert from_env.public_key() == public
    assert from_file.public_key() == public
    with pytest.raises(ValueError, match="no signing key"):
        AuditSettings().private_key()


# --- the app without a database ------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryQueryRecorder]]:
    """No lifespan runs under ASGITransport, so the database is never opened: only requests
    that are answered before any query can be tested here."""
    recorder = MemoryQueryRecorder()
    registry = AuditorRegistry(
        {
            token_hash("meta"): Auditor("m", frozenset({SCOPE_METADATA})),
            token_hash("none"): Auditor("n", frozenset()),
        }
    )
    app = create_api(
        Settings(),
        AuditSettings(),
        recorder=recorder,
        database=Database("postgresql+asyncpg://nobody@127.0.0.1:1/none"),
        auditors=registry,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://audit"
    ) as c:
        yield c, recorder


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong"}, {"Authorization": "meta"}],
)
async def test_unauthenticated_requests_get_401_problem_details(
    client: tuple[httpx.AsyncClient, MemoryQueryRecorder], headers: dict[str, str]
) -> None:
    c, recorder = client
    for path in ("/v1/events", "/v1/events/1", "/v1/tree-heads/latest", "/v1/cases/x/export"):
        response = await c.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith('Bearer realm="casebridge-audit"')
        body = response.json()
        assert body["status"] == 401
        assert body["title"] == "Unauthorized"
        assert body["instance"] == path
        assert body["type"].startswith("https://")
    assert recorder.queries == []


async def test_a_token_without_an_audit_scope_gets_403(
    client: tuple[httpx.AsyncClient, MemoryQueryRecorder],
) -> None:
    c, recorder = client
    response = await c.get("/v1/events", headers={"Authorization": "Bearer none"})
    assert response.status_code == 403
    assert response.json()["type"].endswith("/forbidden")
    assert recorder.queries == []


async def test_invalid_parameters_are_recorded_then_refused_with_400(
    client: tuple[httpx.AsyncClient, MemoryQueryRecorder],
) -> None:
    c, recorder = client
    response = await c.get(
        "/v1/events",
        params={"limit": "0", "from_seq": "-3", "case_id": "x\x00"},
        headers={"Authorization": "Bearer meta"},
    )
    assert response.status_code == 400
    body = response.json()
    assert {p["name"] for p in body["invalid_params"]} == {"limit", "from_seq", "case_id"}
    assert [q.params for q in recorder.queries] == [
        (("limit", "0"), ("from_seq", "-3"), ("case_id", "x\x00"))
    ]
    assert recorder.queries[0].case_id is None  # not printable: not a CloudEvent subject


async def test_unknown_paths_and_methods_are_problems(
    client: tuple[httpx.AsyncClient, MemoryQueryRecorder],
) -> None:
    c, _ = client
    response = await c.get("/v2/anything")
    assert (response.status_code, response.headers["content-type"]) == (
        404,
        "application/problem+json",
    )
    response = await c.post("/v1/events", headers={"Authorization": "Bearer meta"})
    assert response.status_code == 405
    assert response.json()["status"] == 405


async def test_openapi_needs_no_token_and_documents_security_and_problems(
    client: tuple[httpx.AsyncClient, MemoryQueryRecorder],
) -> None:
    c, _ = client
    spec = (await c.get("/openapi.json")).json()
    events = spec["paths"]["/v1/events"]["get"]
    assert {p["name"] for p in events["parameters"]} >= {
        "case_id",
        "agency",
        "type",
        "since",
        "until",
        "from_seq",
        "to_seq",
        "cursor",
        "limit",
    }
    assert "application/problem+json" in events["responses"]["400"]["content"]
    assert events["security"] == [{"auditorToken": []}]
    export = spec["paths"]["/v1/cases/{case_id}/export"]["get"]
    assert "application/x-ndjson" in export["responses"]["200"]["content"]


def test_query_records_carry_who_and_what_but_no_data() -> None:
    query = AuditorQuery(
        "a1", ("audit:payload",), "GET", "/v1/events", (("case_id", "C-1"),), "C-1"
    )
    data = query.data()
    assert data["auditor"] == "a1"
    assert data["query"] == [["case_id", "C-1"]]
    assert set(data) == {"auditor", "scopes", "method", "path", "query", "case_id", "asked_at"}
