"""Structured logs: one JSON object a line, with the request, user and run a line belongs to.

The context lives in contextvars, set by `rewardlab.middleware.RequestIDMiddleware` for a web request and by the
runner for a training run (`ml.logs.run_context`). `ContextFilter` copies it onto each record (a value passed
with `extra=` wins); `JSONFormatter` writes the record. settings.LOGGING picks JSON or plain text
(`REWARDLAB_LOG_FORMAT`)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.utils.functional import LazyObject, empty

from ml.logs import run_id_var  # set by the training runner around a run

request_id_var: ContextVar[str | None] = ContextVar("rewardlab_request_id", default=None)
user_id_var: ContextVar[int | None] = ContextVar("rewardlab_user_id", default=None)
# The request being served, so the user can be read once authentication has resolved it (never forcing a lookup).
request_var: ContextVar[Any] = ContextVar("rewardlab_request", default=None)

CONTEXT_FIELDS = ("request_id", "user_id", "run_id")
_VARS = {"request_id": request_id_var, "user_id": user_id_var, "run_id": run_id_var, "request": request_var}

# Attributes every LogRecord has; anything else on a record came from `extra=` and is written as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
# Extras never written: Django's loggers pass the request object itself.
_SKIPPED_EXTRAS = frozenset({"request"})


@contextlib.contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Within the block, log lines carry these fields (request_id, user_id, run_id, request)."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def authenticated_user_id(request: Any) -> int | None:
    """The id of the request's user if authentication already found one, without running it here (no query
    from inside logging). Works for the session's lazy user and for DRF, which sets the user it authenticated."""
    if request is None:
        return None
    user = getattr(request, "__dict__", {}).get("user")  # (runserver's log records name a socket, no __dict__)
    if isinstance(user, LazyObject):
        user = user._wrapped
        if user is empty:
            return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


def current_context() -> dict[str, Any]:
    """The known context fields (those that are None are left out)."""
    values = {"request_id": request_id_var.get(), "user_id": user_id_var.get(), "run_id": run_id_var.get()}
    if values["user_id"] is None:
        values["user_id"] = authenticated_user_id(request_var.get())
    return {name: value for name, value in values.items() if value is not None}


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields of one record: its own (`extra=`) first, then the request it names (django.request logs
    a 4xx/5xx once the middleware has returned, with `extra={"request": ...}`), then the contextvars."""
    context = current_context()
    request = getattr(record, "request", None)
    if request is not None and not isinstance(request, str):
        from_request = {"request_id": getattr(request, "request_id", None), "user_id": authenticated_user_id(request)}
        context.update({name: value for name, value in from_request.items() if value is not None})
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            context[name] = value
    return context


class ContextFilter(logging.Filter):
    """Adds request_id, user_id and run_id to every record (None where unknown); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = record_context(record)
        for name in CONTEXT_FIELDS:
            setattr(record, name, context.get(name))
        return True


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return str(value)


class JSONFormatter(logging.Formatter):
    """One JSON object a line: timestamp (UTC, ISO 8601), level, logger, message, the context fields where
    known, any `extra=` fields, and exc_info / stack_info as text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = record_context(record)  # also without ContextFilter on the handler
        entry.update({name: _jsonable(context[name]) for name in CONTEXT_FIELDS if name in context})
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key in _SKIPPED_EXTRAS or key in CONTEXT_FIELDS or key in entry:
                continue
            entry[key] = _jsonable(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_celery_logging(**_: Any) -> None:
    """Celery's `setup_logging` signal: workers and beat log through settings.LOGGING (JSON in production)
    instead of Celery's own format."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
