"""All lifecycles as one table: action type -> guarded transition."""

from __future__ import annotations

from services.cases.domain.lifecycle import (
    business,
    documents,
    erasure,
    handshake,
    protection,
    referral,
    returns,
    sar,
)
from services.cases.domain.transition import Transition, Transitions

__all__ = ["TRANSITIONS"]


def _merge(*tables: Transitions) -> Transitions:
    merged: dict[type, Transition] = {}
    for table in tables:
        for action, transition in table.items():
            if action in merged:
                raise RuntimeError(f"{action.__name__} has two transitions")
            merged[action] = transition
    return merged


TRANSITIONS: Transitions = _merge(
    referral.TRANSITIONS,
    handshake.TRANSITIONS,
    returns.TRANSITIONS,
    sar.TRANSITIONS,
    protection.TRANSITIONS,
    erasure.TRANSITIONS,
    business.TRANSITIONS,
    documents.TRANSITIONS,
)
