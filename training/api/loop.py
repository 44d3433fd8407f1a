"""API: the loop. Retraining cycles of a project (researchers read them; admins start one) and the model
leaderboard from head-to-head judgements (researchers)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import serializers as s
from annotate.api.views import ADMIN, RESEARCHER, project_or_404
from training import arena, cycles
from training.models import RetrainCycle

CYCLES_SHOWN = 20


class CycleRunning(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "cycle_running"
    default_detail = "A retraining cycle of this project is already running."


class CycleRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    output_version = serializers.CharField(source="output_version.label", default=None, allow_null=True)


class CycleSerializer(serializers.ModelSerializer):
    runs = serializers.SerializerMethodField()
    stage = serializers.CharField(source="stage_kind", allow_null=True, help_text="The stage running now (or last).")

    class Meta:
        model = RetrainCycle
        fields = ["id", "status", "stages", "stage", "reason", "outcome", "error", "created_at", "finished_at", "runs"]

    @extend_schema_field(CycleRunSerializer(many=True))
    def get_runs(self, cycle) -> list[dict]:
        runs = sorted(cycle.runs.all(), key=lambda run: run.pk)
        return CycleRunSerializer(runs, many=True).data


class LeaderboardRowSerializer(serializers.Serializer):
    version_id = serializers.IntegerField(source="key")
    label = serializers.CharField()
    rating = serializers.FloatField(help_text="Elo scale; the versions average 1000.")
    low = serializers.FloatField(help_text="Lower end of the confidence interval.")
    high = serializers.FloatField(help_text="Upper end of the confidence interval.")
    rank = serializers.IntegerField(help_text="1 + the number of versions whose interval lies wholly above.")
    battles = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()


class LeaderboardSerializer(serializers.Serializer):
    battles = serializers.IntegerField(help_text="A/B judgements between replies of two different model versions.")
    rounds = serializers.IntegerField(help_text="Bootstrap resamples behind the intervals.")
    level = serializers.FloatField(help_text="Confidence level of the intervals.")
    rows = LeaderboardRowSerializer(many=True)


class CycleStartSerializer(serializers.Serializer):
    """A cycle plans its stages from what is new: a reward model, SFT, PPO or DPO, then sampling."""

    use_thresholds = serializers.BooleanField(
        default=False,
        help_text="true: start only if the project's retraining thresholds are crossed, as the schedule does; "
        "false: with whatever is new.",
    )


class CycleListView(APIView):
    def get_permissions(self):
        return [ADMIN()] if self.request.method == "POST" else [RESEARCHER()]

    @extend_schema(operation_id="cycles_list", summary="The project's recent retraining cycles, newest first",
                   responses=CycleSerializer(many=True))  # fmt: skip
    def get(self, request, slug: str):
        project = project_or_404(slug)
        recent = RetrainCycle.objects.filter(project=project).prefetch_related("runs__output_version")[:CYCLES_SHOWN]
        return Response(CycleSerializer(recent, many=True).data)

    @extend_schema(
        operation_id="cycles_start",
        summary="Start a retraining cycle now, with whatever is new (admins)",
        request=CycleStartSerializer,
        responses={
            201: CycleSerializer,
            400: OpenApiResponse(s.ErrorSerializer, description="Nothing new to train on."),
            409: OpenApiResponse(s.ErrorSerializer, description="A cycle of this project is already running."),
        },
    )
    def post(self, request, slug: str):
        project = project_or_404(slug)
        if cycles.running_cycle(project) is not None:
            raise CycleRunning()
        options = CycleStartSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        try:
            cycle = cycles.cycle_start(
                project=project, started_by=request.user, use_thresholds=options.validated_data["use_thresholds"]
            )
        except cycles.CycleError as error:
            if "already running" in str(error):
                raise CycleRunning() from None
            raise ValidationError({"non_field_errors": [str(error)]}) from None
        return Response(CycleSerializer(cycle).data, status=status.HTTP_201_CREATED)


class LeaderboardView(APIView):
    permission_classes = [RESEARCHER]

    @extend_schema(
        operation_id="leaderboard_retrieve",
        summary="Model versions ranked by human head-to-head judgements",
        description="Bradley–Terry ratings on the Elo scale (ties count half a win each), with bootstrap confidence "
        "intervals: Chatbot Arena's method, from A/B judgements between replies of two different model versions.",
        responses=LeaderboardSerializer,
    )
    def get(self, request, slug: str):
        board = arena.project_leaderboard(project_or_404(slug))
        return Response(LeaderboardSerializer(board).data)
