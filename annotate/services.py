"""Every write on the human side: one keyword-only function per action, atomic and validated."""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, Exists, F, FilteredRelation, IntegerField, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.text import slugify

from annotate import bulk, selectors
from annotate.formats import Limits, PromptRecord, parse_prompts_jsonl
from annotate.models import (
    COMPARISON_SCALE,
    PLACE_HOLDING_STATUSES,
    Annotation,
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
    SkipReason,
    Task,
    TaskCandidate,
    TaskKind,
)
from annotate.roles import RoleName
from annotate.selectors import candidate_order_for, submission_target

User = get_user_model()


# --- users and roles ----------------------------------------------------------------------------------------


@transaction.atomic
def user_set_roles(*, user, roles: Iterable[RoleName | str]) -> None:
    """Give `user` exactly these roles. Admins are staff, so they can use the Django admin site."""
    wanted = {RoleName(role) for role in roles}
    role_groups = Group.objects.filter(name__in=[role.value for role in RoleName])
    user.groups.remove(*[g for g in role_groups if g.name not in wanted])
    user.groups.add(*[g for g in role_groups if g.name in wanted])
    is_staff = RoleName.ADMIN in wanted or user.is_superuser
    if user.is_staff != is_staff:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])


@transaction.atomic
def user_create_with_role(
    *, username: str, password: str | None, role: RoleName | str, email: str = "", update: bool = False
):
    """Create a user with one role (or, with `update`, reset an existing user's password and role)."""
    user = User.objects.filter(username=username).first()
    if user is not None and not update:
        raise ValueError(f"A user named {username!r} already exists.")
    if user is None:
        user = User(username=username, email=email)
    elif email:
        user.email = email
    user.full_clean(exclude=["password"])
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    user_set_roles(user=user, roles=[role])
    return user


# --- projects -----------------------------------------------------------------------------------------------


@transaction.atomic
def project_create(*, name: str, slug: str = "", **settings_fields) -> Project:
    project = Project(name=name, slug=slug or slugify(name)[:80], **settings_fields)
    project.full_clean()
    project.save()
    return project


@transaction.atomic
def tasks_set_priority(*, priorities: Mapping[int, float]) -> int:
    """Set the priority of tasks by id (higher is served first; ties by age). The training side raises it where
    the reward model is least sure. Returns how many tasks were updated; unknown ids are ignored."""
    for task_id, priority in priorities.items():
        if isinstance(priority, bool) or not isinstance(priority, int | float) or not math.isfinite(priority):
            raise ValueError(f"task {task_id}: the priority must be a finite number, not {priority!r}")
    tasks = list(Task.objects.filter(pk__in=list(priorities)).only("id", "priority"))
    for task in tasks:
        task.priority = float(priorities[task.pk])
    Task.objects.bulk_update(tasks, ["priority"], batch_size=1000)
    return len(tasks)


@transaction.atomic
def project_overlap_apply(*, project: Project) -> int:
    """Give every task of the project the overlap its kind now has in the project's settings. Lowering it
    closes tasks that already have enough labelers; raising it reopens done tasks for more. Returns how many
    tasks changed."""
    changed = 0
    for kind in TaskKind.values:
        changed += (
            Task.objects.filter(project=project, kind=kind)
            .exclude(required_labelers=project.overlap_for(kind))
            .update(required_labelers=project.overlap_for(kind))
        )
    return changed


# --- prompt import ------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    source: ImportSource
    rows: int
    prompts_created: int
    prompts_existing: int
    candidates_created: int
    tasks_created: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        tasks = ", ".join(f"{n} {kind}" for kind, n in sorted(self.tasks_created.items())) or "none"
        return (
            f"{self.rows} rows: {self.prompts_created} new prompts ({self.prompts_existing} already present), "
            f"{self.candidates_created} new candidates, tasks created: {tasks}"
        )


def path_hash(parent_hash: str, role: str, text: str) -> str:
    """Content address of a conversation path: the parent path's hash, then this turn's role and text."""
    return hashlib.sha256(f"{parent_hash}\x1f{role}\x1f{text}".encode()).hexdigest()


def candidates_key(message_ids: Sequence[int]) -> str:
    """Identity of a task's candidate set (order-free, so the same set is never asked twice)."""
    return hashlib.sha256(",".join(str(i) for i in sorted(message_ids)).encode()).hexdigest()


def import_limits() -> Limits:
    return Limits(
        max_text_chars=settings.REWARDLAB_MAX_TEXT_CHARS,
        max_rows=settings.REWARDLAB_MAX_IMPORT_ROWS,
        max_completions=settings.REWARDLAB_MAX_COMPLETIONS,
        max_bytes=settings.REWARDLAB_MAX_IMPORT_BYTES,
    )


@dataclass
class MessageNode:
    hash: str
    parent_hash: str
    role: str
    text: str
    depth: int
    metadata: dict


def prompts_import(*, project: Project, data: bytes, filename: str, imported_by=None) -> ImportResult:
    """Import a JSONL file of prompts (see `annotate.formats`) into `project`, all or nothing.

    The whole file is validated first; a bad line raises `ImportFormatError` naming its line and field and
    nothing is written. Conversations already in the project (same path of roles and texts) are reused, so
    importing a file twice creates no duplicate prompts, candidates or tasks.
    """
    records = parse_prompts_jsonl(data, filename=filename, limits=import_limits())
    with transaction.atomic():
        return _import_records(project, records, data, filename, imported_by)


def _import_records(
    project: Project, records: list[PromptRecord], data: bytes, filename: str, imported_by
) -> ImportResult:
    source = ImportSource.objects.create(
        project=project,
        name=filename[:255] or "upload.jsonl",
        sha256=hashlib.sha256(data).hexdigest(),
        row_count=len(records),
        imported_by=imported_by,
    )

    # 1. Every node of every record, addressed by path hash (a prompt repeated in the file appears once).
    nodes: dict[str, MessageNode] = {}
    anchors: list[tuple[PromptRecord, str, list[str]]] = []  # record, anchor hash, candidate hashes
    for record in records:
        parent = ""
        for depth, turn in enumerate(record.conversation):
            h = path_hash(parent, turn.role, turn.text)
            nodes.setdefault(h, MessageNode(h, parent, turn.role, turn.text, depth, {}))
            parent = h
        anchor_hash = parent
        nodes[anchor_hash].metadata = {**record.metadata, "import_line": record.line}
        candidate_hashes = []
        for text in record.completions:
            h = path_hash(anchor_hash, "assistant", text)
            nodes.setdefault(h, MessageNode(h, anchor_hash, "assistant", text, len(record.conversation), {}))
            candidate_hashes.append(h)
        anchors.append((record, anchor_hash, candidate_hashes))

    # 2. Reuse what the project already has; create the rest level by level so parents have ids.
    ids, created = messages_store(project, source, nodes)

    # 3. Tasks per the project's settings, skipping any that already exist for the same candidates.
    tasks_created = _create_import_tasks(project, source, anchors, ids, created)

    anchor_hashes = {h for _, h, _ in anchors}
    candidate_hashes = {h for _, _, hashes in anchors for h in hashes}
    result = ImportResult(
        source=source,
        rows=len(records),
        prompts_created=len(anchor_hashes & created),
        prompts_existing=len(anchor_hashes - created),
        candidates_created=len(candidate_hashes & created),
        tasks_created=tasks_created,
    )
    source.stats = {
        "prompts_created": result.prompts_created,
        "prompts_existing": result.prompts_existing,
        "candidates_created": result.candidates_created,
        "tasks_created": dict(tasks_created),
    }
    source.save(update_fields=["stats"])
    return result


def messages_store(
    project: Project, source: ImportSource, nodes: dict[str, MessageNode]
) -> tuple[dict[str, int], set[str]]:
    """Ids of the conversation nodes (by path hash): the project's own where it has them, the rest written (authored
    by the import `source`) level by level, so that parents have ids; COPY on PostgreSQL. Returns (ids, hashes
    created). Only a node whose parent the project already had can exist already: under a parent this import
    creates, everything is new (most of a dataset), and is not looked up."""
    ids: dict[str, int] = {}
    created: set[str] = set()
    project_id, source_id = project.pk, source.pk
    levels: dict[int, list[MessageNode]] = {}
    for node in nodes.values():
        levels.setdefault(node.depth, []).append(node)
    for depth in sorted(levels):
        level = levels[depth]
        lookup = [n.hash for n in level if not n.parent_hash or n.parent_hash not in created]
        ids.update(existing_message_ids(project, lookup))
        new = [n for n in level if n.hash not in ids]
        rows = [
            (
                project_id,
                ids[n.parent_hash] if n.parent_hash else None,
                n.role,
                n.text,
                depth,
                n.hash,
                source_id,
                n.metadata,
            )
            for n in new
        ]
        ids.update(zip((n.hash for n in new), bulk.insert_returning_ids(Message, _MESSAGE_COLUMNS, rows), strict=True))
        created.update(n.hash for n in new)
    return ids, created


_MESSAGE_COLUMNS = ("project_id", "parent_id", "role", "text", "depth", "path_hash", "author_import_id", "metadata")


TaskKey = tuple[str, int, str]  # (kind, anchor message id, candidates_key)


def tasks_store(
    project: Project,
    source: ImportSource,
    wanted: Mapping[TaskKey, list[int]],
    *,
    open_tasks: bool = True,
    new_anchor_ids: set[int] | frozenset[int] = frozenset(),
) -> tuple[dict[TaskKey, int], list[TaskKey]]:
    """Ids of the tasks `wanted` (key -> candidate ids, in order): the project's where it has them, the rest created
    from the import `source`, open with the project's overlap, or (`open_tasks` false) inactive with one place, to
    hold imported judgements only. Anchors in `new_anchor_ids` were just created and have no task: not looked up.
    Returns (ids by key, the keys created)."""
    ids = existing_task_ids(project, sorted({key[1] for key in wanted} - set(new_anchor_ids)))
    new_keys = [key for key in wanted if key not in ids]
    task_ids = tasks_create(
        project,
        [
            NewTask(kind, anchor, wanted[(kind, anchor, key)], required_labelers=None if open_tasks else 1)
            for kind, anchor, key in new_keys
        ],
        is_active=open_tasks,
        origin_import_id=source.pk,
    )
    ids.update(zip(new_keys, task_ids, strict=True))
    return ids, new_keys


@dataclass(frozen=True)
class NewTask:
    """A task to create: its kind, anchor (the prompt's last message) and candidates in order; `priority` orders the
    queue; `required_labelers` None takes the project's overlap for the kind."""

    kind: str
    anchor_id: int
    candidate_ids: Sequence[int]
    priority: float = 0.0
    required_labelers: int | None = None


def tasks_create(
    project: Project,
    new: Sequence[NewTask],
    *,
    is_active: bool = True,
    origin_import_id: int | None = None,
    origin_run_id: int | None = None,
) -> list[int]:
    """The one writer of task rows (imports, sampling runs, live chat): the tasks and their ordered candidates, in
    bulk (COPY on PostgreSQL). At most one origin: the import or the run that made them. Returns their ids, in
    order. The caller holds the transaction."""
    if not new:
        return []
    overlap = {kind: project.overlap_for(kind) for kind in {task.kind for task in new}}
    columns = (
        "project_id", "kind", "anchor_id", "candidates_key", "required_labelers", "is_active", "priority",
        "origin_import_id", "origin_run_id",
    )  # fmt: skip
    rows = [
        (
            project.pk,
            task.kind,
            task.anchor_id,
            candidates_key(task.candidate_ids),
            task.required_labelers or overlap[task.kind],
            is_active,
            float(task.priority),
            origin_import_id,
            origin_run_id,
        )
        for task in new
    ]
    task_ids = bulk.insert_returning_ids(Task, columns, rows)
    bulk.insert(
        TaskCandidate,
        ("task_id", "message_id", "position"),
        [
            (task_id, message_id, position)
            for task_id, task in zip(task_ids, new, strict=True)
            for position, message_id in enumerate(task.candidate_ids)
        ],
    )
    return task_ids


@dataclass(frozen=True)
class NewReply:
    """A model-written reply to store under `anchor` (a Message), authored by a model version (its id)."""

    anchor: Message
    text: str
    author_model_id: int | None
    metadata: dict = field(default_factory=dict)

    @functools.cached_property
    def path_hash(self) -> str:
        return path_hash(self.anchor.path_hash, "assistant", self.text)


def replies_store(project: Project, replies: Sequence[NewReply]) -> dict[str, int]:
    """Store model-written replies as assistant messages under their anchors, skipping any the project has already
    (same path: same conversation and text; a duplicate within `replies` is written once). Returns the ids of those
    written, by path hash. The caller holds the transaction."""
    nodes: dict[str, NewReply] = {}
    for reply in replies:
        nodes.setdefault(reply.path_hash, reply)
    known = set(
        Message.objects.filter(project=project, author_user__isnull=True, path_hash__in=list(nodes)).values_list(
            "path_hash", flat=True
        )
    )
    fresh = [(h, reply) for h, reply in nodes.items() if h not in known]
    columns = ("project_id", "parent_id", "role", "text", "depth", "path_hash", "author_model_id", "metadata")
    rows = [
        (project.pk, r.anchor.pk, "assistant", r.text, r.anchor.depth + 1, h, r.author_model_id, r.metadata)
        for h, r in fresh
    ]
    return dict(zip((h for h, _ in fresh), bulk.insert_returning_ids(Message, columns, rows), strict=True))


# Lookups of many keys at once on PostgreSQL: the keys as one array, each looked up in its index by a lateral join,
# fenced (OFFSET 0) so that it stays one index lookup per key. As `= ANY(…)`, or a plain join, the planner takes
# 5,000 keys as a reason to scan the table or hash it, which inside a long import grows with each chunk (the
# statistics are those of before the import).
_TASKS_BY_ANCHOR = f"""
    SELECT t.kind, t.anchor_id, t.candidates_key, t.id
    FROM unnest(%s::bigint[]) AS wanted(anchor)
    CROSS JOIN LATERAL (
        SELECT kind, anchor_id, candidates_key, id FROM {Task._meta.db_table}
        WHERE anchor_id = wanted.anchor AND project_id = %s OFFSET 0
    ) AS t
"""  # noqa: S608 - the model's table
_MESSAGES_BY_PATH = f"""
    SELECT m.path_hash, m.id
    FROM unnest(%s::text[]) AS wanted(hash)
    CROSS JOIN LATERAL (
        SELECT path_hash, id FROM {Message._meta.db_table}
        WHERE project_id = %s AND author_user_id IS NULL AND path_hash = wanted.hash OFFSET 0
    ) AS m
"""  # noqa: S608 - the model's table


def existing_task_ids(project: Project, anchor_ids: list[int]) -> dict[TaskKey, int]:
    """The project's tasks on these anchors: {(kind, anchor id, candidates key): id}."""
    if not anchor_ids:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_TASKS_BY_ANCHOR, [anchor_ids, project.pk])
            return {(kind, anchor, key): pk for kind, anchor, key, pk in cursor.fetchall()}
    found: dict[TaskKey, int] = {}
    for start in range(0, len(anchor_ids), 1000):
        rows = Task.objects.filter(project=project, anchor_id__in=anchor_ids[start : start + 1000]).values_list(
            "kind", "anchor_id", "candidates_key", "id"
        )
        found.update({(kind, anchor, key): pk for kind, anchor, key, pk in rows})
    return found


def existing_message_ids(project: Project, hashes: list[str]) -> dict[str, int]:
    """The project's imported and generated messages with these path hashes: {hash: id}."""
    if not hashes:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_MESSAGES_BY_PATH, [hashes, project.pk])
            return dict(cursor.fetchall())
    found: dict[str, int] = {}
    for start in range(0, len(hashes), 1000):
        chunk = hashes[start : start + 1000]
        found.update(
            Message.objects.filter(project=project, author_user__isnull=True, path_hash__in=chunk).values_list(
                "path_hash", "id"
            )
        )
    return found


def split_for_ranking(candidate_ids: Sequence[int], k: int) -> list[list[int]]:
    """Split candidates into ranking groups of at most k and at least 2, as even as possible; with k = 2 and
    an odd count, the one left over is ranked against the first candidate.

    >>> split_for_ranking([1, 2, 3, 4, 5], 4)
    [[1, 2, 3], [4, 5]]
    >>> split_for_ranking([1, 2, 3], 2)
    [[1, 2], [3, 1]]
    """
    n = len(candidate_ids)
    if n < 2:
        return []
    groups = math.ceil(n / k)
    size, extra = divmod(n, groups)
    out, start = [], 0
    for g in range(groups):
        end = start + size + (1 if g < extra else 0)
        out.append(list(candidate_ids[start:end]))
        start = end
    if len(out[-1]) == 1:
        out[-1].append(candidate_ids[0])
    return out


def pairs_for_comparison(candidate_ids: Sequence[int]) -> list[list[int]]:
    """Disjoint A/B pairs covering every candidate once; an odd one out is paired with the first.

    >>> pairs_for_comparison([1, 2, 3, 4, 5])
    [[1, 2], [3, 4], [5, 1]]
    """
    ids = list(candidate_ids)
    pairs = [ids[i : i + 2] for i in range(0, len(ids) - 1, 2)]
    if len(ids) % 2 == 1 and len(ids) > 1:
        pairs.append([ids[-1], ids[0]])
    return pairs


def task_candidate_groups(kind: str, candidate_ids: Sequence[int], k: int) -> list[list[int]]:
    """Which candidate groups become tasks of `kind` for one prompt."""
    if kind == TaskKind.DEMONSTRATE:
        return [[]]
    if kind == TaskKind.RANK:
        return split_for_ranking(candidate_ids, k)
    if kind == TaskKind.COMPARE:
        return pairs_for_comparison(candidate_ids)
    if kind == TaskKind.RATE:
        return [[c] for c in candidate_ids]
    raise ValueError(f"unknown task kind {kind!r}")


def _create_import_tasks(project, source, anchors, ids, created: set[str]) -> Counter:
    """The project's task kinds for each imported prompt (see task_candidate_groups), but those it already has."""
    wanted: dict[TaskKey, list[int]] = {}
    for _record, anchor_hash, candidate_hashes in anchors:
        anchor_id = ids[anchor_hash]
        candidate_ids = [ids[h] for h in candidate_hashes]
        for kind in project.import_task_kinds:
            for group in task_candidate_groups(kind, candidate_ids, project.ranking_k):
                wanted.setdefault((kind, anchor_id, candidates_key(group)), group)
    new_anchor_ids = {ids[h] for _, h, _ in anchors if h in created}
    _ids, new_keys = tasks_store(project, source, wanted, new_anchor_ids=new_anchor_ids)
    return Counter(kind for kind, _anchor, _key in new_keys)


# --- leases -------------------------------------------------------------------------------------------------


def _release_places(task_ids: Iterable[int]) -> None:
    """Give back one place per task id (a task listed twice gets two). Tasks are updated in id order, so two
    transactions releasing places never wait on each other in a cycle."""
    by_count: dict[int, list[int]] = {}
    for task_id, n in sorted(Counter(task_ids).items()):
        by_count.setdefault(n, []).append(task_id)
    for n, ids in by_count.items():
        Task.objects.filter(pk__in=ids).update(taken=Greatest(F("taken") - n, 0))


def _end_assignments(assignments: Sequence[Assignment], status: AssignmentStatus, now: datetime) -> None:
    """End leases or submissions that hold a place: mark them, and give their places back to their tasks."""
    if not assignments:
        return
    Assignment.objects.filter(pk__in=[a.pk for a in assignments]).update(status=status, finished_at=now)
    _release_places(a.task_id for a in assignments)


def leases_release_expired(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Mark leases past their expiry as expired, so their tasks return to the pool for other labelers.

    Rows another transaction is busy with are skipped (the next sweep takes them), so concurrent sweeps and
    leases never queue up behind each other."""
    now = now or timezone.now()
    with transaction.atomic():
        stale = Assignment.objects.filter(status=AssignmentStatus.ACTIVE, expires_at__lte=now).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            stale = stale.select_for_update(skip_locked=True)
        if limit is not None:
            stale = stale[:limit]
        expired = list(stale.only("id", "task_id"))
        _end_assignments(expired, AssignmentStatus.EXPIRED, now)
    return len(expired)


# --- labeling: leases and submissions -----------------------------------------------------------------------


class LabelingError(Exception):
    """A lease or submission that cannot be accepted. `field` names the part of the submission that is wrong."""

    status = 422

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class LeaseError(LabelingError):
    """The labeler does not (or no longer) hold a live lease on the task."""

    status = 409


@dataclass(frozen=True)
class Submission:
    annotation: Annotation
    created: bool  # False when this was a repeat of an earlier submission (double click, retry)


# How many of a labeler's latest leases the kind mix is balanced over.
KIND_MIX_WINDOW = 20
RECENT_BASE = KIND_MIX_WINDOW + 1  # the lease reads how many were of each kind as one number, a digit per kind


def kind_deficits(
    *, labeler, project: Project, kinds: Sequence[str] | None = None, recent: Mapping[str, int] | None = None
) -> dict[str, float]:
    """For each task kind `labeler` may be served, how far its share of their last KIND_MIX_WINDOW leases in
    `project` falls below its share of the project's kind mix (positive: served too little). Kinds with weight
    0 are never served; `kinds` narrows further. `recent`, how many of those leases were of each kind, is read
    here unless the caller has it (the lease reads it with the rest of its state)."""
    mix = {k: float(project.kind_mix[k]) for k in project.served_kinds if not kinds or k in kinds}
    if recent is None:
        recent = Counter(
            Assignment.objects.filter(labeler=labeler, task__project=project)
            .order_by("-leased_at")
            .values_list("task__kind", flat=True)[:KIND_MIX_WINDOW]
        )
    seen, total = sum(recent.values()), sum(mix.values())
    return {kind: weight / total - (recent.get(kind, 0) / seen if seen else 0.0) for kind, weight in mix.items()}


def task_lease_next(
    *,
    labeler,
    project: Project,
    kinds: Sequence[str] | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Assignment | None:
    """Lease the next task for `labeler` in `project`, or return the live lease they already hold there. The
    assignment comes with its task, and the task with `project`.

    The kind comes from the project's kind mix: among the kinds not above their share of this labeler's last
    KIND_MIX_WINDOW leases, the best open task of any of them (highest priority, then oldest), so a priority set
    elsewhere (say, where the reward model is least sure) is honoured within the mix; then the kinds above their
    share, the least over first (`kinds` narrows them). With probability `project.gold_share` a gold task is served
    instead, if one is left that this labeler has not seen. An ordinary task is one this labeler has never leased,
    whose overlap is not yet filled by submissions plus live leases, and none of whose candidates they wrote. A live
    lease of a kind outside `kinds` is released (it returns to the pool) so that a labeler who switches to, say,
    rankings is not held to a rating.

    Concurrency: on PostgreSQL the labeler's own row is locked first, so one labeler's parallel requests cannot
    take two leases; the chosen task row is locked FOR NO KEY UPDATE SKIP LOCKED (other labelers skip it rather
    than wait; submissions that only reference the task, through a foreign key, are not held up) and its place is
    taken by a conditional increment, so the overlap is never overfilled. SQLite serialises writers instead.

    Cost: the lock, one read of everything the choice depends on (`_lease_state`), and one statement that locks
    the task, takes its place and writes the lease (two on SQLite).

    Expired leases return to the pool: the periodic sweep (every minute) ends them, and a lease that finds
    nothing open sweeps first and looks again.
    """
    now = now or timezone.now()
    rng = rng or random
    swept = False
    for _attempt in range(3):
        try:
            # No savepoint: nothing in the block is refused (a refusal would have to be rolled back to one).
            with transaction.atomic(savepoint=False):
                assignment = _lease_next(labeler=labeler, project=project, kinds=kinds, now=now, rng=rng)
        except IntegrityError:
            if connection.in_atomic_block:
                raise  # inside the caller's transaction, which cannot go on after the error
            continue  # this labeler leased the task in a parallel request that committed after our query began
        if assignment is None and not swept:
            # Nothing open: leases that expired since the last periodic sweep may be holding places.
            swept = True
            if leases_release_expired(now=now, limit=1000):
                continue
        return assignment
    return None


def _lease_commits_without_waiting_for_disk() -> None:
    """A lease is a reservation that expires anyway, so where it is its own transaction on PostgreSQL its commit does
    not wait for the write-ahead log to reach the disk (`synchronous_commit` off for this transaction only; a slow
    fsync was the lease's latency tail). A database crash within a fraction of a second after it may forget the lease:
    the task goes back to the pool and the labeler's submission for it is refused ("not leased to you"), as for an
    expired lease. Judgements, and anything inside a caller's transaction, always wait for the disk."""
    if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _lease_next(*, labeler, project: Project, kinds: Sequence[str] | None, now: datetime, rng) -> Assignment | None:
    _lease_commits_without_waiting_for_disk()
    if connection.features.has_select_for_update:
        # Before anything is read: what follows sees every lease this labeler's other requests committed.
        _lock_labeler(labeler)
    state = _lease_state(labeler=labeler, project=project, kinds=kinds, now=now)
    live = state.live
    if live is not None and (not kinds or live.task.kind in kinds):
        return live
    if live is not None:
        _end_assignments([live], AssignmentStatus.RELEASED, now)
    if not project.is_active:
        return None
    under, rest = _serving_plan(labeler=labeler, project=project, kinds=kinds, state=state)
    if project.gold_share > 0 and rng.random() < project.gold_share:
        # One draw per lease: a gold task of the first kind, in serving order, that has one left for this labeler.
        for kind in [*_by_head(labeler, project, under, state.wrote), *rest]:
            for gold in (True, False):
                assignment = _lease_from(labeler, project, kind, gold=gold, wrote=state.wrote, now=now)
                if assignment is not None:
                    return assignment
        return None
    if len(under) > 1:
        # The best of the kinds' heads: one statement, instead of reading the queues one by one.
        assignment = _take(labeler, project, _heads_pick(tuple(under), state.wrote), gold=False, now=now)
        if assignment is not None:
            return assignment
    for kind in [*under, *rest]:
        assignment = _lease_from(labeler, project, kind, gold=False, wrote=state.wrote, now=now)
        if assignment is not None:
            return assignment
    return None


def _lock_labeler(labeler) -> None:
    """Lock the labeler's own row (FOR NO KEY UPDATE: their rows that refer to it are not held up)."""
    pk, table = connection.ops.quote_name(User._meta.pk.column), connection.ops.quote_name(User._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk} FROM {table} WHERE {pk} = %s FOR NO KEY UPDATE", [labeler.pk])  # noqa: S608


# The order of a queue: highest priority first, then oldest (see selectors.task_queue).
QUEUE_ORDER = ("-priority", "created_at", "id")


@dataclass(frozen=True)
class LeaseState:
    """What a lease decides on: the labeler's live lease in the project (with its task, and the task with its
    project); whether they wrote a message there (a demonstration: then tasks with their own words as candidates
    are not theirs to judge); where there is a kind mix to balance, the kinds of their last KIND_MIX_WINDOW leases
    there."""

    live: Assignment | None
    wrote: bool
    recent: dict[str, int]


_LIVE = ("id", "task_id", "status", "leased_at", "expires_at", "finished_at", "skip_reason")
_LIVE_TASK = ("project_id", "kind", "anchor_id")


def _state_query(*, labeler_id: int, project_id: int, now: datetime, balance: bool) -> QuerySet:
    """The labeler's row, with their live leases joined to it (all projects'), the rest as subqueries."""
    columns: dict[str, object] = {
        "wrote": Exists(Message.objects.filter(author_user_id=labeler_id, project_id=project_id))
    }
    if balance:
        latest = (
            Assignment.objects.filter(labeler_id=labeler_id, task__project_id=project_id)
            .order_by("-leased_at")
            .values("task_id")[:KIND_MIX_WINDOW]
        )
        # How many of them were of each kind, in one number: base RECENT_BASE, one digit per kind.
        digits = Case(*[When(kind=kind, then=Value(RECENT_BASE**i)) for i, kind in enumerate(TaskKind.values)])
        counts = Task.objects.filter(pk__in=latest).order_by().values("project_id").annotate(n=Sum(digits)).values("n")
        columns["recent"] = Subquery(counts, output_field=IntegerField())
    live = FilteredRelation(
        "assignments", condition=Q(assignments__status=AssignmentStatus.ACTIVE, assignments__expires_at__gt=now)
    )
    return (
        User.objects.filter(pk=labeler_id)
        .annotate(live=live, **columns)
        .order_by(F("live__leased_at").asc(nulls_last=True))
        .values(*[f"live__{name}" for name in _LIVE], *[f"live__task__{name}" for name in _LIVE_TASK], *columns)
    )


def _lease_state(*, labeler, project: Project, kinds: Sequence[str] | None, now: datetime) -> LeaseState:
    """`LeaseState`, in one query."""
    balance = len([k for k in project.served_kinds if not kinds or k in kinds]) >= 2  # else nothing to balance
    values = {"labeler_id": labeler.pk, "project_id": project.pk, "now": now}
    query = selectors.compiled(("lease_state", balance), lambda **v: _state_query(balance=balance, **v), **values)
    rows = query.rows(**values)
    if not rows:
        return LeaseState(live=None, wrote=False, recent={})
    lease = next((r for r in rows if r["live__id"] is not None and r["live__task__project_id"] == project.pk), None)
    if lease is not None:
        task = selectors.loaded(
            Task, {"id": lease["live__task_id"], **{n: lease[f"live__task__{n}"] for n in _LIVE_TASK}}
        )
        task.project = project
        lease = selectors.loaded(Assignment, {"labeler_id": labeler.pk, **{n: lease[f"live__{n}"] for n in _LIVE}})
        lease.task, lease.labeler = task, labeler
    recent = {}
    if balance:
        digits = rows[0]["recent"] or 0
        recent = {kind: digits // RECENT_BASE**i % RECENT_BASE for i, kind in enumerate(TaskKind.values)}
    return LeaseState(live=lease, wrote=bool(rows[0]["wrote"]), recent=recent)


def _serving_plan(
    *, labeler, project: Project, kinds: Sequence[str] | None, state: LeaseState
) -> tuple[list[str], list[str]]:
    """The kinds to serve first, those not above their share of the mix (the best task of any of them first), then
    the rest, the least over their share first."""
    served = [k for k in project.served_kinds if not kinds or k in kinds]
    if len(served) < 2:
        return served, []  # nothing to balance
    deficits = kind_deficits(labeler=labeler, project=project, kinds=kinds, recent=state.recent)
    under = [k for k in served if deficits[k] >= -1e-9]
    rest = sorted((k for k in served if k not in under), key=lambda k: (-deficits[k], TaskKind.values.index(k)))
    return under, rest


def _by_head(labeler, project: Project, kinds: Sequence[str], wrote: bool) -> list[str]:
    """`kinds` by their best open task (highest priority, then oldest) for `labeler`; those with none left last.
    One query where the database takes LIMIT inside UNION ALL (PostgreSQL), else one per kind."""
    heads = [
        selectors.task_queue(labeler=labeler, project=project, kind=kind, wrote=wrote).values_list(
            "kind", "priority", "created_at", "id"
        )[:1]
        for kind in kinds
    ]
    if len(heads) > 1 and connection.features.supports_slicing_ordering_in_compound:
        rows = list(heads[0].union(*heads[1:], all=True))
    else:
        rows = [row for head in heads for row in head]
    best = [kind for kind, *_ in sorted(rows, key=lambda row: (-row[1], row[2], row[3]))]
    return [*best, *[kind for kind in kinds if kind not in best]]


def _lease_from(labeler, project: Project, kind: str, *, gold: bool, wrote: bool, now: datetime) -> Assignment | None:
    """Lease the best task of `kind` in `labeler`'s queue (its gold tasks, with `gold`)."""
    return _take(labeler, project, _queue_pick(kind, gold, wrote), gold=gold, now=now)


def _locked(pick: QuerySet) -> QuerySet:
    """`pick` locking the row it picks, skipping those others hold locked (where the database can)."""
    if connection.features.has_select_for_update_skip_locked:
        return pick.select_for_update(skip_locked=True, no_key=True, of=("self",))
    return pick


def _queue_pick(kind: str, gold: bool, wrote: bool):
    """(key, build) of the query that picks the first task of a queue (see `_take`)."""

    def build(*, labeler_id: int, project_id: int) -> QuerySet:
        queue = selectors.task_queue(
            labeler=User(pk=labeler_id), project=Project(pk=project_id), kind=kind, gold=gold, wrote=wrote
        )
        return _locked(queue.values("pk")[:1])

    return ("queue", kind, gold, wrote), build


def _heads_pick(kinds: tuple[str, ...], wrote: bool):
    """(key, build) of the query that picks the best of the queues' heads of `kinds` that is still open (see
    `_take`): each head read by its queue's index, the best of them locked by its key."""

    def build(*, labeler_id: int, project_id: int) -> QuerySet:
        labeler, project = User(pk=labeler_id), Project(pk=project_id)
        heads = Q()
        for kind in kinds:
            queue = selectors.task_queue(labeler=labeler, project=project, kind=kind, wrote=wrote)
            heads |= Q(pk=Subquery(queue.values("pk")[:1]))
        best = Task.objects.filter(heads, is_active=True, taken__lt=F("required_labelers")).order_by(*QUEUE_ORDER)
        return _locked(best.values("pk")[:1])

    return ("heads", kinds, wrote), build


def _take(labeler, project: Project, pick, *, gold: bool, now: datetime) -> Assignment | None:
    """Lease the task `pick` (key, build: see `_queue_pick`) picks, if no one else holds it: lock it (on PostgreSQL,
    skipping rows other transactions hold locked), take one of its places (for an ordinary task, only while its
    overlap is not filled) and write the lease. One statement on PostgreSQL; two elsewhere (SQLite, which
    serialises writers). Returns the lease with its task, and the task with `project`; None when there is none."""
    key, build = pick
    values = {"labeler_id": labeler.pk, "project_id": project.pk}
    picked = selectors.compiled(("take", *key), build, **values)
    pick_sql, pick_params = picked.sql, picked.bind(values)
    qn = connection.ops.quote_name
    task_fields = Task._meta.concrete_fields
    taken, places = qn(Task._meta.get_field("taken").column), qn(Task._meta.get_field("required_labelers").column)
    # Names are the models' own; every value is a parameter.
    update = (
        f"UPDATE {qn(Task._meta.db_table)} SET {taken} = {taken} + 1 "  # noqa: S608
        f"WHERE {qn(Task._meta.pk.column)} = ({pick_sql}){'' if gold else f' AND {taken} < {places}'} "
        f"RETURNING {', '.join(qn(f.column) for f in task_fields)}"
    )
    expires_at = now + timedelta(minutes=project.lease_minutes)
    if connection.vendor != "postgresql":
        task = _task_from(update, pick_params, task_fields)
        if task is None:
            return None
        task.project = project
        return Assignment.objects.create(task=task, labeler=labeler, leased_at=now, expires_at=expires_at)
    # The place and the lease in one statement: the lease's row is built from the task row the update returns.
    lease = Assignment(labeler=labeler, leased_at=now, expires_at=expires_at)
    fields = [f for f in Assignment._meta.concrete_fields if not f.primary_key]
    values = [f"picked.{qn(Task._meta.pk.column)}" if f.attname == "task_id" else "%s" for f in fields]
    params = [f.get_db_prep_save(getattr(lease, f.attname), connection) for f in fields if f.attname != "task_id"]
    sql = (
        f"WITH picked AS ({update}), leased AS ("  # noqa: S608
        f"INSERT INTO {qn(Assignment._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"SELECT {', '.join(values)} FROM picked RETURNING {qn(Assignment._meta.pk.column)}) "
        f"SELECT {', '.join(f'picked.{qn(f.column)}' for f in task_fields)}, leased.{qn(Assignment._meta.pk.column)} "
        "FROM picked, leased"
    )
    task = _task_from(sql, [*pick_params, *params], task_fields, extra=1)
    if task is None:
        return None
    task.project = project
    lease.pk, lease.task = task.lease_pk, task
    lease._state.adding, lease._state.db = False, connection.alias
    return lease


def _task_from(sql: str, params: Sequence, fields, *, extra: int = 0) -> Task | None:
    """The task row a statement returns (the model's `fields`, then `extra` more columns: `lease_pk`), as a Task,
    or None when it returns none."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row[: len(fields)])
    for position, converters, expression in _task_converters(fields):
        for converter in converters:
            values[position] = converter(values[position], expression, connection)
    task = Task.from_db(connection.alias, [f.attname for f in fields], values)
    if extra:
        task.lease_pk = row[len(fields)]
    return task


_TASK_CONVERTERS: dict[str, tuple] = {}


def _task_converters(fields) -> tuple:
    """What the ORM does to a Task row's values as the database returns them (per database)."""
    found = _TASK_CONVERTERS.get(connection.alias)
    if found is None:
        compiler = Task.objects.none().query.get_compiler(connection=connection)
        converters = compiler.get_converters([f.get_col(Task._meta.db_table) for f in fields])
        found = tuple((position, tuple(c), expression) for position, (c, expression) in converters.items())
        _TASK_CONVERTERS[connection.alias] = found
    return found


def _check_live(assignment: Assignment | None, *, labeler, kind: str | None, now: datetime) -> Assignment:
    """`assignment` if it is `labeler`'s live lease (on a task of `kind`, when given), else the LeaseError (or, for
    the wrong kind, the LabelingError) that says why not."""
    if assignment is None:
        raise LeaseError("This task is not leased to you.")
    if assignment.labeler_id != labeler.pk:
        raise LeaseError("This task is leased to someone else; take your own next task.")
    if kind is not None and assignment.task.kind != kind:
        raise LabelingError(f"This is a {assignment.task.get_kind_display()} task, not a {kind} task.", field="kind")
    if assignment.status == AssignmentStatus.SUBMITTED:
        raise LeaseError("You already submitted this task.")
    if assignment.status == AssignmentStatus.SKIPPED:
        raise LeaseError("You skipped this task.")
    if assignment.status != AssignmentStatus.ACTIVE or assignment.expires_at <= now:
        when = timezone.localtime(assignment.expires_at).strftime("%H:%M")
        raise LeaseError(f"Your lease on this task expired at {when} and it went back to the pool. Take the next task.")
    return assignment


def _locked_live_assignment(*, labeler, assignment_id: int, kind: str | None, now: datetime) -> Assignment:
    assignment = (
        Assignment.objects.select_for_update(no_key=True, of=("self",))
        .select_related("task__project", "task__anchor")
        .filter(pk=assignment_id)
        .first()
    )
    return _check_live(assignment, labeler=labeler, kind=kind, now=now)


def _time_spent_ms(client_ms: int | None, assignment: Assignment, now: datetime) -> int:
    """The client's measure when plausible (never more than the lease has lasted), else the server's."""
    elapsed = max(0, int((now - assignment.leased_at).total_seconds() * 1000))
    if client_ms is None or client_ms < 0:
        return elapsed
    return min(int(client_ms), elapsed)


def _check_flags(project: Project, flags: object, field: str) -> list[str]:
    if not isinstance(flags, list | tuple) or not all(isinstance(f, str) for f in flags):
        raise LabelingError("Flags must be a list of flag keys.", field=field)
    unknown = sorted(set(flags) - set(project.flag_keys))
    if unknown:
        raise LabelingError(f"Unknown flag {unknown[0]!r} for this project.", field=field)
    return sorted(set(flags), key=project.flag_keys.index)


# --- each kind's checks: (task, its candidate ids, labeler, the kind's fields) -> the judgement's own fields ---


def _demonstration_fields(task: Task, candidate_ids: list[int], labeler, data: Mapping) -> dict:
    cleaned = (data.get("text") or "").strip()
    if not cleaned:
        raise LabelingError("Write the assistant's reply before submitting.", field="text")
    if len(cleaned) > settings.REWARDLAB_MAX_TEXT_CHARS:
        raise LabelingError(
            f"The reply is {len(cleaned):,} characters; the limit is {settings.REWARDLAB_MAX_TEXT_CHARS:,}.",
            field="text",
        )
    return {}


def _demonstration_message(annotation: Demonstration, task: Task, labeler, data: Mapping) -> None:
    """A demonstration is the labeler's ideal assistant reply, stored as a human-written child of the prompt."""
    cleaned = data["text"].strip()
    annotation.message = Message.objects.create(
        project_id=task.project_id,
        parent=task.anchor,
        role="assistant",
        text=cleaned,
        depth=task.anchor.depth + 1,
        path_hash=path_hash(task.anchor.path_hash, "assistant", cleaned),
        author_user=labeler,
        metadata={"demonstration_task": task.pk},
    )


def _ranking_fields(task: Task, candidate_ids: list[int], labeler, data: Mapping) -> dict:
    tiers = data.get("tiers")
    if not isinstance(tiers, list | tuple) or not all(isinstance(t, list | tuple) and t for t in tiers):
        raise LabelingError("A ranking is a list of non-empty tiers.", field="tiers")
    placed = [c for tier in tiers for c in tier]
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in placed):
        raise LabelingError("Tiers hold candidate ids.", field="tiers")
    if len(placed) != len(set(placed)):
        raise LabelingError("A candidate appears in the ranking twice.", field="tiers")
    missing, extra = set(candidate_ids) - set(placed), set(placed) - set(candidate_ids)
    if extra:
        raise LabelingError("The ranking holds a reply that is not part of this task.", field="tiers")
    if missing:
        raise LabelingError(
            f"Place every reply: {len(missing)} of {len(candidate_ids)} are not ranked yet.", field="tiers"
        )
    flags = {}
    for key, keys in (data.get("candidate_flags") or {}).items():
        try:
            message_id = int(key)
        except (TypeError, ValueError):
            raise LabelingError(f"Flags given for an unknown reply {key!r}.", field="candidate_flags") from None
        if message_id not in candidate_ids:
            raise LabelingError("Flags given for a reply that is not part of this task.", field="candidate_flags")
        checked = _check_flags(task.project, keys, "candidate_flags")
        if checked:
            flags[str(message_id)] = checked
    return {
        "tiers": [list(tier) for tier in tiers],
        "none_acceptable": bool(data.get("none_acceptable", False)),
        "candidate_flags": flags,
    }


def _comparison_fields(task: Task, candidate_ids: list[int], labeler, data: Mapping) -> dict:
    """A and B are the candidates in the order this labeler was shown them."""
    choice = data.get("choice")
    if isinstance(choice, bool) or choice not in [value for value, _ in COMPARISON_SCALE]:
        raise LabelingError("Choose a point on the scale from A is much better to B is much better.", field="choice")
    if len(candidate_ids) != 2:
        raise LabelingError("An A/B task compares exactly two replies.", field="task")
    a, b = candidate_order_for(task=task, labeler=labeler, candidate_ids=candidate_ids)
    return {"candidate_a_id": a, "candidate_b_id": b, "choice": int(choice), "both_bad": bool(data.get("both_bad"))}


def _rating_fields(task: Task, candidate_ids: list[int], labeler, data: Mapping) -> dict:
    score, comment = data.get("score"), data.get("comment") or ""
    if isinstance(score, bool) or score not in range(1, 8):
        raise LabelingError("Give the reply a score from 1 to 7.", field="score")
    if len(candidate_ids) != 1:
        raise LabelingError("A rating task rates exactly one reply.", field="task")
    if len(comment) > 5000:
        raise LabelingError("The comment is longer than 5,000 characters.", field="comment")
    return {
        "candidate_id": candidate_ids[0],
        "score": int(score),
        "flags": _check_flags(task.project, list(data.get("flags") or ()), "flags"),
        "comment": comment.strip(),
    }


@dataclass(frozen=True)
class SubmissionKind:
    """How the judgement of one task kind is checked (`fields`: the judgement's own fields, or a LabelingError) and
    stored: its table, and what is written before it (`build`: a demonstration's message)."""

    model: type[Annotation]
    fields: Callable[[Task, list[int], object, Mapping], dict]
    build: Callable[[Annotation, Task, object, Mapping], None] | None = None
    related: tuple[str, ...] = ()  # what a judgement read again (a repeated submission) is read with


SUBMISSIONS: dict[str, SubmissionKind] = {
    TaskKind.DEMONSTRATE: SubmissionKind(Demonstration, _demonstration_fields, _demonstration_message, ("message",)),
    TaskKind.RANK: SubmissionKind(Ranking, _ranking_fields),
    TaskKind.COMPARE: SubmissionKind(Comparison, _comparison_fields),
    TaskKind.RATE: SubmissionKind(Rating, _rating_fields),
}


def submission_submit(
    *,
    labeler,
    assignment_id: int,
    kind: str,
    data: Mapping,
    client_token: str,
    time_spent_ms: int | None = None,
    now: datetime | None = None,
    target: Assignment | None = None,
) -> Submission:
    """Store `labeler`'s judgement of the task they hold leased, whatever its kind: the one way in for the labeling
    page, the API and the live chat. `data` holds the kind's own fields (`SUBMISSIONS` checks them): `text`
    (demonstrate); `tiers`, `none_acceptable`, `candidate_flags` (rank); `choice`, `both_bad` (compare); `score`,
    `flags`, `comment` (rate). A task of another kind than `kind` is refused.

    Idempotent by `client_token`: the same token again returns the first judgement (`created` False), even when the
    two race; a token already used for another task is refused. `target`, `selectors.submission_target` for this
    assignment and token, saves reading it when the caller has (the labeling page does, to build its form).

    In one transaction: read (the lease, its task, candidates and any judgement under the token), check, end the
    lease if it is still live (a conditional update: a parallel submission, a skip or the expiry sweep that got
    there first leaves it as it is, and it is read again to say which), write the judgement. Three statements for
    a new judgement (one more for a demonstration's message), two for a repeat. Nothing is written before every
    check has passed, so a refusal needs no savepoint: it leaves the block without an exception (raised after it),
    and a caller's own transaction goes on."""
    handler = SUBMISSIONS.get(kind)
    if handler is None:
        raise LabelingError(f"Unknown task kind {kind!r}.", field="kind")
    if not client_token or len(client_token) > 64:
        raise LabelingError("Missing or malformed submission token; reload the page.", field="client_token")
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        outcome = _submission(
            handler,
            kind=kind,
            labeler=labeler,
            assignment_id=assignment_id,
            data=data,
            client_token=client_token,
            time_spent_ms=time_spent_ms,
            now=now,
            target=target,
        )
    if isinstance(outcome, LabelingError):
        raise outcome
    return outcome


def _submission(
    handler: SubmissionKind,
    *,
    kind: str,
    labeler,
    assignment_id: int,
    data: Mapping,
    client_token: str,
    time_spent_ms: int | None,
    now: datetime,
    target: Assignment | None,
) -> Submission | LabelingError:
    if target is not None and (target.pk != assignment_id or getattr(target, "earlier_token", None) != client_token):
        target = None  # read for another assignment or token
    try:
        for _attempt in range(2):
            if target is None:
                target = submission_target(
                    labeler=labeler, client_token=client_token, assignment_id=assignment_id, anyone=True
                )
            earlier = _earlier(handler, kind=kind, labeler=labeler, client_token=client_token, target=target)
            if earlier is not None:
                if earlier.assignment_id != assignment_id:
                    raise LabelingError("This submission token belongs to another task.", field="client_token")
                return Submission(earlier, created=False)
            assignment = _check_live(target, labeler=labeler, kind=kind, now=now)
            fields = handler.fields(assignment.task, assignment.candidate_ids, labeler, data)
            ended = Assignment.objects.filter(
                pk=assignment.pk, labeler_id=labeler.pk, status=AssignmentStatus.ACTIVE, expires_at__gt=now
            ).update(status=AssignmentStatus.SUBMITTED, finished_at=now)
            if ended:
                break
            target = None  # ended meanwhile (by this very submission, sent twice?): read it again to say how
        else:
            raise LeaseError("This task is not leased to you any more; take the next task.")
    except LabelingError as error:
        return error
    task = assignment.task
    annotation = handler.model(
        task=task,
        labeler=labeler,
        assignment=assignment,
        client_token=client_token,
        shown_order=candidate_order_for(task=task, labeler=labeler, candidate_ids=assignment.candidate_ids),
        time_spent_ms=_time_spent_ms(time_spent_ms, assignment, now),
        **fields,
    )
    if handler.build is not None:
        handler.build(annotation, task, labeler, data)
    # The task, labeler, assignment and candidates were all just read from the database: not looked up again.
    by_construction = ["task", "labeler", "assignment", "candidate", "candidate_a", "candidate_b", "message"]
    annotation.full_clean(exclude=by_construction, validate_constraints=False)
    annotation.save()
    assignment.status, assignment.finished_at = AssignmentStatus.SUBMITTED, now
    return Submission(annotation, created=True)


def _earlier(handler: SubmissionKind, *, kind: str, labeler, client_token: str, target: Assignment | None):
    """The labeler's judgement already stored under `client_token` (in the table of `kind`), or None: as `target`
    read it, where it did."""
    judgements = handler.model.objects.select_related(*handler.related)
    if target is not None and target.task.kind == kind:
        return judgements.filter(pk=target.earlier_id).first() if target.earlier_id is not None else None
    return judgements.filter(labeler=labeler, client_token=client_token).first()


def demonstration_submit(
    *,
    labeler,
    assignment_id: int,
    text: str,
    client_token: str,
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> Submission:
    """Store the labeler's ideal assistant reply as a human-written child of the prompt (`submission_submit`)."""
    return submission_submit(
        labeler=labeler,
        assignment_id=assignment_id,
        kind=TaskKind.DEMONSTRATE,
        data={"text": text},
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
    )


def ranking_submit(
    *,
    labeler,
    assignment_id: int,
    tiers: Sequence[Sequence[int]],
    client_token: str,
    none_acceptable: bool = False,
    candidate_flags: dict | None = None,
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> Submission:
    """Store candidates ordered best to worst in tiers; candidates in one tier are tied (`submission_submit`)."""
    return submission_submit(
        labeler=labeler,
        assignment_id=assignment_id,
        kind=TaskKind.RANK,
        data={"tiers": tiers, "none_acceptable": none_acceptable, "candidate_flags": candidate_flags},
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
    )


def comparison_submit(
    *,
    labeler,
    assignment_id: int,
    choice: int,
    client_token: str,
    both_bad: bool = False,
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> Submission:
    """Store an A/B judgement. A and B are the candidates in the order this labeler was shown them
    (`submission_submit`)."""
    return submission_submit(
        labeler=labeler,
        assignment_id=assignment_id,
        kind=TaskKind.COMPARE,
        data={"choice": choice, "both_bad": both_bad},
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
    )


def rating_submit(
    *,
    labeler,
    assignment_id: int,
    score: int,
    client_token: str,
    flags: Sequence[str] = (),
    comment: str = "",
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> Submission:
    """Store a 1-7 overall score of one reply with the project's flags (`submission_submit`)."""
    return submission_submit(
        labeler=labeler,
        assignment_id=assignment_id,
        kind=TaskKind.RATE,
        data={"score": score, "flags": flags, "comment": comment},
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
    )


def task_skip(*, labeler, assignment_id: int, reason: str, note: str = "", now: datetime | None = None) -> Assignment:
    """Give a task back with a reason. It returns to the pool for others; this labeler will not see it again."""
    if reason not in SkipReason.values:
        raise LabelingError("Choose why you are skipping this task.", field="reason")
    if reason == SkipReason.OTHER and not note.strip():
        raise LabelingError("Say briefly why you are skipping this task.", field="note")
    now = now or timezone.now()
    with transaction.atomic():
        assignment = _locked_live_assignment(labeler=labeler, assignment_id=assignment_id, kind=None, now=now)
        assignment.status = AssignmentStatus.SKIPPED
        assignment.finished_at = now
        label = SkipReason(reason).label
        assignment.skip_reason = f"{label}: {note.strip()}" if note.strip() else label
        assignment.save(update_fields=["status", "finished_at", "skip_reason"])
        _release_places([assignment.task_id])
        return assignment


def candidate_report(*, labeler, assignment_id: int, message_id: int, reason: str = "") -> CandidateReport:
    """Report one of the task's replies as unsafe. Reporting the same reply twice keeps one report."""
    with transaction.atomic():
        assignment = Assignment.objects.select_related("task").filter(pk=assignment_id, labeler=labeler).first()
        if assignment is None:
            raise LeaseError("This task is not leased to you.")
        if not assignment.task.task_candidates.filter(message_id=message_id).exists():
            raise LabelingError("That reply is not part of this task.", field="message")
        report, _ = CandidateReport.objects.get_or_create(
            message_id=message_id,
            reporter=labeler,
            defaults={"task": assignment.task, "reason": (reason or "").strip()[:2000]},
        )
        return report


# --- quality control: gold tasks, deactivation, repair -------------------------------------------------------


def gold_answer_clean(*, task: Task, answer: Mapping) -> dict:
    """The gold answer in its stored form, checked against the task's kind and candidates."""
    candidate_ids = list(task.task_candidates.order_by("position").values_list("message_id", flat=True))
    if not isinstance(answer, Mapping):
        raise LabelingError('A gold answer is an object, such as {"choice": -3}.', field="gold_answer")
    if task.kind == TaskKind.DEMONSTRATE:
        raise LabelingError("A demonstration has no single right answer, so it cannot be a gold task.", field="kind")
    if task.kind == TaskKind.RANK:
        tiers = answer.get("tiers")
        placed = (
            [c for tier in tiers for c in tier]
            if isinstance(tiers, list) and all(isinstance(t, list) and t for t in tiers)
            else None
        )
        if placed is None or sorted(placed) != sorted(candidate_ids):
            raise LabelingError(
                f"A gold ranking orders every candidate of the task in tiers: {candidate_ids}.", field="tiers"
            )
        return {"tiers": [[int(c) for c in tier] for tier in tiers]}
    if task.kind == TaskKind.COMPARE:
        choice = answer.get("choice")
        if isinstance(choice, bool) or choice not in [value for value, _ in COMPARISON_SCALE]:
            raise LabelingError(
                "A gold comparison is a point on the scale, -4 (A much better) to 4 (B much better), with A the "
                "task's first candidate.",
                field="choice",
            )
        return {"choice": int(choice)}
    score, tolerance = answer.get("score"), answer.get("tolerance", 1)
    if isinstance(score, bool) or score not in range(1, 8):
        raise LabelingError("A gold rating is a score from 1 to 7.", field="score")
    if isinstance(tolerance, bool) or tolerance not in range(7):
        raise LabelingError("The tolerance of a gold rating is 0 to 6 points.", field="tolerance")
    return {"score": int(score), "tolerance": int(tolerance)}


@transaction.atomic
def task_set_gold(*, task: Task, answer: Mapping | None) -> Task:
    """Make `task` a gold task with this known answer (or, with None, an ordinary task again). Gold tasks are
    served to every labeler once, mixed in at the project's gold share, and score their accuracy."""
    task = Task.objects.select_for_update().get(pk=task.pk)
    task.gold_answer = None if answer is None else gold_answer_clean(task=task, answer=answer)
    task.is_gold = answer is not None
    task.save(update_fields=["gold_answer", "is_gold"])
    return task


@dataclass(frozen=True)
class DeactivationResult:
    leases_released: int
    annotations_requeued: int
    tasks_reopened: int


@transaction.atomic
def labeler_deactivate(
    *, labeler, requeue: bool, project: Project | None = None, now: datetime | None = None
) -> DeactivationResult:
    """Close a labeler's account (they can no longer sign in) and give back their live leases. With `requeue`,
    their submitted judgements (in `project`, or everywhere) are sent back for re-labeling: each is kept but
    marked discarded, and its place on the task opens for another labeler."""
    now = now or timezone.now()
    labeler = User.objects.select_for_update().get(pk=labeler.pk)
    if labeler.is_active:
        labeler.is_active = False
        labeler.save(update_fields=["is_active"])
    assignments = Assignment.objects.select_for_update().filter(labeler=labeler).order_by("id")
    leases = list(assignments.filter(status=AssignmentStatus.ACTIVE).only("id", "task_id"))
    _end_assignments(leases, AssignmentStatus.RELEASED, now)
    revoked: list[Assignment] = []
    if requeue:
        submitted = assignments.filter(status=AssignmentStatus.SUBMITTED)
        if project is not None:
            submitted = submitted.filter(task__project=project)
        revoked = list(submitted.only("id", "task_id"))
        for model in (Demonstration, Ranking, Comparison, Rating):
            model.objects.filter(assignment__in=[a.pk for a in revoked], discarded_at__isnull=True).update(
                discarded_at=now
            )
        _end_assignments(revoked, AssignmentStatus.REVOKED, now)
    return DeactivationResult(
        leases_released=len(leases),
        annotations_requeued=len(revoked),
        tasks_reopened=len({a.task_id for a in revoked}),
    )


@transaction.atomic
def task_places_recount(*, project: Project | None = None) -> int:
    """Recount every task's taken places from its assignments (a repair, e.g. after editing rows by hand).
    Returns how many tasks were corrected."""
    tasks = Task.objects.all() if project is None else Task.objects.filter(project=project)
    held = Counter(
        dict(
            Assignment.objects.filter(task__in=tasks, status__in=PLACE_HOLDING_STATUSES)
            .values("task_id")
            .annotate(n=models.Count("id"))
            .order_by()
            .values_list("task_id", "n")
        )
    )
    corrected = 0
    for task_id, taken in tasks.values_list("id", "taken").iterator():
        if held[task_id] != taken:
            corrected += Task.objects.filter(pk=task_id).update(taken=held[task_id])
    return corrected
