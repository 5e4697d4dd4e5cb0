"""The routing policy: what load_policy refuses, and where route() sends events.

Route expectations are written against the shipped services/routing/policy.yaml, because that
file *is* the behaviour agencies rely on; the property tests state what must hold for any
event under it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.common import PersonRef
from schemas.referral import REFERRAL_SUBMITTED
from schemas.registry import EVENT_TYPES
from schemas.returns import RETURN_REQUESTED
from schemas.sar import SAR_ALERT
from schemas.topics import inbox_topic
from schemas.vocab import AgencyKind, SarPhase, TypeOfExploitation
from services.privacy.policy import DataClass, SharingAgreement
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.routing.policy import (
    Delivery,
    Facts,
    PolicyError,
    Priority,
    RoutingPolicy,
    load_policy,
    route,
)
from services.runtime.settings import Settings

SHIPPED = Settings().routing_policy_path
POLICY = load_policy(SHIPPED, known_event_types=EVENT_TYPES)
SHARING = load_data_sharing_policy()
AGENCY_IDS = sorted(a.id for a in POLICY.agencies)
IMMIGRATION = {a.id for a in POLICY.agencies if a.kind == AgencyKind.immigration}


def shipped_raw() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return raw


def write(tmp_path: Path, raw: dict[str, Any] | str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(path, known_event_types=EVENT_TYPES)
    message = str(info.value)
    assert str(path) in message
    return message


def deliveries(r: Any) -> dict[str, tuple[Priority, str]]:
    return {d.agency: (d.priority, d.rule) for d in r.deliveries}


# --- loading -------------------------------------------------------------------------------------


def test_shipped_policy_loads_and_has_immigration_as_a_known_agency() -> None:
    assert POLICY.version
    assert sorted(IMMIGRATION) == ["id-immigration"]
    assert POLICY.default_route == ("id-national-referral",)


def test_policy_round_trips_through_yaml(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, shipped_raw()), known_event_types=EVENT_TYPES) == POLICY


def test_rule_naming_an_unknown_agency_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["rules"][0]["route_to"] = {"agencies": ["id-coast-guard"]}
    message = refused(write(tmp_path, raw))
    assert f"rule {raw['rules'][0]['name']!r}: unknown agency 'id-coast-guard'" in message


def test_unknown_default_route_and_fallback_agencies_are_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["default_route"] = ["nobody-home"]
    raw["agencies"][0]["fallback"] = "ghost-agency"
    message = refused(write(tmp_path, raw))
    assert "default_route: unknown agency 'nobody-home'" in message
    assert "unknown fallback 'ghost-agency'" in message


def test_duplicate_rule_name_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["rules"].append(dict(raw["rules"][0]))
    message = refused(write(tmp_path, raw))
    assert f"rule name {raw['rules'][0]['name']!r} is used twice" in message


def test_duplicate_agency_id_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["agencies"].append(dict(raw["agencies"][0]))
    assert f"agency id {raw['agencies'][0]['id']!r} is listed twice" in refused(
        write(tmp_path, raw)
    )


def test_unknown_event_type_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["rules"][0]["when"]["event_types"] = ["org.casebridge.sar.alert.v2"]
    message = refused(write(tmp_path, raw))
    assert "unknown event type 'org.casebridge.sar.alert.v2'" in message


def test_rule_routing_to_nobody_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["rules"][0]["route_to"] = {}
    assert f"rule {raw['rules'][0]['name']!r}: routes to nobody" in refused(write(tmp_path, raw))


def test_kind_with_no_agency_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["rules"][0]["route_to"] = {"kinds": ["embassy"]}
    assert "no agency of kind embassy" in refused(write(tmp_path, raw))


def test_unknown_field_is_refused_with_its_location(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["rules"][0]["when"]["age_under"] = 18
    assert "rules.0.when.age_under" in refused(write(tmp_path, raw))


def test_yaml_syntax_error_is_refused(tmp_path: Path) -> None:
    message = refused(write(tmp_path, "version: '1'\nagencies: [\n  {id: a, name: x\n"))
    assert "cannot read" in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert "cannot read" in refused(tmp_path / "absent.yaml")


def test_agency_id_that_cannot_name_a_topic_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["agencies"].append(
        {"id": "id.coast_guard", "name": "Coast guard", "kind": "police", "country": "ID"}
    )
    with pytest.raises(ValueError, match="invalid agency id"):
        inbox_topic("id.coast_guard")
    refused(write(tmp_path, raw))


# --- route() -------------------------------------------------------------------------------------


def referral(**facts: Any) -> Facts:
    return Facts(
        event_type=REFERRAL_SUBMITTED,
        reporting_agency=facts.pop("reporting_agency", "id-national-referral"),
        country=facts.pop("country", "ID"),
        **facts,
    )


def test_child_referral_goes_to_child_protection_immediately_and_to_police() -> None:
    r = route(POLICY, referral(child=True))
    assert deliveries(r) == {
        "id-child-protection": (Priority.IMMEDIATE, "child-referral-to-child-protection"),
        "id-police-aht": (Priority.HIGH, "child-referral-to-police"),
    }


def test_adult_forced_labour_goes_to_shelter_and_labour_inspectorate() -> None:
    r = route(
        POLICY,
        referral(child=False, exploitation=frozenset({"ForcedLabour"}), reporting_agency="x"),
    )
    assert deliveries(r) == {
        "id-shelter-ngo": (Priority.HIGH, "adult-referral-to-shelter"),
        "id-labour-inspectorate": (Priority.NORMAL, "labour-exploitation-to-inspectorate"),
    }
    assert r.matched_rules == ("adult-referral-to-shelter", "labour-exploitation-to-inspectorate")


def test_kinds_route_to_agencies_in_the_events_country() -> None:
    r = route(POLICY, referral(child=True, country="TH"))
    assert set(deliveries(r)) == {"th-child-protection", "th-police-aht"}


def test_country_without_an_agency_of_the_kind_goes_to_the_regional_coordinator_only() -> None:
    r = route(POLICY, referral(child=True, country="GR"), SHARING.sharing_agreements)
    assert deliveries(r) == {
        "regional-support-office": (Priority.IMMEDIATE, "child-referral-to-child-protection")
    }
    assert {d.via for d in r.deliveries} == {"regional-coordinator"}


def test_a_sharing_agreement_lets_a_referral_reach_the_agreed_agency_abroad() -> None:
    agreement = SharingAgreement(
        name="gr-th-child-protection",
        from_country="GR",
        to_agency="th-child-protection",
        categories=frozenset({DataClass.personal, DataClass.victim_status}),
        legal_basis="synthetic test agreement",
        expires=dt.date(2030, 1, 1),
    )
    facts = dataclasses.replace(referral(child=True, country="GR"), on=dt.date(2026, 12, 1))
    r = route(POLICY, facts, [agreement])
    assert deliveries(r) == {
        "th-child-protection": (Priority.IMMEDIATE, "child-referral-to-child-protection"),
        # No agreement names a police unit abroad: the coordinator stands in for it.
        "regional-support-office": (Priority.HIGH, "child-referral-to-police"),
    }
    assert {d.agency: d.via for d in r.deliveries}["th-child-protection"] == agreement.name
    expired = agreement.model_copy(update={"expires": dt.date(2020, 1, 1)})
    assert set(deliveries(route(POLICY, facts, [expired]))) == {"regional-support-office"}


def sar(phase: SarPhase, *, rcc: str = "id-rcc-jakarta", reporter: str = "x") -> Facts:
    return Facts(
        event_type=SAR_ALERT,
        reporting_agency=reporter,
        sar_phase=str(phase),
        country="ID",
        coordinating_rcc=rcc,
    )


def test_sar_distress_goes_to_the_coordinating_rcc_immediately() -> None:
    r = route(POLICY, sar(SarPhase.DETRESFA))
    # The neighbouring-RCC rule also picks the Jakarta RCC (high): the more urgent one wins.
    assert deliveries(r) == {
        "id-rcc-jakarta": (Priority.IMMEDIATE, "sar-distress-to-coordinating-rcc"),
        "au-jrcc": (Priority.HIGH, "sar-distress-to-neighbouring-rcc"),
    }
    assert "sar-distress-to-neighbouring-rcc" in r.matched_rules


def test_sar_alert_phase_goes_to_the_coordinating_rcc_with_high_priority() -> None:
    r = route(POLICY, sar(SarPhase.ALERFA, rcc="au-jrcc"))
    assert deliveries(r) == {"au-jrcc": (Priority.HIGH, "sar-alert-to-coordinating-rcc")}


def test_coordinating_rcc_unknown_to_the_policy_falls_back_to_the_default_route() -> None:
    r = route(POLICY, sar(SarPhase.INCERFA, rcc="zz-rcc-unknown"))
    assert r.matched_rules == ("sar-alert-to-coordinating-rcc",)
    assert r.deliveries == (Delivery("id-national-referral", Priority.NORMAL, "default-route"),)


def test_return_goes_to_the_programmes_in_host_and_origin_country() -> None:
    facts = Facts(
        event_type=RETURN_REQUESTED, reporting_agency="x", country="ID", origin_country="MM"
    )
    assert set(deliveries(route(POLICY, facts))) == {"id-return-programme", "mm-return-reception"}


def test_event_no_rule_matches_takes_the_default_route() -> None:
    r = route(POLICY, Facts(event_type="org.casebridge.case.closed.v1", reporting_agency="x"))
    assert r.matched_rules == ()
    assert r.deliveries == (Delivery("id-national-referral", Priority.NORMAL, "default-route"),)


def test_deliveries_are_most_urgent_first_then_by_agency() -> None:
    r = route(POLICY, referral(child=True, country="GR"))
    keys = [(d.priority.rank, d.agency) for d in r.deliveries]
    assert keys == sorted(keys)
    assert r.deliveries[0].priority.value == "immediate", "child protection owns a child's case"


def test_every_event_is_routed_to_someone() -> None:
    r = route(
        POLICY,
        sar(SarPhase.INCERFA, rcc="zz-rcc-unknown", reporter="id-national-referral"),
    )
    assert r.deliveries


def test_facts_hold_no_personal_field() -> None:
    names = {f.name for f in dataclasses.fields(Facts)}
    assert names.isdisjoint({"person", *PersonRef.model_fields})


# --- properties under the shipped policy ---------------------------------------------------------

COUNTRIES = st.sampled_from(sorted({a.country for a in POLICY.agencies} | {"GR", "MM", "PH"}))
REPORTERS = st.sampled_from([*AGENCY_IDS, "some-ngo"])


@st.composite
def referral_facts(draw: st.DrawFn) -> Facts:
    return Facts(
        event_type=REFERRAL_SUBMITTED,
        reporting_agency=draw(REPORTERS),
        child=draw(st.booleans()),
        exploitation=frozenset(
            draw(st.sets(st.sampled_from([t.value for t in TypeOfExploitation])))
        ),
        country=draw(COUNTRIES),
    )


@st.composite
def any_facts(draw: st.DrawFn) -> Facts:
    event_type = draw(st.sampled_from(sorted(EVENT_TYPES)))
    if event_type == REFERRAL_SUBMITTED:
        return draw(referral_facts())
    return Facts(
        event_type=event_type,
        reporting_agency=draw(REPORTERS),
        sar_phase=draw(st.sampled_from([p.value for p in SarPhase])),
        country=draw(COUNTRIES),
        origin_country=draw(COUNTRIES),
        coordinating_rcc=draw(st.sampled_from([*AGENCY_IDS, "zz-rcc"])),
    )


@settings(max_examples=300, deadline=None)
@given(referral_facts())
def test_immigration_never_receives_a_referral(facts: Facts) -> None:
    assert IMMIGRATION.isdisjoint(d.agency for d in route(POLICY, facts).deliveries)


@settings(max_examples=300, deadline=None)
@given(any_facts())
def test_reporting_agency_is_never_routed_its_own_event(facts: Facts) -> None:
    r = route(POLICY, facts)
    agencies = {d.agency for d in r.deliveries}
    if facts.reporting_agency in agencies:
        # The one exception: the default-route coordinator reporting an event no rule
        # sends anywhere else still gets it back, rather than nobody getting it.
        assert [d.rule for d in r.deliveries] == ["default-route"]
        assert agencies <= set(POLICY.default_route)


@settings(max_examples=300, deadline=None)
@given(any_facts())
def test_every_delivery_is_to_a_known_agency_once(facts: Facts) -> None:
    agencies = [d.agency for d in route(POLICY, facts).deliveries]
    assert len(agencies) == len(set(agencies))
    assert set(agencies) <= set(AGENCY_IDS)


def test_routing_policy_model_is_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        POLICY.version = "tampered"  # type: ignore[misc]
    assert isinstance(POLICY, RoutingPolicy)
