"""The README's demo scenario, end to end on the real broker and database, with every log
line captured and checked for every personal and free-text value the scenario publishes
(collected from the scenario's own messages: `tests.support.scenario_values`)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.console.config import ConsoleSettings
from services.demo.run import run_demo
from tests.support.scenario_values import scenario_values
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


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
    assert "checked: th-shelter-ngo sees REF-" in out, "the console was checked through its API"
    assert out.strip().splitlines()[-1] == f"Console: http://127.0.0.1:{port}/"
    assert (tmp_path / "tree-heads.jsonl").read_text().strip(), "heads exported outside PostgreSQL"
    assert err.strip(), "the services logged something (the check below is not vacuous)"
    values = scenario_values()
    assert any(v.personal for v in values), "the collector found personal values to look for"
    in_logs = [f"{v.path}={v.value!r}" for v in values if v.found_in(err)]
    assert not in_logs, f"scenario values reached the logs: {in_logs}"
    in_report = [f"{v.path}={v.value!r}" for v in values if v.found_in(out)]
    assert not in_report, f"scenario values reached the demo's report: {in_report}"
