"""API: training runs. Admins start a run of any kind (reward model, SFT, PPO, DPO, sampling) and cancel it;
researchers follow it (status, progress, metrics, the version it registered). The same services as the Runs
pages: a bad config or input is a 400 naming its field."""

from __future__ import annotations

import logging

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import serializers as s
from annotate.api.views import ADMIN, RESEARCHER, project_or_404
from training import services
from training.models import ModelKind, ModelVersion, RunKind, TrainingRun

# Which version links each kind takes, and the kind of model each must be.
LINKS = {
    RunKind.REWARD: {},
    RunKind.SFT: {"base_version": ModelKind.POLICY},
    RunKind.DPO: {"base_version": ModelKind.POLICY},
    RunKind.PPO: {"base_version": ModelKind.POLICY, "reward_version": ModelKind.REWARD},
    RunKind.SAMPLE: {"base_version": ModelKind.POLICY, "opponent_version": ModelKind.POLICY},
}
RUNS_SHOWN = 50
logger = logging.getLogger(__name__)


class RunStartSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=RunKind.choices)
    config = serializers.DictField(
        required=False, default=dict, help_text="The run's config; fields left out take their defaults."
    )
    base_version = serializers.IntegerField(required=False, help_text="Policy version to start (or sample) from.")
    reward_version = serializers.IntegerField(required=False, help_text="PPO: the reward model (default: serving).")
    opponent_version = serializers.IntegerField(required=False, help_text="Sampling: the head-to-head policy.")
    imported = serializers.ChoiceField(
        choices=["include", "exclude", "only"],
        required=False,
        help_text="Reward model: judgements imported with datasets are included (default), excluded, or the only ones.",
    )


class RunSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    output_version = serializers.CharField(source="output_version.label", default=None, allow_null=True)
    output_version_id = serializers.IntegerField(allow_null=True)
    base_version = serializers.CharField(source="base_version.label", default=None, allow_null=True)
    reward_version = serializers.CharField(source="reward_version.label", default=None, allow_null=True)
    snapshot = serializers.CharField(source="snapshot.content_hash", default=None, allow_null=True)
    cycle = serializers.IntegerField(source="cycle_id", allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "project", "kind", "status", "progress_step", "progress_total", "config", "metrics", "error",
            "cancel_requested", "worker", "snapshot", "base_version", "reward_version", "output_version",
            "output_version_id", "cycle", "created_at", "started_at", "finished_at",
        ]  # fmt: skip


def _run_or_404(run_id: int) -> TrainingRun:
    run = (
        TrainingRun.objects.select_related("project", "output_version", "base_version", "reward_version", "snapshot")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise NotFound("No run with this id.")
    return run


class ProjectRunListView(APIView):
    def get_permissions(self):
        return [ADMIN()] if self.request.method == "POST" else [RESEARCHER()]

    @extend_schema(operation_id="runs_list", summary="The project's recent runs, newest first",
                   responses=RunSerializer(many=True))  # fmt: skip
    def get(self, request, slug: str):
        project = project_or_404(slug)
        runs = TrainingRun.objects.filter(project=project).select_related(
            "project", "output_version", "base_version", "reward_version", "snapshot"
        )[:RUNS_SHOWN]
        return Response(RunSerializer(runs, many=True).data)

    @extend_schema(
        operation_id="runs_start",
        summary="Start a run (admins): reward model, SFT, PPO, DPO or sampling",
        description="Freezes the run's data as a snapshot and queues it on the training queue, as the Runs pages do.",
        request=RunStartSerializer,
        responses={201: RunSerializer, 400: OpenApiResponse(s.ErrorSerializer, description="A field is wrong.")},
    )
    def post(self, request, slug: str):
        project = project_or_404(slug)
        data = RunStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        kind = data.validated_data["kind"]
        for name in ("base_version", "reward_version", "opponent_version"):
            if name in data.validated_data and name not in LINKS[kind]:
                raise ValidationError({name: [f"A {RunKind(kind).label} run does not take {name}."]})
        links = {}
        for name, model_kind in LINKS[kind].items():
            if (version_id := data.validated_data.get(name)) is None:
                continue
            version = ModelVersion.objects.filter(pk=version_id, project=project, kind=model_kind).first()
            if version is None:
                raise ValidationError({name: [f"No {ModelKind(model_kind).label.lower()} #{version_id} in {project}."]})
            links[name] = version
        config = data.validated_data["config"]
        if "imported" in data.validated_data:  # run_start refuses it for a kind that does not take it
            links["imported"] = data.validated_data["imported"]
        try:
            run = services.run_start(kind=kind, project=project, config=config, created_by=request.user, **links)
        except services.RunError as error:
            raise ValidationError({error.field or "non_field_errors": [error.message]}) from None
        return Response(RunSerializer(_run_or_404(run.pk)).data, status=status.HTTP_201_CREATED)


class RunDetailView(APIView):
    permission_classes = [RESEARCHER]

    @extend_schema(operation_id="runs_retrieve", summary="A run: status, progress, metrics, its version",
                   responses=RunSerializer)  # fmt: skip
    def get(self, request, run_id: int):
        return Response(RunSerializer(_run_or_404(run_id)).data)


class RunCancelSerializer(serializers.Serializer):
    """A queued run is cancelled at once, a running one at its next step."""

    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, help_text="Logged with the run.")


class RunCancelView(APIView):
    permission_classes = [ADMIN]

    @extend_schema(operation_id="runs_cancel", summary="Cancel a run (admins)", request=RunCancelSerializer,
                   responses=RunSerializer)  # fmt: skip
    def post(self, request, run_id: int):
        data = RunCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.run_cancel(run=_run_or_404(run_id))
        reason = data.validated_data.get("reason", "")
        logger.info("run %s: cancel asked by user %s. %s", run.pk, request.user.pk, reason, extra={"run_id": run.pk})
        return Response(RunSerializer(_run_or_404(run.pk)).data)
