"""The case-coordination scenario: a SAR incident, a survivor identified as a victim, a
protection referral accepted by a shelter, and a return with reintegration monitoring.

Agencies act as they would: each step is a CloudEvent from the acting agency's own system
(`urn:casebridge:agency:<id>:<system>`) on the agency's own inbound topic, keyed by case. An
action on a case is published only once the previous step took effect (different agencies act
on one case, and Kafka orders records only within one topic partition).
All data is synthetic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from services.demo.scenario import AgencyMessage, agency_event

Publish = Callable[[Sequence[AgencyMessage]], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    message: AgencyMessage
    case_id: str
    version_after: int
    """The case version once this step is applied (steps here are all valid)."""


def action_step(
    run: str, case_id: str, agency: str, action: str, version_after: int, **fields: Any
) -> Step:
    data = {"case_id": case_id, "reporting_agency": agency, **fields}
    message = agency_event(
        f"{agency}: {action.replace('_', ' ')}",
        agency,
        "casework",
        f"org.casebridge.case.{action}.v1",
        data,
    )
    return Step(message, case_id, version_after)


@dataclass(frozen=True)
class Cases:
    sar: str
    referral: str
    returns: str


def cases_of(run: str) -> Cases:
    return Cases(sar=f"SAR-{run}-10", referral=f"REF-{run}-10", returns=f"RET-{run}-10")


def sar_steps(run: str) -> list[Step]:
    c = cases_of(run).sar
    now = datetime.now(UTC).isoformat()
    alert = agency_event(
        "au-jrcc relays a DETRESFA alert: 23 persons, children reported",
        "au-jrcc",
        "sar-console",
        "org.casebridge.sar.alert.v1",
        {
            "case_id": c,
            "reporting_agency": "au-jrcc",
            "sitrep_number": 1,
            "phase": "DETRESFA",
            "priority": "DISTRESS",
            "observed_at": now,
            "position": {"lat": -9.1, "lon": 114.6},
            "persons_at_risk": 23,
            "children_reported": True,
            "vessel_description": "overcrowded wooden boat, drifting",
            "coordinating_rcc": "id-rcc-jakarta",
            "search_region_country": "ID",
        },
    )
    rcc = "id-rcc-jakarta"
    return [
        Step(alert, c, 1),
        action_step(run, c, rcc, "sar_coordination_accepted", 2),
        action_step(run, c, rcc, "sar_rescue_started", 3),
        action_step(run, c, rcc, "sar_persons_rescued", 4, count=23),
        action_step(
            run,
            c,
            rcc,
            "sar_disembarked",
            5,
            place_of_safety="Port of Benoa",
            country="ID",
            persons=23,
        ),
    ]


SURVIVOR_D = {
    "given_name": "Synthetic",
    "family_name": "Survivor-D",
    "age_estimate": 24,
    "gender": "Masculine",
    "nationality": "MM",
}


def referral_steps(
    run: str, *, case_id: str | None = None, person: dict[str, Any] | None = None
) -> list[Step]:
    c = case_id or cases_of(run).referral
    opening = agency_event(
        "id-police-aht refers a survivor identified at disembarkation screening",
        "id-police-aht",
        "screening",
        "org.casebridge.referral.submitted.v1",
        {
            "case_id": c,
            "reporting_agency": "id-police-aht",
            "referred_at": datetime.now(UTC).isoformat(),
            "person": person or SURVIVOR_D,
            "type_of_exploitation": ["ForcedLabour"],
            "location_country": "ID",
            "country_of_exploitation": "TH",
            "indicators": [
                {
                    "dimension": "coercion_at_destination",
                    "indicator": "withheld_wages",
                    "strength": "strong",
                }
            ],
            "methods_of_control": ["TakesEarnings", "WithholdsDocuments"],
            "consent_to_share": True,
            "adult_consent": True,
        },
    )
    shelter = "id-shelter-ngo"
    return [
        Step(opening, c, 1),
        action_step(run, c, shelter, "referral_acknowledged", 2),
        action_step(
            run,
            c,
            shelter,
            "screening_recorded",
            3,
            indicators=[
                {
                    "dimension": "exploitative_conditions",
                    "indicator": "excessive_working_hours",
                    "strength": "medium",
                }
            ],
            type_of_exploitation=["ForcedLabour"],
        ),
        action_step(
            run,
            c,
            shelter,
            "trafficking_status_decided",
            4,
            trafficking_status="ActualVictimOfTrafficking",
            status_decided_by="NGO",
        ),
        action_step(
            run,
            c,
            shelter,
            "handover_requested",
            5,
            to_agency="th-shelter-ngo",
            mode="referral",
            reason="specialised_recovery",
        ),
        action_step(run, c, "th-shelter-ngo", "handover_accepted", 6),
        action_step(run, c, shelter, "assistance_planned", 7, services=["Health", "Legal"]),
    ]


def waiting_handover_steps(run: str) -> list[Step]:
    """Another survivor's referral, played up to the shelter's handover request: left for a
    caseworker of th-shelter-ngo to answer in the console (a person of its own, so erasing
    Survivor-D's data leaves nothing of theirs here)."""
    survivor_w = {
        "given_name": "Synthetic",
        "family_name": "Survivor-W",
        "age_estimate": 31,
        "gender": "Feminine",
        "nationality": "MM",
    }
    return referral_steps(run, case_id=f"REF-{run}-11", person=survivor_w)[:5]


def return_steps(run: str) -> list[Step]:
    c = cases_of(run).returns
    opening = agency_event(
        "id-return-programme requests a voluntary return to Myanmar",
        "id-return-programme",
        "avrr",
        "org.casebridge.return.requested.v1",
        {
            "case_id": c,
            "reporting_agency": "id-return-programme",
            "requested_at": datetime.now(UTC).isoformat(),
            "person": {
                "given_name": "Synthetic",
                "family_name": "Survivor-E",
                "age_estimate": 29,
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
    iom, home = "id-return-programme", "mm-return-reception"
    return [
        Step(opening, c, 1),
        action_step(run, c, iom, "return_risk_assessed", 2, risk_level="low"),
        action_step(run, c, iom, "travel_documents_issued", 3),
        action_step(run, c, iom, "fitness_to_travel_assessed", 4, fit_to_travel=True),
        action_step(run, c, iom, "return_departed", 5),
        action_step(run, c, home, "return_arrived", 6),
        action_step(
            run,
            c,
            home,
            "reintegration_planned",
            7,
            measures=[
                {"dimension": "economic", "measure": "vocational_training"},
                {"dimension": "social", "measure": "family_tracing"},
                {"dimension": "psychosocial", "measure": "counselling"},
            ],
        ),
        action_step(
            run,
            c,
            home,
            "monitoring_visit_recorded",
            8,
            visited_on=date.today().isoformat(),
            economic=0.5,
            social=0.7,
            psychosocial=0.6,
        ),
    ]


def print_step(step: Step, reached: int) -> None:
    """One line per step played: whether it took effect, the case version, what it was."""
    mark = "ok " if reached >= step.version_after else "!! "
    print(f"  {mark} v{reached:<2} {step.message.label}")


async def case_version(conn: asyncpg.Connection, case_id: str) -> int:
    version = await conn.fetchval("SELECT version FROM case_state WHERE case_id = $1", case_id)
    return int(version or 0)


async def wait_for_version(
    conn: asyncpg.Connection, case_id: str, version: int, *, within_s: float = 30.0
) -> int:
    deadline = time.monotonic() + within_s
    current = await case_version(conn, case_id)
    while current < version and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        current = await case_version(conn, case_id)
    return current


async def play(
    steps: Sequence[Step],
    publish: Publish,
    conn: asyncpg.Connection,
    *,
    report: Callable[[Step, int], None] | None = None,
) -> bool:
    """Publish the steps of one case: the opening, then (once the case exists) each action
    after the previous one took effect. Returns whether every step took effect."""
    ok = True
    for step in steps:
        await publish([step.message])
        reached = await wait_for_version(conn, step.case_id, step.version_after)
        if report is not None:
            report(step, reached)
        ok = ok and reached >= step.version_after
    return ok
