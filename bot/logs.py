"""Logging set-up: text or JSON lines, secrets redacted from every record.

A session binds its id and thread with :func:`bind_log_context` at the start
of a turn; the values live in context variables, so every line logged by that
turn's task (and the tasks it starts) carries them, whichever module logs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from bot.policy.redaction import Redactor

_SESSION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "threadwright_session_id", default=None
)
_THREAD: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "threadwright_thread", default=None
)


def bind_log_context(session_id: str | None, thread: str | None) -> None:
    """Tag every log line of the current task (and tasks it creates) with these ids."""
    _SESSION_ID.set(session_id)
    _THREAD.set(thread)


# Record attributes the ids travel in (LogRecord.thread is taken: the OS thread id).
CONTEXT_ATTRIBUTES = {"session_id": "session_id", "thread": "thread_key"}


def current_log_context() -> dict[str, str]:
    """The bound ids, keyed by the record attribute that carries them."""
    values = {"session_id": _SESSION_ID.get(), "thread_key": _THREAD.get()}
    return {k: v for k, v in values.items() if v is not None}


class ContextFilter(logging.Filter):
    """Copies the bound session and thread ids onto each record (``extra=`` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_log_context().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Here, not in format(), so the ids stay on the message line, above a traceback.
        text = super().formatMessage(record)
        tags = [
            f"{key}={value}"
            for key, attribute in CONTEXT_ATTRIBUTES.items()
            if (value := getattr(record, attribute, None)) is not None
        ]
        return f"{text} [{' '.join(tags)}]" if tags else text


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.redactor.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.redact(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, attribute in CONTEXT_ATTRIBUTES.items():
            value = getattr(record, attribute, None)
            if value is not None:
                payload[key] = value
        if record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str, fmt: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
