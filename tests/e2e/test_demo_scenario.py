"""The README's demo scenario, end to end on the real broker and database, with every log
line captured and checked for every personal and free-text value the scenario publishes
(collected from the scenario's own messages: `tests.support.scenario_values`)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from services.console.config import ConsoleSettings
from services.demo.run import run_demo
from tests.support.scenario_values import demo_messages, scenario_values
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _section(out: str, heading: str) -> str:
    """The demo's output from `== heading ==` to the next heading."""
    start = out.index(f"== {heading} ==")
    end = out.find("\n== ", start + 1)
    return out[start : end if end >= 0 else len(out)]


async def test_demo_routes_each_event_and_logs_no_personal_data(
    stack: Stack, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}."
    settings = stack.settings(topic_prefix=ns, group_prefix=ns + "cb", log_level="DEBUG")

    port = free_port()
    code = await run_demo(
        settings,
        keep_running=False,
        export_dir=tmp_path,
        console_settings=ConsoleSettings(
            port=port, audit_api_url=f"http://127.0.0.1:{free_port()}"
        ),
    )
    out, err = capfd.readouterr()

    assert code == 0, out
    assert "Demo result: OK" in out
    assert "-> inbox of id-child-protection" in out
    assert "-> inbox of id-rcc-jakarta" in out
    assert "-> inbox of mm-return-reception" in out
    assert "-> DEAD-LETTER, reason INVALID_PAYLOAD" in out
    assert "-> inbox of id-immigration" not in out, "no referral reaches immigration"
    assert "id-immigration: 0 updates" in out, "immigration sees no case (non-punishment)"
    assert "Rebuild from the case event log:" in out
    assert "OK, every record matches the signed root" in out
    assert "\n  !! " not in out, "every step, check and route went as expected"

    business = _section(out, "A business reports forced labour")
    assert "th-seafood-exporter: 6 updates on its report BR-" in business
    assert (
        "statuses it was told: received -> acknowledged -> assessed -> inspection_scheduled"
        " -> inspected -> closed"
    ) in business
    told = re.search(r"fields it got: (.*)", business)
    assert told is not None
    fields = set(told.group(1).split(", "))
    assert {"state", "inspection_outcome"} <= fields, fields
    assert not fields & {"presumed_victims", "linked_referrals", "person"}, fields
    assert "never the presumed victims, nor the referral they led to" in business
    assert re.search(r"presumed_victims=1  linked_referrals=\['REF-\w+-20'\]", business)

    document = _section(out, "A returnee's travel document gates her departure")
    assert "(reason DOCUMENT_REQUEST_OPEN)" in document
    assert re.search(r"return RET-\w+-30: state travel, owner id-return-programme", document)
    assert re.search(r"request DOC-\w+-30: state collected, owner mm-civil-registry", document)

    statistics = _section(out, "A regional statistics release")
    summary = re.search(
        r"(\d+) cases counted; cells published: (\d+), suppressed: \d+; k = 11", statistics
    )
    assert summary is not None, statistics
    counted, published = int(summary.group(1)), int(summary.group(2))
    assert counted >= 7, "at least the coordination's and the acts' cases (more if shared)"
    assert (published == 0) == ("empty by design" in statistics)
    assert "read by the partner regional-support-office" in statistics

    assert "checked: th-shelter-ngo sees REF-" in out, "the console was checked through its API"
    assert out.strip().splitlines()[-1] == f"Console: http://127.0.0.1:{port}/"
    assert (tmp_path / "tree-heads.jsonl").read_text().strip(), "heads exported outside PostgreSQL"
    assert err.strip(), "the services logged something (the check below is not vacuous)"
    values = scenario_values(demo_messages())
    assert any(v.personal for v in values), "the collector found personal values to look for"
    in_logs = [f"{v.path}={v.value!r}" for v in values if v.found_in(err)]
    assert not in_logs, f"scenario values reached the logs: {in_logs}"
    in_report = [f"{v.path}={v.value!r}" for v in values if v.found_in(out)]
    assert not in_report, f"scenario values reached the demo's report: {in_report}"
