"""The topic map."""

from __future__ import annotations

import re

import pytest

from schemas.registry import EVENT_TYPES
from schemas.topics import (
    AUDIT_TREE_HEADS,
    DEADLETTER,
    FIXED_TOPICS,
    INBOUND_REFERRALS,
    INBOUND_RETURNS,
    INBOUND_SAR,
    INBOUND_TOPICS,
    family_of,
    inbound_topic_for,
    inbox_topic,
    inbox_topic_spec,
    updates_topic,
    updates_topic_spec,
)

KAFKA_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def test_fixed_topics() -> None:
    names = {t.name: t.partitions for t in FIXED_TOPICS}
    assert names == {
        "casebridge.inbound.referrals": 6,
        "casebridge.inbound.returns": 6,
        "casebridge.inbound.sar": 6,
        "casebridge.inbound.case-actions": 6,
        "casebridge.events.valid": 6,
        "casebridge.routing.decisions": 6,
        "casebridge.deadletter": 3,
        "casebridge.cases.events": 6,
        "casebridge.audit.queries": 1,
        "casebridge.audit.tree-heads": 1,
    }
    assert DEADLETTER.partitions == 3
    assert AUDIT_TREE_HEADS.partitions == 1
    assert all(KAFKA_TOPIC.fullmatch(t.name) for t in FIXED_TOPICS)
    assert len(INBOUND_TOPICS) == 4


def test_per_agency_topics() -> None:
    assert inbox_topic("gr-police-athens") == "casebridge.inbox.gr-police-athens"
    assert updates_topic("iom-athens") == "casebridge.updates.iom-athens"
    assert inbox_topic_spec("x1").partitions == updates_topic_spec("x1").partitions == 6


@pytest.mark.parametrize("bad", ["", "GR-Police", "a.b", "a_b", "../x", "a\n", "x" * 65])
def test_per_agency_topics_refuse_bad_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid agency id"):
        inbox_topic(bad)
    with pytest.raises(ValueError, match="invalid agency id"):
        updates_topic(bad)


def test_every_event_type_has_an_inbound_topic() -> None:
    expected = {
        "org.casebridge.referral.submitted.v1": INBOUND_REFERRALS,
        "org.casebridge.return.requested.v1": INBOUND_RETURNS,
        "org.casebridge.sar.alert.v1": INBOUND_SAR,
    }
    for event_type in EVENT_TYPES:
        assert inbound_topic_for(event_type) in INBOUND_TOPICS
    for event_type, topic in expected.items():
        assert inbound_topic_for(event_type) is topic
    assert family_of("org.casebridge.case.accepted.v2") == "case"


@pytest.mark.parametrize(
    "bad", ["referral.submitted", "org.casebridge.x.y", "org.other.referral.a.v1"]
)
def test_malformed_event_types(bad: str) -> None:
    with pytest.raises(ValueError, match="not a CaseBridge event type"):
        inbound_topic_for(bad)


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match="no inbound topic"):
        inbound_topic_for("org.casebridge.audit.checked.v1")
