"""Request ids and the access log."""

from __future__ import annotations

import logging
import re
import time
import uuid

from rewardlab.logging import authenticated_user_id, log_context

access_logger = logging.getLogger("rewardlab.request")

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only if it is a short plain token (a proxy's or a client's); anything else is replaced,
# so a header can never smuggle text into the logs.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIDMiddleware:
    """First in MIDDLEWARE: gives the request an id (the incoming `X-Request-ID` when it is a sane token, else a
    new uuid4 hex), puts it and the request in the logging context for every line logged while the request is
    served, returns it as the `X-Request-ID` response header, and logs one access line per request on
    `rewardlab.request` (method, path, status, duration_ms; the user once authentication has found one)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        started = time.perf_counter()
        with log_context(request_id=request_id, request=request):
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            access_logger.info(
                "%s %s %s %sms",
                request.method,
                request.path,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                    "user_id": authenticated_user_id(request),
                },
            )
        return response
