"""configure_logging(): one JSON line per record, personal fields redacted, no frame locals,
no validation-error input values."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from faststream._internal.logger.logger_proxy import RealLoggerObject
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pydantic import BaseModel, Field, ValidationError

from schemas.common import PersonRef
from services.runtime.logging import (
    REDACTED,
    SENSITIVE_KEYS,
    bind_message_context,
    clear_message_context,
    configure_logging,
    logged_errors,
    scrub_input_text,
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


# --- Validation errors: their location and type are logged, never the input ------------------
# A model without `hide_input_in_errors`, as the routing and case policies, settings and the
# case snapshot adapter are: pydantic then echoes the offending value, and for a missing field
# the whole input, in `str(exc)` and in `exc.errors()`.

GIVEN, FAMILY = "Synthetic-Zed", "Testperson-Q"


class _Person(BaseModel):
    given_name: str = Field(max_length=5)
    family_name: str


class _Referral(BaseModel):
    case_id: str
    kind: str
    person: _Person


def _validation_error() -> ValidationError:
    """Two errors: `person.given_name` too long (echoes the name) and `kind` missing (echoes
    the whole payload, the family name with it)."""
    payload = {"case_id": "REF-1", "person": {"given_name": GIVEN, "family_name": FAMILY}}
    with pytest.raises(ValidationError) as caught:
        _Referral.model_validate(payload)
    assert GIVEN in str(caught.value), "the premise: pydantic echoes the input"
    assert FAMILY in str(caught.value)
    return caught.value


def _raise_validation_error() -> None:
    raise _validation_error()


def _assert_scrubbed_but_described(err: str) -> None:
    assert GIVEN not in err
    assert FAMILY not in err
    assert "person.given_name" in err, "the error's location is still logged"
    assert "string_too_long" in err, "and its type"
    assert "missing" in err
    assert "input_value=[redacted]" in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logged_validation_exception_carries_no_input(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt=fmt)
    try:
        _raise_validation_error()
    except ValidationError:
        structlog.stdlib.get_logger("casebridge.test").exception("batch failed")
    err = capsys.readouterr().err
    _assert_scrubbed_but_described(err)
    assert "ValidationError" in err


def test_logged_validation_exception_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    try:
        _raise_validation_error()
    except ValidationError:
        structlog.stdlib.get_logger("casebridge.test").exception("batch failed")
    [line] = lines(capsys)
    [exc] = line["exception"]
    assert exc["exc_type"] == "ValidationError"
    assert "person.given_name" in exc["exc_value"]
    assert "[type=string_too_long, input_value=[redacted], input_type=str]" in exc["exc_value"]
    assert exc["frames"], "the traceback itself is kept"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_chained_validation_error_carries_no_input(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt=fmt)
    try:
        try:
            _raise_validation_error()
        except ValidationError as exc:
            raise RuntimeError("snapshot unreadable") from exc
    except RuntimeError:
        logging.getLogger("casebridge.cases").error("batch failed", exc_info=True)
    err = capsys.readouterr().err
    _assert_scrubbed_but_described(err)
    assert "snapshot unreadable" in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_validation_error_in_event_entries_carries_no_input(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Handed over as values: `errors()` (structured), `str(exc)`, `errors()` as text, the
    exception object itself, and bound to the context."""
    configure_logging(fmt=fmt)
    exc = _validation_error()
    bind_message_context(problem=str(exc))
    structlog.stdlib.get_logger("casebridge.test").warning(
        "invalid",
        errors=exc.errors(),
        detail=str(exc.errors()),
        as_json=exc.json(),
        error=exc,
        input_value=GIVEN,
    )
    err = capsys.readouterr().err
    _assert_scrubbed_but_described(err)
    if fmt == "json":
        [line] = [json.loads(x) for x in err.splitlines()]
        assert [e["loc"] for e in line["errors"]] == [["kind"], ["person", "given_name"]]
        assert [e["type"] for e in line["errors"]] == ["missing", "string_too_long"]
        assert {e["input"] for e in line["errors"]} == {REDACTED}
        assert line["input_value"] == REDACTED


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_stdlib_message_embedding_a_validation_error_carries_no_input(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A library formats the error into its message, as FastStream does (`f"{type}: {exc}"`)."""
    app_logger = configure_logging(fmt=fmt)
    exc = _validation_error()
    app_logger.error("%s: %s", type(exc).__name__, exc, exc_info=exc)
    _assert_scrubbed_but_described(capsys.readouterr().err)


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_faststream_handler_error_log_carries_no_input(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """FastStream's own line for an exception escaping a handler, through our logger."""
    app_logger = configure_logging(fmt=fmt)
    broker = KafkaBroker(logger=app_logger)

    @broker.subscriber("casebridge.test.validation")
    async def handle(body: dict[str, Any]) -> None:
        _Referral.model_validate(body)

    payload = {"case_id": "REF-1", "person": {"given_name": GIVEN, "family_name": FAMILY}}
    async with TestKafkaBroker(broker) as test_broker:
        # The test broker mutes FastStream's logger; give it back ours.
        test_broker.config.logger.logger = RealLoggerObject(app_logger)
        with pytest.raises(ValidationError):
            await test_broker.publish(payload, "casebridge.test.validation")
    err = capsys.readouterr().err
    _assert_scrubbed_but_described(err)
    assert "ValidationError: 2 validation errors for _Referral" in err


def test_models_with_hidden_input_log_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    """The wire models hide input already; the scrubber leaves their errors as they are."""
    configure_logging(fmt="json")
    try:
        PersonRef.model_validate({"given_name": GIVEN, "nationality": "mm"})
    except ValidationError as exc:
        rendered = str(exc)
        structlog.stdlib.get_logger("casebridge.test").warning("invalid", problem=rendered)
    [line] = lines(capsys)
    assert line["problem"] == rendered
    assert "nationality" in rendered
    assert GIVEN not in rendered
    assert "input_value" not in rendered


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "x [type=string_too_long, input_value='Ann, input_type=str] B', input_type=str]",
            "x [type=string_too_long, input_value=[redacted], input_type=str]",
            id="input imitating the end of the error",
        ),
        pytest.param(
            "[type=missing, input_value={'a': 'Ann'}, input_type=dict]\n"
            "[type=int_type, input_value='Bo', input_type=str]",
            "[type=missing, input_value=[redacted], input_type=dict]\n"
            "[type=int_type, input_value=[redacted], input_type=str]",
            id="one error per line",
        ),
        pytest.param(
            "[{'type': 'missing', 'loc': ('kind',), 'msg': 'Field required', "
            "'input': {'name': 'Ann'}, 'url': 'https://errors.pydantic.dev/2/v/missing'}]",
            "[{'type': 'missing', 'loc': ('kind',), 'msg': 'Field required', "
            "'input': [redacted], 'url': 'https://errors.pydantic.dev/2/v/missing'}]",
            id="errors() as text",
        ),
        pytest.param(
            '[{"type":"missing","loc":["kind"],"msg":"Field required","input":{"name":"Ann"}}]',
            '[{"type":"missing","loc":["kind"],"msg":"Field required","input": [redacted]}]',
            id="json() without url",
        ),
        pytest.param("no input here", "no input here", id="untouched"),
    ],
)
def test_scrub_input_text(text: str, expected: str) -> None:
    assert scrub_input_text(text) == expected


def test_logged_errors_counts_error_records_since_logging_was_configured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(fmt="json", level="INFO")
    logging.getLogger("aiokafka.consumer.fetcher").error("from a library")
    structlog.stdlib.get_logger("casebridge.test").error("from a service")
    structlog.stdlib.get_logger("casebridge.test").warning("not an error")
    logging.getLogger("casebridge.test").critical("worse than an error")
    assert logged_errors() == 3
    configure_logging(fmt="json", level="INFO")
    assert logged_errors() == 0
    capsys.readouterr()
