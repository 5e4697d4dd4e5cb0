"""The statistics feed's pure parts: a case's facts, the CSV, the wire record, the ACLs."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from schemas.cases import CaseKind, CaseState
from schemas.common import PersonRef
from schemas.envelope import decode_kafka_record
from schemas.statistics import STATISTICS_RELEASED, StatisticsRelease
from schemas.topics import STATISTICS_REGIONAL
from schemas.vocab import Gender, TraffickingStatus, TypeOfExploitation
from services.access.plan import Operation, Resource, plan_access
from services.cases.domain.model import Case, ReferralFacts
from services.runtime.settings import Settings
from services.statistics import feed
from services.statistics.release import CaseFacts, make_release

OPENED = dt.datetime(2026, 11, 5, 9, 0, tzinfo=dt.UTC)


def referral_case(**changes: object) -> Case:
    case = Case(
        case_id="c1",
        kind=CaseKind.referral,
        state=CaseState.closed,
        version=3,
        owner="id-shelter-ngo",
        opened_at=OPENED,
        state_entered_at=OPENED,
        updated_at=OPENED,
        child=True,
        person=PersonRef(given_name="Synthetic", gender=Gender.Feminine),
        referral=ReferralFacts(
            location_country="ID",
            adult_consent=None,
            trafficking_status=TraffickingStatus.PossibleVictimOfTrafficking,
            type_of_exploitation=(TypeOfExploitation.ForcedLabour,),
        ),
    )
    return dataclasses.replace(case, **changes)  # type: ignore[arg-type]


def test_a_case_contributes_its_facts_and_no_name() -> None:
    facts = feed.facts_of(referral_case())
    assert facts == CaseFacts(
        "ID", "2026-11", "referral", "ForcedLabour", "minor", "Feminine", "Closed"
    )
    assert "Synthetic" not in repr(facts)


def test_an_erased_person_counts_as_unknown_gender_and_several_types_as_multiple() -> None:
    case = referral_case(person=None, child=False)
    assert feed.facts_of(case).gender == "unknown"
    assert feed.facts_of(case).age_band == "adult"
    several = (TypeOfExploitation.ForcedLabour, TypeOfExploitation.SexualExploitation)
    assert case.referral is not None
    referral = dataclasses.replace(case.referral, type_of_exploitation=several)
    assert feed.facts_of(referral_case(referral=referral)).exploitation_type == "multiple"


def test_csv_has_one_row_per_published_cell_with_stars_for_totals(tmp_path: Path) -> None:
    population = [feed.facts_of(referral_case())] * 12
    release = make_release(population)
    path = tmp_path / "release.csv"
    feed.write_csv(release, path)
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows[0] == [*feed.DIMENSIONS, "count"]
    assert rows[1] == ["*"] * 7 + ["12"]
    assert rows[-1] == [
        "ID",
        "2026-11",
        "referral",
        "ForcedLabour",
        "minor",
        "Feminine",
        "Closed",
        "12",
    ]
    assert len(rows) == 1 + 8


def test_small_populations_write_no_count_to_the_csv(tmp_path: Path) -> None:
    path = tmp_path / "release.csv"
    feed.write_csv(make_release([feed.facts_of(referral_case())] * 10), path)
    assert path.read_text(encoding="utf-8").splitlines() == [",".join([*feed.DIMENSIONS, "count"])]


def test_a_release_travels_as_a_cloudevent_and_reads_back_the_same() -> None:
    release = make_release([feed.facts_of(referral_case())] * 12, made_at=OPENED)
    record = feed.to_record(release, "r1")
    headers, value = feed.release_message(record)
    envelope, data = decode_kafka_record(headers, value)
    assert envelope.type == STATISTICS_RELEASED
    back = feed.from_record(StatisticsRelease.model_validate(data))
    assert back.cells == release.cells
    assert back.k == 11


def _readers(plan_readers: list[str]) -> set[str]:
    plan = plan_access(
        ["regional-support-office", "id-police-aht"], statistics_readers=plan_readers
    )
    topic = STATISTICS_REGIONAL.name
    return {
        g.principal
        for g in plan.grants
        if g.operation == Operation.READ
        and g.resource == Resource.TOPIC
        and (topic.startswith(g.name) if g.prefixed else g.name == topic)
    }


def test_only_the_named_partners_and_the_job_read_the_regional_statistics() -> None:
    assert _readers(["regional-support-office"]) == {
        "regional-support-office",
        "casebridge-statistics",
        "casebridge-audit",
        "casebridge-operator",
    }
    assert "regional-support-office" not in _readers([])


def test_a_partner_must_be_a_registered_agency() -> None:
    with pytest.raises(ValueError, match="not a registered agency"):
        plan_access(["id-police-aht"], statistics_readers=["regional-support-office"])


def test_the_last_releases_are_kept_per_deployment(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, topic_prefix="t1.")
    assert feed.load_history(settings) == []
    records = [
        feed.to_record(make_release([], made_at=OPENED), f"r{i}")
        for i in range(feed.KEPT_RELEASES + 2)
    ]
    feed.save_history(settings, records)
    kept = feed.load_history(settings)
    assert [r.release_id for r in kept] == [f"r{i}" for i in range(2, feed.KEPT_RELEASES + 2)]
    assert feed.load_history(Settings(run_dir=tmp_path, topic_prefix="t2.")) == []
