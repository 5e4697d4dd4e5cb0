"""Progress of a long command, on stderr: records done (of how many), rate, time left.

Shared by `casebridge audit verify` and `export`, `casebridge cases rebuild`, `make chaos` and
`make bench`, so that each says the same thing the same way. It writes only when asked to
(`--progress`) or when stderr is a terminal: stdout stays what scripts read, and a log file
collecting stderr is not filled with progress lines. On a terminal the line is redrawn at most
once a second; elsewhere a new line is written every ten.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

TERMINAL_EVERY_S = 1.0
OTHER_EVERY_S = 10.0


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """`--progress` / `--no-progress`; without either, progress shows on a terminal only."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: only when stderr is a terminal)",
    )


class Progress:
    """One progress line for one long loop: call `update` (or `advance`) as often as is
    convenient, `finish` at the end (or use it as a context manager).

    `enabled=None` decides by the stream (a terminal shows progress); `clock` is injectable
    for tests. Only counts and rates are written, never what is being counted.
    """

    def __init__(
        self,
        what: str,
        *,
        total: int | None = None,
        unit: str = "records",
        enabled: bool | None = None,
        stream: TextIO | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        terminal = _is_terminal(self.stream)
        self.enabled = terminal if enabled is None else enabled
        self.what, self.total, self.unit = what, total, unit
        self._redraw = terminal
        default_every_s = TERMINAL_EVERY_S if terminal else OTHER_EVERY_S
        self._every_s = default_every_s if every_s is None else every_s
        self._clock = clock
        self._start = clock()
        self._shown_at = self._start
        self.done = 0
        self._note = ""
        self._finished = False

    def update(self, done: int, *, note: str = "") -> None:
        """`done` records so far (absolute); written if the interval has passed."""
        self.done, self._note = done, note
        if self.enabled and self._clock() - self._shown_at >= self._every_s:
            self._show(final=False)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n, note=self._note)

    def finish(self, *, note: str | None = None) -> None:
        """The last line (once), with the overall rate; nothing if progress is off."""
        if self._finished:
            return
        self._finished = True
        if note is not None:
            self._note = note
        if self.enabled:
            self._show(final=True)

    def line(self) -> str:
        """What the progress line says now."""
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.what}: {self.done:,}"]
        if self.total is not None:
            share = f" ({100 * self.done / self.total:.1f} %)" if self.total else ""
            parts[0] += f"/{self.total:,} {self.unit}{share}"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{rate:,.0f}/s")
        parts.append(f"{elapsed:.1f} s")
        if self.total is not None and rate > 0 and self.done < self.total:
            parts.append(f"about {(self.total - self.done) / rate:.0f} s left")
        if self._note:
            parts.append(self._note)
        return ", ".join(parts)

    def _show(self, *, final: bool) -> None:
        self._shown_at = self._clock()
        if self._redraw:
            self.stream.write("\r" + self.line() + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Cancelling is how a task showing progress is ended: not a failure.
        failed = kind is not None and issubclass(kind, Exception)
        self.finish(note="stopped" if failed else None)


def say(text: str, *, stream: TextIO | None = None) -> None:
    """A line of its own on stderr, written over a progress line being redrawn there (which
    the next update draws again below it) rather than run into it."""
    out = stream if stream is not None else sys.stderr
    out.write(("\r\x1b[K" if _is_terminal(out) else "") + text + "\n")
    out.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
