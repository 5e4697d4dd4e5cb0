"""`python -m benchmarks.chaos_poison run --services <name>`: a service whose handler always
fails on poison records, for recipe 5 of `benchmarks.chaos`.

A poison record is one a handler raises on every time it sees it, for a reason that is neither
the data's fault (that is `EventRejected`, dead-lettered at once) nor the infrastructure's
(retried until it heals): a bug the record triggers. Valid CaseBridge records do not trigger
one, so this wrapper plants it: records whose `ce_id` is `poison-<service>-...` make that
service's per-record step raise `RuntimeError`, before it has written anything for the record.
Everything else is the service itself, unchanged (`casebridge run`), under its own principal and
role: its batch runner must retry the batch a bounded number of times, then isolate the record
and dead-letter it as PROCESSING_FAILED, and the partition must move on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord

from services.runtime.kafka import header_map

POISON_PREFIX = "poison-"
POISONED = ("intake", "router", "cases")
"""The services with a per-record step to poison (the audit has none: it must never skip a
record, so it retries a failing batch until it succeeds, by design)."""


def poison_target(event_id: str) -> str | None:
    """The service whose handler always fails on this event id, if any."""
    if not event_id.startswith(POISON_PREFIX):
        return None
    service = event_id[len(POISON_PREFIX) :].split("-", 1)[0]
    return service if service in POISONED else None


class PoisonedError(RuntimeError):
    """What a poisoned handler raises: not EventRejected, not an infrastructure failure."""


def _check(record: ConsumerRecord[Any, Any], service: str) -> None:
    event_id = header_map(record).get("ce_id", b"").decode("utf-8", "replace")
    if poison_target(event_id) == service:
        raise PoisonedError(f"{service} always fails on this record")


def install() -> None:
    """Wrap each service's per-record step (module attributes, looked up at call time)."""
    import services.intake.handlers as intake
    import services.router.handlers as router
    from services.cases.coordinator import CaseCoordinator

    screen = vars(intake)["screen"]

    def poisoned_screen(record: ConsumerRecord[Any, Any], *args: Any, **kwargs: Any) -> Any:
        _check(record, "intake")
        return screen(record, *args, **kwargs)

    vars(intake)["screen"] = poisoned_screen
    opening_of = vars(router)["opening_of"]

    def poisoned_opening_of(record: ConsumerRecord[Any, Any]) -> Any:
        _check(record, "router")
        return opening_of(record)

    vars(router)["opening_of"] = poisoned_opening_of

    admit: Callable[..., Any] = CaseCoordinator._admit

    def poisoned_admit(self: CaseCoordinator, record: ConsumerRecord[Any, Any]) -> Any:
        _check(record, "cases")
        return admit(self, record)

    CaseCoordinator._admit = poisoned_admit  # type: ignore[method-assign]


def main(argv: Sequence[str]) -> int:
    install()
    from services.cli import main as casebridge

    return casebridge(list(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
