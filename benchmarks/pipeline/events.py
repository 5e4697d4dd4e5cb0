"""The benchmark's synthetic agency events and what each must cause."""

from __future__ import annotations

import functools
import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from schemas.identity import agency_source
from schemas.topics import agency_of_inbound, inbound_topic
from services.intake.registry import Registry
from services.intake.screening import screen
from services.privacy.policy import DataSharingPolicy
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.routing.facts import opening_of
from services.routing.policy import RoutingPolicy, route


@dataclass(frozen=True, slots=True)
class BenchEvent:
    """One agency event to publish, and how many inbox deliveries the policy makes of it."""

    agency: str
    """Who publishes it, with its own credentials."""
    topic: str
    """Logical topic name, the agency's inbound topic (the run's prefix is added when
    publishing)."""
    key: bytes
    headers: list[tuple[str, bytes]]
    value: bytes
    event_id: str
    kind: str
    deliveries: int

    @property
    def audit_rows(self) -> int:
        """1 received + 1 validated + 1 routed + 1 delivered per inbox."""
        return 3 + self.deliveries


_NATIONALITIES = ("MM", "KH", "LA", "VN", "BD", "PH")
_INDICATORS = (
    ("coercion_at_destination", "confiscation_of_documents"),
    ("coercion_at_destination", "debt_bondage"),
    ("exploitative_conditions", "excessive_working_hours"),
    ("deceptive_recruitment", "false_promises_about_work"),
    ("abuse_of_vulnerability_at_destination", "isolation"),
)
_STRENGTHS = ("strong", "medium", "weak")
_GENDERS = ("Feminine", "Masculine")
KINDS = (
    ("referral-adult", 40),
    ("referral-child", 25),
    ("return", 20),
    ("sar-alert", 15),
)


def _indicators(rng: random.Random) -> list[dict[str, str]]:
    chosen = rng.sample(_INDICATORS, rng.randint(1, 3))
    return [{"dimension": d, "indicator": i, "strength": rng.choice(_STRENGTHS)} for d, i in chosen]


def event_payload(
    kind: str, agency: str, rng: random.Random, case_id: str, n: int, now: str
) -> dict[str, Any]:
    """A synthetic payload shaped like the demo scenario's (services/demo/scenario.py), as
    `agency` reports it."""
    person: dict[str, Any] = {
        "given_name": "Synthetic",
        "family_name": f"Person-{n}",
        "gender": rng.choice(_GENDERS),
        "nationality": rng.choice(_NATIONALITIES),
    }
    if kind == "referral-child":
        person.update(age_estimate=rng.randint(12, 19), age_disputed=True)
        return {
            "case_id": case_id,
            "reporting_agency": agency,
            "referred_at": now,
            "person": person,
            "type_of_exploitation": rng.choice(
                (["SexualExploitation"], ["ChildLabour"], ["ForcedBegging"])
            ),
            "location_country": rng.choice(("ID", "ID", "TH")),
            "country_of_exploitation": "ID",
            "indicators": _indicators(rng),
            "consent_to_share": False,
        }
    if kind == "referral-adult":
        person.update(age_estimate=rng.randint(19, 60))
        return {
            "case_id": case_id,
            "reporting_agency": agency,
            "referred_at": now,
            "person": person,
            "type_of_exploitation": rng.choice(
                (["ForcedLabour"], ["ForcedLabour", "Servitude"], ["SexualExploitation"])
            ),
            "location_country": rng.choice(("ID", "ID", "TH")),
            "indicators": _indicators(rng),
            "methods_of_control": rng.sample(
                ["DebtBondage", "WithholdsDocuments", "TakesEarnings", "PhysicalThreats"], 2
            ),
            "consent_to_share": True,
            "adult_consent": True,
        }
    if kind == "return":
        person.update(age_estimate=rng.randint(18, 50))
        return {
            "case_id": case_id,
            "reporting_agency": agency,
            "requested_at": now,
            "person": person,
            "origin_country": person["nationality"],
            "host_country": "ID",
            "voluntariness_confirmed": True,
            "trafficking_victim": rng.random() < 0.8,
            "receiving_agency": "mm-return-reception",
            "consent_to_share": True,
        }
    return {
        "case_id": case_id,
        "reporting_agency": agency,
        "sitrep_number": rng.randint(1, 5),
        "phase": rng.choice(("DETRESFA", "ALERFA", "INCERFA")),
        "priority": rng.choice(("DISTRESS", "URGENCY")),
        "observed_at": now,
        "position": {
            "lat": round(rng.uniform(-10.0, -6.0), 4),
            "lon": round(rng.uniform(105.0, 120.0), 4),
        },
        "persons_at_risk": rng.randint(1, 60),
        "children_reported": rng.random() < 0.3,
        "vessel_description": "wooden fishing vessel, engine failure, taking water",
        "assistance_required": "evacuation",
        "coordinating_rcc": rng.choice(("id-rcc-jakarta", "au-jrcc")),
        "search_region_country": "ID",
    }


SENDERS = {
    "referral-adult": (
        "id-labour-inspectorate",
        "inspections",
        "org.casebridge.referral.submitted.v1",
    ),
    "referral-child": ("id-shelter-ngo", "casework", "org.casebridge.referral.submitted.v1"),
    "return": ("id-return-programme", "avrr", "org.casebridge.return.requested.v1"),
    "sar-alert": ("id-rcc-jakarta", "sar-console", "org.casebridge.sar.alert.v1"),
}
"""Kind -> (reporting agency, its system in `ce_source`, CloudEvents type)."""
_NAMED_AGENCIES = ("mm-return-reception", "id-rcc-jakarta", "au-jrcc")
"""Agencies the payloads name besides the senders (receiving agency, coordinating RCC)."""


def check_registry(policy: RoutingPolicy) -> None:
    """Every agency the event mix names is in the registry (the routing policy's `agencies:`),
    so each sender has credentials, an inbound topic and ACLs once the run is set up."""
    known = {a.id for a in policy.agencies}
    named = {sender for sender, _, _ in SENDERS.values()} | set(_NAMED_AGENCIES)
    missing = sorted(named - known)
    if missing:
        raise ValueError(
            f"the event mix names agencies missing from the registry {missing}:"
            " add them to the routing policy's agencies or change the mix"
        )


def planned_deliveries(policy: RoutingPolicy, event: BenchEvent) -> int:
    """Screen the event as intake will and route it as the router will; the inbox count.

    Raises EventRejected if intake or the router would reject it (the generator is wrong).
    """
    record = ConsumerRecord(
        topic=event.topic,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=event.key,
        value=event.value,
        checksum=None,
        serialized_key_size=len(event.key),
        serialized_value_size=len(event.value),
        headers=event.headers,
    )
    agency = agency_of_inbound(event.topic)
    if agency != event.agency:
        raise ValueError(f"{event.topic} is not the inbound topic of {event.agency}")
    sharing = _data_sharing_policy()
    screen(record, agency, Registry(policy, sharing))
    opening = opening_of(record)
    return len(route(policy, opening.facts, sharing.sharing_agreements).deliveries)


@functools.cache
def _data_sharing_policy() -> DataSharingPolicy:
    return load_data_sharing_policy()


def make_events(count: int, *, run: str, policy: RoutingPolicy, seed: int) -> list[BenchEvent]:
    """`count` valid events in a fixed mix, each with its own event id and case id, each as
    its agency publishes it (its inbound topic, its `ce_source`, itself as `reporting_agency`)."""
    check_registry(policy)
    rng = random.Random(seed)
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    events: list[BenchEvent] = []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        agency, system, ce_type = SENDERS[kind]
        source = agency_source(agency, system)
        case_id = f"{kind[:3].upper()}-{run}-{n:07d}"
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        now = datetime.now(UTC).isoformat()
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", event_id.encode()),
            ("ce_source", source.encode()),
            ("ce_type", ce_type.encode()),
            ("ce_time", now.encode()),
            ("ce_subject", case_id.encode()),
            ("content-type", b"application/json"),
        ]
        draft = BenchEvent(
            agency=agency,
            topic=inbound_topic(agency),
            key=case_id.encode(),
            headers=headers,
            value=orjson.dumps(event_payload(kind, agency, rng, case_id, n, now)),
            event_id=event_id,
            kind=kind,
            deliveries=0,
        )
        events.append(replace(draft, deliveries=planned_deliveries(policy, draft)))
    return events
