"""The OpenAPI schema generator: drf-spectacular's, plus the error responses every operation can give, all with
the one error body (see `annotate.api.errors`)."""

from __future__ import annotations

from drf_spectacular import openapi
from rest_framework.permissions import AllowAny

from annotate.api.serializers import ErrorSerializer

ERROR_DESCRIPTIONS = {
    "400": "The request is not valid (`fields` says where).",
    "401": "Not signed in: send `Authorization: Token <key>` or sign in.",
    "403": "Signed in without the role this operation needs (or a session request without its CSRF token).",
    "404": "No such object (or page).",
    "409": "The lease is not (or no longer) held: expired, submitted, skipped or someone else's.",
    "422": "The submission breaks a labeling rule (`field` says which part).",
    "429": "Too many requests: wait for `Retry-After` seconds.",
}


class AutoSchema(openapi.AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        return responses

    def _error_codes(self) -> list[str]:
        codes = ["429"]
        if not any(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            codes += ["401", "403"]
        list_view = self.method == "GET" and self._get_paginator() is not None and self._is_list_view()
        if self.method in ("POST", "PUT", "PATCH") or self.get_override_parameters():
            codes.append("400")
        if "{" in self.path or list_view:
            codes.append("404")
        return sorted(codes)
