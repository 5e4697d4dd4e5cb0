"""configure_logging(): one JSON line per record, personal fields redacted, no frame locals."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from services.runtime.logging import (
    REDACTED,
    SENSITIVE_KEYS,
    bind_message_context,
    clear_message_context,
    configure_logging,
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiokafka_level = logging.getLogger("aiokafka").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(aiokafka_level)
    clear_message_context()
    structlog.reset_defaults()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_mode_writes_one_json_object_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    app_logger = configure_logging(fmt="json", level="INFO")
    structlog.stdlib.get_logger("casebridge.test").info("batch screened", records=3)
    app_logger.warning("from the stdlib logger")
    logging.getLogger("casebridge.test").debug("below the level")

    first, second = lines(capsys)
    assert first["event"] == "batch screened"
    assert first["records"] == 3
    assert first["level"] == "info"
    assert first["logger"] == "casebridge.test"
    assert first["timestamp"].endswith("Z")
    assert second["event"] == "from the stdlib logger"
    assert second["logger"] == "casebridge"
    assert app_logger.name == "casebridge"


def test_personal_and_body_keys_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    structlog.stdlib.get_logger("casebridge.test").warning(
        "event rejected",
        person={"given_name": "Amina", "family_name": "Testperson"},
        given_name="Amina",
        payload=b'{"person": {"given_name": "Amina"}}',
        event_id="evt-1",
        reason="INVALID_PAYLOAD",
    )

    err_line = capsys.readouterr().err
    assert "Amina" not in err_line
    assert "Testperson" not in err_line
    [line] = [json.loads(x) for x in err_line.splitlines()]
    assert line["person"] == line["given_name"] == line["payload"] == REDACTED
    assert line["event_id"] == "evt-1"
    assert line["reason"] == "INVALID_PAYLOAD"


def test_every_sensitive_key_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    structlog.stdlib.get_logger("casebridge.test").info(
        "all of them", **dict.fromkeys(SENSITIVE_KEYS, "SECRET-VALUE")
    )
    err = capsys.readouterr().err
    assert "SECRET-VALUE" not in err
    assert set(SENSITIVE_KEYS) >= {"person", "given_name", "family_name", "payload", "body"}


def test_bound_context_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    bind_message_context(event_id="evt-2", data={"given_name": "Amina"})
    structlog.stdlib.get_logger("casebridge.test").info("with context")
    [line] = lines(capsys)
    assert line["event_id"] == "evt-2"
    assert line["data"] == REDACTED


def _fail_with_personal_data_in_locals() -> None:
    given_name = "Amina"  # noqa: F841 - the point: a local that must not be rendered
    person = {"family_name": "Testperson"}  # noqa: F841
    raise ValueError("schema mismatch")


def test_exceptions_render_without_frame_locals(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    log = structlog.stdlib.get_logger("casebridge.test")
    try:
        _fail_with_personal_data_in_locals()
    except ValueError:
        log.exception("batch failed")

    err = capsys.readouterr().err
    assert "Amina" not in err
    assert "Testperson" not in err
    [line] = [json.loads(x) for x in err.splitlines()]
    [exc] = line["exception"]
    assert exc["exc_type"] == "ValueError"
    assert exc["exc_value"] == "schema mismatch"
    assert exc["frames"], "the traceback itself is kept"
    assert all("locals" not in frame or not frame["locals"] for frame in exc["frames"])


def test_stdlib_exceptions_render_without_frame_locals_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(fmt="json")
    try:
        _fail_with_personal_data_in_locals()
    except ValueError:
        logging.getLogger("aiokafka.consumer").error("from a library", exc_info=True)

    err = capsys.readouterr().err
    assert "Amina" not in err
    [line] = [json.loads(x) for x in err.splitlines()]
    assert line["exception"][0]["exc_type"] == "ValueError"


def test_console_mode_tracebacks_have_no_locals(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="console")
    try:
        _fail_with_personal_data_in_locals()
    except ValueError:
        structlog.stdlib.get_logger("casebridge.test").exception("batch failed", given_name="A")

    err = capsys.readouterr().err
    assert "schema mismatch" in err
    assert "Amina" not in err
    assert "Testperson" not in err
    assert REDACTED in err


def test_noisy_library_loggers_are_quieted() -> None:
    configure_logging(fmt="json", level="DEBUG")
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("aiokafka").level == logging.WARNING
