"""Refusals over HTTP as RFC 9457 problem details, for every CaseBridge web API (the auditors'
API and the caseworkers' console): one error type, one body, one OpenAPI description."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://casebridge.example/problems/"


class ProblemError(Exception):
    """An error answered as `application/problem+json`; its `type` is PROBLEM_BASE + `kind`
    (by default the title, lower case, hyphenated)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = PROBLEM_BASE + (kind or title.lower().replace(" ", "-"))
        self.headers = headers or {}
        self.extra = extra or {}


class ProblemOut(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    invalid_params: list[dict[str, str]] | None = Field(
        default=None, description="For 400: which parameters were rejected and why."
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry for refusals with these statuses."""
    return {
        s: {"model": ProblemOut, "content": {PROBLEM_JSON: {}}, "description": "Problem details"}
        for s in statuses
    }


def problem_response(request: Request, problem: ProblemError) -> Response:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return Response(
        orjson.dumps(body),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )
