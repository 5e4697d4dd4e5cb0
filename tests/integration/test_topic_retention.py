"""Kafka keeps each family of topics as long as the data-sharing policy says, and no longer:
`casebridge agencies sync` sets `retention.ms` on new and existing topics alike."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from confluent_kafka.admin import ConfigResource

from schemas.topics import DEADLETTER, ERASURES, inbound_topic, inbox_topic, updates_topic
from services.access import broker
from services.privacy.policy import load_policy
from services.runtime.settings import Settings
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka]

DAY_MS = 24 * 3600 * 1000


def retention_of(settings: Settings, topics: list[str]) -> dict[str, int]:
    admin = broker.admin_client(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    out = {}
    for resource, future in admin.describe_configs(resources).items():
        out[resource.name] = int(future.result(timeout=30)["retention.ms"].value)
    return out


def test_sync_sets_the_policys_retention_on_every_family(stack: Stack) -> None:
    ns = f"r{uuid.uuid4().hex[:10]}."
    settings = stack.deployment(topic_prefix=ns, group_prefix=ns + "cb")
    policy = load_policy(settings.data_sharing_policy_path).retention
    expected = {
        inbound_topic("id-shelter-ngo"): policy.inbound,
        inbox_topic("id-shelter-ngo"): policy.inbox,
        updates_topic("mm-return-reception"): policy.updates,
        DEADLETTER.name: policy.deadletter,
        ERASURES.name: policy.erasures,
    }
    got = retention_of(settings, [ns + t for t in expected])
    assert got == {ns + t: int(span.total_seconds() * 1000) for t, span in expected.items()}
    assert got[ns + inbound_topic("id-shelter-ngo")] == 7 * DAY_MS  # the shipped policy's


def test_a_changed_policy_reaches_existing_topics_at_the_next_sync(stack: Stack) -> None:
    ns = f"r{uuid.uuid4().hex[:10]}."
    settings = stack.deployment(topic_prefix=ns, group_prefix=ns + "cb")
    plan = broker.deployment_plan(settings, ["id-shelter-ngo"])
    topic = ns + inbox_topic("id-shelter-ngo")
    shorter = {**plan.retention_ms, topic: DAY_MS}
    broker.apply_topic_settings(
        broker.admin_client(settings),
        dataclasses.replace(plan, retention_ms=shorter),
    )
    assert retention_of(settings, [topic]) == {topic: DAY_MS}
    broker.sync(settings, plan)  # the policy again
    assert retention_of(settings, [topic]) == {topic: plan.retention_ms[topic]}
