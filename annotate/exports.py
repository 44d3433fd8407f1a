"""Exports: a project's judgements as the rows trainers take (TRL preference and SFT formats, HH transcripts,
conversation trees), streamed in chunks so memory stays flat however large the project, written as JSONL or
Parquet.

Row shapes (every row also carries provenance columns: `source`, `task_id`, `annotation_id`, `labeler`, ...):

- preferences, standard:        {"prompt": "...", "chosen": "...", "rejected": "...", "margin": 2.0, "weight": 1.0}
- preferences, conversational:  {"prompt": [{"role", "content"}...], "chosen": [{"role": "assistant", ...}], ...}
- sft:                          {"messages": [{"role", "content"}..., {"role": "assistant", "content": demo}]}
- hh:                           {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "..."}
- trees:                        {"message_id", "role", "text", "author", "children": [...]} per conversation root

A ranking of K replies gives every pair between different tiers, each with weight 1 / (its number of pairs),
so one ranking counts once however large K is (InstructGPT). A comparison's strength becomes `margin`
(|choice| - 1: 0 for the two "about the same" points, 3 for "much better"). Ties (tied tiers, and the two
middle points of the comparison scale) are dropped or exported with `tie: true`, as the researcher chooses.
Labelers appear under a pseudonym, stable within a project. Judgements sent back for re-labeling never appear.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from itertools import combinations

import orjson
from django.conf import settings
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from annotate import agreement, quality
from annotate.models import Comparison, Demonstration, Message, Project, Ranking, Rating, Task, TaskKind

DATASETS = ("preferences", "sft", "hh", "trees", "ratings", "prompts")
STYLES = ("standard", "conversational")
AGGREGATIONS = ("raw", "majority", "bradley_terry")
TIE_POLICIES = ("drop", "label")
# Judgements imported with a dataset (not a labeler's): kept with the labelers' (include), left out, or alone.
IMPORTED = ("include", "exclude", "only")
FORMATS = ("jsonl", "parquet")
CHUNK = 5000


class ExportError(ValueError):
    """Export options that cannot be honoured; `field` names the option."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ExportOptions:
    dataset: str = "preferences"
    style: str = "standard"
    aggregation: str = "raw"
    ties: str = "drop"
    margin: bool = True
    format: str = "jsonl"
    date_from: date | None = None
    date_to: date | None = None
    labelers: tuple[int, ...] = ()
    kinds: tuple[str, ...] = ()  # rank, compare (preferences); empty: all that apply
    model_versions: tuple[int, ...] = ()  # keep pairs with a reply written by one of these versions
    min_agreement: float | None = None  # keep prompts whose votes agree with their majority at least this much
    imported: str = "include"  # judgements imported with a dataset: include, exclude, only

    def __post_init__(self) -> None:
        for name, allowed in [
            ("dataset", DATASETS),
            ("style", STYLES),
            ("aggregation", AGGREGATIONS),
            ("ties", TIE_POLICIES),
            ("format", FORMATS),
            ("imported", IMPORTED),
        ]:
            if getattr(self, name) not in allowed:
                raise ExportError(
                    f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}.", field=name
                )
        unknown = set(self.kinds) - {TaskKind.RANK, TaskKind.COMPARE}
        if unknown:
            raise ExportError(f"kinds can be rank and compare, not {sorted(unknown)[0]!r}.", field="kinds")
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise ExportError("min_agreement is a share between 0 and 1.", field="min_agreement")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ExportError("date_from is after date_to.", field="date_from")
        if self.aggregation != "raw" and self.dataset != "preferences":
            raise ExportError("Aggregated rows exist for preference data only.", field="aggregation")

    def as_filter(self) -> dict:
        """The options as plain JSON (what a snapshot records)."""
        data = asdict(self)
        for key in ("date_from", "date_to"):
            data[key] = data[key].isoformat() if data[key] else None
        data["labelers"], data["kinds"], data["model_versions"] = (
            list(self.labelers),
            list(self.kinds),
            list(self.model_versions),
        )
        return data

    @classmethod
    def from_filter(cls, data: dict) -> ExportOptions:
        values = dict(data)
        values.setdefault("imported", "include")  # snapshots frozen before imported judgements existed
        for key in ("date_from", "date_to"):
            if values.get(key):
                values[key] = date.fromisoformat(values[key])
        for key in ("labelers", "kinds", "model_versions"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)

    @property
    def filename_suffix(self) -> str:
        return "jsonl" if self.format == "jsonl" else "parquet"


# --- pseudonyms, conversations ------------------------------------------------------------------------------


def labeler_pseudonym(project_id: int, labeler_id: int | None, import_source_id: int | None = None) -> str:
    """A stable per-project pseudonym: the same labeler gets the same name in every export of the project,
    and nothing in it reveals who they are without the server's secret."""
    if labeler_id is None:
        return f"import-{import_source_id}"
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, f"{project_id}:{labeler_id}".encode(), hashlib.sha256).hexdigest()
    return f"labeler-{digest[:12]}"


class Conversations:
    """Message texts and conversation paths, fetched in batches and cached (bounded) across chunks."""

    def __init__(self, limit: int = 200_000) -> None:
        self.messages: dict[int, tuple[int | None, str, str]] = {}  # id -> (parent, role, text)
        self.prompts: dict[tuple[int, str], object] = {}  # (anchor, style) -> the prompt as a row holds it
        self.limit = limit

    def load(self, ids: Iterable[int]) -> None:
        wanted = {i for i in ids if i not in self.messages}
        if len(self.messages) + len(wanted) > self.limit:
            self.messages.clear()
            self.prompts.clear()
        while wanted:
            rows = list(Message.objects.filter(pk__in=list(wanted)).values_list("id", "parent_id", "role", "text"))
            for pk, parent, role, text in rows:
                self.messages[pk] = (parent, role, text)
            wanted = {parent for _, parent, _, _ in rows if parent is not None and parent not in self.messages}

    def path(self, message_id: int) -> list[dict[str, str]]:
        turns = []
        current: int | None = message_id
        while current is not None:
            parent, role, text = self.messages[current]
            turns.append({"role": role, "content": text})
            current = parent
        return turns[::-1]

    def text(self, message_id: int) -> str:
        return self.messages[message_id][2]

    def prompt(self, anchor: int, style: str):
        """The conversation up to `anchor` as a row's prompt (text or turns), computed once per prompt."""
        key = (anchor, style)
        if key not in self.prompts:
            turns = self.path(anchor)
            self.prompts[key] = turns if style == "conversational" else standard_prompt(turns)
        return self.prompts[key]


def standard_prompt(turns: list[dict[str, str]]) -> str:
    """A conversation as one prompt string: a single user turn is itself; longer ones keep their roles."""
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return "".join(f"\n\n{_HH_ROLE[t['role']]}: {t['content']}" for t in turns) + "\n\nAssistant:"


_HH_ROLE = {"system": "System", "user": "Human", "assistant": "Assistant"}


def hh_transcript(turns: list[dict[str, str]], reply: str) -> str:
    return "".join(f"\n\n{_HH_ROLE[t['role']]}: {t['content']}" for t in turns) + f"\n\nAssistant: {reply}"


# --- pairs from raw judgements (pure) -----------------------------------------------------------------------


@dataclass(slots=True)
class Pair:
    chosen: int
    rejected: int
    weight: float
    tie: bool = False
    margin: float | None = None


def ranking_pairs(tiers: list[list[int]], *, ties: str) -> list[Pair]:
    """Every pair between different tiers (better first), weight 1 / pairs, so the ranking counts once. With
    ties="label", tied pairs come too, marked, and count in the weight."""
    positions = agreement.tier_positions(tiers)
    items = sorted(positions)
    pairs = []
    for x, y in combinations(items, 2):
        if positions[x] == positions[y]:
            if ties == "label":
                pairs.append((x, y, True))
        elif positions[x] < positions[y]:
            pairs.append((x, y, False))
        else:
            pairs.append((y, x, False))
    weight = 1 / len(pairs) if pairs else 0.0
    return [Pair(chosen=c, rejected=r, weight=weight, tie=t) for c, r, t in pairs]


def comparison_pair(candidate_a: int, candidate_b: int, choice: int, *, ties: str) -> Pair | None:
    """The comparison as a pair: the side the choice leans to is chosen; |choice| 1 ("about the same") is a tie,
    dropped or labelled; margin = |choice| - 1."""
    chosen, rejected = (candidate_a, candidate_b) if choice < 0 else (candidate_b, candidate_a)
    tie = abs(choice) <= 1
    if tie and ties == "drop":
        return None
    return Pair(chosen=chosen, rejected=rejected, weight=1.0, tie=tie, margin=float(abs(choice) - 1))


# --- rows -----------------------------------------------------------------------------------------------------


def _counted(model, project: Project, options: ExportOptions, only_ids: Iterable[int] | None) -> QuerySet:
    rows = model.objects.filter(task__project=project, discarded_at__isnull=True)
    if options.date_from:
        rows = rows.filter(created_at__gte=timezone.make_aware(datetime.combine(options.date_from, time.min)))
    if options.date_to:
        rows = rows.filter(created_at__lte=timezone.make_aware(datetime.combine(options.date_to, time.max)))
    if options.labelers:
        rows = rows.filter(labeler_id__in=options.labelers)
    if options.imported == "exclude":
        rows = rows.filter(import_source__isnull=True)
    elif options.imported == "only":
        rows = rows.filter(import_source__isnull=False)
    if only_ids is not None:
        rows = rows.filter(pk__in=list(only_ids))
    return rows.order_by("id")


def _chunks(queryset: QuerySet, fields: list[str]) -> Iterator[list[dict]]:
    """Rows in id order, CHUNK at a time, by keyset pagination (no OFFSET, no server-side cursor needed). The
    shown order and the time stamp come as text: they go into the file as they are, never parsed."""
    last = 0
    queryset = queryset.annotate(
        shown_order_json=Cast("shown_order", TextField()), created_text=Cast("created_at", TextField())
    )
    fields = [f for f in fields if f not in ("shown_order", "created_at")] + ["shown_order_json", "created_text"]
    while True:
        chunk = list(queryset.filter(pk__gt=last).values(*fields)[:CHUNK])
        if not chunk:
            return
        yield chunk
        last = chunk[-1]["id"]


@dataclass
class _Filters:
    """What must be known before streaming: per-prompt agreement and model authorship, when filtered on."""

    agreement: dict[int, float] | None = None
    model_messages: set[int] | None = None

    def keep(self, anchor: int, pair: Pair) -> bool:
        if self.agreement is not None and anchor not in self.agreement:
            return False
        if self.model_messages is not None and not {pair.chosen, pair.rejected} & self.model_messages:
            return False
        return True


def _filters(project: Project, options: ExportOptions) -> _Filters:
    filters = _Filters()
    if options.min_agreement is not None:
        prompts = quality.aggregated_preferences(project=project)
        filters.agreement = {p.anchor_id: p.agreement for p in prompts if p.agreement >= options.min_agreement}
    if options.model_versions:
        filters.model_messages = set(
            Message.objects.filter(project=project, author_model_id__in=options.model_versions).values_list(
                "id", flat=True
            )
        )
    return filters


def _pair_row(
    project: Project, options: ExportOptions, conversations: Conversations, anchor: int, pair: Pair, extra: dict
) -> dict:
    chosen, rejected = conversations.text(pair.chosen), conversations.text(pair.rejected)
    if options.dataset == "hh":
        turns = conversations.path(anchor)
        row = {"chosen": hh_transcript(turns, chosen), "rejected": hh_transcript(turns, rejected)}
    elif options.style == "conversational":
        row = {
            "prompt": conversations.prompt(anchor, "conversational"),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    else:
        row = {"prompt": conversations.prompt(anchor, "standard"), "chosen": chosen, "rejected": rejected}
    if options.margin and pair.margin is not None:
        row["margin"] = pair.margin
    elif options.margin:
        row["margin"] = 0.0
    row["weight"] = pair.weight
    row["tie"] = pair.tie
    row["chosen_id"], row["rejected_id"] = pair.chosen, pair.rejected
    row.update(extra)
    return row


def preference_rows(project: Project, options: ExportOptions, only_ids: dict | None = None) -> Iterator[dict]:
    """Per-labeler pairs from rankings and comparisons, in a fixed order (rankings by id, then comparisons)."""
    filters = _filters(project, options)
    conversations = Conversations()
    kinds = options.kinds or (TaskKind.RANK, TaskKind.COMPARE)
    common = ["id", "task_id", "task__anchor_id", "labeler_id", "import_source_id", "shown_order", "time_spent_ms"]
    common.append("created_at")
    if TaskKind.RANK in kinds:
        queryset = _counted(Ranking, project, options, None if only_ids is None else only_ids.get("rankings", []))
        for chunk in _chunks(queryset, [*common, "tiers", "candidate_flags", "none_acceptable"]):
            conversations.load(
                [r["task__anchor_id"] for r in chunk] + [m for r in chunk for tier in r["tiers"] for m in tier]
            )
            for r in chunk:
                for pair in ranking_pairs(r["tiers"], ties=options.ties):
                    if filters.keep(r["task__anchor_id"], pair):
                        extra = _provenance(project, r, "ranking")
                        extra["flags"] = sorted(
                            set(r["candidate_flags"].get(str(pair.chosen), []))
                            | set(r["candidate_flags"].get(str(pair.rejected), []))
                        )
                        extra["none_acceptable"] = r["none_acceptable"]
                        yield _pair_row(project, options, conversations, r["task__anchor_id"], pair, extra)
    if TaskKind.COMPARE in kinds:
        queryset = _counted(Comparison, project, options, None if only_ids is None else only_ids.get("comparisons", []))
        for chunk in _chunks(queryset, [*common, "candidate_a_id", "candidate_b_id", "choice", "both_bad", "margin"]):
            conversations.load(
                [r["task__anchor_id"] for r in chunk]
                + [m for r in chunk for m in (r["candidate_a_id"], r["candidate_b_id"])]
            )
            for r in chunk:
                pair = comparison_pair(r["candidate_a_id"], r["candidate_b_id"], r["choice"], ties=options.ties)
                if pair is not None and r["margin"] is not None:  # an imported judgement's own strength
                    pair = dataclasses.replace(pair, margin=r["margin"])
                if pair is not None and filters.keep(r["task__anchor_id"], pair):
                    extra = _provenance(project, r, "comparison")
                    extra["flags"] = ["both_bad"] if r["both_bad"] else []
                    extra["none_acceptable"] = r["both_bad"]
                    yield _pair_row(project, options, conversations, r["task__anchor_id"], pair, extra)


def _provenance(project: Project, r: dict, source: str) -> dict:
    return {
        "source": source,
        "task_id": r["task_id"],
        "annotation_id": r["id"],
        "labeler": labeler_pseudonym(project.pk, r["labeler_id"], r["import_source_id"]),
        "shown_order": RawJSON(r["shown_order_json"]),
        "time_spent_ms": r["time_spent_ms"],
        "created_at": r["created_text"],
    }


def aggregated_rows(project: Project, options: ExportOptions, only_ids: dict | None = None) -> Iterator[dict]:
    """One row per prompt and pair of replies, from all its labelers: the majority relation (majority), or the
    Bradley–Terry order with margin = the score difference and the model's probability (bradley_terry)."""
    keys = {Ranking: "rankings", Comparison: "comparisons", Rating: "ratings"}
    kinds = options.kinds or (TaskKind.RANK, TaskKind.COMPARE)
    wanted = {Ranking: TaskKind.RANK in kinds, Comparison: TaskKind.COMPARE in kinds, Rating: False}

    def restrict(model, queryset):
        if not wanted[model]:
            return queryset.none()
        ids = None if only_ids is None else only_ids.get(keys[model], [])
        return _counted(model, project, options, ids)

    judgements = quality.Judgements.load(project, restrict=restrict)
    filters = _filters(project, options)
    conversations = Conversations()
    for prompt in quality.aggregated_preferences(project=project, judgements=judgements):
        conversations.load([prompt.anchor_id, *prompt.scores])
        fit = agreement.BradleyTerryFit(
            scores=prompt.scores, tie_strength=prompt.tie_strength, iterations=0, converged=True
        )
        for consensus in prompt.pairs:
            x, y = consensus.pair
            votes = sum(consensus.votes.values())
            if options.aggregation == "majority":
                if consensus.relation is None:
                    continue  # split evenly: no majority to export
                tie = consensus.relation == 0
                chosen, rejected = (x, y) if consensus.relation <= 0 else (y, x)
                margin = float(consensus.votes[consensus.relation]) / votes
                extra = {"votes": votes, "agreement": consensus.votes[consensus.relation] / votes}
            else:
                chosen, rejected = (x, y) if prompt.scores[x] >= prompt.scores[y] else (y, x)
                win, tie_p, _loss = fit.probability(chosen, rejected)
                margin = prompt.scores[chosen] - prompt.scores[rejected]
                tie = tie_p > win
                extra = {"votes": votes, "p_chosen": win, "p_tie": tie_p}
            if tie and options.ties == "drop":
                continue
            pair = Pair(chosen=chosen, rejected=rejected, weight=1.0, tie=tie, margin=round(margin, 6))
            if filters.keep(prompt.anchor_id, pair):
                extra.update({"source": options.aggregation, "prompt_id": prompt.anchor_id})
                yield _pair_row(project, options, conversations, prompt.anchor_id, pair, extra)


def sft_rows(project: Project, options: ExportOptions, only_ids: dict | None = None) -> Iterator[dict]:
    """Demonstrations as {"messages": conversation + the labeler's reply}."""
    conversations = Conversations()
    queryset = _counted(
        Demonstration, project, options, None if only_ids is None else only_ids.get("demonstrations", [])
    )
    fields = ["id", "task_id", "task__anchor_id", "message_id", "labeler_id", "import_source_id", "time_spent_ms"]
    for chunk in _chunks(queryset, [*fields, "shown_order", "created_at"]):
        conversations.load([r["message_id"] for r in chunk])
        for r in chunk:
            yield {"messages": conversations.path(r["message_id"]), **_provenance(project, r, "demonstration")}


def rating_rows(project: Project, options: ExportOptions, only_ids: dict | None = None) -> Iterator[dict]:
    """Ratings: the conversation, the reply, its 1–7 score and flags."""
    conversations = Conversations()
    queryset = _counted(Rating, project, options, None if only_ids is None else only_ids.get("ratings", []))
    fields = ["id", "task_id", "task__anchor_id", "candidate_id", "labeler_id", "import_source_id", "time_spent_ms"]
    for chunk in _chunks(queryset, [*fields, "shown_order", "created_at", "score", "flags", "comment"]):
        conversations.load([r["candidate_id"] for r in chunk])
        for r in chunk:
            turns = conversations.path(r["candidate_id"])
            yield {
                "prompt": turns[:-1] if options.style == "conversational" else standard_prompt(turns[:-1]),
                "completion": turns[-1]["content"],
                "score": r["score"],
                "flags": list(r["flags"]),
                "comment": r["comment"],
                **_provenance(project, r, "rating"),
            }


def prompt_anchor_ids(project: Project, options: ExportOptions) -> list[int]:
    """The project's distinct prompts (the last user message of each task's conversation; gold tasks left out), by
    id, from tasks created within the options' dates."""
    tasks = Task.objects.filter(project=project, is_gold=False)
    if options.date_from:
        tasks = tasks.filter(created_at__gte=timezone.make_aware(datetime.combine(options.date_from, time.min)))
    if options.date_to:
        tasks = tasks.filter(created_at__lte=timezone.make_aware(datetime.combine(options.date_to, time.max)))
    return list(tasks.order_by("anchor_id").values_list("anchor_id", flat=True).distinct())


def prompt_rows(project: Project, options: ExportOptions, only_ids: dict | None = None) -> Iterator[dict]:
    """Prompts only (TRL's prompt-only format), one row per conversation the project asks about: what PPO samples
    replies to."""
    anchors = prompt_anchor_ids(project, options) if only_ids is None else list(only_ids.get("prompts", []))
    conversations = Conversations()
    for start in range(0, len(anchors), CHUNK):
        chunk = anchors[start : start + CHUNK]
        conversations.load(chunk)
        for anchor in chunk:
            yield {"prompt": conversations.prompt(anchor, options.style), "prompt_id": anchor}


def tree_rows(project: Project, options: ExportOptions, only_ids: dict | None = None) -> Iterator[dict]:
    """Whole conversation trees, one row per root, OASST-style nested children."""
    children: dict[int | None, list[tuple]] = {}
    author = {"u": "human", "m": "model", "i": "import"}
    for pk, parent, role, text, user, model in (
        Message.objects.filter(project=project)
        .order_by("id")
        .values_list("id", "parent_id", "role", "text", "author_user_id", "author_model_id")
        .iterator(chunk_size=CHUNK)
    ):
        kind = "u" if user else ("m" if model else "i")
        children.setdefault(parent, []).append((pk, role, text, author[kind]))

    def node(message) -> dict:
        pk, role, text, who = message
        return {
            "message_id": pk,
            "role": role,
            "text": text,
            "author": who,
            "children": [node(child) for child in children.get(pk, [])],
        }

    for root in children.get(None, []):
        yield node(root)


def export_rows(project: Project, options: ExportOptions, only_ids: dict | None = None) -> Iterator[dict]:
    """The rows of an export, in a fixed order. `only_ids` ({"rankings": [...], ...}) restricts to a snapshot."""
    if options.dataset in ("preferences", "hh"):
        if options.aggregation == "raw":
            return preference_rows(project, options, only_ids)
        return aggregated_rows(project, options, only_ids)
    if options.dataset == "sft":
        return sft_rows(project, options, only_ids)
    if options.dataset == "ratings":
        return rating_rows(project, options, only_ids)
    if options.dataset == "prompts":
        return prompt_rows(project, options, only_ids)
    return tree_rows(project, options, only_ids)


def matching_annotation_ids(project: Project, options: ExportOptions) -> dict[str, list[int]]:
    """The ids of the judgements an export with these options reads (what a snapshot freezes)."""
    kinds = options.kinds or (TaskKind.RANK, TaskKind.COMPARE)
    ids: dict[str, list[int]] = {}
    if options.dataset in ("preferences", "hh"):
        if TaskKind.RANK in kinds:
            ids["rankings"] = list(_counted(Ranking, project, options, None).values_list("id", flat=True))
        if TaskKind.COMPARE in kinds:
            ids["comparisons"] = list(_counted(Comparison, project, options, None).values_list("id", flat=True))
    elif options.dataset == "sft":
        ids["demonstrations"] = list(_counted(Demonstration, project, options, None).values_list("id", flat=True))
    elif options.dataset == "ratings":
        ids["ratings"] = list(_counted(Rating, project, options, None).values_list("id", flat=True))
    elif options.dataset == "prompts":
        ids["prompts"] = prompt_anchor_ids(project, options)
    else:
        ids["messages"] = list(Message.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    return ids


# --- writers --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawJSON:
    """A value that is already JSON text (read from the database as text): written as is, never re-encoded."""

    text: str

    def value(self):
        return json.loads(self.text)


def _raw_json(value):
    if isinstance(value, RawJSON):
        return orjson.Fragment(value.text)
    raise TypeError(f"cannot export a {type(value).__name__}")


def plain_row(row: dict) -> dict:
    """The row with every value as plain Python (for a preview, or a writer that needs values)."""
    return {k: v.value() if isinstance(v, RawJSON) else v for k, v in row.items()}


def jsonl_chunks(rows: Iterable[dict], *, rows_per_chunk: int = 500) -> Iterator[bytes]:
    """JSONL bytes (UTF-8, compact), a few hundred rows at a time (what a streaming response sends)."""
    buffer: list[bytes] = []
    for row in rows:
        buffer.append(orjson.dumps(row, default=_raw_json))
        if len(buffer) >= rows_per_chunk:
            yield b"\n".join(buffer) + b"\n"
            buffer = []
    if buffer:
        yield b"\n".join(buffer) + b"\n"


class _Sink(io.RawIOBase):
    """A write-only file that hands what was written to whoever drains it (streaming Parquet)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def parquet_chunks(rows: Iterable[dict], *, rows_per_group: int = 20_000) -> Iterator[bytes]:
    """Parquet bytes, one row group at a time. The schema is inferred from the first row group; a later row
    with a different shape is an error, not a silent cast."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink, writer, batch = _Sink(), None, []

    def flush() -> bytes:
        nonlocal writer
        table = pa.Table.from_pylist(batch) if writer is None else pa.Table.from_pylist(batch, schema=writer.schema)
        if writer is None:
            writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
        writer.write_table(table)
        return sink.drain()

    for row in rows:
        batch.append(plain_row(row))
        if len(batch) >= rows_per_group:
            yield flush()
            batch = []
    if batch or writer is None:
        if batch:
            yield flush()
        if writer is None:  # no rows at all: a valid, empty file
            pq.ParquetWriter(sink, pa.schema([])).close()
            yield sink.drain()
            return
    writer.close()
    yield sink.drain()


def export_chunks(rows: Iterable[dict], fmt: str) -> Iterator[bytes]:
    return jsonl_chunks(rows) if fmt == "jsonl" else parquet_chunks(rows)


@dataclass
class Counted:
    """Wraps a row iterator and counts what passed, by `source`."""

    rows: Iterable[dict]
    counts: dict[str, int] = field(default_factory=dict)

    def __iter__(self) -> Iterator[dict]:
        for row in self.rows:
            key = row.get("source", "rows")
            self.counts[key] = self.counts.get(key, 0) + 1
            yield row


# --- HTTP ---------------------------------------------------------------------------------------------------------

CONTENT_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def export_response(project: Project, options: ExportOptions):
    """The export as a download, streamed chunk by chunk (memory stays flat however many rows)."""
    from django.http import StreamingHttpResponse

    response = StreamingHttpResponse(
        export_chunks(export_rows(project, options), options.format), content_type=CONTENT_TYPES[options.format]
    )
    name = f"{project.slug}-{options.dataset}-{timezone.localdate().isoformat()}.{options.filename_suffix}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def snapshot_response(project: Project, snapshot):
    """A snapshot's file exactly as it was frozen."""
    from pathlib import Path

    from django.http import FileResponse, Http404

    path = Path(snapshot.export_path)
    if not path.is_file():
        raise Http404("This snapshot's file is missing from the artifacts folder.")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"{project.slug}-snapshot-{snapshot.content_hash[:12]}{path.suffix}",
        content_type=CONTENT_TYPES.get(snapshot.filter.get("format", "jsonl"), "application/octet-stream"),
    )
