"""Reads that span relations: queues, counts and project overviews."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotate.models import (
    Assignment,
    AssignmentStatus,
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


def _taken_places(now: datetime) -> Subquery:
    """How many of a task's places are filled: submissions plus live leases."""
    live = Q(status=AssignmentStatus.SUBMITTED) | Q(status=AssignmentStatus.ACTIVE, expires_at__gt=now)
    return Subquery(
        Assignment.objects.filter(live, task=OuterRef("pk"))
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
