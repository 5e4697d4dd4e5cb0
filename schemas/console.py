"""What the caseworkers' console records about its own use (`casebridge.console.activity`).

One record per thing a console user did or tried: signing in or out, reading a case or the
case list, sending an action. It names who (account, agency, role) and which case, never case
data or a password, and is appended to the audit log like every record, so an auditor can
answer "who looked at this case". The actions themselves travel as the agency's own CloudEvents
on its inbound topic; the record here links to them by event id.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import StrictInt, StringConstraints

from schemas.common import AgencyId, CaseId, StrictModel, Timestamp

ACTIVITY_EVENT_TYPE = "org.casebridge.console.activity.v1"
ACTIVITY_SOURCE = "urn:casebridge:console"

_Printable = Annotated[str, StringConstraints(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]


class ConsoleActivityKind(StrEnum):
    signed_in = "signed_in"
    sign_in_refused = "sign_in_refused"
    signed_out = "signed_out"
    read_cases = "read_cases"
    read_case = "read_case"
    action_sent = "action_sent"
    action_refused = "action_refused"
    """Refused by the console before sending (stale version, not offered, invalid fields)."""
    audit_search = "audit_search"
    """An auditor searched the audit log (the filters are in `query`)."""
    audit_record = "audit_record"
    """An auditor opened one audit record and its inclusion proof (`seq`)."""


class ConsoleActivity(StrictModel):
    """Who did what in the console, when; no case data."""

    kind: ConsoleActivityKind
    username: _Printable
    """The account; for a refused sign-in, the name that was typed (truncated)."""
    agency: AgencyId | None = None
    role: _Printable | None = None
    case_id: CaseId | None = None
    action_type: _Printable | None = None
    """The CloudEvents type of the action sent or refused."""
    action_event_id: _Printable | None = None
    """The id of the action's CloudEvent on the agency's inbound topic."""
    reason: _Printable | None = None
    """Why it was refused (a short code)."""
    query: _Printable | None = None
    """An auditor's search filters, `name=value` joined by `&`."""
    seq: StrictInt | None = None
    """The audit record an auditor opened."""
    at: Timestamp
