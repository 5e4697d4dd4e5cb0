"""The README's demo scenario, end to end on the real broker and database, with every log
line captured and checked for personal data."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.demo.run import run_demo
from services.demo.scenario import build_scenario
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

# Every personal value the scenario carries; none may appear in a log line.
PERSONAL_VALUES = ("Synthetic", "Person-A", "Person-B", "Person-C")


async def test_demo_routes_each_event_and_logs_no_personal_data(
    stack: Stack, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}."
    settings = stack.settings(topic_prefix=ns, group_prefix=ns + "cb", log_level="DEBUG")

    code = await run_demo(settings, keep_running=False, export_dir=tmp_path)
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
    assert (tmp_path / "tree-heads.jsonl").read_text().strip(), "heads exported outside PostgreSQL"
    assert err.strip(), "the services logged something (the check below is not vacuous)"
    for value in PERSONAL_VALUES:
        assert value not in err, f"a personal value reached the logs: {value}"
        assert value not in out


def test_scenario_carries_the_personal_values_the_log_check_looks_for() -> None:
    values = b"".join(m.value for m in build_scenario("X"))
    for value in PERSONAL_VALUES:
        assert value.encode() in values
