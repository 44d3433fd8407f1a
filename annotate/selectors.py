"""Reads that span relations: queues, counts and project overviews."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
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


def _live(now: datetime) -> Q:
    """Assignments that hold one of a task's places: submissions plus live leases."""
    return Q(status=AssignmentStatus.SUBMITTED) | Q(status=AssignmentStatus.ACTIVE, expires_at__gt=now)


def live_places(*, task: Task, now: datetime) -> int:
    return Assignment.objects.filter(_live(now), task=task).count()


def _taken_places(now: datetime) -> Subquery:
    """How many of a task's places are filled: submissions plus live leases."""
    return Subquery(
        Assignment.objects.filter(_live(now), task=OuterRef("pk"))
        .order_by()
        .values("task")
        .annotate(n=Count("id"))
        .values("n"),
        output_field=IntegerField(),
    )


def tasks_available_to(*, labeler, now: datetime | None = None, project: Project | None = None) -> QuerySet[Task]:
    """Active tasks this labeler may be served: never seen by them, overlap not yet filled by submissions and
    live leases, and no candidate written by them. Ordered by priority, then age."""
    now = now or timezone.now()
    tasks = Task.objects.filter(is_active=True, project__is_active=True)
    if project is not None:
        tasks = tasks.filter(project=project)
    return (
        tasks.annotate(taken=Coalesce(_taken_places(now), 0))
        .filter(taken__lt=F("required_labelers"))
        .exclude(Exists(Assignment.objects.filter(task=OuterRef("pk"), labeler=labeler)))
        .exclude(Exists(TaskCandidate.objects.filter(task=OuterRef("pk"), message__author_user=labeler)))
        .order_by("-priority", "created_at", "id")
    )


@dataclass(frozen=True)
class ProjectQueue:
    project: Project
    counts: dict[str, int]
    live_lease: Assignment | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def labeler_queues(*, labeler, now: datetime | None = None) -> list[ProjectQueue]:
    """For the labeler's home page: per active project, how many tasks of each kind wait for them."""
    now = now or timezone.now()
    rows = tasks_available_to(labeler=labeler, now=now).order_by().values("project_id", "kind").annotate(n=Count("id"))
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {kind: 0 for kind in TaskKind.values})
    for row in rows:
        counts[row["project_id"]][row["kind"]] = row["n"]
    leases = {
        a.task.project_id: a
        for a in Assignment.objects.filter(
            labeler=labeler, status=AssignmentStatus.ACTIVE, expires_at__gt=now
        ).select_related("task")
    }
    return [
        ProjectQueue(project=p, counts=counts[p.id], live_lease=leases.get(p.id))
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


def _count_of(model, path: str = "project") -> Subquery:
    return Coalesce(
        Subquery(
            model.objects.filter(**{path: OuterRef("pk")}).order_by().values(path).annotate(n=Count("id")).values("n"),
            output_field=IntegerField(),
        ),
        0,
    )


def projects_with_counts() -> QuerySet[Project]:
    """Active projects with `task_count` and `judgement_count`, in one query."""
    judgements = sum(
        (_count_of(model, "task__project") for model in (Demonstration, Ranking, Comparison, Rating)),
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
            TaskKind.DEMONSTRATE: Demonstration.objects.filter(task__project=project).count(),
            TaskKind.RANK: Ranking.objects.filter(task__project=project).count(),
            TaskKind.COMPARE: Comparison.objects.filter(task__project=project).count(),
            TaskKind.RATE: Rating.objects.filter(task__project=project).count(),
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
    """The messages from the root of the conversation down to `message`, in one recursive query."""
    table = Message._meta.db_table
    sql = f"""
        WITH RECURSIVE path(id, parent_id) AS (
            SELECT id, parent_id FROM {table} WHERE id = %s
            UNION ALL
            SELECT m.id, m.parent_id FROM {table} m JOIN path p ON m.id = p.parent_id
        )
        SELECT id FROM path
    """  # noqa: S608 - the table name is ours; the id is a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, [message.pk])
        ids = [row[0] for row in cursor.fetchall()]
    by_id = Message.objects.in_bulk(ids)
    return sorted(by_id.values(), key=lambda m: m.depth)


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
        open_in_queue=tasks_available_to(labeler=labeler, now=now, project=project).count(),
        median_seconds_today=median,
    )
