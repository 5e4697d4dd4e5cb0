"""docs/schemas.md, word for word: an integrator who follows the guide submits a referral as
the police unit, then, as the shelter the referral is routed to, performs every action of the
guide's worked example until the case is closed.

The code run here is the guide's own: its Python sketch (section 5), its referral payload
(section 4), and the payloads of its worked example (section 6), read out of the Markdown, so
the test fails when the guide drifts from the system. Only the case id is replaced by a fresh
one (the guide itself says to use your own), and the client settings files are the ones
`casebridge agencies sync` wrote for the two agencies. The guide's kcat commands are not run:
Debian's kcat cannot log in with SCRAM to Kafka 4 (the guide says so).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.cases.watch import read_feed
from services.runtime.credentials import kafka_client_file
from services.runtime.settings import REPO_ROOT, Settings
from tests.support.pipeline import running
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

GUIDE = (REPO_ROOT / "docs" / "schemas.md").read_text()
GUIDE_CASE = "ID-POL-2025-000123"
POLICE, SHELTER = "id-police-aht", "id-shelter-ngo"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.DOTALL)


def _section(title: str) -> str:
    start = GUIDE.index(f"## {title}")
    end = GUIDE.find("\n## ", start + 1)
    return GUIDE[start : end if end != -1 else None]


def guide_sketch() -> str:
    """Section 5's Python sketch, without its last line (`asyncio.run(main())`): the test
    awaits `main()` on its own event loop."""
    [sketch] = [b for b in _blocks("python") if "async def publish(" in b]
    assert sketch.rstrip().endswith("asyncio.run(main())")
    return sketch.rstrip().removesuffix("asyncio.run(main())")


def guide_referral() -> str:
    [referral] = [b for b in _blocks("json") if '"reporting_agency": "id-police-aht"' in b]
    return referral


def guide_actions() -> list[tuple[str, dict[str, Any], int, str]]:
    """(ce_type, payload, version after, state after) for each action of the worked example:
    the acknowledgement, then each row of the table that follows it."""
    section = _section("6. Acting on a case")
    [ack] = [
        b for b in re.findall(r"```json\n(.*?)```", section, re.DOTALL) if "expected_version" in b
    ]
    steps = [("org.casebridge.case.referral_acknowledged.v1", json.loads(ack), 2, "acknowledged")]
    row = re.compile(
        r"^\| `(org\.casebridge\.case\.[a-z_]+\.v1)` \| `(\{.*\})` \| (\d+), `([a-z_]+)`"
    )
    for line in section.splitlines():
        if match := row.match(line):
            ce_type, payload, version, state = match.groups()
            steps.append((ce_type, json.loads(payload), int(version), state))
    return steps


@pytest.fixture(scope="module")
async def system(stack: Stack) -> AsyncIterator[Settings]:
    """The services on the topics the guide names (no deployment prefix)."""
    ns = f"guide{uuid.uuid4().hex[:8]}"
    settings = stack.deployment(topic_prefix="", group_prefix=ns)
    async with running(settings, "intake", "router", "cases"):
        yield settings


async def _case_at(settings: Settings, case_id: str, version: int) -> dict[str, Any]:
    """The shelter's own view: its updates topic, read with its own credentials."""
    deadline = time.monotonic() + 30
    while True:
        feed = await read_feed(settings, SHELTER, idle_s=0.5)
        mine = [i.body for i in feed if i.case_id == case_id and i.event_type.endswith("update.v1")]
        if any(body.get("version") == version for body in mine) or time.monotonic() > deadline:
            break
    [update] = [b for b in mine if b.get("version") == version] or [{}]
    refusals = [i.body for i in feed if i.case_id == case_id and "rejected" in i.event_type]
    assert update, f"the case never reached version {version}; refusals: {refusals}"
    return update


async def test_the_guide_takes_a_referral_from_submission_to_closure(
    system: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = f"ID-POL-{uuid.uuid4().hex[:10].upper()}"
    # What the operator hands each agency, and the guide's payload, in the working directory.
    for agency in (POLICE, SHELTER):
        shutil.copy(kafka_client_file(system, agency), tmp_path / f"{agency}.properties")
    (tmp_path / "referral.json").write_text(guide_referral().replace(GUIDE_CASE, case_id))
    monkeypatch.chdir(tmp_path)

    namespace: dict[str, Any] = {"__name__": "guide"}
    exec(compile(guide_sketch(), "docs/schemas.md", "exec"), namespace)
    await namespace["main"]()  # the police unit submits the referral

    opened = await _case_at(system, case_id, 1)
    assert (opened["owner"], opened["role"]) == (SHELTER, "owner")

    settings = namespace["client_settings"](f"{SHELTER}.properties")
    producer = AIOKafkaProducer(**namespace["connection"](settings), enable_idempotence=True)
    await producer.start()
    try:
        steps = guide_actions()
        assert len(steps) == 6, "the acknowledgement and the five rows of the worked example"
        for ce_type, payload, version, state in steps:
            payload = {**payload, "case_id": case_id}
            await namespace["publish"](producer, SHELTER, "casework", ce_type, payload)
            update = await _case_at(system, case_id, version)
            assert update["state"] == state, ce_type
    finally:
        await producer.stop()
    assert update["status"] == "Closed"
