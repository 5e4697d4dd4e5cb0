"""Need to know at the first hop, on the real broker: each agency's inbox copy of an event
carries exactly what the data-sharing policy allows it in its situation, names what it
withholds, crosses a border only under an agreement, and names only registered agencies.

Expected key sets are written out here, not computed by the code under test.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from schemas.topics import inbox_topic, rejections_topic
from services.demo.scenario import AgencyMessage, agency_event
from services.privacy.policy import POLICY_PATH
from services.runtime.settings import Settings
from tests.support.pipeline import Record, publish, read_topic, running, wait_for
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka]

REFERRAL = "org.casebridge.referral.submitted.v1"
RETURN = "org.casebridge.return.requested.v1"
ALWAYS = {"case_id", "reporting_agency"}
REFERRAL_OPERATIONAL = ALWAYS | {"referred_at", "location_country", "consent_to_share"}
REFERRAL_VICTIM = {"type_of_exploitation", "indicators", "country_of_exploitation"}
FULL_REFERRAL = REFERRAL_OPERATIONAL | REFERRAL_VICTIM | {"person"}
NAME = "Synthetic"


@dataclass
class World:
    settings: Settings
    run: str


def person(family: str, **extra: Any) -> dict[str, Any]:
    return {"given_name": NAME, "family_name": family, "nationality": "MM", **extra}


def referral(
    run: str,
    n: int,
    *,
    agency: str,
    country: str = "ID",
    child: bool = True,
    consent: bool = True,
    exploitation: str = "SexualExploitation",
    **extra: Any,
) -> AgencyMessage:
    data: dict[str, Any] = {
        "case_id": f"NTK-{run}-{n}",
        "reporting_agency": agency,
        "referred_at": dt.datetime.now(dt.UTC).isoformat(),
        "person": person(f"Person-{n}", age_estimate=15 if child else 35),
        "type_of_exploitation": [exploitation],
        "location_country": country,
        "country_of_exploitation": country,
        "indicators": [
            {
                "dimension": "coercion_at_destination",
                "indicator": "debt_bondage",
                "strength": "strong",
            }
        ],
        "consent_to_share": consent,
        **extra,
    }
    return agency_event(f"referral {n}", agency, "casework", REFERRAL, data)


def with_agreement(tmp: Path) -> Path:
    """The packaged policy plus an agreement from a country CaseBridge has no agencies in."""
    raw = yaml.safe_load(POLICY_PATH.read_text())
    raw["sharing_agreements"].append(
        {
            "name": "gr-th-child-protection",
            "from_country": "GR",
            "to_agency": "th-child-protection",
            "categories": ["personal", "victim_status"],
            "legal_basis": "Synthetic test agreement",
            "expires": "2030-12-31",
        }
    )
    path = tmp / "data-sharing.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    ns = f"n{uuid.uuid4().hex[:10]}."
    policy = with_agreement(tmp_path_factory.mktemp("policy"))
    settings = stack.deployment(
        topic_prefix=ns, group_prefix=ns + "cb", data_sharing_policy_path=policy
    )
    async with running(settings, "intake", "router"):
        yield World(settings, uuid.uuid4().hex[:6].upper())


async def copies(w: World, agency: str, case_id: str) -> list[tuple[dict[str, Any], str]]:
    async def probe() -> list[tuple[dict[str, Any], str]]:
        records = await read_topic(w.settings, inbox_topic(agency), idle_s=0.5)
        return [
            (orjson.loads(r.value), dict(r.headers)["cb_withheld"].decode())
            for r in records
            if r.key == case_id.encode()
        ]

    return await wait_for(probe, bool, within_s=20)


async def send(w: World, m: AgencyMessage) -> None:
    await publish(w.settings, [Record(m.topic, m.value, m.key, m.headers)])


def keys(copy: tuple[dict[str, Any], str]) -> set[str]:
    return set(copy[0])


def named(copy: tuple[dict[str, Any], str]) -> set[str]:
    return {f for f in copy[1].split(",") if f}


async def test_a_childs_referral_reaches_child_protection_whole_and_police_without_identity(
    world: World,
) -> None:
    m = referral(world.run, 1, agency="id-shelter-ngo", consent=False)
    await send(world, m)
    [owner] = await copies(world, "id-child-protection", m.case_id)
    [police] = await copies(world, "id-police-aht", m.case_id)
    assert keys(owner) == FULL_REFERRAL  # the owner holds the case, consent or not
    assert named(owner) == set()
    assert keys(police) == REFERRAL_OPERATIONAL
    assert named(police) == {
        "person",
        "type_of_exploitation",
        "indicators",
        "country_of_exploitation",
        "trafficking_status",
        "status_decided_by",
        "methods_of_control",
        "recruitment_methods",
    }
    assert NAME not in orjson.dumps(police[0]).decode()


async def test_a_permitted_purpose_recorded_with_the_referral_opens_the_police_copy(
    world: World,
) -> None:
    purpose = {
        "for_agency": "id-police-aht",
        "purpose": "victim_witness_protection",
        "legal_basis": "Synthetic witness protection statute s.4",
    }
    m = referral(world.run, 2, agency="id-shelter-ngo", permitted_purposes=[purpose])
    await send(world, m)
    [police] = await copies(world, "id-police-aht", m.case_id)
    assert keys(police) == FULL_REFERRAL | {"permitted_purposes"}
    assert police[0]["person"]["given_name"] == NAME
    assert named(police) == set()


async def test_an_adult_forced_labour_referral_without_consent_keeps_identity_from_the_inspectorate(
    world: World,
) -> None:
    m = referral(
        world.run,
        3,
        agency="id-national-referral",
        child=False,
        consent=False,
        exploitation="ForcedLabour",
        adult_consent=True,
    )
    await send(world, m)
    [shelter] = await copies(world, "id-shelter-ngo", m.case_id)
    [inspectorate] = await copies(world, "id-labour-inspectorate", m.case_id)
    assert keys(shelter) == FULL_REFERRAL | {"adult_consent"}
    assert keys(inspectorate) == REFERRAL_OPERATIONAL | {"adult_consent"}
    assert {"person", "indicators"} <= named(inspectorate)


async def test_a_return_abroad_carries_identity_only_under_the_agreement_and_with_consent(
    world: World,
) -> None:
    def request(n: int, consent: bool) -> AgencyMessage:
        data = {
            "case_id": f"NTK-{world.run}-{n}",
            "reporting_agency": "id-return-programme",
            "requested_at": dt.datetime.now(dt.UTC).isoformat(),
            "person": person(f"Person-{n}", age_estimate=30),
            "origin_country": "MM",
            "host_country": "ID",
            "voluntariness_confirmed": True,
            "trafficking_victim": True,
            "receiving_agency": "mm-return-reception",
            "consent_to_share": consent,
        }
        return agency_event(f"return {n}", "id-return-programme", "avrr", RETURN, data)

    with_consent, without = request(4, True), request(5, False)
    await send(world, with_consent)
    await send(world, without)
    [agreed] = await copies(world, "mm-return-reception", with_consent.case_id)
    [refused] = await copies(world, "mm-return-reception", without.case_id)
    assert agreed[0]["person"]["family_name"] == "Person-4"
    assert "trafficking_victim" in agreed[0]
    assert "person" not in refused[0]
    assert named(refused) == {"person"}
    assert refused[0]["trafficking_victim"] is True  # a member: victim status is needed


async def test_a_referral_from_a_country_without_agencies_reaches_only_the_regional_coordinator(
    world: World,
) -> None:
    m = referral(
        world.run,
        6,
        agency="id-national-referral",
        country="VN",
        child=False,
        exploitation="ForcedLabour",
        adult_consent=True,
    )
    await send(world, m)
    [copy] = await copies(world, "regional-support-office", m.case_id)
    assert keys(copy) == REFERRAL_OPERATIONAL | {"adult_consent"}
    assert "person" in named(copy)
    for agency in ("id-shelter-ngo", "th-shelter-ngo", "id-labour-inspectorate"):
        others = await read_topic(world.settings, inbox_topic(agency), idle_s=0.5)
        assert m.key not in {r.key for r in others}, agency


async def test_a_sharing_agreement_sends_the_agreed_fields_to_the_agreed_agency(
    world: World,
) -> None:
    m = referral(world.run, 7, agency="id-shelter-ngo", country="GR")
    await send(world, m)
    [agreed] = await copies(world, "th-child-protection", m.case_id)
    [coordinator] = await copies(world, "regional-support-office", m.case_id)
    assert keys(agreed) == FULL_REFERRAL
    assert "person" not in coordinator[0]  # the police stand-in: no agreement covers it
    assert "indicators" not in coordinator[0]
    for agency in ("id-child-protection", "id-police-aht", "th-police-aht"):
        others = await read_topic(world.settings, inbox_topic(agency), idle_s=0.5)
        assert m.key not in {r.key for r in others}, agency


async def test_events_naming_an_unregistered_agency_or_an_unpermitted_purpose_are_rejected(
    world: World,
) -> None:
    bad_return = agency_event(
        "return to an unknown agency",
        "id-return-programme",
        "avrr",
        RETURN,
        {
            "case_id": f"NTK-{world.run}-8",
            "reporting_agency": "id-return-programme",
            "requested_at": dt.datetime.now(dt.UTC).isoformat(),
            "person": person("Person-8", age_estimate=30),
            "origin_country": "MM",
            "host_country": "ID",
            "voluntariness_confirmed": True,
            "trafficking_victim": False,
            "receiving_agency": "mm-not-registered",
            "consent_to_share": True,
        },
    )
    self_purpose = referral(
        world.run,
        9,
        agency="id-police-aht",
        permitted_purposes=[
            {
                "for_agency": "id-police-aht",
                "purpose": "victim_witness_protection",
                "legal_basis": "Synthetic",
            }
        ],
    )
    good = referral(world.run, 10, agency="id-police-aht")  # positive control
    await send(world, bad_return)
    await send(world, self_purpose)
    await send(world, good)

    async def reasons(agency: str) -> dict[bytes, dict[str, Any]]:
        records = await read_topic(world.settings, rejections_topic(agency), idle_s=0.5)
        return {r.key: orjson.loads(r.value) for r in records}

    returns = await wait_for(lambda: reasons("id-return-programme"), lambda r: bad_return.key in r)
    police = await wait_for(lambda: reasons("id-police-aht"), lambda r: self_purpose.key in r)
    assert returns[bad_return.key]["error"]["code"] == "UNKNOWN_AGENCY"
    assert returns[bad_return.key]["error"]["details"][0]["loc"] == "receiving_agency"
    assert "mm-not-registered" not in orjson.dumps(returns[bad_return.key]).decode()
    assert police[self_purpose.key]["error"]["code"] == "PURPOSE_NOT_PERMITTED"
    assert good.key not in police
    assert await copies(world, "id-child-protection", good.case_id)
