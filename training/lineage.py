"""Lineage: from any judgement, dataset snapshot, run, model version, task or message, what it came from
(upstream) and what came from it (downstream): which data trained which model, which model wrote which reply.

Reads only. Every list is bounded (`LIMIT` links plus a total count), and each group is one or two queries, so a
page stays fast however large the project. Snapshot membership lives in JSON lists (`annotation_ids`), so the
project's snapshots are filtered in Python (a project has few of them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils.text import Truncator
from django.utils.timezone import localtime

from annotate.models import (
    Comparison,
    Demonstration,
    ImportSource,
    Message,
    Project,
    Ranking,
    Rating,
    Task,
    TaskCandidate,
)
from annotate.selectors import conversation_path
from training.models import CandidateScore, DatasetSnapshot, ModelVersion, RetrainCycle, TrainingRun

LIMIT = 20  # links shown per group; the group's total says how many there are

ANNOTATION_MODELS = {
    "comparison": Comparison,
    "ranking": Ranking,
    "demonstration": Demonstration,
    "rating": Rating,
}
# The keys of DatasetSnapshot.annotation_ids (see annotate.exports.matching_annotation_ids): the four judgement
# kinds, plus prompt snapshots (anchor message ids) and conversation-tree snapshots (message ids).
SNAPSHOT_KEYS = {
    "comparison": "comparisons",
    "ranking": "rankings",
    "demonstration": "demonstrations",
    "rating": "ratings",
}
MESSAGE_SNAPSHOT_KEYS = ("prompts", "messages")
TASK_ANNOTATION_KIND = {"demonstrate": "demonstration", "rank": "ranking", "compare": "comparison", "rate": "rating"}

# The kinds with a lineage page. Nodes of other kinds (a user, an import file, a project, a cycle) are shown, but
# link to their own page if they have one, not to a lineage page.
KINDS = (*ANNOTATION_MODELS, "snapshot", "run", "version", "task", "message", "cycle")

# A snapshot is frozen after the judgements it holds were written, so one created before a judgement cannot hold
# it. The margin only absorbs clock differences between the machines that wrote the two rows.
CLOCK_MARGIN = timedelta(hours=1)


class LineageNotFound(LookupError):
    """No such kind, or no object of that kind with that id."""


@dataclass(frozen=True)
class Node:
    kind: str
    id: int
    label: str
    detail: str = ""
    url: str = ""  # its lineage page; "" for kinds without one (user, import, project, cycle)
    page: str = ""  # its own page where it has one (the run console, the model registry, the project)


@dataclass(frozen=True)
class Group:
    relation: str
    nodes: tuple[Node, ...]
    total: int  # how many there are; only the first LIMIT are in `nodes` (none for a count-only group)
    note: str = ""

    @property
    def more(self) -> int:
        return max(self.total - len(self.nodes), 0)


@dataclass(frozen=True)
class Lineage:
    node: Node
    project: Node
    upstream: tuple[Group, ...] = field(default_factory=tuple)
    downstream: tuple[Group, ...] = field(default_factory=tuple)


def lineage(kind: str, pk: int) -> Lineage:
    """The lineage of one object; raises LineageNotFound for an unknown kind or id."""
    if kind in ANNOTATION_MODELS:
        return _annotation_lineage(kind, pk)
    builders = {
        "snapshot": _snapshot_lineage,
        "run": _run_lineage,
        "version": _version_lineage,
        "task": _task_lineage,
        "message": _message_lineage,
        "cycle": _cycle_lineage,
    }
    if kind not in builders:
        raise LineageNotFound(f"No lineage for {kind!r}.")
    return builders[kind](pk)


# --- nodes ------------------------------------------------------------------------------------------------------


def lineage_url(kind: str, pk: int) -> str:
    return reverse("rewardlab:lineage", args=[kind, pk])


def _short(text: str, chars: int = 80) -> str:
    return Truncator(" ".join(text.split())).chars(chars)


def _join(*parts: str) -> str:
    return " · ".join(part for part in parts if part)


def project_node(project: Project) -> Node:
    return Node(
        "project",
        project.pk,
        project.name,
        detail=project.slug,
        page=reverse("annotate:project_overview", args=[project.slug]),
    )


def version_node(version: ModelVersion, detail: str = "") -> Node:
    return Node(
        "version",
        version.pk,
        str(version),
        detail=detail or _join(version.get_status_display(), _short(version.base_model, 48)),
        url=lineage_url("version", version.pk),
        page=reverse("rewardlab:model_list", args=[version.project.slug]) if _cached(version, "project") else "",
    )


def run_node(run: TrainingRun) -> Node:
    return Node(
        "run",
        run.pk,
        str(run),
        detail=_join(run.get_status_display(), f"{localtime(run.created_at):%Y-%m-%d %H:%M}"),
        url=lineage_url("run", run.pk),
        page=reverse("rewardlab:run_detail", args=[run.pk]),
    )


def snapshot_node(snapshot: DatasetSnapshot, detail: str = "") -> Node:
    rows = (snapshot.row_counts or {}).get("rows")
    return Node(
        "snapshot",
        snapshot.pk,
        snapshot.name,
        detail=_join(snapshot.content_hash[:12], f"{rows} rows" if rows is not None else "", detail),
        url=lineage_url("snapshot", snapshot.pk),
    )


def task_node(task: Task) -> Node:
    flags = _join("gold" if task.is_gold else "", "" if task.is_active else "inactive")
    anchor = _short(task.anchor.text, 60) if _cached(task, "anchor") else ""
    label = f"{task.get_kind_display()} task #{task.pk}"
    return Node("task", task.pk, label, detail=_join(anchor, flags), url=lineage_url("task", task.pk))


MESSAGE_WORDS = {"user": "Prompt", "assistant": "Reply", "system": "System message"}


def message_node(message: Message, detail: str = "") -> Node:
    word = MESSAGE_WORDS.get(message.role, "Message")
    return Node(
        "message",
        message.pk,
        f"{word} #{message.pk}",
        detail=_join(detail, _short(message.text)),
        url=lineage_url("message", message.pk),
    )


def user_node(user) -> Node:
    return Node("user", user.pk, user.get_username(), detail="human")


def import_node(source: ImportSource) -> Node:
    return Node("import", source.pk, source.name, detail=_join("imported file", source.sha256[:12]))


def author_node(message: Message) -> Node:
    """Who wrote a message: a model version, an import file or a person (select_related the three authors)."""
    if message.author_model_id:
        return version_node(message.author_model)
    if message.author_import_id:
        return import_node(message.author_import)
    return user_node(message.author_user)


def annotation_node(kind: str, annotation) -> Node:
    if kind == "comparison":
        what = f"choice {annotation.choice:+d}" if annotation.choice else "about the same"
    elif kind == "rating":
        what = f"score {annotation.score}"
    elif kind == "ranking":
        what = f"{len(annotation.tiers)} tiers"
    else:
        what = ""
    if annotation.labeler_id:
        who = f"by {annotation.labeler.get_username()}"
    else:
        who = f"imported from {annotation.import_source.name}"
    return Node(
        kind,
        annotation.pk,
        f"{kind.title()} #{annotation.pk}",
        detail=_join(what, who, "discarded" if annotation.discarded_at else ""),
        url=lineage_url(kind, annotation.pk),
    )


def _cached(obj, name: str) -> bool:
    """Whether a relation was loaded with the object (so reading it costs no query)."""
    return obj._meta.get_field(name).is_cached(obj)


# --- groups -----------------------------------------------------------------------------------------------------

AUTHORS = ("author_model__project", "author_import", "author_user")
SNAPSHOT_BIG_FIELDS = ("annotation_ids", "filter")


def _take(queryset: QuerySet) -> tuple[list, int]:
    """The first LIMIT rows and the total (counted only when there are more)."""
    limit = LIMIT
    rows = list(queryset[: limit + 1])
    if len(rows) <= limit:
        return rows, len(rows)
    return rows[:limit], queryset.count()


def _group(relation: str, nodes: Iterable[Node], total: int | None = None, note: str = "") -> Group | None:
    nodes = tuple(nodes)
    total = len(nodes) if total is None else total
    return Group(relation, nodes, total, note) if total or note else None


def _groups(*groups: Group | None) -> tuple[Group, ...]:
    return tuple(group for group in groups if group is not None)


def _distinct(nodes: Iterable[Node]) -> list[Node]:
    seen: dict[tuple[str, int], Node] = {}
    for node in nodes:
        seen.setdefault((node.kind, node.id), node)
    return list(seen.values())


def _messages(ids: Iterable[int]) -> list[Message]:
    ids = list(ids)
    by_id = Message.objects.select_related(*AUTHORS).in_bulk(ids)
    return [by_id[i] for i in ids if i in by_id]


def _candidate_groups(
    messages: list[Message], relation: str, places: dict[int, str] | None = None
) -> tuple[Group | None, Group | None]:
    """The replies (with their place in the judgement, e.g. "A" or "rank 2"), and who wrote them (each distinct
    author once)."""
    places = places or {}
    shown = [
        message_node(m, detail=_join(places.get(m.pk, ""), f"by {author_node(m).label}")) for m in messages[:LIMIT]
    ]
    replies = _group(relation, shown, len(messages))
    authors = _group("written by", _distinct(author_node(m) for m in messages))
    return replies, authors


def snapshots_containing(project_id: int, wanted: dict[str, set[int]], since=None) -> list[DatasetSnapshot]:
    """The project's snapshots holding any of `wanted` ({annotation_ids key: ids}), newest first. Each one carries
    `matched`, the keys it matched on. `since` (when the newest wanted row was created) skips older snapshots."""
    wanted = {key: ids for key, ids in wanted.items() if ids}
    if not wanted:
        return []
    has_key = Q()
    for key in wanted:
        has_key |= Q(annotation_ids__has_key=key)
    snapshots = DatasetSnapshot.objects.filter(has_key, project_id=project_id).order_by("-created_at", "-id")
    if since is not None:
        snapshots = snapshots.filter(created_at__gte=since - CLOCK_MARGIN)
    found = []
    for snapshot in snapshots.defer("filter").iterator(chunk_size=20):
        matched = [key for key, ids in wanted.items() if not ids.isdisjoint(snapshot.annotation_ids.get(key) or ())]
        if matched:
            snapshot.annotation_ids = None  # not kept: it can be large
            snapshot.matched = matched
            found.append(snapshot)
    return found


def _snapshot_chain(snapshots: list[DatasetSnapshot]) -> tuple[Group, ...]:
    """Snapshots, the runs that trained on them and the versions those runs produced."""
    if not snapshots:
        return ()
    ids = [s.pk for s in snapshots]
    runs, run_total = _take(TrainingRun.objects.filter(snapshot_id__in=ids).order_by("-created_at", "-id"))
    versions, version_total = _take(
        ModelVersion.objects.filter(training_run__snapshot_id__in=ids)
        .select_related("project")
        .order_by("-created_at", "-id")
    )
    return _groups(
        _group("in snapshot", [snapshot_node(s, detail=_join(*s.matched)) for s in snapshots[:LIMIT]], len(snapshots)),
        _group("used by run", [run_node(r) for r in runs], run_total),
        _group("produced version", [version_node(v) for v in versions], version_total),
    )


def _annotations_of_tasks(kind: str, tasks: QuerySet | list[int], relation: str) -> tuple[Group | None, set[int]]:
    """The judgements of these tasks (discarded ones marked), and the ids of all of them."""
    model = ANNOTATION_MODELS[kind]
    annotations = model.objects.filter(task_id__in=tasks)
    rows, total = _take(annotations.select_related("labeler", "import_source").order_by("id"))
    all_ids = set(annotations.values_list("id", flat=True))
    return _group(relation, [annotation_node(kind, a) for a in rows], total), all_ids


# --- one builder per kind ---------------------------------------------------------------------------------------


def _annotation_lineage(kind: str, pk: int) -> Lineage:
    model = ANNOTATION_MODELS[kind]
    related = ["task__project", "task__anchor", "labeler", "import_source"]
    if kind == "demonstration":
        related.append("message")
    annotation = model.objects.select_related(*related).filter(pk=pk).first()
    if annotation is None:
        raise LineageNotFound(f"No {kind} #{pk}.")
    task = annotation.task
    places: dict[int, str] = {}
    if kind == "comparison":
        places = {annotation.candidate_a_id: "A", annotation.candidate_b_id: "B"}
    elif kind == "rating":
        places = {annotation.candidate_id: "rated"}
    elif kind == "ranking":
        places = {message_id: f"rank {n}" for n, tier in enumerate(annotation.tiers, 1) for message_id in tier}
    candidates, authors = _candidate_groups(_messages(places), "judged", places)
    who = (
        _group("by labeler", [user_node(annotation.labeler)])
        if annotation.labeler_id
        else _group("imported from", [import_node(annotation.import_source)])
    )
    wrote = (
        _group("wrote", [message_node(annotation.message)]) if kind == "demonstration" else None
    )  # the reply a demonstration is
    snapshots = snapshots_containing(task.project_id, {SNAPSHOT_KEYS[kind]: {pk}}, since=annotation.created_at)
    return Lineage(
        node=annotation_node(kind, annotation),
        project=project_node(task.project),
        upstream=_groups(_group("on task", [task_node(task)]), who, candidates, authors),
        downstream=_groups(wrote) + _snapshot_chain(snapshots),
    )


def _task_lineage(pk: int) -> Lineage:
    task = Task.objects.select_related("project", "anchor", "origin_run", "origin_import").filter(pk=pk).first()
    if task is None:
        raise LineageNotFound(f"No task #{pk}.")
    candidate_ids = TaskCandidate.objects.filter(task=task).order_by("position").values_list("message_id", flat=True)
    candidates, authors = _candidate_groups(_messages(candidate_ids), "candidate")
    kind = TASK_ANNOTATION_KIND[task.kind]
    judged, annotation_ids = _annotations_of_tasks(kind, [task.pk], "judged in")
    snapshots = snapshots_containing(
        task.project_id, {SNAPSHOT_KEYS[kind]: annotation_ids, "prompts": {task.anchor_id}}, since=task.created_at
    )
    return Lineage(
        node=task_node(task),
        project=project_node(task.project),
        upstream=_groups(
            _group("prompt", [message_node(task.anchor)]),
            candidates,
            authors,
            _group("created by run", [run_node(task.origin_run)] if task.origin_run_id else []),
            _group("imported from", [import_node(task.origin_import)] if task.origin_import_id else []),
        ),
        downstream=_groups(judged) + _snapshot_chain(snapshots),
    )


def _snapshot_lineage(pk: int) -> Lineage:
    snapshot = DatasetSnapshot.objects.select_related("project", "created_by").filter(pk=pk).first()
    if snapshot is None:
        raise LineageNotFound(f"No snapshot #{pk}.")
    contents: list[Group | None] = []
    ids_by_key = snapshot.annotation_ids or {}
    for kind, key in SNAPSHOT_KEYS.items():
        ids = list(ids_by_key.get(key) or [])
        if ids:
            rows = ANNOTATION_MODELS[kind].objects.filter(pk__in=ids[:LIMIT]).select_related("labeler", "import_source")
            nodes = [annotation_node(kind, a) for a in sorted(rows, key=lambda a: a.pk)]
            contents.append(_group(f"holds {key}", nodes, len(ids)))
    for key in MESSAGE_SNAPSHOT_KEYS:
        ids = list(ids_by_key.get(key) or [])
        if ids:
            contents.append(_group(f"holds {key}", [message_node(m) for m in _messages(ids[:LIMIT])], len(ids)))
    runs, run_total = _take(TrainingRun.objects.filter(snapshot=snapshot).order_by("-created_at", "-id"))
    versions, version_total = _take(
        ModelVersion.objects.filter(training_run__snapshot=snapshot)
        .select_related("project")
        .order_by("-created_at", "-id")
    )
    frozen_by = snapshot.created_by.get_username() if snapshot.created_by_id else "the schedule"
    return Lineage(
        node=snapshot_node(snapshot, detail=f"frozen by {frozen_by}"),
        project=project_node(snapshot.project),
        upstream=_groups(*contents, _group("of project", [project_node(snapshot.project)])),
        downstream=_groups(
            _group("used by run", [run_node(r) for r in runs], run_total),
            _group("produced version", [version_node(v) for v in versions], version_total),
        ),
    )


RUN_LINKS = ("base_version", "reward_version", "opponent_version", "output_version")


def _run_lineage(pk: int) -> Lineage:
    related = ["project", "snapshot", *(f"{name}__project" for name in RUN_LINKS)]
    run = (
        TrainingRun.objects.select_related(*related)
        .defer(*(f"snapshot__{name}" for name in SNAPSHOT_BIG_FIELDS))
        .filter(pk=pk)
        .first()
    )
    if run is None:
        raise LineageNotFound(f"No run #{pk}.")
    tasks = Task.objects.filter(origin_run=run)
    shown, task_total = _take(tasks.select_related("anchor").order_by("id"))
    # The replies in the tasks it created, by the version that wrote them (a sampling run: the policy, and the
    # earlier policy it meets head-to-head).
    by_author = (
        Message.objects.filter(candidate_in_tasks__origin_run=run, author_model__isnull=False)
        .values("author_model")
        .annotate(n=Count("id", distinct=True))
        .order_by("-n")
    )
    counts = {row["author_model"]: row["n"] for row in by_author[:LIMIT]}
    writers = ModelVersion.objects.select_related("project").in_bulk(list(counts))
    sampled = [version_node(writers[v], detail=_replies(n)) for v, n in counts.items() if v in writers]
    return Lineage(
        node=run_node(run),
        project=project_node(run.project),
        upstream=_groups(
            _group("trained on", [snapshot_node(run.snapshot)] if run.snapshot_id else []),
            _group("started from", [version_node(run.base_version)] if run.base_version_id else []),
            _group("scored by", [version_node(run.reward_version)] if run.reward_version_id else []),
            _group("met head-to-head", [version_node(run.opponent_version)] if run.opponent_version_id else []),
            *_cycle_groups(run),
        ),
        downstream=_groups(
            _group("produced version", [version_node(run.output_version)] if run.output_version_id else []),
            _group("created task", [task_node(t) for t in shown], task_total),
            _group("replies in its tasks", sampled, note=f"{_replies(sum(counts.values()))} written by models")
            if counts
            else None,
        ),
    )


def _replies(n: int) -> str:
    return f"{n} repl{'y' if n == 1 else 'ies'}"


def cycle_node(cycle: RetrainCycle) -> Node:
    stages = " → ".join(cycle.stages or [])
    page = reverse("annotate:project_overview", args=[cycle.project.slug]) + f"#cycle-{cycle.pk}"
    return Node(
        "cycle", cycle.pk, str(cycle), detail=_join(cycle.get_status_display(), stages),
        url=lineage_url("cycle", cycle.pk), page=page,
    )  # fmt: skip


def _cycle_groups(run: TrainingRun) -> tuple[Group, ...]:
    """The retraining cycle that started the run."""
    if not getattr(run, "cycle_id", None):
        return ()
    return _groups(_group("part of cycle", [cycle_node(run.cycle)]))


def _cycle_lineage(pk: int) -> Lineage:
    """A retraining cycle: what started it (the project's new data, or an admin), and the runs it started with the
    versions they registered."""
    cycle = RetrainCycle.objects.select_related("project", "started_by").filter(pk=pk).first()
    if cycle is None:
        raise LineageNotFound(f"No cycle #{pk}.")
    runs = list(cycle.runs.select_related("project", "output_version__project").order_by("pk"))
    versions = [version_node(run.output_version) for run in runs if run.output_version_id]
    started = [user_node(cycle.started_by)] if cycle.started_by_id else []
    return Lineage(
        node=cycle_node(cycle),
        project=project_node(cycle.project),
        upstream=_groups(_group("started by", started, note=cycle.reason)),
        downstream=_groups(_group("ran", [run_node(run) for run in runs]), _group("registered", versions)),
    )


def _version_lineage(pk: int) -> Lineage:
    version = ModelVersion.objects.select_related("project", "parent__project").filter(pk=pk).first()
    if version is None:
        raise LineageNotFound(f"No model version #{pk}.")
    run = (
        TrainingRun.objects.select_related("snapshot", "reward_version__project")
        .defer(*(f"snapshot__{name}" for name in SNAPSHOT_BIG_FIELDS))
        .filter(output_version=version)
        .first()
    )
    upstream = [
        _group("trained by run", [run_node(run)] if run else []),
        _group("started from", [version_node(version.parent)] if version.parent_id else []),
    ]
    if run is not None:
        upstream += [
            _group("trained on", [snapshot_node(run.snapshot)] if run.snapshot_id else []),
            _group("scored by", [version_node(run.reward_version)] if run.reward_version_id else []),
        ]
    children, child_total = _take(version.children.select_related("project").order_by("-created_at", "-id"))

    def runs(relation: str, queryset: QuerySet) -> Group | None:
        rows, total = _take(queryset.order_by("-created_at", "-id"))
        return _group(relation, [run_node(r) for r in rows], total)

    wrote, wrote_total = _take(Message.objects.filter(author_model=version).order_by("id"))
    showing = Task.objects.filter(task_candidates__message__author_model=version).distinct()
    tasks, task_total = _take(showing.select_related("anchor").order_by("id"))
    scored = CandidateScore.objects.filter(model_version=version).count()
    return Lineage(
        node=version_node(version),
        project=project_node(version.project),
        upstream=_groups(*upstream),
        downstream=_groups(
            _group("child version", [version_node(v) for v in children], child_total),
            runs("started run", version.runs_from.all()),
            runs("scored run", version.runs_scored_by.all()),
            runs("opponent in run", version.runs_opposed.all()),
            _group("wrote", [message_node(m) for m in wrote], wrote_total),
            _group("tasks showing its replies", [task_node(t) for t in tasks], task_total),
            _group("scored candidates", [], scored, note=f"{scored} cached reward scores") if scored else None,
        ),
    )


def _message_lineage(pk: int) -> Lineage:
    message = Message.objects.select_related("project", *AUTHORS).filter(pk=pk).first()
    if message is None:
        raise LineageNotFound(f"No message #{pk}.")
    conversation = _conversation(message)
    demonstration = (
        Demonstration.objects.select_related("labeler", "import_source").filter(message=message).first()
        if message.author_user_id
        else None
    )
    children, child_total = _take(message.children.select_related(*AUTHORS).order_by("id"))
    candidate_in = Task.objects.filter(task_candidates__message=message)
    tasks, task_total = _take(candidate_in.select_related("anchor").order_by("id"))
    anchored, anchored_total = _take(Task.objects.filter(anchor=message).order_by("id"))

    judged_nodes: list[Node] = []
    judged_total = 0
    judgements = {
        "comparison": Comparison.objects.filter(Q(candidate_a=message) | Q(candidate_b=message)),
        "ranking": Ranking.objects.filter(task__in=candidate_in.filter(kind="rank")),
        "rating": Rating.objects.filter(candidate=message),
    }
    for kind, queryset in judgements.items():
        rows, total = _take(queryset.select_related("labeler", "import_source").order_by("id"))
        judged_nodes += [annotation_node(kind, a) for a in rows]
        judged_total += total

    scores = CandidateScore.objects.filter(message=message).select_related("model_version__project")
    score_rows, score_total = _take(scores.order_by("-created_at"))
    wanted = {key: {message.pk} for key in MESSAGE_SNAPSHOT_KEYS}
    if demonstration is not None:
        wanted["demonstrations"] = {demonstration.pk}
    snapshots = snapshots_containing(message.project_id, wanted, since=message.created_at)
    return Lineage(
        node=message_node(message, detail=message.get_role_display()),
        project=project_node(message.project),
        upstream=_groups(
            _group("in reply to", [message_node(m) for m in reversed(conversation[-LIMIT:])], len(conversation)),
            _group("written by", [author_node(message)]),
            _group("written during run", [run_node(r) for r in _sampling_run(message)]),
            _group("written as", [annotation_node("demonstration", demonstration)] if demonstration else []),
        ),
        downstream=_groups(
            _group("replies", [message_node(m, detail=f"by {author_node(m).label}") for m in children], child_total),
            _group("prompt of task", [task_node(t) for t in anchored], anchored_total),
            _group("candidate in task", [task_node(t) for t in tasks], task_total),
            _group("judged in", judged_nodes[:LIMIT], judged_total),
            _group(
                "scored by",
                [version_node(s.model_version, detail=f"score {s.score:.3f}") for s in score_rows],
                score_total,
            ),
            *_snapshot_chain(snapshots),
        ),
    )


def _sampling_run(message: Message) -> list[TrainingRun]:
    """The run that wrote a model's reply (a sampling run records itself in the message's metadata)."""
    run_id = (message.metadata or {}).get("run") if message.author_model_id else None
    if not isinstance(run_id, int) or isinstance(run_id, bool):
        return []
    return list(TrainingRun.objects.filter(pk=run_id, project_id=message.project_id))


def _conversation(message: Message) -> list[Message]:
    """The messages before this one, root first (one recursive query)."""
    return [m for m in conversation_path(message=message) if m.pk != message.pk]
