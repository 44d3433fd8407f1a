"""The human side of RewardLab: projects, the conversation tree, tasks, leases and raw judgements.

Every labeler's raw judgement is kept (never only an aggregate). What must never happen is a database
constraint, not only a Python check: a second lease of one task by one labeler, a double submit, a ranking K
outside 2..9, a rating outside 1..7, an assistant message with no parent, a message with two authors.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

# InstructGPT's metadata flags (Ouyang et al. 2022, appendix B); a project may configure its own list.
DEFAULT_FLAGS: list[dict[str, str]] = [
    {"key": "fails_instruction", "label": "Fails to follow the instruction"},
    {"key": "hallucination", "label": "Makes up facts"},
    {"key": "harmful_advice", "label": "Harmful or unsafe advice"},
    {"key": "sexual_violent", "label": "Sexual or violent content"},
    {"key": "denigrates_protected_class", "label": "Denigrates a protected class"},
    {"key": "expresses_opinion", "label": "Expresses an opinion or moral judgement it should not"},
    {"key": "inappropriate_for_assistant", "label": "Inappropriate for a customer assistant"},
]


def default_flags() -> list[dict[str, str]]:
    return [dict(flag) for flag in DEFAULT_FLAGS]


def default_import_task_kinds() -> list[str]:
    return ["demonstrate", "rank"]


def default_kind_mix() -> dict[str, float]:
    return {"demonstrate": 1.0, "rank": 1.0, "compare": 1.0, "rate": 1.0}


class TaskKind(models.TextChoices):
    DEMONSTRATE = "demonstrate", "Demonstration"
    RANK = "rank", "Ranking"
    COMPARE = "compare", "A/B comparison"
    RATE = "rate", "Rating"


class ActiveSelection(models.TextChoices):
    OFF = "off", "Off (oldest first)"
    CLOSEST_PAIR = "closest_pair", "Closest pair"
    MEAN_PAIR = "mean_pair", "Mean over pairs"


class PolicyMethod(models.TextChoices):
    PPO = "ppo", "PPO"
    DPO = "dpo", "DPO"


class ChatOpponent(models.TextChoices):
    SAME = "same", "The serving policy, sampled twice"
    PREVIOUS = "previous", "The serving policy against the one before it"


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Labeling guidelines in Markdown, shown to labelers.")
    is_active = models.BooleanField(default=True)

    # How many distinct labelers each task kind needs (overlap).
    overlap_demonstrate = models.PositiveSmallIntegerField(default=1)
    overlap_rank = models.PositiveSmallIntegerField(default=2)
    overlap_compare = models.PositiveSmallIntegerField(default=3)
    overlap_rate = models.PositiveSmallIntegerField(default=1)
    ranking_k = models.PositiveSmallIntegerField(
        default=4, help_text="How many candidates a ranking task shows (2 to 9)."
    )
    flags = models.JSONField(default=default_flags, blank=True, help_text='A list of {"key", "label"}.')
    import_task_kinds = models.JSONField(
        default=default_import_task_kinds,
        blank=True,
        help_text="Which task kinds an import creates: demonstrate, rank, compare, rate.",
    )
    lease_minutes = models.PositiveIntegerField(default=30, help_text="How long a labeler holds a task.")
    kind_mix = models.JSONField(
        default=default_kind_mix,
        blank=True,
        help_text='Relative weights of the task kinds a labeler is served, e.g. {"rank": 3, "compare": 1}. '
        "A kind with weight 0 (or left out) is not served.",
    )
    gold_share = models.FloatField(
        default=0.0,
        help_text="Share of served tasks that are gold tasks (known answer), 0 to 0.5. "
        "Labelers cannot tell them apart.",
    )

    # Active selection: how a serving reward model's scores set the priority of new ranking and A/B tasks.
    active_selection = models.CharField(
        max_length=16,
        choices=ActiveSelection.choices,
        default=ActiveSelection.CLOSEST_PAIR,
        help_text="Serve first the tasks whose replies the reward model can least tell apart.",
    )

    # The scheduled retraining cycle (Celery beat checks these every minute).
    retrain_enabled = models.BooleanField(default=False)
    retrain_min_comparisons = models.PositiveIntegerField(
        default=200, help_text="New preference judgements (A/B comparisons and rankings) that start a reward model."
    )
    retrain_min_demonstrations = models.PositiveIntegerField(
        default=100, help_text="New demonstrations that start an SFT run."
    )
    retrain_policy_method = models.CharField(
        max_length=8,
        choices=PolicyMethod.choices,
        default=PolicyMethod.PPO,
        help_text="How the cycle trains the policy after a new reward model.",
    )
    retrain_min_reward_accuracy = models.FloatField(
        default=0.5, help_text="A new reward model serves only if its held-out accuracy reaches this."
    )
    retrain_max_kl = models.FloatField(
        default=30.0, help_text="A new PPO policy serves only if its KL to the starting policy (nats) stays below this."
    )
    retrain_run_configs = models.JSONField(
        default=dict,
        blank=True,
        help_text='Config of each run the cycle starts, by kind: {"reward": {...}, "sft": {...}, "ppo": {...}, '
        '"dpo": {...}, "sample": {...}}. Left out: the defaults.',
    )

    # Live chat: labelers talk to the serving policy and pick the better of two replies at every turn.
    chat_enabled = models.BooleanField(default=False, help_text="Labelers may start live chats in this project.")
    chat_opponent = models.CharField(
        max_length=16,
        choices=ChatOpponent.choices,
        default=ChatOpponent.SAME,
        help_text="Who writes the second reply: the serving policy again, or the policy that served before it.",
    )
    chat_max_turns = models.PositiveSmallIntegerField(default=10, help_text="Most user messages in one chat.")
    chat_max_tokens = models.PositiveSmallIntegerField(default=128, help_text="Most tokens in one reply.")
    chat_max_concurrent = models.PositiveSmallIntegerField(
        default=2, help_text="Most generations one labeler may have waiting or running at once."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("label", "Can work through labeling queues"),
            ("view_data", "Can browse datasets, metrics and exports"),
            ("manage_project", "Can manage projects, imports, models and retraining"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ranking_k__gte=2, ranking_k__lte=9),
                name="project_ranking_k_2_to_9",
                violation_error_message="K for rankings must be between 2 and 9.",
            ),
            models.CheckConstraint(
                condition=Q(
                    overlap_demonstrate__gte=1, overlap_rank__gte=1, overlap_compare__gte=1, overlap_rate__gte=1
                ),
                name="project_overlap_at_least_one",
                violation_error_message="Every task kind needs at least one labeler.",
            ),
            models.CheckConstraint(
                condition=Q(lease_minutes__gte=1),
                name="project_lease_at_least_one_minute",
                violation_error_message="A lease lasts at least one minute.",
            ),
            models.CheckConstraint(
                condition=Q(retrain_min_reward_accuracy__gte=0, retrain_min_reward_accuracy__lte=1),
                name="project_retrain_accuracy_0_to_1",
                violation_error_message="The reward model's least held-out accuracy must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(gold_share__gte=0, gold_share__lte=0.5),
                name="project_gold_share_0_to_half",
                violation_error_message="The share of gold tasks must be between 0 and 0.5.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def overlap_for(self, kind: str) -> int:
        return getattr(self, f"overlap_{TaskKind(kind).value}")

    @property
    def flag_keys(self) -> list[str]:
        return [flag["key"] for flag in self.flags]

    @property
    def served_kinds(self) -> list[str]:
        """The task kinds labelers are served, by the kind mix (in the usual order)."""
        mix = self.kind_mix if isinstance(self.kind_mix, dict) else {}
        return [kind for kind in TaskKind.values if _positive(mix.get(kind))]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.flags, list) or not all(
            isinstance(f, dict) and isinstance(f.get("key"), str) and f["key"] and isinstance(f.get("label"), str)
            for f in self.flags
        ):
            errors["flags"] = 'Flags must be a list of objects with a non-empty "key" and a "label".'
        elif len({f["key"] for f in self.flags}) != len(self.flags):
            errors["flags"] = "Flag keys must be unique."
        kinds = self.import_task_kinds
        if not isinstance(kinds, list) or any(k not in TaskKind.values for k in kinds):
            errors["import_task_kinds"] = f"Each entry must be one of: {', '.join(TaskKind.values)}."
        mix = self.kind_mix
        if not isinstance(mix, dict) or any(k not in TaskKind.values for k in mix):
            errors["kind_mix"] = f"The kind mix maps task kinds ({', '.join(TaskKind.values)}) to weights."
        elif not all(isinstance(w, int | float) and not isinstance(w, bool) and w >= 0 for w in mix.values()):
            errors["kind_mix"] = "Each weight in the kind mix is a number of 0 or more."
        elif not any(_positive(w) for w in mix.values()):
            errors["kind_mix"] = "At least one task kind needs a weight above 0, or labelers are served nothing."
        if errors:
            raise ValidationError(errors)


def _positive(weight: object) -> bool:
    return isinstance(weight, int | float) and not isinstance(weight, bool) and weight > 0


class ImportSource(models.Model):
    """One imported file: the provenance of the messages (and, later, judgements) it brought in."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_sources")
    name = models.CharField(max_length=255)
    # "prompts" (prompts and replies, to be labeled), or the format of a file imported with its judgements.
    format = models.CharField(max_length=16, default="prompts")
    sha256 = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict, blank=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]})"


class Role(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class Message(models.Model):
    """A node of a conversation tree. A prompt is a path ending in a user message; its assistant children are
    the candidates; a human-written assistant child is a demonstration."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    depth = models.PositiveSmallIntegerField(default=0)
    # Content address of the path from the root to this node: the same conversation imported twice is
    # recognised and not duplicated.
    # Looked up by (project, path_hash) among imported and generated messages: the unique index below serves it.
    path_hash = models.CharField(max_length=64)
    # Exactly one author; each is indexed where it is set (see Meta.indexes), not on the other two thirds of rows.
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
        db_index=False,
    )
    author_model = models.ForeignKey(
        "rewardlab.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
        db_index=False,
    )
    author_import = models.ForeignKey(
        ImportSource, null=True, blank=True, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="message_role_valid"),
            models.CheckConstraint(condition=~Q(text=""), name="message_text_not_empty"),
            models.CheckConstraint(
                condition=~Q(role=Role.ASSISTANT) | Q(parent__isnull=False), name="message_assistant_has_parent"
            ),
            models.CheckConstraint(
                condition=(
                    Q(author_user__isnull=False, author_model__isnull=True, author_import__isnull=True)
                    | Q(author_user__isnull=True, author_model__isnull=False, author_import__isnull=True)
                    | Q(author_user__isnull=True, author_model__isnull=True, author_import__isnull=False)
                ),
                name="message_exactly_one_author",
            ),
            # Imported and generated text is deduplicated per path; two people may write the same reply.
            models.UniqueConstraint(
                fields=["project", "path_hash"],
                condition=Q(author_user__isnull=True),
                name="message_unique_path_per_project",
            ),
        ]
        indexes = [
            models.Index(fields=["author_user"], condition=Q(author_user__isnull=False), name="message_author_user"),
            models.Index(fields=["author_model"], condition=Q(author_model__isnull=False), name="message_author_model"),
            models.Index(
                fields=["author_import"], condition=Q(author_import__isnull=False), name="message_author_import"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"

    @property
    def author_label(self) -> str:
        if self.author_user_id:
            return "human"
        if self.author_model_id:
            return "model"
        return "import"


class Task(models.Model):
    # Indexed by the indexes below, which all start with the project.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks", db_index=False)
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    anchor = models.ForeignKey(
        Message, on_delete=models.PROTECT, related_name="anchored_tasks", help_text="The last user message."
    )
    candidates = models.ManyToManyField(Message, through="TaskCandidate", related_name="candidate_in_tasks")
    # Hash of the ordered candidate ids: the same task is never created twice.
    candidates_key = models.CharField(max_length=64)
    required_labelers = models.PositiveSmallIntegerField(default=1)
    # Places taken: submitted assignments plus active leases. Kept by the services that change an assignment's
    # status (lease +1; skip, release, expiry, revocation -1), so the queue is an index range, not a count.
    taken = models.PositiveSmallIntegerField(default=0, editable=False)
    priority = models.FloatField(default=0.0, help_text="Higher is served first; ties break by age.")
    # A gold task has a known answer; it is served to every labeler (no overlap) to measure their accuracy.
    is_gold = models.BooleanField(default=False, editable=False)
    gold_answer = models.JSONField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # At most one origin; each is indexed where it is set.
    origin_run = models.ForeignKey(
        "rewardlab.TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks", db_index=False
    )
    origin_import = models.ForeignKey(
        ImportSource, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-priority", "created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=TaskKind.values), name="task_kind_valid"),
            models.CheckConstraint(condition=Q(required_labelers__gte=1), name="task_required_labelers_positive"),
            models.UniqueConstraint(
                fields=["project", "kind", "anchor", "candidates_key"], name="task_unique_per_anchor_and_candidates"
            ),
            models.CheckConstraint(
                condition=Q(is_gold=True, gold_answer__isnull=False) | Q(is_gold=False, gold_answer__isnull=True),
                name="task_gold_has_answer",
            ),
        ]
        indexes = [
            # The queue: open tasks of one kind in priority order. Filled, gold and inactive tasks are not in it,
            # so serving the next task stays an index range however many tasks are done.
            models.Index(
                fields=["project", "kind", "-priority", "created_at", "id"],
                name="task_open_queue",
                condition=Q(is_active=True, is_gold=False, taken__lt=F("required_labelers")),
            ),
            models.Index(fields=["project", "kind", "is_gold"], name="task_project_kind_gold"),
            models.Index(fields=["origin_run"], condition=Q(origin_run__isnull=False), name="task_origin_run"),
            models.Index(fields=["origin_import"], condition=Q(origin_import__isnull=False), name="task_origin_import"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.is_active and not self.is_gold and self.taken < self.required_labelers


class TaskCandidate(models.Model):
    # Indexed by the unique constraints below, which start with the task.
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="task_candidates", db_index=False)
    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(fields=["task", "position"], name="task_candidate_unique_position"),
            models.UniqueConstraint(fields=["task", "message"], name="task_candidate_unique_message"),
        ]

    def __str__(self) -> str:
        return f"candidate {self.position} of task #{self.task_id}"


class AssignmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Expired"
    RELEASED = "released", "Released"
    REVOKED = "revoked", "Revoked"  # submitted, then sent back for re-labeling (the labeler was deactivated)


# Statuses that hold one of a task's places (Task.taken counts them).
PLACE_HOLDING_STATUSES = (AssignmentStatus.ACTIVE, AssignmentStatus.SUBMITTED)


class Assignment(models.Model):
    """One labeler's lease on one task. A labeler leases a task at most once, ever."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments")
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.ACTIVE)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-leased_at"]
        constraints = [
            models.UniqueConstraint(fields=["task", "labeler"], name="assignment_unique_task_labeler"),
            models.CheckConstraint(condition=Q(expires_at__gt=F("leased_at")), name="assignment_expires_after_lease"),
            models.CheckConstraint(condition=Q(status__in=AssignmentStatus.values), name="assignment_status_valid"),
        ]
        indexes = [
            models.Index(fields=["task", "status"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["labeler", "-leased_at"], name="assignment_labeler_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.task} leased by {self.labeler}"


class Annotation(models.Model):
    """Common fields of every raw judgement. A judgement comes from a labeler through an assignment, or from
    an imported file (then it has an import source instead of a labeler)."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="+")
    # A labeler (through an assignment) or an import source: each is indexed where it is set (provenance_indexes).
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    assignment = models.OneToOneField(Assignment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    import_source = models.ForeignKey(
        ImportSource, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    client_token = models.CharField(max_length=64, help_text="Unique per submission: a double submit is harmless.")
    shown_order = models.JSONField(default=list, blank=True, help_text="Candidate message ids as shown.")
    time_spent_ms = models.PositiveIntegerField(default=0)
    # Set when the judgement is sent back for re-labeling (its labeler was deactivated). It is kept, never
    # deleted, but no longer counts: not in agreement, aggregates or exports.
    discarded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    def describe(self) -> str:
        who = f"labeler #{self.labeler_id}" if self.labeler_id else f"import #{self.import_source_id}"
        return f"{type(self).__name__.lower()} of task #{self.task_id} by {who}"

    @classmethod
    def provenance_constraints(cls, prefix: str) -> list[models.BaseConstraint]:
        return [
            models.CheckConstraint(
                condition=(
                    Q(labeler__isnull=False, assignment__isnull=False, import_source__isnull=True)
                    | Q(labeler__isnull=True, assignment__isnull=True, import_source__isnull=False)
                ),
                name=f"{prefix}_labeler_xor_import",
            ),
            models.UniqueConstraint(
                fields=["labeler", "client_token"],
                condition=Q(labeler__isnull=False),
                name=f"{prefix}_unique_client_token",
            ),
        ]

    @classmethod
    def provenance_indexes(cls, prefix: str) -> list[models.Index]:
        return [
            models.Index(fields=["labeler"], condition=Q(labeler__isnull=False), name=f"{prefix}_labeler"),
            models.Index(
                fields=["import_source"], condition=Q(import_source__isnull=False), name=f"{prefix}_import_source"
            ),
        ]


class Demonstration(Annotation):
    """The labeler's ideal assistant reply; the reply itself is a human-authored assistant Message."""

    message = models.OneToOneField(Message, on_delete=models.PROTECT, related_name="demonstration")

    class Meta:
        ordering = ["-created_at"]
        constraints = Annotation.provenance_constraints("demonstration")
        indexes = Annotation.provenance_indexes("demonstration")

    def __str__(self) -> str:
        return self.describe()


class Ranking(Annotation):
    """Candidates ordered best to worst in tiers: [[d], [c], [a, b]] means D > C > A = B."""

    tiers = models.JSONField(help_text="Ordered tiers of candidate message ids, best first.")
    none_acceptable = models.BooleanField(default=False)
    candidate_flags = models.JSONField(default=dict, blank=True, help_text="{message id: [flag keys]}")

    class Meta:
        ordering = ["-created_at"]
        constraints = Annotation.provenance_constraints("ranking")
        indexes = Annotation.provenance_indexes("ranking")

    def __str__(self) -> str:
        return self.describe()


# The 8-point scale a labeler sees, left to right, and the signed choice stored for each point:
# negative = A (left) better, positive = B (right) better; the magnitude is the strength. The two middle
# points are "about the same", leaning one way.
COMPARISON_SCALE: list[tuple[int, str]] = [
    (-4, "A is much better"),
    (-3, "A is better"),
    (-2, "A is slightly better"),
    (-1, "About the same (A a hair better)"),
    (1, "About the same (B a hair better)"),
    (2, "B is slightly better"),
    (3, "B is better"),
    (4, "B is much better"),
]


class Comparison(Annotation):
    """A/B judgement. `choice` is signed: -4..-1 A better (4 = much better), 0 about the same, 1..4 B better."""

    candidate_a = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="+")
    candidate_b = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="+")
    choice = models.SmallIntegerField()
    both_bad = models.BooleanField(default=False)
    # An imported judgement's own strength (a TRL margin, a score difference); exports prefer it to |choice| - 1.
    margin = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            *Annotation.provenance_constraints("comparison"),
            models.CheckConstraint(condition=Q(choice__gte=-4, choice__lte=4), name="comparison_choice_in_scale"),
            models.CheckConstraint(condition=~Q(candidate_a=F("candidate_b")), name="comparison_distinct_candidates"),
        ]
        indexes = Annotation.provenance_indexes("comparison")

    def __str__(self) -> str:
        return self.describe()


class Rating(Annotation):
    """A 1-7 overall score of one reply, with the project's flags."""

    candidate = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="+")
    score = models.PositiveSmallIntegerField()
    flags = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            *Annotation.provenance_constraints("rating"),
            models.CheckConstraint(condition=Q(score__gte=1, score__lte=7), name="rating_score_1_to_7"),
        ]
        indexes = Annotation.provenance_indexes("rating")

    def __str__(self) -> str:
        return self.describe()


class SkipReason(models.TextChoices):
    UNCLEAR = "unclear", "The task is unclear"
    EXPERTISE = "expertise", "Needs expertise I don't have"
    OFFENSIVE = "offensive", "Offensive or disturbing content"
    BROKEN = "broken", "Something is broken (empty, garbled, wrong language)"
    OTHER = "other", "Other"


class CandidateReport(models.Model):
    """A labeler's report that a reply is unsafe (harmful, illegal, abusive), for an admin to review."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="reports")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["message", "reporter"], name="report_once_per_reporter"),
        ]

    def __str__(self) -> str:
        return f"report on message #{self.message_id} by #{self.reporter_id}"


# --- live chat ----------------------------------------------------------------------------------------------


class ChatStatus(models.TextChoices):
    OPEN = "open", "Open"
    ENDED = "ended", "Ended"


class Chat(models.Model):
    """A labeler's conversation with the assistant: the task they set themselves, then turns. Its messages live in
    the conversation tree like any other (the first user message is a root), so its judgements export as
    multi-turn pairs and demonstrations."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="chats")
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="chats")
    goal = models.TextField(help_text="What the labeler wants help with, in their words.")
    status = models.CharField(max_length=16, choices=ChatStatus.choices, default=ChatStatus.OPEN)
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Overall, 1 (bad) to 7 (good).")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ChatStatus.values), name="chat_status_valid"),
            models.CheckConstraint(
                condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=7), name="chat_rating_1_to_7"
            ),
        ]

    def __str__(self) -> str:
        return f"Chat #{self.pk}"


class TurnStatus(models.TextChoices):
    QUEUED = "queued", "Waiting for the model"
    RUNNING = "running", "Writing"
    READY = "ready", "Ready to vote"
    FAILED = "failed", "Failed"
    VOTED = "voted", "Voted"


class ChatTurn(models.Model):
    """One exchange: the labeler's message, the two replies written to it (sides as shown), and, once voted, the
    comparison (a one-labeler compare task) and the reply the conversation goes on from (the chosen one, or the
    labeler's edit of it, stored as a demonstration)."""

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="turns")
    number = models.PositiveSmallIntegerField()
    prompt = models.OneToOneField(Message, on_delete=models.PROTECT, related_name="chat_turn")
    status = models.CharField(max_length=16, choices=TurnStatus.choices, default=TurnStatus.QUEUED)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    reply_a = models.ForeignKey(Message, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reply_b = models.ForeignKey(Message, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    comparison_task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    continued_from = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Chosen or edited."
    )
    requested_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["chat", "number"]
        constraints = [
            models.UniqueConstraint(fields=["chat", "number"], name="chat_turn_unique_number"),
            models.CheckConstraint(condition=Q(status__in=TurnStatus.values), name="chat_turn_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "requested_at"], name="chat_turn_status")]

    def __str__(self) -> str:
        return f"{self.chat} turn {self.number}"

    @property
    def generating(self) -> bool:
        return self.status in (TurnStatus.QUEUED, TurnStatus.RUNNING)
