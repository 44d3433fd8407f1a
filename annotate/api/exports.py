"""API: exports (streamed files). Researchers only; a labeler exports nothing. (Snapshots, frozen exports that runs
record as their data, are the training app's: training/api/snapshots.py.)"""

from __future__ import annotations

import dataclasses

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from annotate import exports
from annotate.api.serializers import ErrorSerializer
from annotate.api.views import RESEARCHER, project_or_404

OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(exports.ExportOptions))


class ExportOptionsSerializer(serializers.Serializer):
    dataset = serializers.ChoiceField(exports.DATASETS, default="preferences")
    style = serializers.ChoiceField(exports.STYLES, default="standard")
    aggregation = serializers.ChoiceField(exports.AGGREGATIONS, default="raw")
    ties = serializers.ChoiceField(exports.TIE_POLICIES, default="drop")
    margin = serializers.BooleanField(default=True)
    format = serializers.ChoiceField(exports.FORMATS, default="jsonl")
    date_from = serializers.DateField(required=False, allow_null=True, default=None)
    date_to = serializers.DateField(required=False, allow_null=True, default=None)
    labelers = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
    kinds = serializers.ListField(child=serializers.ChoiceField(["rank", "compare"]), required=False, default=list)
    model_versions = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
    min_agreement = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1)
    imported = serializers.ChoiceField(
        exports.IMPORTED, default="include", help_text="Judgements imported with a dataset: include, exclude, only."
    )

    def to_options(self) -> exports.ExportOptions:
        data = {name: value for name, value in self.validated_data.items() if name in OPTION_NAMES}
        for key in ("labelers", "kinds", "model_versions"):
            data[key] = tuple(data[key])
        try:
            return exports.ExportOptions(**data)
        except exports.ExportError as error:
            raise ValidationError({error.field or "non_field_errors": [error.message]}) from None


class ExportQuerySerializer(ExportOptionsSerializer):
    """The same options as query parameters: lists are comma-separated (`kinds=rank,compare`)."""

    labelers = serializers.CharField(required=False, default="", help_text="Labeler ids, comma separated.")
    kinds = serializers.CharField(required=False, default="", help_text="rank and/or compare, comma separated.")
    model_versions = serializers.CharField(required=False, default="", help_text="Model version ids, comma separated.")

    def validate_labelers(self, value: str) -> list[int]:
        return _ids(value, "labelers")

    def validate_model_versions(self, value: str) -> list[int]:
        return _ids(value, "model_versions")

    def validate_kinds(self, value: str) -> list[str]:
        kinds = [k.strip() for k in value.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in ("rank", "compare")]
        if unknown:
            raise ValidationError(f"kinds can be rank and compare, not {unknown[0]!r}.")
        return kinds


def _ids(value: str, name: str) -> list[int]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not all(p.isdigit() and len(p) <= 18 for p in parts):
        raise ValidationError(f"{name} are ids, comma separated.")
    return [int(p) for p in parts]


class FileNegotiation(BaseContentNegotiation):
    """For the views that return files: the file's type is chosen by the `format` option, not by `Accept` or DRF's
    `?format=` override, and the errors are JSON whatever the client asked for."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ExportView(APIView):
    content_negotiation_class = FileNegotiation
    permission_classes = [RESEARCHER]

    @extend_schema(
        operation_id="projects_export",
        summary="Export the project's data (streamed file)",
        description="Preference pairs (TRL standard or conversational, with margin and weight), HH transcripts, "
        "SFT demonstrations, ratings or conversation trees; raw per-labeler rows or aggregated (majority, "
        "Bradley–Terry); JSONL or Parquet. Streamed: memory stays flat however large the project.",
        parameters=[ExportQuerySerializer],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
            400: ErrorSerializer,
        },
    )
    def get(self, request, slug: str):
        query = ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return exports.export_response(project_or_404(slug), query.to_options())
