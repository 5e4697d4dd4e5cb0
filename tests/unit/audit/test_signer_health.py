"""A signer that dies or refuses is heard at once: its health turns bad, an error is logged,
and the service's follow-up (stop consuming) runs; a requested stop is none of these."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.audit import signer as signer_module
from services.audit.queries import LogIntegrityError
from services.audit.signer import SignerHealth, SigningRefusedError, watch_signer


class Errors:
    """Stands in for the module's logger: keeps what is logged at error level."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    def __getattr__(self, _: str) -> Any:
        return lambda *args, **kwargs: None


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> Errors:
    recorder = Errors()
    monkeypatch.setattr(signer_module, "log", recorder)
    return recorder


async def _watched(
    body: Any, stopping: asyncio.Event
) -> tuple[asyncio.Task[None], SignerHealth, asyncio.Event]:
    health = SignerHealth()
    followed_up = asyncio.Event()

    async def on_failure() -> None:
        followed_up.set()

    task = asyncio.create_task(body())
    watch_signer(task, health, stopping=stopping, on_failure=on_failure)
    await asyncio.sleep(0)
    return task, health, followed_up


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_a_killed_signer_turns_the_service_unhealthy_and_logs_an_error(
    errors: Errors,
) -> None:
    task, health, followed_up = await _watched(_forever, asyncio.Event())
    assert (health.healthy, health.signing) == (True, True)
    task.cancel()
    await asyncio.wait_for(followed_up.wait(), 2)
    assert (health.healthy, health.signing) == (False, False)
    assert health.problem == "the signer task was cancelled"
    assert errors.events == [
        (
            "the tree head signer stopped: the audit service is unhealthy",
            {"problem": "the signer task was cancelled"},
        )
    ]


@pytest.mark.parametrize(
    "failure",
    [
        LogIntegrityError(40, "stored leaves contradict the head of size 40"),
        SigningRefusedError("kafka", "another head of size 12 than the one signed"),
        RuntimeError("a bug"),
    ],
)
async def test_a_signer_that_refuses_or_crashes_is_unhealthy_with_the_reason(
    errors: Errors, failure: Exception
) -> None:
    async def refuse() -> None:
        raise failure

    _, health, followed_up = await _watched(refuse, asyncio.Event())
    await asyncio.wait_for(followed_up.wait(), 2)
    assert not health.healthy
    assert health.problem is not None
    assert str(failure) in health.problem
    assert len(errors.events) == 1


async def test_a_signer_that_returns_unasked_is_unhealthy(errors: Errors) -> None:
    async def quits() -> None:
        return None

    _, health, followed_up = await _watched(quits, asyncio.Event())
    await asyncio.wait_for(followed_up.wait(), 2)
    assert health.problem == "the signer task ended without being asked to stop"


async def test_a_requested_stop_is_healthy_and_stops_nothing(errors: Errors) -> None:
    """The positive control: the same watch, a clean shutdown."""
    stopping = asyncio.Event()

    async def until_stopped() -> None:
        await stopping.wait()

    task, health, followed_up = await _watched(until_stopped, stopping)
    stopping.set()
    await task
    await asyncio.sleep(0)
    assert (health.healthy, health.signing, health.problem) == (True, False, None)
    assert not followed_up.is_set()
    assert errors.events == []
