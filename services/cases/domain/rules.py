"""Policy rules as printed for oversight, grouped by the ministerial priority each serves.

Every routing, escalation and protection rule names a priority, so an oversight body can ask
"what does this system do for victim identification?" and get a list, not a code tour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.priorities import MinisterialPriority


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule: what it does, which priority it serves, and which policy file holds it."""

    rule_id: str
    priority: MinisterialPriority
    description: str
    source: str


def rules_by_priority(
    rules: Iterable[PolicyRule],
) -> list[tuple[MinisterialPriority, list[PolicyRule]]]:
    """Group rules by priority in the ministers' order; priorities without a rule are omitted."""
    grouped: dict[MinisterialPriority, list[PolicyRule]] = {}
    for rule in rules:
        grouped.setdefault(rule.priority, []).append(rule)
    return [
        (priority, sorted(grouped[priority], key=lambda r: r.rule_id))
        for priority in MinisterialPriority
        if priority in grouped
    ]
