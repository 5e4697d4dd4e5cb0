"""The console's web pages: server-rendered HTML forms that work without JavaScript.

Signing in sets an HttpOnly, SameSite=Strict session cookie; every form that changes something
also carries the session's CSRF token, checked here. The pages use the same `Casework` as the
JSON API, so what a caseworker may see and do is decided in one place.
"""

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.console.accounts import Role, User
from services.console.actions import ACTIONS, from_form
from services.console.casework import (
    Casework,
    ForbiddenError,
    InvalidActionError,
    NotFoundError,
    NotOfferedError,
    StaleVersionError,
    UnrecordedError,
)
from services.console.config import ConsoleSettings
from services.console.web import SESSION_COOKIE, Identity, as_problem
from services.runtime.problems import ProblemError

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
PageSession = tuple[str, User, str] | None


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def build_pages(identity: Identity, casework: Casework, settings: ConsoleSettings) -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    session_dep = Depends(identity.page_session)

    def render(
        request: Request, name: str, context: dict[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status)

    @pages.get("/")
    async def home(session: Annotated[PageSession, session_dep]) -> Response:
        if session is None:
            return _see_other("/sign-in")
        return _see_other("/cases" if session[1].role == Role.caseworker else "/audit")

    @pages.get("/sign-in")
    async def sign_in_form(request: Request) -> HTMLResponse:
        return render(request, "sign_in.html", {"error": None, "username": ""})

    @pages.post("/sign-in")
    async def sign_in(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=256)],
    ) -> Response:
        try:
            session = await identity.sign_in(username, password)
        except ProblemError as refused:
            return render(
                request,
                "sign_in.html",
                {"error": refused.detail, "username": username},
                status=refused.status,
            )
        response = _see_other("/")
        response.set_cookie(
            SESSION_COOKIE,
            session.token,
            max_age=int(settings.session_max_s),
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
            path="/",
        )
        return response

    @pages.post("/sign-out")
    async def sign_out(
        session: Annotated[PageSession, session_dep], csrf: Annotated[str, Form()] = ""
    ) -> Response:
        if session is not None and csrf == session[2]:
            await identity.sign_out(session[1], session[0])
        response = _see_other("/sign-in")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @pages.get("/cases")
    async def cases(request: Request, session: Annotated[PageSession, session_dep]) -> Response:
        if session is None:
            return _see_other("/sign-in")
        _, user, csrf = session
        try:
            listed = await casework.cases(user)
        except (ForbiddenError, UnrecordedError) as exc:
            return _error(request, user, csrf, exc)
        return render(
            request,
            "cases.html",
            {
                "user": user,
                "csrf": csrf,
                "cases": listed,
                "overdue": sum(1 for c in listed if c.overdue),
            },
        )

    async def case_page(
        request: Request,
        user: User,
        csrf: str,
        case_id: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        try:
            view = await casework.case(user, case_id)
        except (NotFoundError, ForbiddenError, UnrecordedError) as exc:
            return _error(request, user, csrf, exc)
        return render(
            request,
            "case.html",
            {
                "user": user,
                "csrf": csrf,
                "view": view,
                "case": view.summary,
                "notice": notice,
                "error": error,
            },
            status=status,
        )

    @pages.get("/cases/{case_id}")
    async def case(
        request: Request,
        case_id: str,
        session: Annotated[PageSession, session_dep],
        sent: str | None = None,
        outcome: str | None = None,
    ) -> Response:
        if session is None:
            return _see_other("/sign-in")
        notice = None
        if sent:
            label = sent.replace("_", " ")
            notice = (
                f"Recorded: {label}."
                if outcome == "recorded"
                else f"Sent: {label}. It is not recorded yet; reload in a moment."
            )
        return await case_page(request, session[1], session[2], case_id, notice=notice)

    @pages.post("/cases/{case_id}/actions/{name}")
    async def act(request: Request, case_id: str, name: str) -> Response:
        session = await identity.page_session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return _see_other("/sign-in")
        _, user, csrf = session
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if form.pop("csrf", None) != csrf:
            return _error(request, user, csrf, ForbiddenError("the form has expired: reload"))
        try:
            version = int(form.pop("version", ""))
        except ValueError:
            version = -1
        try:
            outcome = await casework.act(
                user, case_id, name, _fields_of(name, form), if_match=version
            )
        except (StaleVersionError, NotOfferedError, InvalidActionError) as exc:
            problem = as_problem(exc)
            return await case_page(
                request, user, csrf, case_id, error=problem.detail, status=problem.status
            )
        except (NotFoundError, ForbiddenError, UnrecordedError) as exc:
            return _error(request, user, csrf, exc)
        state = "recorded" if outcome.recorded else "pending"
        return _see_other(f"/cases/{quote(case_id)}?sent={quote(name)}&outcome={state}")

    def _error(request: Request, user: User | None, csrf: str, exc: Exception) -> HTMLResponse:
        problem = as_problem(exc)
        return render(
            request,
            "error.html",
            {"user": user, "csrf": csrf, "problem": problem},
            status=problem.status,
        )

    return pages


def _fields_of(name: str, form: dict[str, str]) -> dict[str, Any]:
    action = ACTIONS.get(name)
    return {} if action is None else from_form(action, form)
