"""LeaderWarmUp: aiokafka's "not the leader" lines are warm-up for a while, then errors again."""

from __future__ import annotations

import logging

from aiokafka import TopicPartition
from aiokafka.errors import NotLeaderForPartitionError, UnknownTopicOrPartitionError

from services.runtime.kafka import LeaderWarmUp


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _line(error: Exception) -> logging.LogRecord:
    """The record aiokafka's fetcher makes (`log.error(MESSAGE, node_id, err)`)."""
    return logging.LogRecord(
        "aiokafka.consumer.fetcher", logging.ERROR, "fetcher.py", 987,
        LeaderWarmUp.MESSAGE, (1, error), None,
    )  # fmt: skip


TP = TopicPartition("casebridge.events.valid", 3)


def test_not_leader_is_held_back_during_warm_up_then_passes_as_an_error() -> None:
    clock = Clock()
    warm_up = LeaderWarmUp(30.0, clock=clock)
    assert not warm_up.filter(_line(NotLeaderForPartitionError(TP)))
    clock.now += 29.0
    assert not warm_up.filter(_line(NotLeaderForPartitionError(TP)))
    assert warm_up.held_back == 2
    clock.now += 1.0
    assert warm_up.filter(_line(NotLeaderForPartitionError(TP))), "30 s leaderless is a fault"


def test_each_partition_has_its_own_warm_up() -> None:
    clock = Clock()
    warm_up = LeaderWarmUp(30.0, clock=clock)
    warm_up.filter(_line(NotLeaderForPartitionError(TP)))
    clock.now += 31.0
    other = TopicPartition("casebridge.events.valid", 4)
    assert not warm_up.filter(_line(NotLeaderForPartitionError(other)))


def test_a_leader_moving_long_after_warm_up_starts_a_new_one() -> None:
    clock = Clock()
    warm_up = LeaderWarmUp(30.0, clock=clock)
    warm_up.filter(_line(NotLeaderForPartitionError(TP)))
    clock.now += 300.0
    assert not warm_up.filter(_line(NotLeaderForPartitionError(TP)))


def test_other_errors_pass_untouched() -> None:
    warm_up = LeaderWarmUp(30.0, clock=Clock())
    assert warm_up.filter(_line(UnknownTopicOrPartitionError(TP)))
    other_line = _line(NotLeaderForPartitionError(TP))
    other_line.msg = "Failed fetch messages from %s: %s"
    assert warm_up.filter(other_line)
    assert warm_up.held_back == 0
