"""The Kafka topic map, in one place: names, partition counts and keys.

Every topic is keyed by case id (except where noted), so all events of one case land on one
partition and keep their order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from schemas.common import AGENCY_ID_PATTERN

__all__ = [
    "AUDIT_QUERIES",
    "AUDIT_TREE_HEADS",
    "CASE_EVENTS",
    "DEADLETTER",
    "EVENTS_VALID",
    "FAMILY_TOPICS",
    "FIXED_TOPICS",
    "INBOUND_CASE_ACTIONS",
    "INBOUND_REFERRALS",
    "INBOUND_RETURNS",
    "INBOUND_SAR",
    "INBOUND_TOPICS",
    "PER_AGENCY_PARTITIONS",
    "ROUTING_DECISIONS",
    "TopicSpec",
    "family_of",
    "inbound_topic_for",
    "inbox_topic",
    "inbox_topic_spec",
    "updates_topic",
    "updates_topic_spec",
]

CASE_KEY = "case id (UTF-8), so one case's events stay in order on one partition"
PER_AGENCY_PARTITIONS = 6


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the deployment must create it (auto-created topics get 1 partition)."""

    name: str
    partitions: int
    key_description: str
    description: str


INBOUND_REFERRALS = TopicSpec(
    "casebridge.inbound.referrals", 6, CASE_KEY, "Victim referrals published by agencies."
)
INBOUND_RETURNS = TopicSpec(
    "casebridge.inbound.returns", 6, CASE_KEY, "Return (AVRR) requests published by agencies."
)
INBOUND_SAR = TopicSpec(
    "casebridge.inbound.sar", 6, CASE_KEY, "SAR alerts and SITREPs published by RCCs."
)
INBOUND_CASE_ACTIONS = TopicSpec(
    "casebridge.inbound.case-actions",
    6,
    CASE_KEY,
    "Case lifecycle commands (accept, reject, transfer, close...) from agencies.",
)
EVENTS_VALID = TopicSpec(
    "casebridge.events.valid", 6, CASE_KEY, "Inbound events that passed envelope and schema."
)
ROUTING_DECISIONS = TopicSpec(
    "casebridge.routing.decisions", 6, CASE_KEY, "Which agencies receive which case, and why."
)
DEADLETTER = TopicSpec(
    "casebridge.deadletter",
    3,
    "the original record key (case id when the publisher followed the contract)",
    "Rejected or unprocessable records: original bytes plus the rejection reason.",
)
CASE_EVENTS = TopicSpec(
    "casebridge.cases.events",
    6,
    CASE_KEY,
    "The case event log: every case opened and transition recorded, in order per case.",
)
AUDIT_QUERIES = TopicSpec(
    "casebridge.audit.queries",
    1,
    "none (one partition keeps auditors' queries in the order they were answered)",
    "Every auditor query (who asked for what), appended to the audit log like any record.",
)
AUDIT_TREE_HEADS = TopicSpec(
    "casebridge.audit.tree-heads",
    1,
    "audit log id; a single partition keeps checkpoints totally ordered",
    "Signed checkpoints (tree heads) of the audit log.",
)

INBOUND_TOPICS: tuple[TopicSpec, ...] = (
    INBOUND_REFERRALS,
    INBOUND_RETURNS,
    INBOUND_SAR,
    INBOUND_CASE_ACTIONS,
)
FIXED_TOPICS: tuple[TopicSpec, ...] = (
    *INBOUND_TOPICS,
    EVENTS_VALID,
    ROUTING_DECISIONS,
    DEADLETTER,
    CASE_EVENTS,
    AUDIT_QUERIES,
    AUDIT_TREE_HEADS,
)
"""Topics that exist once per deployment (per-agency topics come from the agency registry)."""

FAMILY_TOPICS: Mapping[str, TopicSpec] = MappingProxyType(
    {
        "referral": INBOUND_REFERRALS,
        "return": INBOUND_RETURNS,
        "sar": INBOUND_SAR,
        "case": INBOUND_CASE_ACTIONS,
    }
)
"""Event family (the ``<family>`` in ``org.casebridge.<family>.<name>.v<N>``) -> inbound topic."""

_EVENT_TYPE = re.compile(r"org\.casebridge\.([a-z]+)\.[a-z][a-z0-9_.]*\.v[1-9][0-9]*")
_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)


def family_of(event_type: str) -> str:
    """The family of a CaseBridge event type; ValueError if the type is not of that form."""
    match = _EVENT_TYPE.fullmatch(event_type)
    if match is None:
        raise ValueError(f"not a CaseBridge event type: {event_type!r}")
    return match.group(1)


def inbound_topic_for(event_type: str) -> TopicSpec:
    """The inbound topic an event type must be published to; ValueError if none."""
    family = family_of(event_type)
    try:
        return FAMILY_TOPICS[family]
    except KeyError:
        raise ValueError(f"no inbound topic for event family {family!r}") from None


def _checked_agency(agency_id: str) -> str:
    # The id becomes part of a topic name: never build one from an unchecked string.
    if not _AGENCY_ID.fullmatch(agency_id):
        raise ValueError(f"invalid agency id {agency_id!r}")
    return agency_id


def inbox_topic(agency_id: str) -> str:
    """Per-agency topic of referrals and transfers addressed to that agency."""
    return f"casebridge.inbox.{_checked_agency(agency_id)}"


def updates_topic(agency_id: str) -> str:
    """Per-agency topic of updates on cases the agency takes part in."""
    return f"casebridge.updates.{_checked_agency(agency_id)}"


def inbox_topic_spec(agency_id: str) -> TopicSpec:
    return TopicSpec(
        inbox_topic(agency_id),
        PER_AGENCY_PARTITIONS,
        CASE_KEY,
        "Referrals and transfers addressed to this agency (need-to-know view).",
    )


def updates_topic_spec(agency_id: str) -> TopicSpec:
    return TopicSpec(
        updates_topic(agency_id),
        PER_AGENCY_PARTITIONS,
        CASE_KEY,
        "Updates on the agency's cases (need-to-know view).",
    )
