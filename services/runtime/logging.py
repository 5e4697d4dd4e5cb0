"""One logging set-up for structlog and the standard library (FastStream, aiokafka, uvicorn).

Message bodies and personal fields never reach a log line: handlers log identifiers only,
and `redact_sensitive` drops any key that could carry a body or a personal field, in case one
slips through. Tracebacks are rendered without frame locals, which would leak payloads, and
`scrub_validation_input` removes the input values pydantic puts in its errors (a model without
``hide_input_in_errors`` echoes the offending value, a whole payload for a missing field).
"""

from __future__ import annotations

import io
import logging
import re
import sys
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, ExcInfo, Processor, WrappedLogger

SENSITIVE_KEYS = frozenset(
    {
        "body",
        "payload",
        "data",
        "value",
        "raw",
        "message_body",
        "person",
        "given_name",
        "family_name",
        "full_name",
        "name",
        "date_of_birth",
        "dob",
        "nationality",
        "passport",
        "phone",
        "email",
        "address",
    }
)
REDACTED = "[redacted]"


def redact_sensitive(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace values under keys that may hold a body or personal data."""
    for key in SENSITIVE_KEYS.intersection(event_dict):
        event_dict[key] = REDACTED
    return event_dict


INPUT_KEYS = frozenset({"input", "input_value"})
"""Keys under which pydantic reports the offending input (``exc.errors()``, ``exc.json()``)."""

# One rendered pydantic error ends "[type=..., input_value=<repr>, input_type=<name>]": the repr
# may itself contain ", input_type=", so take everything up to the last one on the line.
_RENDERED_INPUT = re.compile(r"input_value=(?:.*(?=, input_type=)|.*)")
# `errors()` or `json()` turned into text: the input runs up to "ctx"/"url" (the entries that
# follow it), else to the last closing brace, else to the end of the line.
_ERRORS_TEXT_INPUT = re.compile(
    r"""(?P<q>\\?["'])input(?P=q)\s*:\s*"""
    r"""(?:.*(?=,\s*\\?["'](?:ctx|url)\\?["']\s*:)|.*(?=\})|.*)"""
)


def scrub_input_text(text: str) -> str:
    """Remove pydantic input values from rendered errors (``str(exc)``, ``exc.errors()`` as text).

    Over-removal is accepted: the error's location, message and type stay, which is what an
    operator needs; the value is what an agency sent and may name a person.
    """
    if "input" not in text:
        return text
    text = _RENDERED_INPUT.sub(f"input_value={REDACTED}", text)
    return _ERRORS_TEXT_INPUT.sub(lambda m: f"{m['q']}input{m['q']}: {REDACTED}", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_input_text(value)
    if isinstance(value, BaseException):
        # A renderer would fall back to repr(), which for a ValidationError carries the input.
        return scrub_input_text(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {k: REDACTED if k in INPUT_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub(v) for v in value)
    return value


def scrub_validation_input(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Strip validation-error input values from every entry, nested or rendered as text.

    Runs after exceptions are rendered (JSON mode) so tracebacks and chained causes are covered;
    ``exc_info`` itself is left for the console renderer, whose formatter scrubs its output.
    """
    for key, value in event_dict.items():
        if key in INPUT_KEYS:
            event_dict[key] = REDACTED
        elif key != "exc_info":
            event_dict[key] = _scrub(value)
    return event_dict


def _scrubbed_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """The console's plain traceback, with validation-error input values removed."""
    rendered = io.StringIO()
    structlog.dev.plain_traceback(rendered, exc_info)
    sio.write(scrub_input_text(rendered.getvalue()))


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


class ErrorCount(logging.Handler):
    """Counts the records at ERROR and above that the process logged, so a command can say
    whether a run that looked fine logged any (`make demo` reports it; none on a healthy start).
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


_ERRORS = ErrorCount()


def logged_errors() -> int:
    """Records at ERROR and above logged since `configure_logging` last ran."""
    return _ERRORS.count


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> logging.Logger:
    """Route structlog and stdlib records through the same processors; return the app logger.

    The returned stdlib logger is the one to hand to FastStream and KafkaBroker, whose own
    loggers do not propagate. Starts `logged_errors` again from zero.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        redact_sensitive,
    ]
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=_scrubbed_traceback, colors=sys.stderr.isatty()
        )
        exc: list[Processor] = []
    else:
        renderer = structlog.processors.JSONRenderer()
        exc = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exc,
            scrub_validation_input,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    _ERRORS.count = 0
    root.handlers[:] = [handler, _ERRORS]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return logging.getLogger("casebridge")


def bind_message_context(**ids: Any) -> None:
    """Bind identifiers (event id, case id, correlation id) for the lines of one message."""
    structlog.contextvars.bind_contextvars(**ids)


def clear_message_context() -> None:
    structlog.contextvars.clear_contextvars()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
