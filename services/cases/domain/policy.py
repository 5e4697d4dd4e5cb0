"""The case policy (``services/cases/policy.yaml``): deadlines, escalation, who may receive a case.

Kept as data so a data-protection officer can review it without reading code; validated on
load so that a typo cannot silently widen what an agency sees. Every rule names the ministerial
priority it serves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.cases import CaseKind, CaseState
from schemas.priorities import MinisterialPriority
from schemas.vocab import AgencyKind, SarPhase
from services.cases.domain.rules import PolicyRule

POLICY_PATH = Path(__file__).resolve().parent.parent / "policy.yaml"

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class EscalationRole(StrEnum):
    """Who a missed deadline is escalated to, resolved against the case and the directory."""

    owner = "owner"
    owner_fallback = "owner_fallback"
    receiver = "receiver"
    receiver_fallback = "receiver_fallback"


class _Rule(_Strict):
    rule_id: RuleId
    serves: MinisterialPriority
    why: str = Field(max_length=300)


class _DeadlineRule(_Rule):
    kind: CaseKind
    escalate_to: tuple[EscalationRole, ...] = Field(min_length=1)


class InStateDeadline(_DeadlineRule):
    """Leave one of ``states`` within ``within`` of entering it (or of the phase's start)."""

    trigger: Literal["in_state"]
    states: tuple[CaseState, ...] = Field(min_length=1)
    phases: tuple[SarPhase, ...] = ()
    """If given, the deadline runs only while the SAR phase is one of these."""
    anchor: Literal["state_entered", "phase_since"] = "state_entered"
    within: dt.timedelta


class HandoverDeadline(_DeadlineRule):
    """Answer (accept or decline) a handover request within ``within``."""

    trigger: Literal["handover_unanswered"]
    within: dt.timedelta


class MonitoringDeadline(_DeadlineRule):
    """The n-th monitoring visit is due n-th entry months after arrival (plus ``grace``)."""

    trigger: Literal["monitoring_visits"]
    months_after_arrival: tuple[int, ...] = Field(min_length=1)
    grace: dt.timedelta = dt.timedelta(0)


class ChildProtectionDeadline(_DeadlineRule):
    """A child's case has a child-protection agency within ``within`` of opening."""

    trigger: Literal["child_protection_unassigned"]
    within: dt.timedelta


DeadlineRule = Annotated[
    InStateDeadline | HandoverDeadline | MonitoringDeadline | ChildProtectionDeadline,
    Field(discriminator="trigger"),
]


class SharingPolicy(_Strict):
    """Who may receive a case and who may override the consent gate (what each agency is then
    told is the data-sharing policy's, services/privacy/policy.yaml)."""

    entitled_kinds: Mapping[CaseKind, frozenset[AgencyKind]]
    override_kinds: frozenset[AgencyKind] = frozenset()
    child_override_kinds: frozenset[AgencyKind] = frozenset()
    """May override for a child (a best-interests decision), in addition to override_kinds."""


class ProtectionRule(_Rule):
    """A rule enforced in code (consent gate, child workflow...), listed for oversight."""


class CasePolicy(_Strict):
    version: str = Field(max_length=40)
    deadlines: tuple[DeadlineRule, ...]
    sharing: SharingPolicy
    protection_rules: tuple[ProtectionRule, ...]

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> Self:
        ids = [r.rule_id for r in (*self.deadlines, *self.protection_rules)]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"rule ids used twice: {twice}")
        return self

    def rule_ids(self) -> frozenset[str]:
        return frozenset(r.rule_id for r in (*self.deadlines, *self.protection_rules))


def parse_policy(text: str) -> CasePolicy:
    """Validate policy YAML text (raises pydantic.ValidationError or yaml.YAMLError)."""
    return CasePolicy.model_validate(yaml.safe_load(text))


def load_policy(path: Path = POLICY_PATH) -> CasePolicy:
    """Read and validate a policy file; the packaged one by default. Call once at start-up."""
    return parse_policy(path.read_text(encoding="utf-8"))


def policy_rules(
    policy: CasePolicy, *, source: str = "services/cases/policy.yaml"
) -> list[PolicyRule]:
    """The policy's rules in the form ``rules_by_priority`` groups for printing."""
    return [
        PolicyRule(rule_id=r.rule_id, priority=r.serves, description=r.why, source=source)
        for r in (*policy.deadlines, *policy.protection_rules)
    ]
