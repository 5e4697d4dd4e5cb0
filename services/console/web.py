"""HTTP plumbing shared by the console's pages and its JSON API: who is signed in, and how
refusals are answered (RFC 9457 problem details for the API)."""

from typing import Annotated

from fastapi import Cookie, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from schemas.console import ConsoleActivity, ConsoleActivityKind
from services.console.accounts import Accounts, Session, User
from services.console.activity import ActivityLog, now
from services.console.casework import (
    ForbiddenError,
    InvalidActionError,
    NotFoundError,
    NotOfferedError,
    StaleVersionError,
    UnrecordedError,
    activity_of,
    record_activity,
)
from services.runtime.problems import ProblemError, problem_response

SESSION_COOKIE = "casebridge_session"


def as_problem(exc: Exception) -> ProblemError:
    """The answer to a refusal from `Casework`."""
    if isinstance(exc, NotFoundError):
        return ProblemError(404, "Not found", "no such case for your agency")
    if isinstance(exc, ForbiddenError):
        return ProblemError(403, "Forbidden", str(exc))
    if isinstance(exc, StaleVersionError):
        return ProblemError(
            412,
            "Precondition failed",
            f"the case has changed: {exc}; reload it and decide again",
            headers={"ETag": f'"{exc.current}"'},
            extra={"current_version": exc.current},
        )
    if isinstance(exc, NotOfferedError):
        return ProblemError(409, "Conflict", str(exc))
    if isinstance(exc, InvalidActionError):
        return ProblemError(422, "Invalid action", str(exc), extra={"invalid_params": exc.errors})
    if isinstance(exc, UnrecordedError):
        return ProblemError(
            503,
            "Service unavailable",
            "this could not be recorded in the audit log, so it was not done",
            headers={"Retry-After": "5"},
        )
    raise exc


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return problem_response(request, exc)

    async def _refused(request: Request, exc: Exception) -> Response:
        return problem_response(request, as_problem(exc))

    for kind in (
        NotFoundError,
        ForbiddenError,
        StaleVersionError,
        NotOfferedError,
        InvalidActionError,
        UnrecordedError,
    ):
        app.add_exception_handler(kind, _refused)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        invalid = [
            {"name": ".".join(str(p) for p in e.get("loc", ())), "reason": str(e.get("msg"))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{i['name']}: {i['reason']}" for i in invalid)
        return problem_response(
            request, ProblemError(422, "Invalid request", detail, extra={"invalid_params": invalid})
        )


_bearer = HTTPBearer(auto_error=False, scheme_name="sessionToken")


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    if credentials is None:
        raise ProblemError(
            401,
            "Unauthorized",
            "sign in first: POST /api/v1/session, then send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="casebridge-console"'},
        )
    return credentials.credentials


class Identity:
    """Signing in and out (recorded like any activity), and who a request comes from."""

    def __init__(self, accounts: Accounts, activity: ActivityLog) -> None:
        self.accounts = accounts
        self._activity = activity

    async def sign_in(self, username: str, password: str) -> Session:
        session = await self.accounts.sign_in(username, password)
        if session is None:
            typed = "".join(ch for ch in username[:64] if ch.isprintable()) or "-"
            await record_activity(
                self._activity,
                ConsoleActivity(kind=ConsoleActivityKind.sign_in_refused, username=typed, at=now()),
            )
            raise ProblemError(401, "Unauthorized", "wrong username or password")
        await record_activity(
            self._activity, activity_of(session.user, ConsoleActivityKind.signed_in)
        )
        return session

    async def sign_out(self, user: User, token: str) -> None:
        await self.accounts.sign_out(token)
        await record_activity(self._activity, activity_of(user, ConsoleActivityKind.signed_out))

    async def api_user(self, token: Annotated[str, Security(bearer_token)]) -> User:
        active = await self.accounts.session(token)
        if active is None:
            raise ProblemError(
                401,
                "Unauthorized",
                "the session is not valid (signed out, expired or unknown): sign in again",
                headers={
                    "WWW-Authenticate": 'Bearer realm="casebridge-console", error="invalid_token"'
                },
            )
        return active.user

    async def page_session(
        self, casebridge_session: Annotated[str | None, Cookie()] = None
    ) -> tuple[str, User, str] | None:
        """(token, user, csrf token) of the page's session cookie, or None."""
        if not casebridge_session:
            return None
        active = await self.accounts.session(casebridge_session)
        if active is None:
            return None
        return casebridge_session, active.user, active.csrf_token
