"""Every write on the human side: one keyword-only function per action, atomic and validated."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from annotate.formats import Limits, PromptRecord, parse_prompts_jsonl
from annotate.models import (
    Assignment,
    AssignmentStatus,
    ImportSource,
    Message,
    Project,
    Task,
    TaskCandidate,
    TaskKind,
)
from annotate.roles import RoleName

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
