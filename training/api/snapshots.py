"""API: dataset snapshots, frozen exports that training runs record as their data. Researchers only."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import exports
from annotate.api.exports import ExportOptionsSerializer, FileNegotiation
from annotate.api.serializers import ErrorSerializer
from annotate.api.views import RESEARCHER, project_or_404
from training.models import DatasetSnapshot
from training.services import snapshot_freeze


class SnapshotCreateSerializer(ExportOptionsSerializer):
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class SnapshotSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)
    download = serializers.SerializerMethodField()

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "name", "content_hash", "filter", "row_counts", "created_by", "created_at", "download"]

    def get_download(self, snapshot: DatasetSnapshot) -> str:
        request = self.context.get("request")
        path = f"/api/projects/{snapshot.project.slug}/snapshots/{snapshot.pk}/download/"
        return request.build_absolute_uri(path) if request else path


class SnapshotListView(GenericAPIView):
    permission_classes = [RESEARCHER]
    serializer_class = SnapshotSerializer

    @extend_schema(
        operation_id="projects_snapshots_list",
        summary="The project's snapshots, newest first",
        responses=SnapshotSerializer(many=True),  # paginated by the view's paginator
    )
    def get(self, request, slug: str):
        snapshots = (
            project_or_404(slug).snapshots.select_related("project", "created_by").order_by("-created_at", "-id")
        )
        page = self.paginate_queryset(snapshots)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="projects_snapshots_create",
        summary="Freeze a dataset snapshot",
        description="Freezes the judgements an export with these options reads now: their ids, the options, the row "
        "counts and the file, content-addressed. The same data with the same options gives the existing snapshot "
        "(200) instead of a new one (201).",
        request=SnapshotCreateSerializer,
        responses={201: SnapshotSerializer, 200: SnapshotSerializer, 400: ErrorSerializer},
    )
    def post(self, request, slug: str):
        project = project_or_404(slug)
        body = SnapshotCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = snapshot_freeze(
            project=project, options=body.to_options(), name=body.validated_data["name"], created_by=request.user
        )
        return Response(
            SnapshotSerializer(result.snapshot, context={"request": request}).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class SnapshotDetailView(APIView):
    permission_classes = [RESEARCHER]

    @extend_schema(operation_id="projects_snapshots_retrieve", summary="One snapshot", responses=SnapshotSerializer)
    def get(self, request, slug: str, snapshot_id: int):
        snapshot = get_object_or_404(
            project_or_404(slug).snapshots.select_related("project", "created_by"), pk=snapshot_id
        )
        return Response(SnapshotSerializer(snapshot, context={"request": request}).data)


class SnapshotDownloadView(APIView):
    content_negotiation_class = FileNegotiation
    permission_classes = [RESEARCHER]

    @extend_schema(
        operation_id="projects_snapshots_download",
        summary="A snapshot's file, byte for byte as it was frozen",
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: OpenApiResponse(ErrorSerializer)},
    )
    def get(self, request, slug: str, snapshot_id: int):
        project = project_or_404(slug)
        snapshot = get_object_or_404(project.snapshots, pk=snapshot_id)
        return exports.snapshot_response(project, snapshot)
