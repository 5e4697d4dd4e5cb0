"""One logging set-up for structlog and the standard library (FastStream, aiokafka, uvicorn).

Message bodies and personal fields never reach a log line: handlers log identifiers only,
and `redact_sensitive` drops any key that could carry a body or a personal field, in case one
slips through. Tracebacks are rendered without frame locals, which would leak payloads.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

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


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> logging.Logger:
    """Route structlog and stdlib records through the same processors; return the app logger.

    The returned stdlib logger is the one to hand to FastStream and KafkaBroker, whose own
    loggers do not propagate.
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
            exception_formatter=structlog.dev.plain_traceback, colors=sys.stderr.isatty()
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
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
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
