"""Importing preference datasets with their judgements (TRL, HH, Open-Assistant trees, Chatbot Arena, rated
completions: `annotate.judgement_formats`), beside the project's own labels.

An imported judgement is an ordinary Comparison or Ranking whose provenance is an ImportSource (file name, hash,
time, row number in `client_token`) instead of a labeler. Its task is created for it (or found: the same prompt
and replies), inactive by default, so the project's labelers are not asked again; with `open_tasks` the tasks are
opened with the project's overlap, for the team to judge the same pairs (the quality page then shows how often the
team agrees with the dataset). Imported judgements never count as a labeler's work.

All or nothing, with memory flat in the file size: the file is read and stored in chunks of lines inside one
transaction; the first bad line stops the writing (everything is rolled back), the rest of the file is still read
so that every bad line is reported, with its line and field.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db import transaction

from annotate import bulk, services
from annotate.formats import ImportFormatError, ImportProblem
from annotate.judgement_formats import FORMATS, JudgementRecord, parse_judgements
from annotate.models import Comparison, ImportSource, Project, Ranking, TaskKind

CHUNK_LINES = 5000


@dataclass
class JudgementImportResult:
    source: ImportSource
    rows: int = 0
    judgements: Counter = field(default_factory=Counter)  # by kind
    prompts_created: int = 0
    replies_created: int = 0
    tasks_created: int = 0
    tasks_opened: int = 0

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.judgements.items())) or "none"
        return (
            f"{self.rows} rows: judgements {kinds}; {self.prompts_created} new prompts, {self.replies_created} new "
            f"replies, {self.tasks_created} new tasks ({self.tasks_opened} open for labelers)"
        )


def _line_chunks(lines: Iterable[bytes], size: int) -> Iterator[tuple[int, bytes]]:
    """(number of lines before the chunk, the chunk's bytes), `size` lines at a time."""
    buffer: list[bytes] = []
    offset = 0
    for line in lines:
        buffer.append(line if line.endswith(b"\n") else line + b"\n")
        if len(buffer) >= size:
            yield offset, b"".join(buffer)
            offset += len(buffer)
            buffer = []
    if buffer:
        yield offset, b"".join(buffer)


class _Hashing:
    """Wraps the file's lines: the SHA-256 of every byte read, and the count of lines."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self.lines, self.digest, self.count = lines, hashlib.sha256(), 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self.lines:
            self.digest.update(line)
            self.count += 1
            yield line


def judgements_import(
    *,
    project: Project,
    lines: Iterable[bytes],
    filename: str,
    format: str,
    open_tasks: bool = False,
    imported_by=None,
    chunk_lines: int = CHUNK_LINES,
) -> JudgementImportResult:
    """Import the judgements of a file (an iterable of its lines: an open binary file, an upload) into `project`."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    limits = services.import_limits()
    hashing = _Hashing(lines)
    problems: list[ImportProblem] = []
    with transaction.atomic():
        source = ImportSource.objects.create(
            project=project, name=filename[:255] or "upload.jsonl", format=format, sha256="", imported_by=imported_by
        )
        result = JudgementImportResult(source=source)
        store = _Store(project, source, open_tasks, result)
        # Only the bulk writes skip the row triggers (they check their references themselves); the ORM's do not.
        with bulk.references_checked_in_bulk():
            for parsed in _parsed(hashing, format, filename, limits, chunk_lines):
                if parsed.problems or problems:
                    problems += parsed.problems
                    continue  # keep reading to report every bad line; nothing more is written
                store.add(parsed)
                if result.rows > limits.max_rows:
                    problems.append(ImportProblem(0, "", f"the file has more than {limits.max_rows} judgements"))
                    break
        if not problems and not result.rows:
            problems.append(ImportProblem(0, "", "no judgements in the file"))
        if problems:
            transaction.set_rollback(True)
            raise ImportFormatError(sorted(problems, key=lambda p: p.line), filename)
        source.sha256, source.row_count = hashing.digest.hexdigest(), hashing.count
        source.stats = {
            "judgements": dict(result.judgements),
            "prompts_created": result.prompts_created,
            "replies_created": result.replies_created,
            "tasks_created": result.tasks_created,
            "tasks_opened": result.tasks_opened,
        }
        source.save(update_fields=["sha256", "row_count", "stats"])
    return result


@dataclass
class _Chunk:
    """Some lines of the file: their judgements and conversation nodes, or what is wrong with them."""

    records: list[JudgementRecord]
    problems: list[ImportProblem]
    nodes: dict[str, services.MessageNode] = field(default_factory=dict)
    plans: list[tuple[JudgementRecord, str, list[str]]] = field(default_factory=list)  # record, anchor, replies


def _parsed(lines: Iterable[bytes], format: str, filename: str, limits, chunk_lines: int) -> Iterator[_Chunk]:
    """The file, parsed `chunk_lines` lines at a time. After the first bad line only problems are looked for."""
    bad = False
    for offset, chunk in _line_chunks(lines, chunk_lines):
        if offset == 0 and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        try:
            records = parse_judgements(chunk, format=format, filename=filename, limits=limits, lines_before=offset)
        except ImportFormatError as exc:
            problems = [p for p in exc.problems if p.line or not _empty(p)]
            bad = bad or bool(problems)
            yield _Chunk([], problems)
            continue
        yield _Chunk(records, []) if bad else _Chunk(records, [], *_nodes(records))


def _empty(problem: ImportProblem) -> bool:
    """A chunk-level "nothing here" problem: a chunk of blank lines, or of rows with no judgement in them (an
    Open-Assistant tree with no ranked replies), is not wrong; the whole file having none is checked at the end."""
    return problem.message.startswith(("the file has no rows", "no judgements in the file"))


class _Store:
    """Writes one chunk of records: messages (reusing the project's by path), tasks, judgements, in bulk."""

    def __init__(self, project: Project, source: ImportSource, open_tasks: bool, result: JudgementImportResult):
        self.project, self.source, self.open_tasks, self.result = project, source, open_tasks, result

    def add(self, chunk: _Chunk) -> None:
        records, nodes, plans = chunk.records, chunk.nodes, chunk.plans
        ids, created = services.messages_store(self.project, self.source, nodes)
        anchors = {plan[1] for plan in plans}
        self.result.prompts_created += len(anchors & created)
        self.result.replies_created += len({h for plan in plans for h in plan[2]} & created)
        tasks = self._tasks(plans, ids, {ids[h] for h in anchors & created})
        comparisons, rankings = [], []
        source_id = self.source.pk
        for index, ((record, _anchor, replies), task) in enumerate(zip(plans, tasks, strict=True)):
            reply_ids = [ids[h] for h in replies]
            token = f"import-{source_id}-{record.line}-{index}"
            if record.kind == TaskKind.COMPARE:
                a, b = reply_ids
                comparisons.append(
                    (task, source_id, token, reply_ids, a, b, record.choice, record.both_bad, record.margin)
                )
            else:
                tiers = [[reply_ids[i] for i in tier] for tier in record.tiers]
                rankings.append((task, source_id, token, reply_ids, tiers))
        judgement = ("task_id", "import_source_id", "client_token", "shown_order")
        bulk.insert(
            Comparison, (*judgement, "candidate_a_id", "candidate_b_id", "choice", "both_bad", "margin"), comparisons
        )
        bulk.insert(Ranking, (*judgement, "tiers"), rankings)
        self.result.rows += len(records)
        self.result.judgements.update({"compare": len(comparisons), "rank": len(rankings)})
        self.result.judgements = +self.result.judgements  # drop zero counts

    def _tasks(self, plans, ids: dict[str, int], new_anchor_ids: set[int]) -> list[int]:
        """The task of each judgement: the project's task for that prompt and those replies if there is one, else a
        new one (inactive; open with the project's overlap when the team is to judge it too)."""
        keys: list[services.TaskKey] = []
        wanted: dict[services.TaskKey, list[int]] = {}
        for record, anchor, replies in plans:
            reply_ids = [ids[h] for h in replies]
            key = (record.kind, ids[anchor], services.candidates_key(reply_ids))
            wanted.setdefault(key, reply_ids)
            keys.append(key)
        task_ids, new_keys = services.tasks_store(
            self.project, self.source, wanted, open_tasks=self.open_tasks, new_anchor_ids=new_anchor_ids
        )
        self.result.tasks_created += len(new_keys)
        self.result.tasks_opened += len(new_keys) if self.open_tasks else 0
        return [task_ids[key] for key in keys]


def file_lines(path) -> Iterator[bytes]:
    """The lines of a file on disk, read as they are needed."""
    with open(path, "rb") as handle:
        yield from handle


def _nodes(records: list[JudgementRecord]):
    """The conversation nodes of the records (by path hash), and each record's anchor and reply hashes."""
    nodes: dict[str, services.MessageNode] = {}
    plans: list[tuple[JudgementRecord, str, list[str]]] = []
    for record in records:
        parent = ""
        for depth, turn in enumerate(record.conversation):
            h = services.path_hash(parent, turn.role, turn.text)
            if h not in nodes:
                nodes[h] = services.MessageNode(h, parent, turn.role, turn.text, depth, {})
            parent = h
        replies = []
        for i, text in enumerate(record.replies):
            h = services.path_hash(parent, "assistant", text)
            if h not in nodes:
                model = record.models[i] if i < len(record.models) else None
                metadata = {"model": model} if model else {}
                nodes[h] = services.MessageNode(h, parent, "assistant", text, len(record.conversation), metadata)
            replies.append(h)
        plans.append((record, parent, replies))
    return nodes, plans
