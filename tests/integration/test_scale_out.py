"""Two instances of every service in one consumer group, on the three-broker cluster: nothing
lost, nothing duplicated, end to end (audit log, case tables, agency topics, the cases
outbox relay included). This is fault recipe 9 of `make chaos` (benchmarks.chaos) at a size
that fits the test suite: a second intake, router, cases and audit process join mid-stream,
each must be given partitions, then the second intake and router leave again."""

from __future__ import annotations

import pytest

from benchmarks.chaos import parse_args, prepare, run_recipe
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_two_instances_of_every_service_lose_and_duplicate_nothing(cluster: Stack) -> None:
    args = parse_args(["--events", "3000", "--recipes", "9", "--rate", "250"])
    row = await run_recipe(prepare(args, cluster), 9)

    assert row.error is None, row.error
    assert row.verdict is not None
    assert row.notes == [], row.notes  # the oracle's findings, crashes, partitions not shared
    assert (row.verdict.lost, row.verdict.duplicated) == (0, 0)
    assert row.verdict.relay_copies == 0, "two relays never publish the same outbox row"
    assert row.events >= 3000
    assert row.dead_letters[0] == row.dead_letters[1] > 0, "bad records are in the stream"
    assert "shared by two intake, router, cases, audit" in row.detail
