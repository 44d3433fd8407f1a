"""Reads only the REST API makes: filtered lists and detail lookups, with their relations fetched up front so
a page costs the same few queries however long it is. The reads pages and API share are in
`annotate.selectors`."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import CharField, F, Prefetch, QuerySet, Value
from rest_framework.authtoken.models import Token

from annotate.models import (
    Annotation,
    Comparison,
    Demonstration,
    Project,
    Ranking,
    Rating,
    Task,
    TaskCandidate,
    TaskKind,
)
from annotate.roles import RoleName

User = get_user_model()

ANNOTATION_MODELS: dict[str, type[Annotation]] = {
    TaskKind.DEMONSTRATE: Demonstration,
    TaskKind.RANK: Ranking,
    TaskKind.COMPARE: Comparison,
    TaskKind.RATE: Rating,
}


def project_list() -> QuerySet[Project]:
    """Every project, active or not, by name."""
    return Project.objects.order_by("name")


def task_list(
    *,
    project: Project,
    kind: str | None = None,
    is_gold: bool | None = None,
    is_active: bool | None = None,
    is_open: bool | None = None,
    min_priority: float | None = None,
) -> QuerySet[Task]:
    """A project's tasks in serving order (priority, then age), with their candidate ids prefetched."""
    tasks = Task.objects.filter(project=project).select_related("project")
    if kind is not None:
        tasks = tasks.filter(kind=kind)
    if is_gold is not None:
        tasks = tasks.filter(is_gold=is_gold)
    if is_active is not None:
        tasks = tasks.filter(is_active=is_active)
    if is_open is True:
        tasks = tasks.filter(taken__lt=F("required_labelers"))
    elif is_open is False:
        tasks = tasks.filter(taken__gte=F("required_labelers"))
    if min_priority is not None:
        tasks = tasks.filter(priority__gte=min_priority)
    candidates = TaskCandidate.objects.order_by("position").only("task_id", "message_id", "position")
    return tasks.prefetch_related(Prefetch("task_candidates", queryset=candidates)).order_by(
        "-priority", "created_at", "id"
    )


def task_detail(*, task_id: int) -> Task | None:
    """One task with its project, anchor and candidate messages (in the task's order)."""
    candidates = TaskCandidate.objects.order_by("position").select_related("message")
    return (
        Task.objects.select_related("project", "anchor")
        .prefetch_related(Prefetch("task_candidates", queryset=candidates))
        .filter(pk=task_id)
        .first()
    )


def task_ids_in_project(*, project: Project, task_ids: list[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(task_ids), 1000):
        chunk = task_ids[start : start + 1000]
        found.update(Task.objects.filter(project=project, pk__in=chunk).values_list("pk", flat=True))
    return found


def annotation_index(
    *,
    project: Project,
    kind: str | None = None,
    labeler_id: int | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    include_discarded: bool = False,
) -> QuerySet:
    """The judgements of a project as one list over the four kinds' tables: rows of (kind, created_at, id),
    oldest first (so new judgements land on later pages). Paginate it, then load a page with
    `annotations_for_page`."""
    parts = []
    for name, model in ANNOTATION_MODELS.items():
        if kind is not None and name != kind:
            continue
        rows = model.objects.filter(task__project=project)
        if labeler_id is not None:
            rows = rows.filter(labeler_id=labeler_id)
        if created_after is not None:
            rows = rows.filter(created_at__gte=created_after)
        if created_before is not None:
            rows = rows.filter(created_at__lt=created_before)
        if not include_discarded:
            rows = rows.filter(discarded_at__isnull=True)
        parts.append(
            rows.order_by()
            .annotate(kind=Value(str(name), output_field=CharField()))
            .values_list("kind", "created_at", "id")
        )
    first, *rest = parts
    return (first.union(*rest, all=True) if rest else first).order_by("created_at", "kind", "id")


def annotations_for_page(rows: list[tuple[str, datetime, int]]) -> list[Annotation]:
    """The judgements of one page of `annotation_index`, in its order: one query per kind on the page."""
    ids: dict[str, list[int]] = {}
    for kind, _created_at, pk in rows:
        ids.setdefault(kind, []).append(pk)
    loaded: dict[tuple[str, int], Annotation] = {}
    for kind, pks in ids.items():
        objects = ANNOTATION_MODELS[kind].objects.filter(pk__in=pks)
        if kind == TaskKind.DEMONSTRATE:
            objects = objects.select_related("message")
        loaded.update(((kind, obj.pk), obj) for obj in objects)
    return [loaded[(kind, pk)] for kind, _created_at, pk in rows]


def user_list() -> QuerySet:
    """Every user with their role groups, by username."""
    roles = Group.objects.filter(name__in=[role.value for role in RoleName])
    return User.objects.order_by("username").prefetch_related(Prefetch("groups", queryset=roles))


def user_token(*, user) -> Token | None:
    return Token.objects.filter(user=user).first()
