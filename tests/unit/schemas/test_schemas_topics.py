"""The topic map: fixed topics, and the four topics every agency has."""

from __future__ import annotations

import re

import pytest

from schemas.topics import (
    AUDIT_TREE_HEADS,
    DEADLETTER,
    FIXED_TOPICS,
    agency_of_inbound,
    agency_topics,
    inbound_topic,
    inbox_topic,
    rejections_topic,
    updates_topic,
)

KAFKA_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def test_fixed_topics() -> None:
    names = {t.name: t.partitions for t in FIXED_TOPICS}
    assert names == {
        "casebridge.events.valid": 6,
        "casebridge.routing.decisions": 6,
        "casebridge.deadletter": 3,
        "casebridge.cases.events": 6,
        "casebridge.audit.queries": 1,
        "casebridge.audit.tree-heads": 1,
        "casebridge.erasures": 1,
        "casebridge.console.activity": 3,
        "casebridge.statistics.regional": 1,
    }
    assert DEADLETTER.partitions == 3
    assert AUDIT_TREE_HEADS.partitions == 1
    assert all(KAFKA_TOPIC.fullmatch(t.name) for t in FIXED_TOPICS)


def test_per_agency_topics() -> None:
    assert inbound_topic("gr-police-athens") == "casebridge.in.gr-police-athens"
    assert inbox_topic("gr-police-athens") == "casebridge.inbox.gr-police-athens"
    assert updates_topic("iom-athens") == "casebridge.updates.iom-athens"
    assert rejections_topic("iom-athens") == "casebridge.rejections.iom-athens"
    specs = agency_topics("x1")
    assert [t.name for t in specs] == [
        "casebridge.in.x1",
        "casebridge.inbox.x1",
        "casebridge.updates.x1",
        "casebridge.rejections.x1",
    ]
    assert {t.partitions for t in specs} == {1}


@pytest.mark.parametrize("bad", ["", "GR-Police", "a.b", "a_b", "../x", "a\n", "x" * 65])
def test_per_agency_topics_refuse_bad_ids(bad: str) -> None:
    for topic_of in (inbound_topic, inbox_topic, updates_topic, rejections_topic):
        with pytest.raises(ValueError, match="invalid agency id"):
            topic_of(bad)


def test_the_agency_of_an_inbound_topic() -> None:
    assert agency_of_inbound("casebridge.in.id-police-aht") == "id-police-aht"
    # Neither another kind of topic nor a name that is no agency id names an agency.
    assert agency_of_inbound("casebridge.inbox.id-police-aht") is None
    assert agency_of_inbound("casebridge.in.a.b") is None
    assert agency_of_inbound("casebridge.in.") is None
    assert agency_of_inbound("other.casebridge.in.x") is None
