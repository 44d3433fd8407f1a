"""Reads that span relations: queues, counts and project overviews."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotate.models import (
    Assignment,
    AssignmentStatus,
    CandidateReport,
    Comparison,
    Demonstration,
    ImportSource,
    Message,
    Project,
    Ranking,
    Rating,
    Task,
    TaskCandidate,
    TaskKind,
)

# Counts shown to labelers stop here: "1,000+" tells as much as an exact figure and stays an index range.
QUEUE_COUNT_CAP = 1000


def wrote_messages(labeler, project: Project | None = None) -> bool:
    """Whether `labeler` wrote any message (a demonstration) in `project`, or anywhere."""
    messages = Message.objects.filter(author_user=labeler)
    if project is not None:
        messages = messages.filter(project=project)
    return messages.exists()


def task_queue(
    *, labeler, project: Project, kind: str | None = None, gold: bool = False, wrote: bool | None = None
) -> QuerySet[Task]:
    """The tasks `labeler` may be served in `project`, best first: active, never leased by them before, none of
    whose candidates they wrote; for ordinary tasks, the overlap is not yet filled by submissions plus leases
    (this reads the `task_open_queue` partial index in priority order, then age). Gold tasks have no overlap:
    every labeler gets each one once, in random order so that no two labelers see them in the same sequence."""
    tasks = Task.objects.filter(project=project, is_active=True, is_gold=gold)
    if kind is not None:
        tasks = tasks.filter(kind=kind)
    if not gold:
        tasks = tasks.filter(taken__lt=F("required_labelers"))
    tasks = tasks.exclude(Exists(Assignment.objects.filter(task=OuterRef("pk"), labeler=labeler)))
    # Most labelers wrote nothing that is a candidate; only then is the per-task check worth its cost. Callers
    # that build several queues pass `wrote` (from wrote_messages) to ask once.
    if wrote if wrote is not None else wrote_messages(labeler, project):
        tasks = tasks.exclude(Exists(TaskCandidate.objects.filter(task=OuterRef("pk"), message__author_user=labeler)))
    return tasks.order_by("?") if gold else tasks.order_by("-priority", "created_at", "id")


def queue_counts(*, labeler, project: Project, wrote: bool | None = None) -> dict[str, int]:
    """How many ordinary tasks of each served kind wait for `labeler`, each capped at QUEUE_COUNT_CAP + 1."""
    wrote = wrote_messages(labeler, project) if wrote is None else wrote
    counts = {kind: 0 for kind in TaskKind.values}
    for kind in project.served_kinds:
        queue = task_queue(labeler=labeler, project=project, kind=kind, wrote=wrote)
        counts[kind] = queue[: QUEUE_COUNT_CAP + 1].count()
    return counts


@dataclass(frozen=True)
class ProjectQueue:
    project: Project
    counts: dict[str, int]
    live_lease: Assignment | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def served(self) -> list[tuple[str, str, int]]:
        """(kind, label, waiting) for the kinds this project serves."""
        return [(kind, kind.capitalize(), self.counts[kind]) for kind in self.project.served_kinds]


def labeler_queues(*, labeler, now: datetime | None = None) -> list[ProjectQueue]:
    """For the labeler's home page: per active project, how many tasks of each kind wait for them."""
    now = now or timezone.now()
    leases = {
        a.task.project_id: a
        for a in Assignment.objects.filter(
            labeler=labeler, status=AssignmentStatus.ACTIVE, expires_at__gt=now
        ).select_related("task")
    }
    wrote = wrote_messages(labeler)
    return [
        ProjectQueue(
            project=p, counts=queue_counts(labeler=labeler, project=p, wrote=wrote), live_lease=leases.get(p.id)
        )
        for p in Project.objects.filter(is_active=True).order_by("name")
    ]


@dataclass(frozen=True)
class ProjectOverview:
    project: Project
    prompts: int
    candidates: int
    tasks_by_kind: dict[str, int]
    annotations_by_kind: dict[str, int]
    imports: list[ImportSource]

    @property
    def total_tasks(self) -> int:
        return sum(self.tasks_by_kind.values())

    @property
    def total_annotations(self) -> int:
        return sum(self.annotations_by_kind.values())

    @property
    def rows(self) -> list[tuple[str, int, int, int]]:
        """(kind label, tasks, judgements, labelers per task) for each task kind."""
        return [
            (kind.label, self.tasks_by_kind[kind], self.annotations_by_kind[kind], self.project.overlap_for(kind))
            for kind in TaskKind
        ]


def _count_of(model, path: str = "project", **extra) -> Subquery:
    return Coalesce(
        Subquery(
            model.objects.filter(**{path: OuterRef("pk")}, **extra)
            .order_by()
            .values(path)
            .annotate(n=Count("id"))
            .values("n"),
            output_field=IntegerField(),
        ),
        0,
    )


def projects_with_counts() -> QuerySet[Project]:
    """Active projects with `task_count` and `judgement_count`, in one query."""
    judgements = sum(
        (
            _count_of(model, "task__project", discarded_at__isnull=True)
            for model in (Demonstration, Ranking, Comparison, Rating)
        ),
        start=Value(0),
    )
    return (
        Project.objects.filter(is_active=True)
        .annotate(task_count=_count_of(Task), judgement_count=judgements)
        .order_by("name")
    )


def project_overview(*, project: Project) -> ProjectOverview:
    """For researchers: what the project holds, in a handful of aggregate queries."""
    tasks = dict(
        Task.objects.filter(project=project).order_by().values("kind").annotate(n=Count("id")).values_list("kind", "n")
    )
    anchors = Task.objects.filter(project=project).values("anchor_id")
    return ProjectOverview(
        project=project,
        prompts=Message.objects.filter(project=project, role="user", id__in=anchors).count(),
        candidates=Message.objects.filter(project=project, role="assistant", candidate_in_tasks__isnull=False)
        .distinct()
        .count(),
        tasks_by_kind={kind: tasks.get(kind, 0) for kind in TaskKind.values},
        annotations_by_kind={
            kind: model.objects.filter(task__project=project, discarded_at__isnull=True).count()
            for kind, model in (
                (TaskKind.DEMONSTRATE, Demonstration),
                (TaskKind.RANK, Ranking),
                (TaskKind.COMPARE, Comparison),
                (TaskKind.RATE, Rating),
            )
        },
        imports=list(project.import_sources.select_related("imported_by")[:10]),
    )


# --- labeling ------------------------------------------------------------------------------------------------


def candidate_order_for(*, task: Task, labeler, candidate_ids: list[int]) -> list[int]:
    """The order a labeler sees a task's candidates in: shuffled per labeler against position bias, and stable
    (the same on every reload), so the stored `shown_order` is what was really on the screen."""
    ids = list(candidate_ids)
    seed = int.from_bytes(hashlib.sha256(f"{task.pk}:{labeler.pk}".encode()).digest()[:8], "big")
    random.Random(seed).shuffle(ids)
    return ids


def conversation_path(*, message: Message) -> list[Message]:
    """The messages from the root of the conversation down to `message`, in one query (a recursive one inside)."""
    table = Message._meta.db_table
    path = f"""
        WITH RECURSIVE path(id, parent_id) AS (
            SELECT id, parent_id FROM {table} WHERE id = %s
            UNION ALL
            SELECT m.id, m.parent_id FROM {table} m JOIN path p ON m.id = p.parent_id
        )
        SELECT id FROM path
    """  # noqa: S608 - the table name is ours; the id is a parameter
    return list(Message.objects.filter(pk__in=RawSQL(path, [message.pk])).order_by("depth"))  # noqa: S611


@dataclass(frozen=True)
class ShownCandidate:
    number: int  # 1-based, as the labeler sees it ("Reply 2", key 2)
    side: str  # "A"/"B" in comparisons, else ""
    message: Message
    reported: bool = False  # this labeler reported it as unsafe


@dataclass(frozen=True)
class LabelingTask:
    assignment: Assignment
    task: Task
    project: Project
    conversation: list[Message]
    candidates: list[ShownCandidate]

    @property
    def flags(self) -> list[dict[str, str]]:
        return self.project.flags


def labeling_task(*, assignment: Assignment) -> LabelingTask:
    """Everything the labeling page shows for one lease, candidates in this labeler's shown order."""
    task = assignment.task
    rows = list(TaskCandidate.objects.filter(task=task).order_by("position").select_related("message"))
    by_id = {row.message_id: row.message for row in rows}
    order = candidate_order_for(task=task, labeler=assignment.labeler, candidate_ids=[row.message_id for row in rows])
    reported = set(
        CandidateReport.objects.filter(reporter=assignment.labeler, message_id__in=order).values_list(
            "message_id", flat=True
        )
    )
    sides = "AB" if task.kind == TaskKind.COMPARE else ""
    candidates = [
        ShownCandidate(
            number=i + 1,
            side=sides[i] if sides else "",
            message=by_id[message_id],
            reported=message_id in reported,
        )
        for i, message_id in enumerate(order)
    ]
    return LabelingTask(
        assignment=assignment,
        task=task,
        project=task.project,
        conversation=conversation_path(message=task.anchor),
        candidates=candidates,
    )


def live_assignment(*, labeler, task_id: int, now: datetime | None = None) -> Assignment | None:
    now = now or timezone.now()
    return (
        Assignment.objects.filter(labeler=labeler, task_id=task_id, status=AssignmentStatus.ACTIVE, expires_at__gt=now)
        .select_related("task__project", "task__anchor", "labeler")
        .first()
    )


@dataclass(frozen=True)
class LabelerProgress:
    done_today: int
    done_total: int
    open_in_queue: int
    median_seconds_today: float | None


def labeler_progress(*, labeler, project: Project, now: datetime | None = None) -> LabelerProgress:
    """What a labeler sees of their own work in a project: today, all time, what is left, time per task."""
    now = now or timezone.now()
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    submitted = Assignment.objects.filter(labeler=labeler, task__project=project, status=AssignmentStatus.SUBMITTED)
    counts = submitted.aggregate(total=Count("id"), today=Count("id", filter=Q(finished_at__gte=start_of_day)))
    today = {"labeler": labeler, "task__project": project, "created_at__gte": start_of_day}
    per_kind = [
        model.objects.filter(**today).order_by().values_list("time_spent_ms", flat=True)
        for model in (Demonstration, Ranking, Comparison, Rating)
    ]
    times = sorted(per_kind[0].union(*per_kind[1:], all=True))
    median = None
    if times:
        middle = len(times) // 2
        median = (times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2) / 1000
    return LabelerProgress(
        done_today=counts["today"],
        done_total=counts["total"],
        open_in_queue=sum(queue_counts(labeler=labeler, project=project).values()),
        median_seconds_today=median,
    )


def message_texts(*, ids: Iterable[int]) -> dict[int, str]:
    """Message texts by id, in one query (for listing prompts and their candidates)."""
    return dict(Message.objects.filter(pk__in=list(ids)).values_list("id", "text"))


def labeler_footprint(*, labeler, project: Project) -> dict[str, int]:
    """What deactivating a labeler touches: their live leases (anywhere) and counted judgements in `project`."""
    judgements = sum(
        model.objects.filter(labeler=labeler, task__project=project, discarded_at__isnull=True).count()
        for model in (Demonstration, Ranking, Comparison, Rating)
    )
    leases = Assignment.objects.filter(labeler=labeler, status=AssignmentStatus.ACTIVE).count()
    return {"judgements": judgements, "live_leases": leases}
