"""The training side's records: the model registry, training runs and frozen dataset snapshots."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class ModelKind(models.TextChoices):
    REWARD = "reward", "Reward model"
    POLICY = "policy", "Policy"


class ModelStatus(models.TextChoices):
    READY = "ready", "Ready"
    SERVING = "serving", "Serving"
    RETIRED = "retired", "Retired"


class ModelVersion(models.Model):
    """A trained (or registered) model. At most one version per project and kind is serving."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=16, choices=ModelKind.choices)
    version = models.PositiveIntegerField(help_text="1, 2, 3… per project and kind.")
    base_model = models.CharField(max_length=500, help_text="Hugging Face name, local path or embedded:<name>.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    artifact_path = models.CharField(max_length=1000, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.READY)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "kind", "-version"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ModelKind.values), name="modelversion_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=ModelStatus.values), name="modelversion_status_valid"),
            models.UniqueConstraint(fields=["project", "kind", "version"], name="modelversion_unique_number"),
            models.UniqueConstraint(
                fields=["project", "kind"], condition=Q(status=ModelStatus.SERVING), name="modelversion_one_serving"
            ),
            models.CheckConstraint(condition=~Q(parent=F("id")), name="modelversion_not_own_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}-v{self.version}"

    @property
    def label(self) -> str:
        return str(self)


class RunKind(models.TextChoices):
    REWARD = "reward", "Reward model"
    SFT = "sft", "SFT"
    PPO = "ppo", "PPO"
    DPO = "dpo", "DPO"
    SAMPLE = "sample", "Sampling"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_RUN_STATUSES = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED]


class DatasetSnapshot(models.Model):
    """An immutable, content-hashed set of annotation ids, with the filter and row counts that made it."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=200)
    filter = models.JSONField(default=dict, blank=True)
    annotation_ids = models.JSONField(help_text='{"comparisons": [...], "rankings": [...], ...}')
    row_counts = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    export_path = models.CharField(max_length=1000, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="snapshot_unique_content"),
            models.CheckConstraint(condition=Q(content_hash__regex=r"^[0-9a-f]{64}$"), name="snapshot_hash_sha256"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_hash[:12]})"

    def save(self, *args, **kwargs) -> None:
        # A snapshot is frozen: what a run trained on must be readable later exactly as it was.
        if not self._state.adding:
            raise ValueError("A dataset snapshot is immutable; create a new one instead.")
        super().save(*args, **kwargs)


class TrainingRun(models.Model):
    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    config = models.JSONField(default=dict, blank=True)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    base_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs_from",
        help_text="The version this run starts from (the policy for PPO/DPO/sampling).",
    )
    reward_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs_scored_by",
        help_text="The reward model PPO optimises against.",
    )
    opponent_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs_opposed",
        help_text="Sampling runs: the earlier policy the new one meets head-to-head in A/B tasks.",
    )
    cycle = models.ForeignKey(
        "RetrainCycle", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        help_text="The retraining cycle that started this run.",
    )  # fmt: skip
    output_version = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_run"
    )
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    metrics_history = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the worker running it (every few seconds)."
    )
    celery_task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=RunKind.values), name="run_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="run_status_valid"),
            models.CheckConstraint(
                condition=Q(progress_total=0) | Q(progress_step__lte=F("progress_total")),
                name="run_progress_within_total",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=TERMINAL_RUN_STATUSES, finished_at__isnull=False)
                    | (~Q(status__in=TERMINAL_RUN_STATUSES) & Q(finished_at__isnull=True))
                ),
                name="run_finished_iff_terminal",
            ),
        ]
        indexes = [models.Index(fields=["project", "kind", "status"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run #{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class CycleStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RetrainCycle(models.Model):
    """One pass of the loop for a project: reward model, SFT, PPO or DPO, then sampling, each a run started when
    the one before succeeded and its version passed its checks. `stages` is the plan, `stage` the index of the
    stage running now. At most one cycle runs per project (a database constraint)."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="cycles")
    status = models.CharField(max_length=16, choices=CycleStatus.choices, default=CycleStatus.RUNNING)
    stages = models.JSONField(default=list, help_text='Planned run kinds in order, e.g. ["reward", "ppo", "sample"].')
    stage = models.PositiveSmallIntegerField(default=0)
    reason = models.TextField(blank=True, help_text="What started it (the thresholds crossed, or who).")
    outcome = models.TextField(blank=True, help_text="What each stage did, one line each.")
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=CycleStatus.values), name="cycle_status_valid"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(status=CycleStatus.RUNNING), name="cycle_one_running_per_project"
            ),
            models.CheckConstraint(
                condition=(Q(status=CycleStatus.RUNNING, finished_at__isnull=True))
                | (~Q(status=CycleStatus.RUNNING) & Q(finished_at__isnull=False)),
                name="cycle_finished_iff_not_running",
            ),
        ]

    def __str__(self) -> str:
        return f"cycle #{self.pk}"

    @property
    def seconds(self) -> float | None:
        return (self.finished_at - self.created_at).total_seconds() if self.finished_at else None

    @property
    def stage_kind(self) -> str | None:
        return self.stages[self.stage] if self.stage < len(self.stages) else None


class CandidateScore(models.Model):
    """A reward model's score for one reply in its conversation, cached so pages and metrics never run the model."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scores")
    message = models.ForeignKey("annotate.Message", on_delete=models.CASCADE, related_name="reward_scores")
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_version", "message"], name="candidatescore_unique_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.model_version}: message {self.message_id} = {self.score:.3f}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of one Celery worker (by its node name) and the queues it consumes: what `/healthz`
    and the Runs page report. A worker stamps it every REWARDLAB_WORKER_HEARTBEAT_SECONDS."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set when it shut down cleanly.")

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname
