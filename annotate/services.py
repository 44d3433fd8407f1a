"""Every write on the human side: one keyword-only function per action, atomic and validated."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from annotate.formats import Limits, PromptRecord, parse_prompts_jsonl
from annotate.models import (
    COMPARISON_SCALE,
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
from annotate.selectors import candidate_order_for, live_places, tasks_available_to

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
class _Node:
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
    nodes: dict[str, _Node] = {}
    anchors: list[tuple[PromptRecord, str, list[str]]] = []  # record, anchor hash, candidate hashes
    for record in records:
        parent = ""
        for depth, turn in enumerate(record.conversation):
            h = path_hash(parent, turn.role, turn.text)
            nodes.setdefault(h, _Node(h, parent, turn.role, turn.text, depth, {}))
            parent = h
        anchor_hash = parent
        nodes[anchor_hash].metadata = {**record.metadata, "import_line": record.line}
        candidate_hashes = []
        for text in record.completions:
            h = path_hash(anchor_hash, "assistant", text)
            nodes.setdefault(h, _Node(h, anchor_hash, "assistant", text, len(record.conversation), {}))
            candidate_hashes.append(h)
        anchors.append((record, anchor_hash, candidate_hashes))

    # 2. Reuse what the project already has; create the rest level by level so parents have ids.
    ids = _existing_message_ids(project, list(nodes))
    created: set[str] = set()
    for depth in sorted({node.depth for node in nodes.values()}):
        new = [n for n in nodes.values() if n.depth == depth and n.hash not in ids]
        messages = Message.objects.bulk_create(
            [
                Message(
                    project=project,
                    parent_id=ids[n.parent_hash] if n.parent_hash else None,
                    role=n.role,
                    text=n.text,
                    depth=n.depth,
                    path_hash=n.hash,
                    author_import=source,
                    metadata=n.metadata,
                )
                for n in new
            ],
            batch_size=500,
        )
        if messages and messages[0].pk is None:  # a backend that cannot return ids from a bulk insert
            ids.update(_existing_message_ids(project, [n.hash for n in new]))
        else:
            ids.update({m.path_hash: m.pk for m in messages})
        created.update(n.hash for n in new)

    # 3. Tasks per the project's settings, skipping any that already exist for the same candidates.
    tasks_created = _create_import_tasks(project, source, anchors, ids)

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


def _existing_message_ids(project: Project, hashes: list[str]) -> dict[str, int]:
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


def _create_import_tasks(project, source, anchors, ids) -> Counter:
    anchor_ids = sorted({ids[h] for _, h, _ in anchors})
    existing: set[tuple[str, int, str]] = set()
    for start in range(0, len(anchor_ids), 1000):
        existing.update(
            Task.objects.filter(project=project, anchor_id__in=anchor_ids[start : start + 1000]).values_list(
                "kind", "anchor_id", "candidates_key"
            )
        )
    planned: list[tuple[Task, list[int]]] = []
    for _record, anchor_hash, candidate_hashes in anchors:
        anchor_id = ids[anchor_hash]
        candidate_ids = [ids[h] for h in candidate_hashes]
        for kind in project.import_task_kinds:
            for group in task_candidate_groups(kind, candidate_ids, project.ranking_k):
                key = (kind, anchor_id, candidates_key(group))
                if key in existing:
                    continue
                existing.add(key)
                task = Task(
                    project=project,
                    kind=kind,
                    anchor_id=anchor_id,
                    candidates_key=key[2],
                    required_labelers=project.overlap_for(kind),
                    origin_import=source,
                )
                planned.append((task, group))
    tasks = Task.objects.bulk_create([task for task, _ in planned], batch_size=500)
    if tasks and tasks[0].pk is None:
        raise RuntimeError("this database backend cannot return ids from a bulk insert")
    TaskCandidate.objects.bulk_create(
        [
            TaskCandidate(task=task, message_id=message_id, position=position)
            for task, (_, group) in zip(tasks, planned, strict=True)
            for position, message_id in enumerate(group)
        ],
        batch_size=1000,
    )
    return Counter(task.kind for task in tasks)


# --- leases -------------------------------------------------------------------------------------------------


def leases_release_expired(*, now: datetime | None = None) -> int:
    """Mark leases past their expiry as expired, so their tasks return to the pool for other labelers."""
    now = now or timezone.now()
    return Assignment.objects.filter(status=AssignmentStatus.ACTIVE, expires_at__lte=now).update(
        status=AssignmentStatus.EXPIRED, finished_at=now
    )


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


def task_lease_next(
    *, labeler, project: Project, kinds: Sequence[str] | None = None, now: datetime | None = None
) -> Assignment | None:
    """Lease the next task for `labeler` in `project`, or return the live lease they already hold there.

    The next task is the highest-priority active task this labeler has never leased, whose overlap is not yet
    filled by submissions plus live leases, and none of whose candidates they wrote (oldest first on ties).
    `kinds` narrows the lease to some task kinds: a live lease of another kind is then released (it returns
    to the pool) so that a labeler who switches to, say, rankings is not held to an unfinished rating.

    Concurrency: on PostgreSQL the chosen task row is locked (FOR UPDATE SKIP LOCKED: other labelers skip it
    rather than wait) and its places are counted again after the lock, in a new statement that sees every
    lease committed meanwhile, so the overlap is never overfilled. SQLite serialises writers instead.
    """
    now = now or timezone.now()
    live = (
        Assignment.objects.filter(
            labeler=labeler, task__project=project, status=AssignmentStatus.ACTIVE, expires_at__gt=now
        )
        .select_related("task")
        .order_by("leased_at")
        .first()
    )
    if live is not None and (not kinds or live.task.kind in kinds):
        return live
    if live is not None:
        live.status = AssignmentStatus.RELEASED
        live.finished_at = now
        live.save(update_fields=["status", "finished_at"])
    for _attempt in range(10):
        with transaction.atomic():
            available = tasks_available_to(labeler=labeler, now=now, project=project)
            if kinds:
                available = available.filter(kind__in=list(kinds))
            if connection.features.has_select_for_update_skip_locked:
                available = available.select_for_update(skip_locked=True, of=("self",))
            task = available.first()
            if task is None:
                return None
            if live_places(task=task, now=now) >= task.required_labelers:
                continue  # filled by a lease that committed while we were choosing
            try:
                with transaction.atomic():
                    return Assignment.objects.create(
                        task=task,
                        labeler=labeler,
                        leased_at=now,
                        expires_at=now + timedelta(minutes=project.lease_minutes),
                    )
            except IntegrityError:
                continue  # this labeler leased it in a concurrent request; take another
    return None


def _locked_live_assignment(*, labeler, assignment_id: int, kind: str | None, now: datetime) -> Assignment:
    try:
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("task__project", "task__anchor")
            .get(pk=assignment_id)
        )
    except Assignment.DoesNotExist:
        raise LeaseError("This task is not leased to you.") from None
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


def _time_spent_ms(client_ms: int | None, assignment: Assignment, now: datetime) -> int:
    """The client's measure when plausible (never more than the lease has lasted), else the server's."""
    elapsed = max(0, int((now - assignment.leased_at).total_seconds() * 1000))
    if client_ms is None or client_ms < 0:
        return elapsed
    return min(int(client_ms), elapsed)


def _submit(
    *,
    model: type[Annotation],
    kind: str,
    labeler,
    assignment_id: int,
    client_token: str,
    time_spent_ms: int | None,
    now: datetime | None,
    validate,
    build=None,
) -> Submission:
    """The frame every submission shares: idempotency by client token, the lease checks, validation, the
    write of the judgement and the end of the lease, all in one transaction."""
    if not client_token or len(client_token) > 64:
        raise LabelingError("Missing or malformed submission token; reload the page.", field="client_token")
    now = now or timezone.now()
    with transaction.atomic():
        earlier = model.objects.filter(labeler=labeler, client_token=client_token).first()
        if earlier is not None:
            if earlier.assignment_id != assignment_id:
                raise LabelingError("This submission token belongs to another task.", field="client_token")
            return Submission(earlier, created=False)
        try:
            assignment = _locked_live_assignment(labeler=labeler, assignment_id=assignment_id, kind=kind, now=now)
        except LeaseError:
            # A retry that raced its own first attempt: the judgement is there, under the same token.
            earlier = model.objects.filter(labeler=labeler, client_token=client_token).first()
            if earlier is not None and earlier.assignment_id == assignment_id:
                return Submission(earlier, created=False)
            raise
        task = assignment.task
        candidate_ids = list(task.task_candidates.order_by("position").values_list("message_id", flat=True))
        fields = validate(task, candidate_ids)
        annotation = model(
            task=task,
            labeler=labeler,
            assignment=assignment,
            client_token=client_token,
            shown_order=candidate_order_for(task=task, labeler=labeler, candidate_ids=candidate_ids),
            time_spent_ms=_time_spent_ms(time_spent_ms, assignment, now),
            **fields,
        )
        if build is not None:
            build(annotation, task)
        annotation.full_clean(exclude=["task", "labeler", "assignment"], validate_constraints=False)
        annotation.save()
        assignment.status = AssignmentStatus.SUBMITTED
        assignment.finished_at = now
        assignment.save(update_fields=["status", "finished_at"])
        return Submission(annotation, created=True)


def _check_flags(project: Project, flags: object, field: str) -> list[str]:
    if not isinstance(flags, list | tuple) or not all(isinstance(f, str) for f in flags):
        raise LabelingError("Flags must be a list of flag keys.", field=field)
    unknown = sorted(set(flags) - set(project.flag_keys))
    if unknown:
        raise LabelingError(f"Unknown flag {unknown[0]!r} for this project.", field=field)
    return sorted(set(flags), key=project.flag_keys.index)


def demonstration_submit(
    *,
    labeler,
    assignment_id: int,
    text: str,
    client_token: str,
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> Submission:
    """Store the labeler's ideal assistant reply as a human-written child of the prompt."""

    def validate(task, _candidates):
        cleaned = (text or "").strip()
        if not cleaned:
            raise LabelingError("Write the assistant's reply before submitting.", field="text")
        if len(cleaned) > settings.REWARDLAB_MAX_TEXT_CHARS:
            raise LabelingError(
                f"The reply is {len(cleaned):,} characters; the limit is {settings.REWARDLAB_MAX_TEXT_CHARS:,}.",
                field="text",
            )
        return {}

    def build(annotation, task):
        cleaned = text.strip()
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

    return _submit(
        model=Demonstration,
        kind=TaskKind.DEMONSTRATE,
        labeler=labeler,
        assignment_id=assignment_id,
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
        validate=validate,
        build=build,
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
    """Store candidates ordered best to worst in tiers; candidates in one tier are tied."""

    def validate(task, candidate_ids):
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
        for key, keys in (candidate_flags or {}).items():
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
            "none_acceptable": bool(none_acceptable),
            "candidate_flags": flags,
        }

    return _submit(
        model=Ranking,
        kind=TaskKind.RANK,
        labeler=labeler,
        assignment_id=assignment_id,
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
        validate=validate,
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
    """Store an A/B judgement. A and B are the candidates in the order this labeler was shown them."""

    def validate(task, candidate_ids):
        allowed = [value for value, _ in COMPARISON_SCALE]
        if isinstance(choice, bool) or choice not in allowed:
            raise LabelingError(
                "Choose a point on the scale from A is much better to B is much better.", field="choice"
            )
        if len(candidate_ids) != 2:
            raise LabelingError("An A/B task compares exactly two replies.", field="task")
        a, b = candidate_order_for(task=task, labeler=labeler, candidate_ids=candidate_ids)
        return {"candidate_a_id": a, "candidate_b_id": b, "choice": int(choice), "both_bad": bool(both_bad)}

    return _submit(
        model=Comparison,
        kind=TaskKind.COMPARE,
        labeler=labeler,
        assignment_id=assignment_id,
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
        validate=validate,
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
    """Store a 1-7 overall score of one reply with the project's flags."""

    def validate(task, candidate_ids):
        if isinstance(score, bool) or score not in range(1, 8):
            raise LabelingError("Give the reply a score from 1 to 7.", field="score")
        if len(candidate_ids) != 1:
            raise LabelingError("A rating task rates exactly one reply.", field="task")
        if len(comment or "") > 5000:
            raise LabelingError("The comment is longer than 5,000 characters.", field="comment")
        return {
            "candidate_id": candidate_ids[0],
            "score": int(score),
            "flags": _check_flags(task.project, list(flags), "flags"),
            "comment": (comment or "").strip(),
        }

    return _submit(
        model=Rating,
        kind=TaskKind.RATE,
        labeler=labeler,
        assignment_id=assignment_id,
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
        validate=validate,
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
