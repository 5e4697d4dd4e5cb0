"""The auditors' HTTP API: `create_api(settings)` is a FastAPI app, served by uvicorn.

    GET /v1/events                    records by case id, agency, type, outcome, time and seq
                                      range; keyset pages with an opaque cursor
    GET /v1/events/{seq}              one record; ?proof=true adds its inclusion proof
    GET /v1/tree-heads/latest         the latest signed tree head
    GET /v1/tree-heads                the tree head history, oldest first
    GET /v1/tree-heads/rejected       heads in the table that are not used, and why
    GET /v1/proofs/consistency        proof that one tree size is a prefix of another
    GET /v1/cases/{case_id}/export    a case's whole history as JSON Lines
    GET /openapi.json                 the contract (no token needed)

Every request needs `Authorization: Bearer <token>`; tokens are per auditor, configured as
SHA-256 hashes (services/audit/config.py). Scope `audit:metadata` sees records without their
payload, `audit:payload` with it. Errors are RFC 9457 problem details
(`application/problem+json`); parameters are validated up front so bad input is a 4xx.

Tree heads come from `audit_tree_head`, which the database owner can write to, so every one is
checked with the signer's public key (configured: CASEBRIDGE_AUDIT_PUBLIC_KEY_FILE) and
against the log: a head that is not signed by the key, covers more records than the log
holds, conflicts with another head of its size or is dated before a smaller head is never
served as the latest, in the history or in a proof, and is listed under
`/v1/tree-heads/rejected` with the reason.

Payloads are stored sealed per person, never in plain text; the API opens them with the
deployment's key-encryption key for `audit:payload` only. A record whose person's data was
erased (the person's data key destroyed) is served with `"erased": true` and a null payload:
its metadata, digest and inclusion proof are unchanged, which is what keeps the log verifiable.

Every authenticated request is itself recorded in the audit log *before* it is answered:
who (auditor id, scopes), what (method, path, query parameters), never any record data. It is
published as a CloudEvent (`org.casebridge.audit.query.v1`) to `casebridge.audit.queries`,
which the audit consumer appends like every other topic, and the API waits for Kafka's
acknowledgement (acks=all); if that fails the request is refused (503), so nothing is
answered unrecorded. Why Kafka rather than appending directly: the audit log then keeps a
single writer (the consumer, which owns sequence numbers and replay offsets), every leaf keeps
a real Kafka position, and the API needs no write access to the database at all.
"""

import asyncio
import base64
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.envelope import Envelope, encode_binary
from services.audit.config import (
    SCOPE_METADATA,
    SCOPE_PAYLOAD,
    Auditor,
    AuditorRegistry,
    AuditSettings,
)
from services.audit.queries import (
    EVENTS_CURSOR,
    HEADS_CURSOR,
    MAX_SEQ,
    EventFilter,
    LeafHashCache,
    LogIntegrityError,
    NotCoveredError,
    NotFoundError,
    case_exists,
    consistency_proof,
    decode_cursor,
    encode_cursor,
    export_case,
    find_events,
    get_event,
    inclusion_proof,
    screened_tree_heads,
    tree_head_page,
)
from services.audit.tree_head import (
    ScreenedHeads,
    SignedTreeHead,
    sth_to_dict,
    verify_tree_head,
)
from services.privacy.keys import KeyUnavailableError
from services.privacy.vault import PersonVault, person_vault
from services.runtime.credentials import (
    AUDITOR_ROLE,
    KafkaClientConfig,
    database_url,
    kafka_client,
    service_principal,
)
from services.runtime.database import Database
from services.runtime.logging import get_logger
from services.runtime.problems import (
    ProblemError,
    problem_response,
    problem_responses,
)
from services.runtime.settings import Settings

__all__ = [
    "AUDIT_QUERIES_TOPIC",
    "QUERY_EVENT_TYPE",
    "AuditorQuery",
    "KafkaQueryRecorder",
    "MemoryQueryRecorder",
    "QueryRecorder",
    "create_api",
]

log = get_logger("casebridge.audit.api")

NDJSON = "application/x-ndjson"
AUDIT_QUERIES_TOPIC = "casebridge.audit.queries"
QUERY_EVENT_TYPE = "org.casebridge.audit.query.v1"
QUERY_SOURCE = "urn:casebridge:audit-api"
_TEXT = r"^[^\x00-\x1f\x7f]+$"
"""Identifiers in parameters: no control characters (PostgreSQL text cannot hold NUL)."""
_MAX_PARAMS = 32
_MAX_PARAM_CHARS = 512


# --- problem details (RFC 9457) --------------------------------------------------------------


# --- response models (the OpenAPI contract; handlers serialise with orjson) ------------------


class EventOut(BaseModel):
    seq: int
    recorded_at: str = Field(description="UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ, as in the leaf")
    event_id: str
    event_source: str
    event_type: str
    subject: str | None = Field(description="Case id")
    agency: str | None
    outcome: str
    reason_code: str | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    attributes: dict[str, str] | None
    payload_digest: str = Field(description="SHA-256 of the raw value, lowercase hex")
    leaf_hash: str = Field(description="RFC 6962 leaf hash as stored, lowercase hex")
    leaf_version: int = Field(
        description="The leaf format (docs/audit-leaf-format.md): 2 covers agency,"
        " attributes and original_bytes too, 1 (records logged before v2) does not"
    )
    original_bytes: str | None = Field(
        description="The exact key and headers (JSON with base64 values, base64 here) when"
        " the text fields could not hold them exactly; null when they do"
    )
    payload: Any | None = Field(
        default=None,
        description="Only with scope audit:payload: the value parsed as JSON; null when it is"
        " not JSON, when the record had no value, or when it was erased",
    )
    raw_value: str | None = Field(
        default=None,
        description="Only with scope audit:payload: the exact bytes (base64), which"
        " payload_digest hashes; null when the record had no value or it was erased",
    )
    erased: bool | None = Field(
        default=None,
        description="Only with scope audit:payload: true when the person's data was erased"
        " (their data key destroyed): the value is gone for good, while the record, its digest"
        " and its proofs still verify",
    )


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None
    limit: int


class TreeHeadOut(BaseModel):
    version: int
    tree_size: int
    timestamp: int = Field(description="Milliseconds since the Unix epoch")
    root_hash: str = Field(description="base64")
    signature: str = Field(description="Ed25519, base64")
    key_id: str


class TreeHeadPage(BaseModel):
    items: list[TreeHeadOut]
    next_cursor: str | None


class RejectedHeadOut(BaseModel):
    tree_head: TreeHeadOut
    reason: str = Field(
        description="bad_signature, beyond_log, conflicting_root or timestamp_not_increasing"
    )
    detail: str


class RejectedHeadPage(BaseModel):
    items: list[RejectedHeadOut]
    next_cursor: str | None


class InclusionProofOut(BaseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(description="base64")
    audit_path: list[str] = Field(description="base64 hashes, leaf to root (RFC 9162)")
    tree_head: TreeHeadOut | None


class EventWithProof(BaseModel):
    record: EventOut
    inclusion_proof: InclusionProofOut | None


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="base64 hashes (RFC 9162)")
    first_tree_head: TreeHeadOut | None
    second_tree_head: TreeHeadOut | None


# --- recording auditor queries ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditorQuery:
    """Who asked for what: the content of one `query` record in the audit log."""

    auditor: str
    scopes: tuple[str, ...]
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    case_id: str | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def data(self) -> dict[str, Any]:
        return {
            "auditor": self.auditor,
            "scopes": list(self.scopes),
            "method": self.method,
            "path": self.path,
            "query": [list(p) for p in self.params],
            "case_id": self.case_id,
            "asked_at": self.at.isoformat(),
        }


class QueryRecorder(Protocol):
    """Durably records an auditor's query before it is answered; raises if it cannot."""

    async def record(self, query: AuditorQuery) -> None: ...

    async def close(self) -> None: ...


class MemoryQueryRecorder:
    """Keeps queries in a list: for tests and for a local API without Kafka."""

    def __init__(self) -> None:
        self.queries: list[AuditorQuery] = []

    async def record(self, query: AuditorQuery) -> None:
        self.queries.append(query)

    async def close(self) -> None:
        return None


class KafkaQueryRecorder:
    """Publishes each query as a binary-mode CloudEvent and waits for acks=all."""

    def __init__(
        self, client: KafkaClientConfig, *, topic_prefix: str = "", timeout_s: float = 10.0
    ) -> None:
        self.topic = topic_prefix + AUDIT_QUERIES_TOPIC
        self._client = client
        self._timeout = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._client.aiokafka(),
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=int(self._timeout * 1000),
                    client_id=self._client.username,
                )
                await asyncio.wait_for(producer.start(), self._timeout)
                self._producer = producer
            return self._producer

    async def record(self, query: AuditorQuery) -> None:
        envelope = Envelope.new(
            source=QUERY_SOURCE, event_type=QUERY_EVENT_TYPE, subject=query.case_id
        )
        headers, value = encode_binary(envelope, query.data())
        producer = await self._started()
        await asyncio.wait_for(
            producer.send_and_wait(self.topic, value, key=None, headers=headers), self._timeout
        )

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _clean(text: str, limit: int = _MAX_PARAM_CHARS) -> str:
    """A string safe to put into a JSON event: truncated, lone surrogates replaced."""
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


def _subject(value: Any) -> str | None:
    """The case a query is about, if it names one the CloudEvent subject can carry."""
    if isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable():
        return value
    return None


# --- helpers -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _head(head: SignedTreeHead | None) -> dict[str, Any] | None:
    return None if head is None else sth_to_dict(head)


def _json(data: Any, *, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers=headers)


def _bad(name: str, reason: str) -> ProblemError:
    return ProblemError(
        400,
        "Invalid parameter",
        f"{name}: {reason}",
        kind="invalid-parameters",
        extra={"invalid_params": [{"name": name, "reason": reason}]},
    )


def _instant(name: str, value: datetime | None) -> datetime | None:
    """A timezone-aware instant PostgreSQL can compare; naive times are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise _bad(name, "out of range") from None


def _position(kind: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(kind, cursor)
    except ValueError:
        raise _bad("cursor", "not a cursor this list issued") from None


REJECTED_CURSOR = "r"
Text = Annotated[str | None, Query(min_length=1, max_length=256, pattern=_TEXT)]
Seq = Annotated[int | None, Query(ge=0, le=MAX_SEQ)]


def create_api(
    settings: Settings,
    audit: AuditSettings | None = None,
    *,
    recorder: QueryRecorder | None = None,
    database: Database | None = None,
    auditors: AuditorRegistry | None = None,
    vault: PersonVault | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> FastAPI:
    """The API app. Defaults: the database from `settings`, auditors and limits from `audit`
    (or the environment), auditor queries recorded through Kafka, payloads opened with the
    deployment's key-encryption key, tree heads checked with `audit.public_key()` (both
    loaded at start-up, so a missing key stops the server rather than a later request)."""
    audit = audit or AuditSettings()
    registry = auditors if auditors is not None else audit.auditors()
    if not len(registry):
        log.warning("no auditor tokens configured: every request will get 401")
    db = database or Database(database_url(settings, AUDITOR_ROLE))
    owns_db = database is None  # a database passed in is started here but closed by its owner
    query_recorder: QueryRecorder = recorder or KafkaQueryRecorder(
        kafka_client(settings, service_principal("audit-api")), topic_prefix=settings.topic_prefix
    )
    cache = LeafHashCache()
    max_limit = audit.page_limit_max
    default_limit = min(audit.page_limit_default, max_limit)

    payloads = vault
    signed: Callable[[SignedTreeHead], bool] | None = None
    head_key = public_key

    def checker(key: Ed25519PublicKey) -> Callable[[SignedTreeHead], bool]:
        """Signature checks remembered: every request screens every head, and a head once
        read is immutable."""
        return functools.lru_cache(maxsize=1 << 16)(functools.partial(verify_tree_head, key))

    if head_key is not None:
        signed = checker(head_key)

    async def screened() -> ScreenedHeads:
        assert head_key is not None, "the lifespan loads the public key"
        return await screened_tree_heads(db.pool, head_key, signed=signed)

    def vault_for(who: Auditor) -> PersonVault | None:
        """What opens payloads for this auditor: nothing without the payload scope."""
        if not who.sees_payload:
            return None
        assert payloads is not None, "the lifespan loads the key-encryption key"
        return payloads

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal payloads, head_key, signed
        if head_key is None:
            head_key = audit.public_key()
            signed = checker(head_key)
        if payloads is None:
            payloads = person_vault(settings, cache_ttl_s=0)
        await db.start()
        try:
            yield
        finally:
            await query_recorder.close()
            if owns_db:
                await db.close()

    app = FastAPI(
        title="CaseBridge audit log",
        version="1",
        summary="Query the tamper-evident audit log, with Merkle proofs and signed tree heads.",
        description=__doc__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="auditorToken",
        description="Per-auditor bearer token (scopes audit:metadata, audit:payload).",
    )

    async def authenticated(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Auditor:
        """Who is asking, after their query has been recorded (or a 401/403/503)."""
        challenge = {"WWW-Authenticate": 'Bearer realm="casebridge-audit"'}
        if credentials is None:
            raise ProblemError(
                401,
                "Unauthorized",
                "a bearer token is required",
                kind="unauthorized",
                headers=challenge,
            )
        auditor = registry.authenticate(credentials.credentials)
        if auditor is None:
            raise ProblemError(
                401,
                "Unauthorized",
                "the bearer token is not valid",
                kind="unauthorized",
                headers={
                    "WWW-Authenticate": challenge["WWW-Authenticate"] + ', error="invalid_token"'
                },
            )
        if not auditor.scopes & {SCOPE_METADATA, SCOPE_PAYLOAD}:
            raise ProblemError(403, "Forbidden", "the token has no audit scope", kind="forbidden")
        params = tuple((_clean(k, 64), _clean(v)) for k, v in request.query_params.multi_items())[
            :_MAX_PARAMS
        ]
        query = AuditorQuery(
            auditor=auditor.id,
            scopes=tuple(sorted(auditor.scopes)),
            method=request.method,
            path=_clean(request.url.path, 1024),
            params=params,
            case_id=_subject(
                request.path_params.get("case_id") or request.query_params.get("case_id")
            ),
        )
        try:
            await query_recorder.record(query)
        except Exception as exc:
            log.error(
                "auditor query not recorded; refused", auditor=auditor.id, error=type(exc).__name__
            )
            raise ProblemError(
                503,
                "Service unavailable",
                "the query could not be recorded in the audit log, so it is not answered",
                kind="query-not-recorded",
                headers={"Retry-After": "5"},
            ) from None
        return auditor

    auth = Depends(authenticated)

    @app.exception_handler(ProblemError)
    async def _on_problem(request: Request, exc: ProblemError) -> Response:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> Response:
        invalid = [
            {"name": str(e.get("loc", ("?",))[-1]), "reason": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{i['name']}: {i['reason']}" for i in invalid)
        problem = ProblemError(
            400,
            "Invalid parameter",
            detail,
            kind="invalid-parameters",
            extra={"invalid_params": invalid},
        )
        return problem_response(request, problem)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        problem = ProblemError(
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )
        return problem_response(request, problem)

    @app.exception_handler(LogIntegrityError)
    async def _on_integrity(request: Request, exc: LogIntegrityError) -> Response:
        log.error("audit log integrity problem", seq=exc.seq, detail=exc.detail)
        problem = ProblemError(
            500,
            "Audit log integrity",
            f"the stored log is broken at seq {exc.seq}",
            kind="log-integrity",
            extra={"seq": exc.seq},
        )
        return problem_response(request, problem)

    @app.exception_handler(KeyUnavailableError)
    async def _on_key(request: Request, exc: KeyUnavailableError) -> Response:
        # Wrong key-encryption key, or a wrapped key altered in the database.
        log.error("a data key does not open", error=type(exc).__name__)
        problem = ProblemError(
            500,
            "Payload key unavailable",
            "a payload's data key does not open with this deployment's key-encryption key",
            kind="key-unavailable",
        )
        return problem_response(request, problem)

    @app.exception_handler(Exception)
    async def _on_error(request: Request, exc: Exception) -> Response:
        if isinstance(
            exc,
            OSError
            | TimeoutError
            | asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError
            | asyncpg.TooManyConnectionsError,
        ):
            log.warning("database unavailable", error=type(exc).__name__)
            problem = ProblemError(
                503,
                "Service unavailable",
                "the audit database is unavailable",
                kind="unavailable",
                headers={"Retry-After": "5"},
            )
        else:
            log.exception("unexpected error", path=request.url.path)
            problem = ProblemError(
                500, "Internal Server Error", "unexpected error", kind="internal"
            )
        return problem_response(request, problem)

    common = problem_responses(400, 401, 403, 503)

    @app.get(
        "/v1/events",
        response_model=EventPage,
        responses=common,
        summary="Records matching every given filter, in seq order (keyset pages)",
    )
    async def events(
        request: Request,
        who: Annotated[Auditor, auth],
        case_id: Text = None,
        agency: Text = None,
        event_type: Annotated[
            str | None, Query(alias="type", min_length=1, max_length=256, pattern=_TEXT)
        ] = None,
        outcome: Text = None,
        since: Annotated[datetime | None, Query(description="recorded_at >= since")] = None,
        until: Annotated[datetime | None, Query(description="recorded_at < until")] = None,
        from_seq: Seq = None,
        to_seq: Seq = None,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int | None, Query(ge=1, le=max_limit)] = None,
    ) -> Response:
        start, end = _instant("since", since), _instant("until", until)
        if start is not None and end is not None and start > end:
            raise _bad("until", "must not be before since")
        if from_seq is not None and to_seq is not None and from_seq > to_seq:
            raise _bad("to_seq", "must not be below from_seq")
        f = EventFilter(case_id, agency, event_type, outcome, start, end, from_seq, to_seq)
        page_size = limit or default_limit
        page = await find_events(
            db.pool,
            f,
            after=_position(EVENTS_CURSOR, cursor),
            limit=page_size,
            vault=vault_for(who),
        )
        headers = {}
        if page.next_cursor is not None:
            url = request.url.include_query_params(cursor=page.next_cursor)
            headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
        body = {
            "items": [r.to_dict() for r in page.items],
            "next_cursor": page.next_cursor,
            "limit": page_size,
        }
        return _json(body, headers=headers)

    @app.get(
        "/v1/events/{seq}",
        response_model=EventWithProof,
        responses=problem_responses(400, 401, 403, 404, 409, 503),
        summary="One record, with its inclusion proof if asked",
    )
    async def event(
        who: Annotated[Auditor, auth],
        seq: Annotated[int, Path(ge=0, le=MAX_SEQ)],
        proof: Annotated[bool, Query(description="add the inclusion proof")] = False,
        tree_size: Annotated[
            int | None, Query(ge=1, le=MAX_SEQ, description="default: the latest signed head")
        ] = None,
    ) -> Response:
        row = await get_event(db.pool, seq, vault=vault_for(who))
        if row is None:
            raise ProblemError(404, "Not Found", f"no record with seq {seq}", kind="not-found")
        body: dict[str, Any] = {"record": row.to_dict(), "inclusion_proof": None}
        if proof:
            try:
                p = await inclusion_proof(db.pool, cache, seq, tree_size, heads=await screened())
            except NotFoundError as exc:
                raise ProblemError(409, "Not covered", str(exc), kind="not-covered") from None
            except NotCoveredError as exc:
                raise ProblemError(409, "Not covered", str(exc), kind="not-covered") from None
            body["inclusion_proof"] = {
                "leaf_index": p.seq,
                "tree_size": p.tree_size,
                "leaf_hash": _b64(p.leaf_hash),
                "audit_path": [_b64(h) for h in p.path],
                "tree_head": _head(p.tree_head),
            }
        return _json(body)

    @app.get(
        "/v1/tree-heads/latest",
        response_model=TreeHeadOut,
        responses=problem_responses(401, 403, 404, 503),
        summary="The latest signed tree head",
    )
    async def latest(_: Annotated[Auditor, auth]) -> Response:
        head = (await screened()).latest
        if head is None:
            raise ProblemError(404, "Not Found", "no signed tree head yet", kind="not-found")
        return _json(sth_to_dict(head))

    @app.get(
        "/v1/tree-heads",
        response_model=TreeHeadPage,
        responses=common,
        summary="Signed tree heads, oldest first (the rejected ones are not among them)",
    )
    async def heads(
        _: Annotated[Auditor, auth],
        cursor: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int | None, Query(ge=1, le=max_limit)] = None,
    ) -> Response:
        items, next_cursor = tree_head_page(
            await screened(), after=_position(HEADS_CURSOR, cursor), limit=limit or default_limit
        )
        return _json({"items": [sth_to_dict(h) for h in items], "next_cursor": next_cursor})

    @app.get(
        "/v1/tree-heads/rejected",
        response_model=RejectedHeadPage,
        responses=common,
        summary="Tree heads in the database that are not used, each with the reason",
    )
    async def rejected(
        _: Annotated[Auditor, auth],
        cursor: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int | None, Query(ge=1, le=max_limit)] = None,
    ) -> Response:
        after = _position(REJECTED_CURSOR, cursor)
        rest = [r for r in (await screened()).rejected if after is None or r.head.tree_size > after]
        page = rest[: limit or default_limit]
        more = len(rest) > len(page)
        next_cursor = encode_cursor(REJECTED_CURSOR, page[-1].head.tree_size) if more else None
        return _json({"items": [r.to_dict() for r in page], "next_cursor": next_cursor})

    @app.get(
        "/v1/proofs/consistency",
        response_model=ConsistencyProofOut,
        responses=problem_responses(400, 401, 403, 409, 503),
        summary="Proof that the tree of size `first` is a prefix of the tree of size `second`",
    )
    async def consistency(
        _: Annotated[Auditor, auth],
        first: Annotated[int, Query(ge=0, le=MAX_SEQ)],
        second: Annotated[
            int | None, Query(ge=0, le=MAX_SEQ, description="default: the latest signed head")
        ] = None,
    ) -> Response:
        if second is not None and first > second:
            raise _bad("second", "must not be below first")
        try:
            p = await consistency_proof(db.pool, cache, first, second, heads=await screened())
        except (NotFoundError, NotCoveredError) as exc:
            raise ProblemError(409, "Not covered", str(exc), kind="not-covered") from None
        return _json(
            {
                "first": p.first,
                "second": p.second,
                "proof": [_b64(h) for h in p.path],
                "first_tree_head": _head(p.first_head),
                "second_tree_head": _head(p.second_head),
            }
        )

    @app.get(
        "/v1/cases/{case_id}/export",
        responses={
            200: {"content": {NDJSON: {}}, "description": "One record (EventOut) per line"},
            **problem_responses(400, 401, 403, 404, 503),
        },
        response_class=StreamingResponse,
        summary="A case's whole history as JSON Lines, in seq order",
    )
    async def export(
        who: Annotated[Auditor, auth],
        case_id: Annotated[str, Path(min_length=1, max_length=256, pattern=_TEXT)],
    ) -> StreamingResponse:
        if not await case_exists(db.pool, case_id):
            raise ProblemError(404, "Not Found", "no records for this case", kind="not-found")
        lines = export_case(db.pool, case_id, vault=vault_for(who))
        return StreamingResponse(lines, media_type=NDJSON)

    return app
