"""Rebuilding every case from its event log, and comparing with the stored snapshots.

The log (`case_event`) is the truth; `case_state` is a cache of its fold. `casebridge cases
rebuild` proves the two agree (or names the cases that differ) and, with --write, replaces the
snapshots by the fold, e.g. after a fix to `apply`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.cases import store
from services.cases.domain import CASE_ADAPTER, replay


@dataclass(frozen=True)
class RebuildReport:
    cases: int
    identical: int
    differing: list[str] = field(default_factory=list)
    missing_snapshot: list[str] = field(default_factory=list)
    without_log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.differing or self.missing_snapshot or self.without_log)


async def rebuild(conn: Any, *, write: bool = False) -> RebuildReport:
    logs = await store.case_logs(conn)
    stored = await store.snapshots(conn)
    identical, differing, missing = 0, [], []
    for case_id, events in sorted(logs.items()):
        rebuilt = replay(events)
        snapshot = stored.get(case_id)
        if rebuilt is None or snapshot is None:
            missing.append(case_id)
        elif CASE_ADAPTER.dump_json(snapshot) == CASE_ADAPTER.dump_json(rebuilt):
            identical += 1
            continue
        else:
            differing.append(case_id)
        if write and rebuilt is not None and snapshot is not None:
            await conn.execute(
                "UPDATE case_state SET snapshot = $2, version = $3, state = $4 WHERE case_id = $1",
                case_id,
                CASE_ADAPTER.dump_json(rebuilt).decode(),
                rebuilt.version,
                rebuilt.state.value,
            )
    return RebuildReport(
        cases=len(logs),
        identical=identical,
        differing=differing,
        missing_snapshot=missing,
        without_log=sorted(set(stored) - set(logs)),
    )
