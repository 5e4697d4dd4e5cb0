"""Turning a route into records: one routing-decision event and one inbox record per agency.

The decision event says which rules matched, which agencies were chosen (and, for one abroad,
under which agreement) and what each was not told, so an auditor can see why an agency
received a case and what it received. It carries identifiers only, never the payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.topics import ROUTING_DECISIONS, inbox_topic
from services.router.copies import InboxCopy
from services.routing.policy import Route
from services.runtime.dead_letter import derived_id
from services.runtime.kafka import Outgoing, header_map

ROUTING_DECISION_TYPE = "org.casebridge.routing.decision.v1"


def routing_records(
    record: ConsumerRecord[Any, Any],
    route: Route,
    copies: Mapping[str, InboxCopy],
    *,
    case_id: str,
    policy_version: str,
) -> list[Outgoing]:
    """The decision event followed by each chosen agency's copy on its inbox."""
    # `opening_of` checked the CloudEvents headers; any other header is passed on as text.
    headers = {name: raw.decode("utf-8", "replace") for name, raw in header_map(record).items()}
    event_id, source = headers["ce_id"], headers["ce_source"]
    decision_id = derived_id("route", source, event_id)
    key = case_id.encode()
    decision = {
        "event_id": event_id,
        "event_source": source,
        "event_type": headers["ce_type"],
        "case_id": case_id,
        "policy_version": policy_version,
        "matched_rules": list(route.matched_rules),
        "deliveries": [
            {
                "agency": d.agency,
                "priority": str(d.priority),
                "rule": d.rule,
                "via": d.via,
                "withheld": sorted(copies[d.agency].withheld),
            }
            for d in route.deliveries
        ],
    }
    out = [
        Outgoing(
            topic=ROUTING_DECISIONS.name,
            key=key,
            value=orjson.dumps(decision),
            headers={
                "content-type": "application/json",
                "ce_specversion": "1.0",
                "ce_id": decision_id,
                "ce_source": "casebridge/router",
                "ce_type": ROUTING_DECISION_TYPE,
                "ce_time": datetime.now(UTC).isoformat(),
                "ce_subject": case_id,
                "ce_causationid": event_id,
            },
        )
    ]
    for delivery in route.deliveries:
        inbox_headers = dict(headers)
        copy = copies[delivery.agency]
        inbox_headers.update(
            cb_priority=str(delivery.priority),
            cb_rule=delivery.rule,
            cb_decision_id=decision_id,
            cb_withheld=",".join(sorted(copy.withheld)),
        )
        out.append(
            Outgoing(
                topic=inbox_topic(delivery.agency),
                key=key,
                value=copy.value,
                headers=inbox_headers,
            )
        )
    return out
