"""The auditors' pages: search the audit log, open a record with its inclusion proof checked
here, and see the latest signed tree head. For console accounts with the auditor role only."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from schemas.console import ConsoleActivityKind
from services.console.accounts import Role, User
from services.console.activity import ActivityLog
from services.console.auditing import SEARCH_FIELDS, AuditClient, AuditUnavailableError
from services.console.casework import UnrecordedError, activity_of, record_activity
from services.console.pages import TEMPLATES, PageSession
from services.console.web import Identity
from services.runtime.problems import ProblemError

_MAX_FILTER = 128


def build_audit_pages(
    identity: Identity, activity: ActivityLog, client: AuditClient | None
) -> APIRouter:
    pages = APIRouter(include_in_schema=False, prefix="/audit")
    session_dep = Depends(identity.page_session)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status)

    def refused(request: Request, user: User, csrf: str, status: int, detail: str) -> Response:
        titles = {403: "Forbidden", 404: "Not found", 503: "Service unavailable"}
        problem = ProblemError(status, titles.get(status, "Error"), detail)
        return render(
            request, "error.html", {"user": user, "csrf": csrf, "problem": problem}, status
        )

    async def record(user: User, kind: ConsoleActivityKind, **fields: Any) -> None:
        await record_activity(activity, activity_of(user, kind, **fields))

    def gate(request: Request, session: PageSession) -> tuple[User, str] | Response:
        """The signed-in auditor, or the answer for anyone else."""
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        _, user, csrf = session
        if user.role != Role.auditor:
            return refused(request, user, csrf, 403, "only auditors read the audit log")
        return user, csrf

    @pages.get("")
    async def search(request: Request, session: Annotated[PageSession, session_dep]) -> Response:
        gated = gate(request, session)
        if isinstance(gated, Response):
            return gated
        user, csrf = gated
        filters = {
            k: v[:_MAX_FILTER]
            for k in SEARCH_FIELDS
            if (v := request.query_params.get(k, "").strip())
        }
        context: dict[str, Any] = {
            "user": user,
            "csrf": csrf,
            "filters": filters,
            "fields": SEARCH_FIELDS,
            "items": None,
            "head": None,
            "error": None,
        }
        if client is None:
            context["error"] = "The auditors' API is not configured for the console."
            return render(request, "audit.html", context, 503)
        query = "&".join(f"{k}={v}" for k, v in filters.items())[:_MAX_FILTER]
        try:
            await record(user, ConsoleActivityKind.audit_search, query=query or None)
            context["head"] = await client.latest_head()
            if filters:
                context["items"] = await client.search(filters)
        except UnrecordedError:
            return refused(request, user, csrf, 503, "could not be recorded, so not done")
        except AuditUnavailableError as exc:
            context["error"] = str(exc)
            return render(request, "audit.html", context, 503)
        return render(request, "audit.html", context)

    @pages.get("/records/{seq}")
    async def open_record(
        request: Request, seq: int, session: Annotated[PageSession, session_dep]
    ) -> Response:
        gated = gate(request, session)
        if isinstance(gated, Response):
            return gated
        user, csrf = gated
        if client is None:
            return refused(request, user, csrf, 503, "the auditors' API is not configured")
        try:
            await record(user, ConsoleActivityKind.audit_record, seq=seq)
            checked = await client.record(seq)
        except UnrecordedError:
            return refused(request, user, csrf, 503, "could not be recorded, so not done")
        except AuditUnavailableError as exc:
            return refused(request, user, csrf, 503, str(exc))
        if checked is None:
            return refused(request, user, csrf, 404, f"no audit record {seq}")
        return render(
            request, "audit_record.html", {"user": user, "csrf": csrf, "checked": checked}
        )

    return pages
