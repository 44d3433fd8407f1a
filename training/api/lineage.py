"""API: lineage. From any judgement, snapshot, run, model version, task or message, what it came from and what came
from it, as on the lineage page (researchers only)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.views import RESEARCHER
from training import lineage


class LineageNodeSerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text=f"{', '.join(lineage.KINDS)} (these have a lineage), or user, import, project, cycle."
    )
    id = serializers.IntegerField()
    label = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)
    url = serializers.CharField(allow_null=True, help_text="Its lineage page; null for kinds without one.")
    api = serializers.SerializerMethodField(help_text="Its lineage in this API; null for kinds without one.")
    page = serializers.CharField(allow_null=True, help_text="Its own page (run console, model registry, project).")

    def to_representation(self, node):
        data = super().to_representation(node)
        data["url"] = data["url"] or None
        data["page"] = data["page"] or None
        return data

    def get_api(self, node) -> str | None:
        return reverse("api:lineage", args=[node.kind, node.id]) if node.url else None


class LineageGroupSerializer(serializers.Serializer):
    relation = serializers.CharField(help_text='How the nodes relate to the object, e.g. "trained on", "written by".')
    total = serializers.IntegerField(help_text=f"How many there are; at most {lineage.LIMIT} are listed.")
    more = serializers.IntegerField(help_text="How many are not listed.")
    note = serializers.CharField(allow_blank=True)
    nodes = LineageNodeSerializer(many=True)


class LineageSerializer(serializers.Serializer):
    node = LineageNodeSerializer()
    project = LineageNodeSerializer()
    upstream = LineageGroupSerializer(many=True, help_text="What it came from.")
    downstream = LineageGroupSerializer(many=True, help_text="What came from it.")


class LineageView(APIView):
    permission_classes = [RESEARCHER]

    @extend_schema(
        operation_id="lineage_retrieve",
        summary="Where an object came from and what came from it",
        description="Upstream: the task, labeler and replies a judgement came from; the judgements in a snapshot; "
        "the snapshot and versions a run started from; the run, parent and data behind a version; a message's "
        "conversation and author. Downstream: snapshots holding a judgement, the runs trained on them and the "
        "versions they produced; the tasks and replies a run or version made; the judgements of a task or reply. "
        "Each group lists at most a few links and gives the total.",
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(lineage.KINDS)),
        ],
        responses=LineageSerializer,
    )
    def get(self, request, kind: str, object_id: int):
        try:
            found = lineage.lineage(kind, object_id)
        except lineage.LineageNotFound as error:
            raise NotFound(str(error)) from None
        return Response(LineageSerializer(found).data)
