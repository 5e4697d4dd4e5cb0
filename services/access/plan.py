"""The access plan of a deployment, as data: every topic, every principal and every grant.

Pure: derived from the agency registry (the routing policy's `agencies:`) and the deployment's
topic and group prefixes, so it can be read, tested and diffed without a broker. Each grant is
the least a principal needs: read its inputs, write its outputs, its own consumer groups (on
Kafka 4.1, Write on a topic is enough for an idempotent producer: no cluster-wide grant).
Anything not granted is refused by the broker (`allow.everyone.if.no.acl.found=false`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.topics import (
    AGENCY_RECORD_BYTES,
    AUDIT_QUERIES,
    AUDIT_TREE_HEADS,
    CASE_EVENTS,
    CONSOLE_ACTIVITY,
    DEADLETTER,
    ERASURES,
    EVENTS_VALID,
    FIXED_TOPICS,
    INBOUND_PREFIX,
    INBOX_PREFIX,
    REJECTIONS_PREFIX,
    ROUTING_DECISIONS,
    STATISTICS_REGIONAL,
    UPDATES_PREFIX,
    TopicSpec,
    agency_topics,
    inbound_topic,
    inbox_topic,
    rejections_topic,
    updates_topic,
)
from services.privacy.policy import Retention
from services.runtime.credentials import DPO, OPERATOR, service_principal

SERVICES_WITH_PRINCIPALS = (
    "intake",
    "router",
    "cases",
    "audit",
    "signer",
    "audit-api",
    "console",
    "statistics",
)
"""Every CaseBridge process that talks to Kafka, each as its own principal."""
RESERVED_PREFIX = "casebridge"
KEEP_FOREVER = -1
"""`retention.ms` of a topic Kafka never deletes from."""
"""Agency ids may not start with this: service principals do."""


class Resource(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class Operation(StrEnum):
    READ = "READ"
    WRITE = "WRITE"


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """Allow `principal` to `operation` on the resource `name` (a prefix when `prefixed`)."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    prefixed: bool = False


@dataclass(frozen=True, slots=True)
class AccessPlan:
    topics: tuple[TopicSpec, ...]
    principals: tuple[str, ...]
    grants: tuple[Grant, ...]
    retention_ms: Mapping[str, int] = field(default_factory=dict)
    """Topic -> `retention.ms`, from the data-sharing policy, and forever for the signed tree
    heads (topics not named keep the broker's default)."""
    record_bytes: Mapping[str, int] = field(default_factory=dict)
    """Topic -> the largest record it takes, where that is less than on CaseBridge's own
    topics: the agencies' inbound topics (`AGENCY_RECORD_BYTES`)."""


def retention_by_topic(retention: Retention, agency_ids: Iterable[str]) -> dict[str, int]:
    """Each topic's retention under the data-sharing policy, by logical name."""
    days: dict[str, dt.timedelta] = {
        EVENTS_VALID.name: retention.events_valid,
        ROUTING_DECISIONS.name: retention.routing_decisions,
        DEADLETTER.name: retention.deadletter,
        CASE_EVENTS.name: retention.case_events,
        ERASURES.name: retention.erasures,
    }
    for agency in agency_ids:
        days[inbound_topic(agency)] = retention.inbound
        days[inbox_topic(agency)] = retention.inbox
        days[updates_topic(agency)] = retention.updates
        days[rejections_topic(agency)] = retention.rejections
    return {name: int(span.total_seconds() * 1000) for name, span in days.items()}


def group_prefix_of(principal: str, topic_prefix: str = "") -> str:
    """The consumer groups a principal (an agency, the operator) may use start with this."""
    return f"{topic_prefix}{principal}."


def plan_access(
    agencies: Iterable[str],
    *,
    topic_prefix: str = "",
    group_prefix: str = "casebridge",
    retention: Retention | None = None,
    statistics_readers: Iterable[str] = (),
) -> AccessPlan:
    """`statistics_readers`: the partner agencies that may read the regional statistics
    (`casebridge.statistics.regional`); `casebridge agencies sync` names the routing policy's
    regional coordinator."""
    agency_ids = tuple(agencies)
    partners = tuple(statistics_readers)
    for partner in partners:
        if partner not in agency_ids:
            raise ValueError(f"statistics reader {partner!r} is not a registered agency")
    for agency in agency_ids:
        if agency.startswith(RESERVED_PREFIX):
            raise ValueError(f"agency id {agency!r} starts with the reserved {RESERVED_PREFIX!r}")
    p = topic_prefix
    topics = tuple(
        TopicSpec(p + t.name, t.partitions, t.key_description, t.description)
        for t in (*FIXED_TOPICS, *(s for a in agency_ids for s in agency_topics(a)))
    )
    grants: list[Grant] = []

    def allow(principal: str, operation: Operation, *topics: str, prefixed: bool = False) -> None:
        grants.extend(Grant(principal, Resource.TOPIC, p + t, operation, prefixed) for t in topics)

    def group(principal: str, name: str, *, prefixed: bool = False) -> None:
        grants.append(Grant(principal, Resource.GROUP, name, Operation.READ, prefixed))

    def service(name: str) -> str:
        principal = service_principal(name)
        if name in ("intake", "router", "cases", "audit"):
            group(principal, f"{group_prefix}.{name}")
        if name in ("intake", "router"):
            # Consume-transform-produce in transactions: ids <group>.<instance>, this service's
            # alone (Write implies Describe).
            grants.append(
                Grant(
                    principal,
                    Resource.TRANSACTIONAL_ID,
                    f"{group_prefix}.{name}.",
                    Operation.WRITE,
                    prefixed=True,
                )
            )
        return principal

    intake = service("intake")
    allow(intake, Operation.READ, INBOUND_PREFIX, prefixed=True)
    allow(intake, Operation.WRITE, EVENTS_VALID.name, DEADLETTER.name)
    allow(intake, Operation.WRITE, REJECTIONS_PREFIX, prefixed=True)

    router = service("router")
    allow(router, Operation.READ, EVENTS_VALID.name)
    allow(router, Operation.WRITE, ROUTING_DECISIONS.name, DEADLETTER.name)
    allow(router, Operation.WRITE, INBOX_PREFIX, prefixed=True)

    cases = service("cases")
    allow(cases, Operation.READ, EVENTS_VALID.name, ERASURES.name)
    allow(cases, Operation.WRITE, CASE_EVENTS.name, DEADLETTER.name)
    allow(cases, Operation.WRITE, UPDATES_PREFIX, prefixed=True)

    audit = service("audit")
    allow(audit, Operation.READ, "casebridge.", prefixed=True)

    signer = service("signer")
    allow(signer, Operation.WRITE, AUDIT_TREE_HEADS.name)
    allow(signer, Operation.READ, AUDIT_TREE_HEADS.name)  # it checks what the topic holds

    api = service("audit-api")
    allow(api, Operation.WRITE, AUDIT_QUERIES.name)

    # The console records what its users did; their actions it publishes as their agency.
    console = service("console")
    allow(console, Operation.WRITE, CONSOLE_ACTIVITY.name)

    # Aggregates under k-anonymity (services/statistics): the job writes, it reads back its
    # last release (for the differencing rule), and the partners read.
    statistics = service("statistics")
    allow(statistics, Operation.WRITE, STATISTICS_REGIONAL.name)
    allow(statistics, Operation.READ, STATISTICS_REGIONAL.name)
    for partner in partners:
        allow(partner, Operation.READ, STATISTICS_REGIONAL.name)

    allow(DPO, Operation.WRITE, ERASURES.name)

    allow(OPERATOR, Operation.READ, "casebridge.", prefixed=True)
    group(OPERATOR, group_prefix_of(OPERATOR, p), prefixed=True)

    for agency in agency_ids:
        allow(agency, Operation.WRITE, inbound_topic(agency))
        allow(agency, Operation.READ, inbox_topic(agency), updates_topic(agency))
        allow(agency, Operation.READ, rejections_topic(agency))
        group(agency, group_prefix_of(agency, p), prefixed=True)

    principals = (
        *(service_principal(s) for s in SERVICES_WITH_PRINCIPALS),
        OPERATOR,
        DPO,
        *agency_ids,
    )
    kept = retention_by_topic(retention, agency_ids) if retention is not None else {}
    # Signed tree heads are the evidence a verifier trusts outside the database, and the
    # signer checks every one it published: they are tiny and kept for good.
    kept[AUDIT_TREE_HEADS.name] = KEEP_FOREVER
    return AccessPlan(
        topics=topics,
        principals=principals,
        grants=tuple(sorted(set(grants))),
        retention_ms={p + name: ms for name, ms in kept.items()},
        record_bytes={p + inbound_topic(a): AGENCY_RECORD_BYTES for a in agency_ids},
    )
