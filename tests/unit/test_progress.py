"""Progress: on stderr only when asked or on a terminal; counts, rate and time left."""

from __future__ import annotations

import argparse
import io

import pytest

from services.runtime.progress import Progress, add_progress_flag, say


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_redrawn_line_at_most_every_second() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("verify", total=1000, stream=out, clock=clock)
    clock.now = 0.5
    progress.update(100)
    assert out.getvalue() == "", "not before a second has passed"
    clock.now = 2.0
    progress.update(500)
    assert out.getvalue().startswith("\rverify: 500/1,000 records (50.0 %), 250/s, 2.0 s")
    assert "about 2 s left" in out.getvalue()
    assert "\n" not in out.getvalue(), "redrawn in place"
    progress.finish()
    assert out.getvalue().endswith("\n")


def test_nothing_is_written_when_stderr_is_not_a_terminal_unless_asked() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("rebuild", total=10, stream=out, clock=clock)
    for _ in range(10):
        clock.now += 20
        progress.advance()
    progress.finish()
    assert out.getvalue() == ""


def test_asked_for_on_a_file_it_writes_whole_lines_every_ten_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("export", stream=out, enabled=True, clock=clock)
    clock.now = 5
    progress.update(50)
    clock.now = 10
    progress.update(100, note="case REF-1")
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines == [
        "export: 100 records, 10/s, 10.0 s, case REF-1",
        "export: 100 records, 10/s, 10.0 s, case REF-1",
    ]


def test_turned_off_on_a_terminal_it_stays_quiet() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("verify", total=5, stream=out, enabled=False, clock=clock)
    clock.now = 5
    progress.update(5)
    progress.finish()
    assert out.getvalue() == ""


def test_a_loop_that_raises_still_ends_its_line_and_says_it_stopped() -> None:
    out, clock = io.StringIO(), Clock()

    def count_then_fail() -> None:
        with Progress("x", stream=out, enabled=True, clock=clock) as p:
            clock.now = 1
            p.update(3)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        count_then_fail()
    assert out.getvalue().splitlines()[-1].endswith("stopped")


def test_the_flag_is_tri_state() -> None:
    parser = argparse.ArgumentParser()
    add_progress_flag(parser)
    assert parser.parse_args([]).progress is None
    assert parser.parse_args(["--progress"]).progress is True
    assert parser.parse_args(["--no-progress"]).progress is False


def test_a_line_said_meanwhile_clears_the_progress_line_on_a_terminal_only() -> None:
    terminal, file = Terminal(), io.StringIO()
    say("node 1 killed", stream=terminal)
    say("node 1 killed", stream=file)
    assert terminal.getvalue() == "\r\x1b[Knode 1 killed\n"
    assert file.getvalue() == "node 1 killed\n"
