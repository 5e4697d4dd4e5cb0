"""Valid sample payloads (synthetic people only) for the schema tests.

A plain module rather than conftest fixtures so hypothesis tests can use it too.
"""

from __future__ import annotations

import copy
from typing import Any

from schemas.envelope import Envelope
from schemas.referral import REFERRAL_SUBMITTED
from schemas.returns import RETURN_REQUESTED
from schemas.sar import SAR_ALERT

REFERRAL: dict[str, Any] = {
    "case_id": "GR-ATH-2024-000123",
    "reporting_agency": "gr-police-athens",
    "referred_at": "2024-05-02T09:30:00+03:00",
    "person": {
        "given_name": "Amina",
        "family_name": "Testperson",
        "date_of_birth": "2001-03-14",
        "gender": "Feminine",
        "nationality": "BD",
    },
    "type_of_exploitation": ["ForcedLabour", "Servitude"],
    "country_of_exploitation": "GR",
    "location_country": "GR",
    "indicators": [
        {
            "dimension": "deceptive_recruitment",
            "indicator": "deception_about_wages",
            "strength": "strong",
        },
        {
            "dimension": "coercion_at_destination",
            "indicator": "confiscation_of_documents",
            "strength": "strong",
        },
    ],
    "trafficking_status": "PossibleVictimOfTrafficking",
    "status_decided_by": "Police",
    "methods_of_control": ["DebtBondage", "WithholdsDocuments"],
    "recruitment_methods": ["ThroughFriendsOrSocialEvents"],
    "consent_to_share": True,
    "adult_consent": True,
}

RETURN: dict[str, Any] = {
    "case_id": "IOM-GR-2024-77",
    "reporting_agency": "iom-athens",
    "requested_at": "2024-06-10T12:00:00Z",
    "person": {"given_name": "Kofi", "age_estimate": 34, "gender": "Masculine"},
    "origin_country": "GH",
    "host_country": "GR",
    "voluntariness_confirmed": True,
    "trafficking_victim": True,
    "receiving_agency": "gh-social-welfare",
    "reintegration_needs": ["economic", "psychosocial"],
    "consent_to_share": True,
}

SAR: dict[str, Any] = {
    "case_id": "MRCC-PIR-2024-0412",
    "reporting_agency": "gr-jrcc-piraeus",
    "sitrep_number": 1,
    "phase": "DETRESFA",
    "priority": "DISTRESS",
    "observed_at": "2024-07-01T03:12:00Z",
    "position": {"lat": 35.1234, "lon": 24.5},
    "persons_at_risk": 48,
    "children_reported": True,
    "vessel_description": "white rubber boat, about 12 m, engine failure",
    "coordinating_rcc": "gr-jrcc-piraeus",
    "search_region_country": "GR",
}

SAMPLES: dict[str, dict[str, Any]] = {
    REFERRAL_SUBMITTED: REFERRAL,
    RETURN_REQUESTED: RETURN,
    SAR_ALERT: SAR,
}


def sample(event_type: str) -> dict[str, Any]:
    """A fresh (deep-copied) valid payload for an event type."""
    return copy.deepcopy(SAMPLES[event_type])


def new_envelope(event_type: str = REFERRAL_SUBMITTED, subject: str | None = None) -> Envelope:
    return Envelope.new(
        source="urn:casebridge:agency:test",
        event_type=event_type,
        subject=subject if subject is not None else SAMPLES[event_type]["case_id"],
        correlationid="chain-1",
    )
