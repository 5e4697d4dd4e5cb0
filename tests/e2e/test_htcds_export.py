"""HTCDS 2.0 export end to end: the demo's coordination cases (a SAR incident, a referral
handed to a shelter abroad, a return with reintegration monitoring, a handover still waiting)
and its priority acts (a business report, the referral its inspection led to, a return and
the travel-document request it waited for)
played through the real intake, router and cases services on the real broker and database,
then exported as the auditor: every record conforms to the field list, and each agency gets
only what the data-sharing policy lets it see of each case. One more referral's person is
erased, and that case exports without personal fields and says so.

Expected field sets are written out here, not computed by the code under test.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from services.cases.erasure import erase
from services.demo import coordination, priorities
from services.htcds.export import EXIT_NOTHING, EXIT_OK, Selection, export_htcds
from services.htcds.fields import validate
from services.runtime.credentials import OWNER_ROLE
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import REPO_ROOT, Settings
from tests.support.pipeline import Record, publish, running
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

PERSON_FIELDS = {"prs_FirstName", "prs_SecondName", "prs_Gender", "prs_Citizenship"}
VICTIM_FIELDS = {
    "vic_TraffickingStatus",
    "vic_TraffickingStatusDecisionMakingOrg",
    "vic_TypeOfExploitation",
    "vic_MethodsOfControl",
    "Support Plan",
    "Historic Trafficking Events",
}
ERASED_PERSON = {
    "given_name": "Synthetic",
    "family_name": "Survivor-X",
    "age_estimate": 40,
    "gender": "Masculine",
    "nationality": "MM",
}
PERSONAL_VALUES = (
    "Synthetic",
    "Survivor-D",
    "Survivor-E",
    "Survivor-W",
    "Survivor-X",
    "Returnee-G",
    "Worker-F",
)


@dataclass
class World:
    stack: Stack
    settings: Settings
    run: str

    @property
    def sar(self) -> str:
        return coordination.cases_of(self.run).sar

    @property
    def referral(self) -> str:
        return coordination.cases_of(self.run).referral

    @property
    def returns(self) -> str:
        return coordination.cases_of(self.run).returns

    @property
    def waiting(self) -> str:
        return f"REF-{self.run}-11"

    @property
    def erased(self) -> str:
        return f"REF-{self.run}-12"

    @property
    def priority_cases(self) -> priorities.PriorityCases:
        return priorities.priority_cases_of(self.run)

    @property
    def all_cases(self) -> set[str]:
        p = self.priority_cases
        acts = {p.report, p.inspection_referral, p.returns, p.document}
        return {self.sar, self.referral, self.returns, self.waiting, self.erased} | acts


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    ns = f"t{uuid.uuid4().hex[:10]}."
    db = await stack.create_database()
    settings = stack.deployment(
        database=db, topic_prefix=ns, group_prefix=ns + "cb", person_key_secret="k" * 40
    )
    conn = await asyncpg.connect(asyncpg_dsn(stack.url(OWNER_ROLE, db)))  # the test's view
    run = uuid.uuid4().hex[:6].upper()
    w = World(stack, settings, run)

    async def send(messages: Any) -> None:
        for m in messages:
            await publish(settings, [Record(m.topic, m.value, m.key, m.headers)])

    before, _, after = priorities.document_request_steps(run)
    try:
        async with running(settings, "intake", "router", "cases"):
            for steps in (
                priorities.business_report_steps(run),
                before,
                after,
                coordination.sar_steps(run),
                coordination.referral_steps(run),
                coordination.return_steps(run),
                coordination.waiting_handover_steps(run),
                coordination.referral_steps(run, case_id=w.erased, person=ERASED_PERSON)[:2],
            ):
                assert await coordination.play(steps, send, conn), "every step takes effect"
            said: list[str] = []
            code = await erase(
                settings,
                case_id=w.erased,
                person_key=None,
                reason="subject_request",
                requested_by="dpo-test",
                timeout_s=30,
                out=said.append,
            )
            assert code == 0, said
            yield w
    finally:
        await conn.close()


@dataclass
class Exported:
    code: int
    lines: list[dict[str, Any]]
    said: list[str]

    def of(self, case_id: str) -> dict[str, Any]:
        (line,) = [x for x in self.lines if x["case_id"] == case_id]
        return line


async def export(w: World, *, case_id: str | None = None, agency: str | None = None) -> Exported:
    out = io.BytesIO()
    said: list[str] = []
    today = dt.datetime.now(dt.UTC).date()
    selection = (
        Selection(case_id=case_id)
        if case_id is not None
        else Selection(since=today - dt.timedelta(days=1), until=today + dt.timedelta(days=1))
    )
    code = await export_htcds(w.settings, selection, agency=agency, out=out, say=said.append)
    lines = [orjson.loads(x) for x in out.getvalue().splitlines()]
    return Exported(code, lines, said)


async def test_every_demo_case_exports_as_conforming_htcds(world: World) -> None:
    exported = await export(world)
    assert exported.code == EXIT_OK, exported.said
    assert {x["case_id"] for x in exported.lines} == world.all_cases
    for line in exported.lines:
        assert validate(line["htcds"]) == [], line["case_id"]
        assert line["withheld"] == [], "no agency named: the whole record"
    referral = exported.of(world.referral)["htcds"]
    assert referral["vic_TraffickingStatus"] == "ActualVictimOfTrafficking"
    assert referral["vic_TraffickingStatusDecisionMakingOrg"] == "NGO"
    assert referral["cas_ReferringOrganisation"] == "id-police-aht"
    assert referral["cas_ReferredOrganisation"] == "th-shelter-ngo"
    assert referral["Support Plan"] == [{"spl_Type": "Health"}, {"spl_Type": "Legal"}]
    assert referral["Historic Trafficking Events"] == [
        {"hte_Type": "Exploitation", "hte_Country": "TH"}
    ]
    assert referral["prs_SecondName"] == "Survivor-D"
    returned = exported.of(world.returns)["htcds"]
    assert returned["cas_Status"] == "FollowUp"  # monitoring
    assert returned["cas_ReferredOrganisation"] == "mm-return-reception"
    assert returned["prs_SecondName"] == "Survivor-E"
    assert exported.of(world.sar)["personal_data"] == "none"
    assert not set(exported.of(world.sar)["htcds"]) & (PERSON_FIELDS | VICTIM_FIELDS)
    acts = world.priority_cases
    report = exported.of(acts.report)
    assert report["personal_data"] == "none"
    assert report["htcds"]["cas_ReferringOrganisation"] == priorities.BUSINESS
    assert report["htcds"]["cas_CaseOwner"] == priorities.INSPECTORATE
    assert report["htcds"]["cas_Status"] == "Closed"
    assert not set(report["htcds"]) & (PERSON_FIELDS | VICTIM_FIELDS | {"con_Consent"})
    document = exported.of(acts.document)["htcds"]
    assert document["cas_CaseOwner"] == priorities.REGISTRY
    assert document["prs_SecondName"] == "Returnee-G"
    assert document["cas_Status"] == "Closed"  # collected
    found = exported.of(acts.inspection_referral)["htcds"]
    assert found["cas_ReferringOrganisation"] == priorities.INSPECTORATE
    assert found["vic_TypeOfExploitation"] == ["ForcedLabour"]


async def test_the_owning_agency_gets_the_person(world: World) -> None:
    for case_id, owner in (
        (world.referral, "id-shelter-ngo"),
        (world.returns, "mm-return-reception"),
    ):
        exported = await export(world, case_id=case_id, agency=owner)
        assert exported.code == EXIT_OK, exported.said
        line = exported.of(case_id)
        assert line["personal_data"] == "included"
        assert set(line["htcds"]) >= PERSON_FIELDS
        assert line["htcds"]["cas_CaseOwner"] == owner
        assert validate(line["htcds"]) == []


async def test_the_shelter_abroad_gets_the_person_under_its_sharing_agreement(
    world: World,
) -> None:
    exported = await export(world, case_id=world.referral, agency="th-shelter-ngo")
    line = exported.of(world.referral)
    assert line["personal_data"] == "included"
    assert set(line["htcds"]) >= PERSON_FIELDS | VICTIM_FIELDS


async def test_police_on_the_case_get_no_person_and_no_victim_status(world: World) -> None:
    for agency in ("id-police-aht", "id-labour-inspectorate"):
        exported = await export(world, case_id=world.referral, agency=agency)
        assert exported.code == EXIT_OK, exported.said
        line = exported.of(world.referral)
        assert line["personal_data"] == "withheld"
        assert not set(line["htcds"]) & (PERSON_FIELDS | VICTIM_FIELDS), agency
        assert set(line["withheld"]) >= PERSON_FIELDS | VICTIM_FIELDS
        assert line["htcds"]["cas_CaseOwner"] == "id-shelter-ngo"  # operational facts go
        assert validate(line["htcds"]) == []


async def test_a_shelter_not_yet_answering_a_handover_gets_no_person(world: World) -> None:
    exported = await export(world, case_id=world.waiting, agency="th-shelter-ngo")
    assert exported.code == EXIT_OK, exported.said
    line = exported.of(world.waiting)
    assert line["personal_data"] == "withheld"
    assert not set(line["htcds"]) & (PERSON_FIELDS | VICTIM_FIELDS)
    owner = (await export(world, case_id=world.waiting, agency="id-shelter-ngo")).of(world.waiting)
    assert set(owner["htcds"]) >= PERSON_FIELDS, "the owner of the same case gets them"


async def test_an_agency_with_no_standing_gets_nothing_and_an_error(world: World) -> None:
    exported = await export(world, case_id=world.referral, agency="id-immigration")
    assert exported.code == EXIT_NOTHING
    assert exported.lines == []
    assert exported.said == [
        f"agency id-immigration has no standing on case {world.referral}: nothing exported for it"
    ]
    ranged = await export(world, agency="id-immigration")
    assert ranged.code == EXIT_NOTHING
    assert ranged.lines == []


async def test_a_date_range_for_an_agency_holds_only_its_cases(world: World) -> None:
    exported = await export(world, agency="au-jrcc")
    assert exported.code == EXIT_OK, exported.said
    assert [x["case_id"] for x in exported.lines] == [world.sar]


async def test_an_erased_person_exports_without_personal_fields_and_says_so(
    world: World,
) -> None:
    exported = await export(world, case_id=world.erased, agency="id-shelter-ngo")
    assert exported.code == EXIT_OK, exported.said
    line = exported.of(world.erased)
    assert line["personal_data"] == "erased"
    assert not set(line["htcds"]) & PERSON_FIELDS
    assert line["htcds"]["cas_ReferringOrganisation"] == "id-police-aht"
    assert validate(line["htcds"]) == []
    assert f"case {world.erased}: the person's data was erased; exported without it" in (
        exported.said
    )
    assert "Survivor-X" not in orjson.dumps(line).decode()


def command(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "export", "htcds", *args],
        env=w.stack.service_env(w.settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_command_writes_json_lines_and_prints_no_personal_value(
    world: World, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    output = tmp_path / "htcds.jsonl"
    done = command(
        world,
        "--since",
        (today - dt.timedelta(days=1)).isoformat(),
        "--until",
        (today + dt.timedelta(days=1)).isoformat(),
        "--output",
        str(output),
    )
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(x) for x in output.read_bytes().splitlines()]
    assert {x["case_id"] for x in lines} == world.all_cases
    assert all(validate(x["htcds"]) == [] for x in lines)
    assert "Survivor-D" in output.read_text(), "the export itself holds the person"
    exported = f"exported {len(world.all_cases)} case(s) as HTCDS 2.0 (whole records)"
    assert exported in done.stderr
    assert not any(v in done.stdout + done.stderr for v in PERSONAL_VALUES)
    nothing = tmp_path / "refused.jsonl"
    refused = command(
        world, "--case-id", world.referral, "--agency", "id-immigration", "--output", str(nothing)
    )
    assert refused.returncode == EXIT_NOTHING
    assert not nothing.exists(), "an agency with no standing gets nothing, not an empty file"
    assert refused.stdout == ""
    assert "has no standing on case" in refused.stderr
