"""The caseworkers' JSON API (`/api/v1`), described by the OpenAPI document it serves.

    POST   /api/v1/session                         sign in: a bearer token, short-lived
    DELETE /api/v1/session                         sign out
    GET    /api/v1/cases                           the agency's cases, overdue first
    GET    /api/v1/cases/{case_id}                 summary, timeline, deadlines, actions open
                                                   now; `ETag` is the case version
    POST   /api/v1/cases/{case_id}/actions/{name}  send an action, `If-Match: "<version>"`

A case another agency holds answers 404, exactly like one that does not exist. `If-Match` is
required on actions (428 without it) and must name the version the caseworker saw (412 when
the case has moved); an action not open to the agency now is 409; invalid fields 422. An action
the cases service records within `action_wait_s` answers 200, else 202 (still pending; the
outcome arrives on the agency's updates or rejections topic). Errors are RFC 9457 problem
details.
"""

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Response
from pydantic import BaseModel, Field

from services.cases.reads import CaseSummary
from services.console.accounts import User
from services.console.casework import CaseView, Casework
from services.console.web import Identity, bearer_token
from services.runtime.problems import ProblemError, problem_responses

_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')


class SignIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class SessionOut(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: dt.datetime = Field(description="Renewed by use, up to the session's end.")
    username: str
    agency: str
    role: str


class CaseOut(BaseModel):
    case_id: str
    kind: str
    state: str
    version: int
    owner: str
    updated_at: dt.datetime
    next_due_at: dt.datetime | None
    overdue: bool


class CaseList(BaseModel):
    cases: list[CaseOut]


class TimelineOut(BaseModel):
    version: int
    event_type: str
    action: str | None = Field(description="For a recorded transition, the action taken.")
    recorded_at: dt.datetime
    actor: str | None
    state: str | None


class DeadlineOut(BaseModel):
    deadline_id: str
    rule_id: str | None
    due_at: dt.datetime
    owner: str | None
    escalate_to: list[str]


class FieldOut(BaseModel):
    name: str
    kind: str
    required: bool
    choices: list[str]


class ActionOut(BaseModel):
    name: str
    event_type: str
    description: str
    fields: list[FieldOut] | None = Field(
        description="Null when a field is a list or a record: see the AsyncAPI schema."
    )


class CaseDetail(BaseModel):
    case: CaseOut
    timeline: list[TimelineOut]
    deadlines: list[DeadlineOut]
    actions: list[ActionOut]


class ActionResult(BaseModel):
    event_id: str = Field(description="The action's CloudEvent id on the agency's inbound topic.")
    event_type: str
    outcome: str = Field(description="`recorded`, or `pending` when not yet recorded.")
    version: int = Field(description="The case's version when answered.")


def case_out(s: CaseSummary) -> CaseOut:
    return CaseOut(
        case_id=s.case_id,
        kind=s.kind,
        state=s.state,
        version=s.version,
        owner=s.owner,
        updated_at=s.updated_at,
        next_due_at=s.next_due_at,
        overdue=s.overdue,
    )


def detail_out(view: CaseView) -> CaseDetail:
    return CaseDetail(
        case=case_out(view.summary),
        timeline=[
            TimelineOut(
                version=t.version,
                event_type=t.event_type,
                action=t.action,
                recorded_at=t.recorded_at,
                actor=t.actor,
                state=t.state,
            )
            for t in view.timeline
        ],
        deadlines=[
            DeadlineOut(
                deadline_id=d.deadline_id,
                rule_id=d.rule_id,
                due_at=d.due_at,
                owner=d.owner,
                escalate_to=list(d.escalate_to),
            )
            for d in view.deadlines
        ],
        actions=[
            ActionOut(
                name=a.name,
                event_type=a.event_type,
                description=a.description,
                fields=None
                if a.fields is None
                else [
                    FieldOut(name=f.name, kind=f.kind, required=f.required, choices=list(f.choices))
                    for f in a.fields
                ],
            )
            for a in view.actions
        ],
    )


def version_of(if_match: str | None) -> int:
    if if_match is None:
        raise ProblemError(428, "Precondition required", "send If-Match with the case's ETag")
    match = _ETAG.match(if_match)
    if match is None:
        raise ProblemError(400, "Invalid If-Match", 'If-Match must be the case ETag, e.g. "3"')
    return int(match.group(1))


CaseIdPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]


def build_api(identity: Identity, casework: Casework) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["caseworkers"])
    user_dep = Depends(identity.api_user)

    @api.post(
        "/session",
        status_code=201,
        response_model=SessionOut,
        responses=problem_responses(401),
        summary="Sign in",
    )
    async def sign_in(body: SignIn) -> SessionOut:
        session = await identity.sign_in(body.username, body.password)
        return SessionOut(
            token=session.token,
            expires_at=session.expires_at,
            username=session.user.username,
            agency=session.user.agency,
            role=session.user.role.value,
        )

    @api.delete("/session", status_code=204, summary="Sign out")
    async def sign_out(
        user: Annotated[User, user_dep], token: Annotated[str, Depends(bearer_token)]
    ) -> Response:
        await identity.sign_out(user, token)
        return Response(status_code=204)

    @api.get(
        "/cases",
        response_model=CaseList,
        responses=problem_responses(401, 403, 503),
        summary="The agency's cases, overdue first",
    )
    async def cases(user: Annotated[User, user_dep]) -> CaseList:
        return CaseList(cases=[case_out(c) for c in await casework.cases(user)])

    @api.get(
        "/cases/{case_id}",
        response_model=CaseDetail,
        responses=problem_responses(401, 403, 404, 503),
        summary="A case: timeline, deadlines and the actions open now",
    )
    async def case(
        user: Annotated[User, user_dep], case_id: CaseIdPath, response: Response
    ) -> CaseDetail:
        view = await casework.case(user, case_id)
        response.headers["ETag"] = f'"{view.summary.version}"'
        return detail_out(view)

    @api.post(
        "/cases/{case_id}/actions/{name}",
        response_model=ActionResult,
        responses={
            202: {"model": ActionResult, "description": "Sent, not yet recorded"},
            **problem_responses(400, 401, 403, 404, 409, 412, 422, 428, 503),
        },
        summary="Send an action on the case as the caseworker's agency",
    )
    async def act(
        user: Annotated[User, user_dep],
        case_id: CaseIdPath,
        name: Annotated[str, Path(max_length=64, pattern=r"^[a-z_]+$")],
        response: Response,
        fields: Annotated[dict[str, Any], Body()] | None = None,
        if_match: Annotated[str | None, Header()] = None,
    ) -> ActionResult:
        version = version_of(if_match)
        outcome = await casework.act(user, case_id, name, fields or {}, if_match=version)
        response.status_code = 200 if outcome.recorded else 202
        response.headers["ETag"] = f'"{outcome.version}"'
        return ActionResult(
            event_id=outcome.event_id,
            event_type=outcome.event_type,
            outcome="recorded" if outcome.recorded else "pending",
            version=outcome.version,
        )

    return api
