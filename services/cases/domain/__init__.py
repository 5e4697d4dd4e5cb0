"""Case coordination without I/O: decide and apply, deadlines, visibility, person keys, policy.

The lead's handlers load a case (or replay its log), call ``decide`` with the injected clock's
``now``, append ``decision.events``, publish them with ``case_updates`` and the follow-ups, and
store ``deadlines_for(decision.case)``.
"""

from services.cases.domain.aggregate import (
    CaseEvent,
    Decision,
    Message,
    Opening,
    apply,
    decide,
    duplicate_flags,
    replay,
)
from services.cases.domain.clock import Clock, FakeClock, SystemClock
from services.cases.domain.deadlines import Deadline, deadlines_for, due_escalations, next_due
from services.cases.domain.invariants import violations
from services.cases.domain.links import link_actions
from services.cases.domain.model import (
    CASE_ADAPTER,
    DUPLICATE_KINDS,
    STATES,
    AgencyInfo,
    Case,
)
from services.cases.domain.person_key import normalise_name, person_key
from services.cases.domain.policy import (
    POLICY_PATH,
    CasePolicy,
    load_policy,
    parse_policy,
    policy_rules,
)
from services.cases.domain.rules import PolicyRule, rules_by_priority
from services.cases.domain.transition import CaseContext, FollowUp
from services.cases.domain.visibility import case_updates, recipients, view_for

__all__ = [
    "CASE_ADAPTER",
    "DUPLICATE_KINDS",
    "POLICY_PATH",
    "STATES",
    "AgencyInfo",
    "Case",
    "CaseContext",
    "CaseEvent",
    "CasePolicy",
    "Clock",
    "Deadline",
    "Decision",
    "FakeClock",
    "FollowUp",
    "Message",
    "Opening",
    "PolicyRule",
    "SystemClock",
    "apply",
    "case_updates",
    "deadlines_for",
    "decide",
    "due_escalations",
    "duplicate_flags",
    "link_actions",
    "load_policy",
    "next_due",
    "normalise_name",
    "parse_policy",
    "person_key",
    "policy_rules",
    "recipients",
    "replay",
    "rules_by_priority",
    "view_for",
    "violations",
]
