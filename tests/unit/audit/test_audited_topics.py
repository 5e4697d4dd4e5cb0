"""The audit covers every topic anyone acts on, and takes copies only where services alone
write: both checked against the access plan the broker enforces (services/access/plan.py)."""

from __future__ import annotations

import re

import pytest

from schemas.topics import AUDIT_TREE_HEADS, EVENTS_VALID
from services.access.plan import SERVICES_WITH_PRINCIPALS, AccessPlan, Operation, plan_access
from services.audit.handlers import AUDITED_TOPICS
from services.audit.records import SERVICE_WRITTEN_PREFIXES, SERVICE_WRITTEN_TOPICS
from services.runtime.credentials import OPERATOR, service_principal

AGENCIES = ("id-shelter-ngo", "id-police-aht", "au-jrcc")
SERVICES = {service_principal(s) for s in SERVICES_WITH_PRINCIPALS}


@pytest.fixture(params=["", "t1234."], ids=["no-prefix", "prefixed"])
def prefix(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def _plan(prefix: str) -> AccessPlan:
    return plan_access(AGENCIES, topic_prefix=prefix, group_prefix=prefix + "casebridge")


def _principals(plan: AccessPlan, topic: str, operation: Operation) -> set[str]:
    return {
        g.principal
        for g in plan.grants
        if g.operation == operation
        and (topic.startswith(g.name) if g.prefixed else topic == g.name)
    }


def _audited(prefix: str, topic: str) -> bool:
    return re.fullmatch(re.escape(prefix) + AUDITED_TOPICS, topic) is not None


def test_every_topic_but_the_tree_heads_is_audited(prefix: str) -> None:
    topics = [t.name for t in _plan(prefix).topics]
    assert prefix + EVENTS_VALID.name in topics
    unaudited = [t for t in topics if not _audited(prefix, t)]
    assert unaudited == [prefix + AUDIT_TREE_HEADS.name]


def test_every_topic_a_principal_acts_on_is_audited(prefix: str) -> None:
    """Read by a service (other than the audit) or an agency: acted on. The operator reads
    everything, for reports, and acts on nothing; the signer reads back the tree heads it
    wrote, to check them."""
    plan = _plan(prefix)
    readers = {t.name: _principals(plan, t.name, Operation.READ) for t in plan.topics}
    own_heads = {prefix + AUDIT_TREE_HEADS.name: {service_principal("signer")}}
    acted_on = {
        topic
        for topic, who in readers.items()
        if who - {service_principal("audit"), OPERATOR} - own_heads.get(topic, set())
    }
    assert prefix + EVENTS_VALID.name in acted_on  # the router and the cases service
    assert {t for t in acted_on if not _audited(prefix, t)} == set()


def test_copies_are_taken_only_on_topics_that_services_alone_write(prefix: str) -> None:
    """A record is dropped as a re-published copy only on these topics: anyone else's
    repeat (an agency's, the data-protection officer's) is a fact the log must show."""
    plan = _plan(prefix)
    for spec in plan.topics:
        logical = spec.name.removeprefix(prefix)
        writers = _principals(plan, spec.name, Operation.WRITE)
        only_services = bool(writers) and writers <= SERVICES
        listed = logical in SERVICE_WRITTEN_TOPICS or logical.startswith(SERVICE_WRITTEN_PREFIXES)
        if logical == AUDIT_TREE_HEADS.name:
            assert only_services
            assert not _audited(prefix, spec.name)
            continue
        assert listed == only_services, (spec.name, writers)
