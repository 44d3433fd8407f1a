"""Input and output serializers of the REST API, one pair per operation. They shape data; the services judge
it (a ranking that misses a reply is the service's LabelingError, not a serializer's)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from annotate.models import (
    COMPARISON_SCALE,
    Assignment,
    Comparison,
    Demonstration,
    ImportSource,
    Message,
    Project,
    Ranking,
    Rating,
    SkipReason,
    Task,
    TaskKind,
)
from annotate.roles import RoleName

User = get_user_model()

# The largest id the API accepts (in paths and filters): anything larger could not be a row's id in any
# database we run on, and would overflow the driver instead of simply finding nothing.
MAX_ID = 10**18 - 1

ROLE_CHOICES = [(role.value, role.value.capitalize()) for role in RoleName]


# --- errors -------------------------------------------------------------------------------------------------


class ImportProblemSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="1-based line of the file; 0 for the file as a whole.")
    field = serializers.CharField(help_text="The field on that line, e.g. `messages[2].role`; may be empty.")
    message = serializers.CharField()


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: invalid, not_authenticated, permission_denied, …")
    message = serializers.CharField(help_text="For people.")
    fields = serializers.DictField(
        child=serializers.JSONField(), help_text="Input field → its problems (empty if not about a field)."
    )
    field = serializers.CharField(required=False, help_text="Labeling errors: the part of the submission at fault.")
    problems = ImportProblemSerializer(many=True, required=False, help_text="A rejected import: every problem.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- shared pieces ------------------------------------------------------------------------------------------


class KindCountsSerializer(serializers.Serializer):
    demonstrate = serializers.IntegerField()
    rank = serializers.IntegerField()
    compare = serializers.IntegerField()
    rate = serializers.IntegerField()


class FlagSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author_label", help_text="import, model or human")

    class Meta:
        model = Message
        fields = ["id", "role", "text", "author"]


class CandidateSerializer(MessageSerializer):
    """A candidate reply, with the serving reward model's score for researchers (null: no serving reward model,
    or not scored yet)."""

    reward_score = serializers.SerializerMethodField()

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "reward_score"]

    def get_reward_score(self, message: Message) -> float | None:
        return self.context["reward_scores"].get(message.pk)


# --- auth and me --------------------------------------------------------------------------------------------


class TokenCredentialsSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`.")


class TokenHintSerializer(serializers.Serializer):
    hint = serializers.CharField(help_text="The first characters of the key, to tell tokens apart.")
    created = serializers.DateTimeField()


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=ROLE_CHOICES),
        help_text="Every role this user holds (an admin holds all three).",
    )
    token = TokenHintSerializer(allow_null=True, help_text="This user's API token, if they have one.")


# --- projects -----------------------------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    flags = FlagSerializer(many=True)
    served_kinds = serializers.ListField(child=serializers.ChoiceField(choices=TaskKind.choices))
    queue = serializers.SerializerMethodField(
        help_text="For labelers, on active projects: how many tasks of each kind wait for them (capped at 1001)."
    )
    live_assignment = serializers.SerializerMethodField(help_text="The labeler's live lease in this project.")

    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "description",
            "guidelines",
            "is_active",
            "served_kinds",
            "ranking_k",
            "lease_minutes",
            "flags",
            "queue",
            "live_assignment",
        ]

    @extend_schema_field(KindCountsSerializer(allow_null=True))
    def get_queue(self, project: Project) -> dict | None:
        queue = self.context.get("queues", {}).get(project.pk)
        return queue.counts if queue else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_live_assignment(self, project: Project) -> int | None:
        queue = self.context.get("queues", {}).get(project.pk)
        return queue.live_lease.pk if queue and queue.live_lease else None


class ImportSourceSerializer(serializers.ModelSerializer):
    imported_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ImportSource
        fields = ["id", "name", "format", "sha256", "row_count", "stats", "imported_by", "created_at"]


class ProjectOverviewSerializer(serializers.Serializer):
    """`selectors.project_overview` with the project's settings."""

    slug = serializers.CharField(source="project.slug")
    name = serializers.CharField(source="project.name")
    description = serializers.CharField(source="project.description")
    guidelines = serializers.CharField(source="project.guidelines")
    is_active = serializers.BooleanField(source="project.is_active")
    flags = FlagSerializer(source="project.flags", many=True)
    ranking_k = serializers.IntegerField(source="project.ranking_k")
    lease_minutes = serializers.IntegerField(source="project.lease_minutes")
    gold_share = serializers.FloatField(source="project.gold_share")
    kind_mix = serializers.DictField(source="project.kind_mix", child=serializers.FloatField())
    overlap = serializers.SerializerMethodField(help_text="Distinct labelers each task kind needs.")
    prompts = serializers.IntegerField()
    candidates = serializers.IntegerField()
    tasks_by_kind = KindCountsSerializer()
    annotations_by_kind = KindCountsSerializer(help_text="Judgements that count (discarded ones left out).")
    imports = ImportSourceSerializer(many=True, help_text="The latest imports (up to 10).")

    @extend_schema_field(KindCountsSerializer)
    def get_overlap(self, overview) -> dict:
        return {kind: overview.project.overlap_for(kind) for kind in TaskKind.values}


class PromptUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A JSONL file, one prompt per line (see README).")


class JudgementUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A JSONL file in one of the formats (see README).")
    format = serializers.ChoiceField(["trl", "hh", "oasst", "arena", "rated"], help_text="The file's shape.")
    open_tasks = serializers.BooleanField(
        default=False, help_text="Also open the imported pairs as tasks for the project's labelers."
    )


class JudgementImportQuerySerializer(serializers.Serializer):
    """A raw-body upload's options, as query parameters."""

    format = serializers.ChoiceField(["trl", "hh", "oasst", "arena", "rated"], help_text="The file's shape.")
    open_tasks = serializers.BooleanField(default=False)
    filename = serializers.CharField(required=False, default="upload.jsonl", max_length=255)


class JudgementImportResultSerializer(serializers.Serializer):
    import_source = ImportSourceSerializer(source="source")
    rows = serializers.IntegerField(help_text="Judgements imported.")
    judgements = serializers.DictField(child=serializers.IntegerField(), help_text="By kind: compare, rank.")
    prompts_created = serializers.IntegerField()
    replies_created = serializers.IntegerField()
    tasks_created = serializers.IntegerField()
    tasks_opened = serializers.IntegerField(help_text="Of the new tasks, those open for the project's labelers.")


class ImportResultSerializer(serializers.Serializer):
    import_source = ImportSourceSerializer(source="source")
    rows = serializers.IntegerField()
    prompts_created = serializers.IntegerField()
    prompts_existing = serializers.IntegerField()
    candidates_created = serializers.IntegerField()
    tasks_created = serializers.SerializerMethodField()

    @extend_schema_field(KindCountsSerializer)
    def get_tasks_created(self, result) -> dict:
        return {kind: result.tasks_created.get(kind, 0) for kind in TaskKind.values}


# --- tasks --------------------------------------------------------------------------------------------------


class TaskFilterSerializer(serializers.Serializer):
    """Query parameters of the task list."""

    kind = serializers.ChoiceField(choices=TaskKind.choices, required=False)
    is_gold = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(required=False)
    open = serializers.BooleanField(required=False, help_text="Places left: taken < required_labelers.")
    min_priority = serializers.FloatField(required=False)


class TaskSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    candidates = serializers.SerializerMethodField(help_text="Candidate message ids, in the task's order.")

    class Meta:
        model = Task
        fields = [
            "id",
            "project",
            "kind",
            "anchor",
            "candidates",
            "required_labelers",
            "taken",
            "priority",
            "is_gold",
            "gold_answer",
            "is_active",
            "origin_import",
            "origin_run",
            "created_at",
        ]

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_candidates(self, task: Task) -> list[int]:
        return [row.message_id for row in task.task_candidates.all()]


class TaskDetailSerializer(TaskSerializer):
    """A task with its texts; the view passes the anchor's conversation in the context."""

    candidates = serializers.SerializerMethodField(help_text="The candidate replies, in the task's order.")
    conversation = serializers.SerializerMethodField(help_text="The anchor's conversation, root first.")

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "conversation"]

    @extend_schema_field(CandidateSerializer(many=True))
    def get_candidates(self, task: Task) -> list[dict]:
        scores = self.context.get("reward_scores", {})
        messages = [row.message for row in task.task_candidates.all()]
        return CandidateSerializer(messages, many=True, context={"reward_scores": scores}).data

    @extend_schema_field(MessageSerializer(many=True))
    def get_conversation(self, _task: Task) -> list[dict]:
        return MessageSerializer(self.context["conversation"], many=True).data


class TaskPrioritySerializer(serializers.Serializer):
    priority = serializers.FloatField(help_text="Higher is served first; ties by age.")


class TaskPriorityItemSerializer(serializers.Serializer):
    task = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    priority = serializers.FloatField()


class TaskPriorityBulkSerializer(serializers.Serializer):
    priorities = TaskPriorityItemSerializer(many=True, allow_empty=False, max_length=10_000)


class PriorityResultSerializer(serializers.Serializer):
    updated = serializers.IntegerField()


# --- judgements ---------------------------------------------------------------------------------------------


class AnnotationFilterSerializer(serializers.Serializer):
    """Query parameters of the judgement list."""

    kind = serializers.ChoiceField(choices=TaskKind.choices, required=False)
    labeler = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="A labeler's user id (researchers only)."
    )
    created_after = serializers.DateTimeField(required=False, help_text="Inclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="Exclusive.")
    include_discarded = serializers.BooleanField(default=False, help_text="Also judgements sent back for re-labeling.")


_ANNOTATION_FIELDS = [
    "id",
    "kind",
    "task",
    "labeler",
    "import_source",
    "assignment",
    "shown_order",
    "time_spent_ms",
    "created_at",
    "discarded_at",
]


class _AnnotationSerializer(serializers.ModelSerializer):
    """Fields every judgement has. Each kind's serializer adds `kind` (a one-value enum: the discriminator that
    tells the four shapes apart) and its own fields."""

    shown_order = serializers.ListField(child=serializers.IntegerField(), help_text="Candidate ids, as shown.")


class DemonstrationOutSerializer(_AnnotationSerializer):
    """A demonstration: the labeler's ideal reply (`text`), stored as the human-written message `message`."""

    kind = serializers.SerializerMethodField()
    text = serializers.CharField(source="message.text")

    @extend_schema_field({"type": "string", "enum": [TaskKind.DEMONSTRATE.value]})
    def get_kind(self, _annotation) -> str:
        return TaskKind.DEMONSTRATE

    class Meta:
        model = Demonstration
        fields = [*_ANNOTATION_FIELDS, "message", "text"]


class RankingOutSerializer(_AnnotationSerializer):
    """A ranking: the task's candidates best to worst in tiers (ties allowed), with per-reply flags."""

    kind = serializers.SerializerMethodField()
    tiers = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), help_text="Best first; a tier holds ties."
    )
    candidate_flags = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))

    class Meta:
        model = Ranking
        fields = [*_ANNOTATION_FIELDS, "tiers", "none_acceptable", "candidate_flags"]

    @extend_schema_field({"type": "string", "enum": [TaskKind.RANK.value]})
    def get_kind(self, _annotation) -> str:
        return TaskKind.RANK


class ComparisonOutSerializer(_AnnotationSerializer):
    """An A/B comparison on the 8-point scale; A and B are the candidates in the order the labeler saw them."""

    kind = serializers.SerializerMethodField()

    class Meta:
        model = Comparison
        fields = [*_ANNOTATION_FIELDS, "candidate_a", "candidate_b", "choice", "both_bad"]
        extra_kwargs = {"choice": {"help_text": "-4..-1: A better (-4 = much better), 1..4: B better."}}

    @extend_schema_field({"type": "string", "enum": [TaskKind.COMPARE.value]})
    def get_kind(self, _annotation) -> str:
        return TaskKind.COMPARE


class RatingOutSerializer(_AnnotationSerializer):
    """A rating: a 1-7 score of one candidate, with the project's flags and a comment."""

    kind = serializers.SerializerMethodField()
    flags = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Rating
        fields = [*_ANNOTATION_FIELDS, "candidate", "score", "flags", "comment"]

    @extend_schema_field({"type": "string", "enum": [TaskKind.RATE.value]})
    def get_kind(self, _annotation) -> str:
        return TaskKind.RATE


ANNOTATION_OUT: dict[type, type[_AnnotationSerializer]] = {
    Demonstration: DemonstrationOutSerializer,
    Ranking: RankingOutSerializer,
    Comparison: ComparisonOutSerializer,
    Rating: RatingOutSerializer,
}

# For the schema: a judgement is one of four shapes, told apart by `kind`.
_ANNOTATION_SHAPES = {
    TaskKind.DEMONSTRATE.value: DemonstrationOutSerializer,
    TaskKind.RANK.value: RankingOutSerializer,
    TaskKind.COMPARE.value: ComparisonOutSerializer,
    TaskKind.RATE.value: RatingOutSerializer,
}
AnnotationSerializer = PolymorphicProxySerializer(
    component_name="Annotation", serializers=_ANNOTATION_SHAPES, resource_type_field_name="kind"
)
AnnotationListSerializer = PolymorphicProxySerializer(
    component_name="Annotation", serializers=_ANNOTATION_SHAPES, resource_type_field_name="kind", many=True
)


def annotation_data(annotation) -> dict:
    """One judgement, by the serializer of its kind."""
    return ANNOTATION_OUT[type(annotation)](annotation).data


# --- labeling -----------------------------------------------------------------------------------------------


class LeaseKindsSerializer(serializers.Serializer):
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=TaskKind.choices),
        required=False,
        allow_empty=True,
        help_text="Only these task kinds (default: the project's kind mix).",
    )


class AssignmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Assignment
        fields = ["id", "task", "status", "leased_at", "expires_at", "finished_at"]


class ShownCandidateSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="message.pk")
    number = serializers.IntegerField(help_text="1-based, in the order this labeler is shown the replies.")
    side = serializers.CharField(help_text='"A" or "B" in comparisons, else "".')
    text = serializers.CharField(source="message.text")
    reported = serializers.BooleanField(help_text="This labeler reported the reply as unsafe.")


class ScalePointSerializer(serializers.Serializer):
    choice = serializers.IntegerField()
    label = serializers.CharField()


class LeaseSerializer(serializers.Serializer):
    """`selectors.labeling_task`: what a labeler needs to judge one leased task."""

    assignment = AssignmentSerializer()
    task = serializers.IntegerField(source="task.pk")
    kind = serializers.ChoiceField(source="task.kind", choices=TaskKind.choices)
    project = serializers.CharField(source="project.slug")
    conversation = MessageSerializer(many=True, help_text="Root first; the last message is the user's turn.")
    candidates = ShownCandidateSerializer(many=True, help_text="In the order to show them (stable per labeler).")
    flags = FlagSerializer(many=True, help_text="Flags a ranking or rating may set.")
    scale = serializers.SerializerMethodField(help_text="Comparisons: the points of the 8-point scale.")

    @extend_schema_field(ScalePointSerializer(many=True))
    def get_scale(self, view) -> list[dict]:
        if view.task.kind != TaskKind.COMPARE:
            return []
        return [{"choice": value, "label": label} for value, label in COMPARISON_SCALE]


class _SubmitSerializer(serializers.Serializer):
    client_token = serializers.CharField(
        max_length=64, help_text="Unique per submission: sending it again returns the first judgement."
    )
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class DemonstrationSubmitSerializer(_SubmitSerializer):
    text = serializers.CharField(trim_whitespace=False, allow_blank=True, help_text="The ideal assistant reply.")


class RankingSubmitSerializer(_SubmitSerializer):
    tiers = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="Every candidate id, best first, in tiers: [[7], [5, 6]] means 7 > 5 = 6.",
    )
    none_acceptable = serializers.BooleanField(required=False, default=False)
    candidate_flags = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False, default=dict
    )


class ComparisonSubmitSerializer(_SubmitSerializer):
    choice = serializers.IntegerField(
        help_text="-4..-1: A better (-4 much better), 1..4: B better; A and B as in `candidates` of the lease."
    )
    both_bad = serializers.BooleanField(required=False, default=False)


class RatingSubmitSerializer(_SubmitSerializer):
    score = serializers.IntegerField(help_text="1 (worst) to 7 (best).")
    flags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


SUBMIT_IN: dict[str, type[_SubmitSerializer]] = {
    TaskKind.DEMONSTRATE: DemonstrationSubmitSerializer,
    TaskKind.RANK: RankingSubmitSerializer,
    TaskKind.COMPARE: ComparisonSubmitSerializer,
    TaskKind.RATE: RatingSubmitSerializer,
}

SubmitRequestSerializer = PolymorphicProxySerializer(
    component_name="Submission",
    serializers=list(SUBMIT_IN.values()),
    resource_type_field_name=None,
)


class SubmissionSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="False when this repeated an earlier submission (same token).")
    annotation = serializers.SerializerMethodField()

    @extend_schema_field(AnnotationSerializer)
    def get_annotation(self, submission) -> dict:
        return annotation_data(submission.annotation)


class SkipSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=SkipReason.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


# --- users --------------------------------------------------------------------------------------------------


class UserSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField(help_text="The role groups the user is in (what PUT …/roles/ sets).")

    class Meta:
        model = User
        fields = ["id", "username", "roles", "is_active"]

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=ROLE_CHOICES)))
    def get_roles(self, user) -> list[str]:
        names = {group.name for group in user.groups.all()}
        return [role.value for role in RoleName if role.value in names]


class RolesSerializer(serializers.Serializer):
    roles = serializers.ListField(child=serializers.ChoiceField(choices=ROLE_CHOICES), allow_empty=True)


class DeactivateSerializer(serializers.Serializer):
    requeue = serializers.BooleanField(
        required=False, default=False, help_text="Send their judgements back for re-labeling."
    )
    project = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Project.objects.all(),
        allow_null=True,
        default=None,
        help_text="Requeue only this project's judgements (default: everywhere).",
    )


class DeactivationResultSerializer(serializers.Serializer):
    leases_released = serializers.IntegerField()
    annotations_requeued = serializers.IntegerField()
    tasks_reopened = serializers.IntegerField()
