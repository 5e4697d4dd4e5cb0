"""The Kafka topic map, in one place: names, partition counts and keys.

Every topic is keyed by case id (except where noted), so all events of one case land on one
partition and keep their order.

Identity comes from the topic: each agency has its own inbound topic, which only that agency's
Kafka principal may write (the broker enforces it with ACLs), and its own inbox, updates and
rejections topics, which only it may read. A consumer cannot see who produced a record, but it
can see which topic carried it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.common import AGENCY_ID_PATTERN

__all__ = [
    "AGENCY_RECORD_BYTES",
    "AGENCY_TOPIC_KINDS",
    "AUDIT_QUERIES",
    "AUDIT_TREE_HEADS",
    "CASE_EVENTS",
    "CONSOLE_ACTIVITY",
    "DEADLETTER",
    "ERASURES",
    "EVENTS_VALID",
    "FIXED_TOPICS",
    "INBOUND_PREFIX",
    "PER_AGENCY_PARTITIONS",
    "ROUTING_DECISIONS",
    "STATISTICS_REGIONAL",
    "TopicSpec",
    "agency_of_inbound",
    "agency_topics",
    "inbound_topic",
    "inbox_topic",
    "rejections_topic",
    "updates_topic",
]

CASE_KEY = "case id (UTF-8), so one case's events stay in order on one partition"
PER_AGENCY_PARTITIONS = 1
"""Partitions of each agency topic. One: an agency's stream is small (one partition carries
thousands of events a second), while every consumer that reads all agencies' topics (intake,
audit) pays for each partition in every fetch. With 22 agencies, going from 6 to 1 raised
`make bench` throughput by a third (README, Benchmark). Parallelism comes from the number of
agencies; raising it for one busy agency is a topic change (docs/scaling.md)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the deployment must create it (auto-created topics get 1 partition)."""

    name: str
    partitions: int
    key_description: str
    description: str


EVENTS_VALID = TopicSpec(
    "casebridge.events.valid",
    6,
    CASE_KEY,
    "Inbound events that passed envelope, schema and identity checks; `cb_agency` names the "
    "agency whose topic carried them.",
)
ROUTING_DECISIONS = TopicSpec(
    "casebridge.routing.decisions", 6, CASE_KEY, "Which agencies receive which case, and why."
)
DEADLETTER = TopicSpec(
    "casebridge.deadletter",
    3,
    "the original record key (case id when the publisher followed the contract)",
    "Every rejected or unprocessable record, all agencies (operators only): original bytes "
    "plus the rejection reason.",
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

CONSOLE_ACTIVITY = TopicSpec(
    "casebridge.console.activity",
    3,
    "the account's agency, so one agency's activity stays in order",
    "What caseworkers and auditors did in the console (sign-in, sign-out, reads, refused "
    "attempts): who, which case, never case data; appended to the audit log like any record. "
    "Actions themselves go to the agency's own inbound topic.",
)

ERASURES = TopicSpec(
    "casebridge.erasures",
    1,
    "none (one partition keeps erasure requests in the order they were made)",
    "Requests from the data-protection officer to erase a person's personal data (by case or "
    "person key), with the reason and who asked; the cases service carries them out.",
)

STATISTICS_REGIONAL = TopicSpec(
    "casebridge.statistics.regional",
    1,
    "none (one partition keeps the releases in order; the last record is the last release)",
    "Aggregate case counts for partners' consultative processes, released under k-anonymity "
    "(k = 11) by `casebridge statistics release --publish`: no case, no person, no count or "
    "change of fewer than 11 cases. Read by the partners the access plan names.",
)

FIXED_TOPICS: tuple[TopicSpec, ...] = (
    EVENTS_VALID,
    ROUTING_DECISIONS,
    DEADLETTER,
    CASE_EVENTS,
    AUDIT_QUERIES,
    AUDIT_TREE_HEADS,
    ERASURES,
    CONSOLE_ACTIVITY,
    STATISTICS_REGIONAL,
)
"""Topics that exist once per deployment (per-agency topics come from the agency registry)."""

INBOUND_PREFIX = "casebridge.in."
AGENCY_RECORD_BYTES = 1024 * 1024
"""The largest record an agency may publish (its inbound topic's `max.message.bytes`): the
broker refuses bigger ones (`MessageSizeTooLarge`), so that whatever CaseBridge must say about
an agency's record, its dead letter included (which carries the record whole), fits on the
topics CaseBridge writes."""
INBOX_PREFIX = "casebridge.inbox."
UPDATES_PREFIX = "casebridge.updates."
REJECTIONS_PREFIX = "casebridge.rejections."

AGENCY_TOPIC_KINDS: dict[str, tuple[str, str]] = {
    "inbound": (INBOUND_PREFIX, "Everything the agency publishes: events and case actions."),
    "inbox": (INBOX_PREFIX, "Referrals and transfers addressed to this agency (need to know)."),
    "updates": (UPDATES_PREFIX, "Updates on the agency's cases (need to know)."),
    "rejections": (REJECTIONS_PREFIX, "The agency's own rejected records, with the reason."),
}
"""The four topics every agency has: kind -> (name prefix, description)."""

_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)


def _checked_agency(agency_id: str) -> str:
    # The id becomes part of a topic name: never build one from an unchecked string.
    if not _AGENCY_ID.fullmatch(agency_id):
        raise ValueError(f"invalid agency id {agency_id!r}")
    return agency_id


def inbound_topic(agency_id: str) -> str:
    """The topic an agency publishes every event and case action to (it alone may write)."""
    return INBOUND_PREFIX + _checked_agency(agency_id)


def inbox_topic(agency_id: str) -> str:
    """Per-agency topic of referrals and transfers addressed to that agency."""
    return INBOX_PREFIX + _checked_agency(agency_id)


def updates_topic(agency_id: str) -> str:
    """Per-agency topic of updates on cases the agency takes part in."""
    return UPDATES_PREFIX + _checked_agency(agency_id)


def rejections_topic(agency_id: str) -> str:
    """Per-agency topic of the agency's own rejected records."""
    return REJECTIONS_PREFIX + _checked_agency(agency_id)


def agency_of_inbound(topic: str) -> str | None:
    """The agency whose inbound topic `topic` is (without any deployment prefix), or None."""
    if not topic.startswith(INBOUND_PREFIX):
        return None
    agency = topic.removeprefix(INBOUND_PREFIX)
    return agency if _AGENCY_ID.fullmatch(agency) else None


def agency_topics(agency_id: str) -> tuple[TopicSpec, ...]:
    """The four per-agency topics, as the deployment must create them."""
    _checked_agency(agency_id)
    return tuple(
        TopicSpec(prefix + agency_id, PER_AGENCY_PARTITIONS, CASE_KEY, description)
        for prefix, description in AGENCY_TOPIC_KINDS.values()
    )
