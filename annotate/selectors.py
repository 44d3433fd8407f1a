"""Reads that span relations: queues, counts and project overviews."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    Exists,
    F,
    Field,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
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

# --- queries compiled once ------------------------------------------------------------------------------------
# The labeling path runs a few queries per request, each about a millisecond of PostgreSQL's time; building and
# compiling them with the ORM took longer (20 ms for a lease's state). So each is built with the ORM (its one
# definition) once per shape, from stand-in values, and compiled to SQL; later calls only bind their own values.


@dataclass(frozen=True)
class Compiled:
    """A query's SQL, and for each parameter either a constant or the name of the value that goes there."""

    sql: str
    params: tuple[tuple[str | None, object], ...]  # (None, constant) or (value name, adapt)
    columns: tuple[str, ...]
    converters: tuple[tuple[int, tuple, object], ...]  # (column, its converters, its expression)

    def bind(self, values: Mapping[str, object]) -> list:
        return [given if name is None else given(values[name]) for name, given in self.params]

    def rows(self, /, **values) -> list[dict]:
        """Run it with `values`: the rows, by column name, converted as the ORM converts them."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.bind(values))
            rows = cursor.fetchall()
        out = []
        for row in rows:
            row = list(row)
            for position, converters, expression in self.converters:
                for converter in converters:
                    row[position] = converter(row[position], expression, connection)
            out.append(dict(zip(self.columns, row, strict=True)))
        return out


_COMPILED: dict[tuple, Compiled] = {}


def _stand_in(value: object, i: int) -> object:
    if isinstance(value, bool) or value is None:
        raise TypeError("a query's shape (booleans, None) goes in its key, not in its values")
    if isinstance(value, int):  # within every integer column's range (out of range, a lookup matches nothing)
        return 2_147_480_000 + i
    if isinstance(value, str):
        return f"stand-in-{i}-for-a-compiled-query"
    if isinstance(value, datetime):
        return datetime(1901, 2, 3, 4, 5, 6, i + 1, tzinfo=UTC)
    raise TypeError(f"no stand-in for {type(value).__name__}")


def _as_is(value):
    return value


def compiled(key: tuple, build, /, **values) -> Compiled:
    """The query `build(**values)` returns (a `values()` queryset), compiled once per `key` and
    database: `key` must hold everything else its SQL depends on. The first call builds it from stand-ins (ints,
    strings, datetimes) in place of `values` and finds where each one went among the parameters."""
    key = (connection.alias, connection.vendor, *key, *sorted(values))
    found = _COMPILED.get(key)
    if found is not None:
        return found
    stand_ins = {name: _stand_in(value, i) for i, (name, value) in enumerate(sorted(values.items()))}
    adapted = {
        name: (
            (lambda v: connection.ops.adapt_datetimefield_value(v), connection.ops.adapt_datetimefield_value(stand))
            if isinstance(stand, datetime)
            else (_as_is, stand)
        )
        for name, stand in stand_ins.items()
    }
    queryset = build(**stand_ins)
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    slots, used = [], set()
    for param in params:
        name = next((n for n, s in stand_ins.items() if _same(param, s) or _same(param, adapted[n][1])), None)
        if name is None:
            slots.append((None, param))
        else:
            used.add(name)
            slots.append((name, adapted[name][0] if _same(param, adapted[name][1]) else _as_is))
    if used != set(stand_ins) or any(str(s) in sql for s in stand_ins.values()):
        raise ValueError(f"the stand-ins of {sorted(set(stand_ins) - used)} did not become parameters")
    query = queryset.query
    columns = [*query.extra_select, *query.values_select, *query.annotation_select]
    converters = compiler.get_converters([s[0] for s in compiler.select[: compiler.col_count]])
    found = Compiled(
        sql=sql,
        params=tuple(slots),
        columns=tuple(columns),
        converters=tuple((position, tuple(c), expression) for position, (c, expression) in converters.items()),
    )
    _COMPILED[key] = found
    return found


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def loaded(model, values: Mapping[str, object], prefix: str = ""):
    """An instance of `model` as loaded from the database, from `values` by attname (under `prefix`: a related
    model's, as `values("task__kind")` names them); the fields not there are deferred."""
    names = [f.attname for f in model._meta.concrete_fields if prefix + f.attname in values]
    return model.from_db(connection.alias, names, [values[prefix + name] for name in names])


def fields_of(model, prefix: str = "") -> list[str]:
    """Every concrete field of `model` under `prefix`, for `values()` (see `loaded`)."""
    return [prefix + f.attname for f in model._meta.concrete_fields]


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


def authored(labeler, project: Project) -> Exists:
    """As a condition inside a query: `labeler` wrote a message (a demonstration) in `project` (see wrote_messages)."""
    return Exists(Message.objects.filter(author_user_id=labeler.pk, project_id=project.pk))


def either_queue(labeler, project: Project, make) -> Case:
    """`make(wrote)`, an expression over `task_queue(..., wrote=wrote)`, for the value of `wrote` that holds, decided
    inside the query: the database evaluates one branch, so a labeler who wrote nothing never pays for the check
    of the candidates' authors, and the caller saves the query that would ask."""
    return Case(When(authored(labeler, project), then=make(True)), default=make(False))


class Counted(Subquery):
    """How many rows a queryset has, as a column (at most its slice, when it is sliced)."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS counted)"
    output_field = IntegerField()


def _open_count(labeler, project: Project, kind: str, wrote: bool | None) -> Counted | Case:
    def count(wrote: bool) -> Counted:
        return Counted(
            task_queue(labeler=labeler, project=project, kind=kind, wrote=wrote).values("pk")[: QUEUE_COUNT_CAP + 1]
        )

    return either_queue(labeler, project, count) if wrote is None else count(wrote)


def _open_counts(labeler, project: Project, wrote: bool | None = None) -> dict[str, Counted | Case]:
    return {f"open_{kind}": _open_count(labeler, project, kind, wrote) for kind in project.served_kinds}


def queue_counts(*, labeler, project: Project, wrote: bool | None = None) -> dict[str, int]:
    """How many ordinary tasks of each served kind wait for `labeler`, each capped at QUEUE_COUNT_CAP + 1: one
    query."""
    counts = {kind: 0 for kind in TaskKind.values}
    columns = _open_counts(labeler, project, wrote)
    if columns:
        row = Project.objects.filter(pk=project.pk).annotate(**columns).values(*columns).first() or {}
        counts.update({kind: row.get(f"open_{kind}") or 0 for kind in project.served_kinds})
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
    return shown_order(task_id=task.pk, labeler_id=labeler.pk, candidate_ids=candidate_ids)


def shown_order(*, task_id: int, labeler_id: int, candidate_ids: Iterable[int]) -> list[int]:
    """`candidate_order_for`, by ids."""
    ids = list(candidate_ids)
    seed = int.from_bytes(hashlib.sha256(f"{task_id}:{labeler_id}".encode()).digest()[:8], "big")
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


# The ids of a conversation's messages from the root down to a message (the first parameter), then those of a task's
# candidates (the second): one index lookup each.
_PATH_AND_CANDIDATES = f"""
    WITH RECURSIVE path(id, parent_id) AS (
        SELECT id, parent_id FROM {Message._meta.db_table} WHERE id = %s
        UNION ALL
        SELECT m.id, m.parent_id FROM {Message._meta.db_table} m JOIN path p ON m.id = p.parent_id
    )
    SELECT id FROM path
    UNION ALL
    SELECT message_id FROM {TaskCandidate._meta.db_table} WHERE task_id = %s
"""  # noqa: S608 - the tables are ours; the ids are parameters


def _labeling_messages(*, anchor_id: int, task_id: int, labeler_id: int) -> QuerySet:
    return (
        Message.objects.filter(pk__in=RawSQL(_PATH_AND_CANDIDATES, [anchor_id, task_id]))  # noqa: S611
        .annotate(
            position=Subquery(
                TaskCandidate.objects.filter(task_id=task_id, message_id=OuterRef("pk")).values("position")[:1]
            ),
            reported=Exists(CandidateReport.objects.filter(reporter_id=labeler_id, message_id=OuterRef("pk"))),
        )
        .order_by("depth", "id")
        .values(*fields_of(Message), "position", "reported")
    )


def labeling_task(*, assignment: Assignment) -> LabelingTask:
    """Everything the labeling page shows for one lease, candidates in this labeler's shown order: one query (the
    conversation, the candidates with their positions, which of them this labeler reported). `assignment.task`
    must have its project loaded; its anchor is not read."""
    task = assignment.task
    ids = {"anchor_id": task.anchor_id, "task_id": task.pk, "labeler_id": assignment.labeler_id}
    conversation, candidates = [], []
    for row in compiled(("labeling_messages",), _labeling_messages, **ids).rows(**ids):
        message = loaded(Message, row)
        message.reported = bool(row["reported"])
        if row["position"] is None:
            conversation.append(message)
        else:
            message.position = row["position"]
            candidates.append(message)
    by_id = {m.pk: m for m in candidates}
    order = shown_order(
        task_id=task.pk,
        labeler_id=assignment.labeler_id,
        candidate_ids=[m.pk for m in sorted(candidates, key=lambda m: m.position)],
    )
    sides = "AB" if task.kind == TaskKind.COMPARE else ""
    shown = [
        ShownCandidate(
            number=i + 1,
            side=sides[i] if sides else "",
            message=by_id[message_id],
            reported=by_id[message_id].reported,
        )
        for i, message_id in enumerate(order)
    ]
    return LabelingTask(
        assignment=assignment, task=task, project=task.project, conversation=conversation, candidates=shown
    )


def _project_by_slug(*, slug: str) -> QuerySet:
    return Project.objects.filter(slug=slug, is_active=True).values(*fields_of(Project))


def active_project(*, slug: str) -> Project | None:
    """The active project with this slug (the labeling pages' and API's, on every request)."""
    rows = compiled(("active_project",), _project_by_slug, slug=slug).rows(slug=slug)
    return loaded(Project, rows[0]) if rows else None


# An assignment with its task, the task's project and anchor, as `values()` names them (see `_with_task`).
_ASSIGNMENT_WITH_TASK = (
    *fields_of(Assignment),
    *fields_of(Task, "task__"),
    *fields_of(Project, "task__project__"),
    *fields_of(Message, "task__anchor__"),
)


def _with_task(row: Mapping) -> Assignment:
    assignment, task = loaded(Assignment, row), loaded(Task, row, "task__")
    task.project, task.anchor = loaded(Project, row, "task__project__"), loaded(Message, row, "task__anchor__")
    assignment.task = task
    return assignment


def _live_lease(*, labeler_id: int, task_id: int, now: datetime, slug: str) -> QuerySet:
    return Assignment.objects.filter(
        labeler_id=labeler_id,
        task_id=task_id,
        status=AssignmentStatus.ACTIVE,
        expires_at__gt=now,
        task__project__slug=slug,
        task__project__is_active=True,
    ).values(*_ASSIGNMENT_WITH_TASK)[:1]


def live_assignment(*, labeler, task_id: int, project_slug: str, now: datetime | None = None) -> Assignment | None:
    """The labeler's live lease on this task of the active project `project_slug`, with its task, and the task with
    its project and anchor: one query."""
    values = {"labeler_id": labeler.pk, "task_id": task_id, "now": now or timezone.now(), "slug": project_slug}
    rows = compiled(("live_lease",), _live_lease, **values).rows(**values)
    return _with_task(rows[0]) if rows else None


class _IdList(Field):
    """A list of ids read as one column: an array (PostgreSQL) or a JSON list of [position, id] pairs (SQLite,
    whose aggregates do not promise an order), in position order either way."""

    def from_db_value(self, value, expression, connection) -> list[int]:
        if isinstance(value, str):
            return [message_id for _position, message_id in sorted(json.loads(value))]
        return list(value or [])


class CandidateIds(Subquery):
    """The message ids of a task's candidates (`task`: the task's id, an OuterRef), in position order, as a list."""

    def __init__(self, task) -> None:
        candidates = TaskCandidate.objects.filter(task_id=task).order_by().values("position", "message_id")
        super().__init__(candidates, output_field=_IdList())

    def as_sql(self, compiler, connection, template=None, **extra_context):
        if connection.vendor == "postgresql":
            template = "ARRAY(SELECT message_id FROM (%(subquery)s) AS c ORDER BY position)"
        else:
            template = "(SELECT json_group_array(json_array(position, message_id)) FROM (%(subquery)s) AS c)"
        return super().as_sql(compiler, connection, template=template, **extra_context)


# The judgement table of each task kind.
JUDGEMENT_MODELS = {
    TaskKind.DEMONSTRATE: Demonstration,
    TaskKind.RANK: Ranking,
    TaskKind.COMPARE: Comparison,
    TaskKind.RATE: Rating,
}


def _submission_target(*, labeler_id: int, client_token: str, by_task: bool, anyone: bool, **where) -> QuerySet:
    found = Assignment.objects.annotate(
        candidate_ids=CandidateIds(OuterRef("task_id")),
        earlier_id=Case(
            *[
                When(
                    task__kind=kind,
                    then=Subquery(
                        model.objects.filter(labeler_id=labeler_id, client_token=client_token).values("pk")[:1]
                    ),
                )
                for kind, model in JUDGEMENT_MODELS.items()
            ],
            output_field=BigIntegerField(),
        ),
    )
    if by_task:
        found = found.filter(task_id=where["task_id"], task__project__slug=where["slug"], task__project__is_active=True)
    else:
        found = found.filter(pk=where["assignment_id"])
    if not anyone:
        found = found.filter(labeler_id=labeler_id)
    return found.order_by().values(*_ASSIGNMENT_WITH_TASK, "candidate_ids", "earlier_id")[:1]


def submission_target(
    *,
    labeler,
    client_token: str = "",
    assignment_id: int | None = None,
    task_id: int | None = None,
    project_slug: str | None = None,
    anyone: bool = False,
) -> Assignment | None:
    """What a submission needs, in one query: the labeler's assignment (by id, or by task in the active project
    `project_slug`; with `anyone`, the assignment with this id whoever holds it) whatever its state, with its task,
    the task's project and anchor, `candidate_ids` (in position order) and `earlier_id`: the labeler's judgement
    already stored under `client_token`, if any. None when there is no such assignment."""
    by_task = assignment_id is None
    where = {"task_id": task_id, "slug": project_slug} if by_task else {"assignment_id": assignment_id}
    values = {"labeler_id": labeler.pk, "client_token": client_token or "-", **where}
    query = compiled(
        ("submission_target", by_task, anyone),
        lambda **v: _submission_target(by_task=by_task, anyone=anyone, **v),
        **values,
    )
    rows = query.rows(**values)
    if not rows:
        return None
    assignment = _with_task(rows[0])
    assignment.candidate_ids = rows[0]["candidate_ids"]
    assignment.earlier_id = rows[0]["earlier_id"] if client_token else None
    assignment.earlier_token = client_token
    return assignment


@dataclass(frozen=True)
class LabelerProgress:
    done_today: int
    done_total: int
    open_in_queue: int
    median_seconds_today: float | None


def _progress_counts(*, labeler_id: int, project_id: int, start: datetime, kinds: tuple[str, ...]) -> QuerySet:
    labeler, project = get_user_model()(pk=labeler_id), Project(pk=project_id)
    submitted = Assignment.objects.filter(
        labeler_id=labeler_id, task__project_id=project_id, status=AssignmentStatus.SUBMITTED
    ).values("pk")
    columns = {
        "done_total": Counted(submitted),
        "done_today": Counted(submitted.filter(finished_at__gte=start)),
        **{f"open_{kind}": _open_count(labeler, project, kind, None) for kind in kinds},
    }
    return Project.objects.filter(pk=project_id).annotate(**columns).values(*columns)


def _times_today(*, labeler_id: int, project_id: int, start: datetime) -> QuerySet:
    today = {"labeler_id": labeler_id, "task__project_id": project_id, "created_at__gte": start}
    per_kind = [model.objects.filter(**today).order_by().values("time_spent_ms") for model in JUDGEMENT_MODELS.values()]
    return per_kind[0].union(*per_kind[1:], all=True)


def labeler_progress(*, labeler, project: Project, now: datetime | None = None) -> LabelerProgress:
    """What a labeler sees of their own work in a project: today, all time, what is left, time per task. Two
    queries: the counts (every kind's queue among them), and today's times."""
    now = now or timezone.now()
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    kinds = tuple(project.served_kinds)
    values = {"labeler_id": labeler.pk, "project_id": project.pk, "start": start}
    counts = compiled(("progress_counts", kinds), lambda **v: _progress_counts(kinds=kinds, **v), **values).rows(
        **values
    )
    counts = counts[0] if counts else {}
    times = sorted(row["time_spent_ms"] for row in compiled(("times_today",), _times_today, **values).rows(**values))
    median = None
    if times:
        middle = len(times) // 2
        median = (times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2) / 1000
    return LabelerProgress(
        done_today=counts.get("done_today") or 0,
        done_total=counts.get("done_total") or 0,
        open_in_queue=sum(counts.get(f"open_{kind}") or 0 for kind in kinds),
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
