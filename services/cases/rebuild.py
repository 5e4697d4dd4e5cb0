"""Rebuilding every case from its event log, and comparing with the stored snapshots.

The log (`case_event`) is the truth; `case_state` is a cache of its fold. `casebridge cases
rebuild` proves the two agree (or names the cases that differ) and, with --write, replaces the
snapshots by the fold, e.g. after a fix to `apply`.

Personal fields are sealed in both (services/cases/store.py): they are opened with the vault,
and a person whose key was erased reads as erased on both sides, so an erased case still
rebuilds identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.cases import store
from services.cases.domain import CASE_ADAPTER, replay
from services.privacy.vault import PersonVault
from services.runtime.progress import Progress


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


async def rebuild(
    conn: Any, vault: PersonVault, *, write: bool = False, progress: bool | None = False
) -> RebuildReport:
    """Replay every case's log and compare it with its snapshot (replace it, with `write`).

    `progress`: cases replayed, on stderr (None: if stderr is a terminal), for an operator
    waiting on a large case store; the report is the caller's to print.
    """
    logs = await store.case_logs(conn, vault)
    stored = await store.snapshots(conn, vault)
    identical, differing, missing = 0, [], []
    with Progress("rebuild", total=len(logs), unit="cases", enabled=progress) as shown:
        for case_id, events in sorted(logs.items()):
            shown.advance()
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
                key = None
                if store.holds_personal_data(rebuilt):
                    key = await store.case_key(conn, vault, case_id)
                text, key_id = store.sealed_snapshot(rebuilt, key)
                await conn.execute(
                    "UPDATE case_state SET snapshot = $2, version = $3, state = $4, agencies = $5,"
                    " data_key_id = $6 WHERE case_id = $1",
                    case_id,
                    text,
                    rebuilt.version,
                    rebuilt.state.value,
                    store.agencies_involved(rebuilt),  # who may read it follows the fold too
                    key_id,
                )
    return RebuildReport(
        cases=len(logs),
        identical=identical,
        differing=differing,
        missing_snapshot=missing,
        without_log=sorted(set(stored) - set(logs)),
    )
