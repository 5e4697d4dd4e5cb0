"""The scenario's events, as agency systems would publish them. All data is synthetic.

Built as plain CloudEvents (binary content mode: ce_* headers, JSON value) with no CaseBridge
code on the publishing side beyond these dicts, to show that any CloudEvents-conformant Kafka
producer can publish to CaseBridge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.identity import agency_source
from schemas.topics import inbound_topic


@dataclass(frozen=True)
class AgencyMessage:
    """One record an agency publishes: who, what it is, where it goes, headers and value."""

    label: str
    agency: str
    topic: str
    """The agency's own inbound topic (without a deployment's prefix)."""
    key: bytes
    headers: list[tuple[str, bytes]]
    value: bytes
    event_id: str
    expect: str = "routed"
    """`routed`, or the rejection code the demo expects for a bad message."""
    case_id: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


def agency_event(
    label: str,
    agency: str,
    system: str,
    ce_type: str,
    data: dict[str, Any],
    *,
    expect: str = "routed",
) -> AgencyMessage:
    """One CloudEvent in binary mode, keyed by its case, as one of the agency's systems
    publishes it: to the agency's own inbound topic, as `urn:casebridge:agency:<id>:<system>`."""
    source = agency_source(agency, system)
    event_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", now.encode()),
        ("ce_subject", data["case_id"].encode()),
        ("content-type", b"application/json"),
    ]
    return AgencyMessage(
        label=label,
        agency=agency,
        topic=inbound_topic(agency),
        key=data["case_id"].encode(),
        headers=headers,
        value=orjson.dumps(data),
        event_id=event_id,
        expect=expect,
        case_id=data["case_id"],
    )


def build_scenario(run: str) -> list[AgencyMessage]:
    """The demo's five agency messages; `run` makes case ids unique per demo run."""
    now = datetime.now(UTC).isoformat()
    sar_alert = agency_event(
        "SAR distress alert (DETRESFA) relayed by the Australian JRCC",
        "au-jrcc",
        "sar-console",
        "org.casebridge.sar.alert.v1",
        {
            "case_id": f"SAR-{run}-01",
            "reporting_agency": "au-jrcc",
            "sitrep_number": 1,
            "phase": "DETRESFA",
            "priority": "DISTRESS",
            "observed_at": now,
            "position": {"lat": -8.75, "lon": 115.9},
            "persons_at_risk": 23,
            "children_reported": True,
            "vessel_description": "wooden fishing vessel, engine failure, taking water",
            "assistance_required": "evacuation",
            "coordinating_rcc": "id-rcc-jakarta",
            "search_region_country": "ID",
        },
    )
    child = agency_event(
        "Child victim referral (age disputed) from the shelter",
        "id-shelter-ngo",
        "casework",
        "org.casebridge.referral.submitted.v1",
        {
            "case_id": f"REF-{run}-01",
            "reporting_agency": "id-shelter-ngo",
            "referred_at": now,
            "person": {
                "given_name": "Synthetic",
                "family_name": "Person-A",
                "age_estimate": 16,
                "age_disputed": True,
                "gender": "Feminine",
                "nationality": "MM",
            },
            "type_of_exploitation": ["SexualExploitation"],
            "location_country": "ID",
            "country_of_exploitation": "ID",
            "indicators": [
                {
                    "dimension": "coercion_at_destination",
                    "indicator": "confiscation_of_documents",
                    "strength": "strong",
                },
            ],
            "consent_to_share": False,
        },
    )
    adult = agency_event(
        "Adult forced-labour referral from the labour inspectorate",
        "id-labour-inspectorate",
        "inspections",
        "org.casebridge.referral.submitted.v1",
        {
            "case_id": f"REF-{run}-02",
            "reporting_agency": "id-labour-inspectorate",
            "referred_at": now,
            "person": {
                "given_name": "Synthetic",
                "family_name": "Person-B",
                "age_estimate": 34,
                "gender": "Masculine",
                "nationality": "KH",
            },
            "type_of_exploitation": ["ForcedLabour"],
            "location_country": "ID",
            "indicators": [
                {
                    "dimension": "exploitative_conditions",
                    "indicator": "excessive_working_hours",
                    "strength": "medium",
                },
                {
                    "dimension": "coercion_at_destination",
                    "indicator": "debt_bondage",
                    "strength": "strong",
                },
            ],
            "methods_of_control": ["DebtBondage", "WithholdsDocuments"],
            "consent_to_share": True,
            "adult_consent": True,
        },
    )
    ret = agency_event(
        "Return request (voluntary, trafficking victim) to Myanmar",
        "id-return-programme",
        "avrr",
        "org.casebridge.return.requested.v1",
        {
            "case_id": f"RET-{run}-01",
            "reporting_agency": "id-return-programme",
            "requested_at": now,
            "person": {
                "given_name": "Synthetic",
                "family_name": "Person-C",
                "age_estimate": 27,
                "gender": "Feminine",
                "nationality": "MM",
            },
            "origin_country": "MM",
            "host_country": "ID",
            "voluntariness_confirmed": True,
            "trafficking_victim": True,
            "receiving_agency": "mm-return-reception",
            "consent_to_share": True,
        },
    )
    malformed = agency_event(
        "Malformed referral: an exploitation type outside the HTCDS vocabulary",
        "id-police-aht",
        "records",
        "org.casebridge.referral.submitted.v1",
        {
            "case_id": f"REF-{run}-03",
            "reporting_agency": "id-police-aht",
            "referred_at": now,
            "person": {
                "given_name": "Synthetic",
                "family_name": "Person-F",
                "date_of_birth": "1994-07-23",
                "age_estimate": 30,
                "nationality": "KH",
            },
            "type_of_exploitation": ["Smuggling"],
            "location_country": "ID",
            "consent_to_share": False,
        },
        expect="INVALID_PAYLOAD",
    )
    return [sar_alert, child, adult, ret, malformed]
