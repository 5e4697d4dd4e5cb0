"""Which actions an agency may be offered on a case now, from the lifecycle tables alone.

A caseworker's screen should not offer what would only come back rejected: this filters the
transition table by case kind, state and who may act. Guards that depend on the action's own
fields (a reason, a date) are not evaluated here; the cases service evaluates every guard when
the action arrives, and its answer is the only one that counts.
"""

from __future__ import annotations

from schemas.cases import INTERNAL_ACTIONS, CaseAction, CaseKind, CaseState
from services.cases.domain.lifecycle import TRANSITIONS
from services.cases.domain.transition import Who

_ANSWERS = frozenset({"handover_accepted", "handover_declined"})
"""Offered only to an agency whose handover request is waiting (the handshake's guard)."""


def action_name(action: type[CaseAction]) -> str:
    name: str = action.model_fields["action"].default
    return name


def offered_actions(
    kind: CaseKind,
    state: CaseState,
    *,
    owner: bool,
    member: bool,
    handover_requested: bool,
) -> tuple[type[CaseAction], ...]:
    """The action types an agency in this position may send, in the lifecycle's order."""
    offered: list[type[CaseAction]] = []
    for action, transition in TRANSITIONS.items():
        if action in INTERNAL_ACTIONS or transition.who == Who.system:
            continue
        if kind not in transition.kinds or state not in transition.sources:
            continue
        if (transition.who == Who.owner and not owner) or (
            transition.who == Who.member and not member
        ):
            continue
        name = action_name(action)
        if name in _ANSWERS and not handover_requested:
            continue
        if (name == "handover_revoked" and not owner) or (
            name == "handover_completed" and (owner or not member)
        ):
            continue  # the requester withdraws; a referred member leaves
        offered.append(action)
    return tuple(offered)
