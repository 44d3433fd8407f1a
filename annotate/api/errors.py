"""One error body for every error the API returns:

    {"error": {"code": "invalid", "message": "priority: A valid number is required.", "fields": {...}}}

`code` is stable and machine-readable, `message` is for people, `fields` maps input fields to their problems
(empty when the error is not about one field). Labeling errors also name their `field`; a rejected import
lists every `problems` entry (line, field, message).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.formats import ImportFormatError
from annotate.services import LabelingError, LeaseError


class LockedOut(exceptions.APIException):
    """Too many failed sign-ins for this username from this address (django-axes)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"
    default_detail = "Too many failed sign-ins: this account is locked for a while. Try again later."


def error_body(code: str, message: str, fields: dict | None = None, **extra: Any) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler (status, `WWW-Authenticate`, `Retry-After`), with our body; plus the domain errors the
    services raise, so views let them through instead of catching each one."""
    if isinstance(exc, ImportFormatError):
        problems = [{"line": p.line, "field": p.field, "message": p.message} for p in exc.problems]
        message = f"{len(problems)} problem(s) in the file; nothing was imported."
        return Response(error_body("import_invalid", message, problems=problems), status=400)
    if isinstance(exc, LabelingError):
        code = "lease_error" if isinstance(exc, LeaseError) else "labeling_error"
        fields = {exc.field: [exc.message]} if exc.field else {}
        return Response(error_body(code, exc.message, fields, field=exc.field), status=exc.status)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handling (and logging) takes over
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body("invalid", _first_message(fields) or "The request is not valid.", fields)
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        response.data = error_body(codes if isinstance(codes, str) else exc.default_code, _first_message(exc.detail))
    return response


def _first_message(detail: Any, path: str = "") -> str:
    """The first problem as one line, prefixed with where it is: `tiers.0: A valid integer is required.`"""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if found := _first_message(value, f"{path}.{key}" if path else str(key)):
                return found
        return ""
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            where = path if not isinstance(value, list | dict) else f"{path}.{index}"
            if found := _first_message(value, where):
                return found
        return ""
    if path and path != "non_field_errors":
        return f"{path}: {detail}"
    return str(detail)
