"""The one bridge from database rows to plain records the `ml` code takes (no torch here): training records from a
frozen snapshot, prompts to sample, candidates to score, chat turns to answer. Nothing else in the training app turns
rows into model inputs.

A reward-model run reads its frozen snapshot through the same code as the export, so what a researcher downloads
and what the trainer sees are the same pairs, prompts rendered the same way (TRL's standard format); the reward
model scores new replies with their prompts rendered the same way again (`reward_prompt`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max, Min

from annotate import chat, exports
from annotate.models import ChatTurn, Comparison, Demonstration, ImportSource, Message, Project, Ranking
from training.models import DatasetSnapshot, ModelVersion

# What a reward model trains on: every preference pair, standard prompts, ties dropped (a tie carries no
# direction for the Bradley–Terry loss), the comparison's strength as margin, 1/pairs weights for rankings.
REWARD_DATASET = exports.ExportOptions(dataset="preferences", style="standard", ties="drop", margin=True)


def reward_pair_count(snapshot: DatasetSnapshot) -> int:
    """How many pairs `reward_pairs` gives: the snapshot counted them when it was frozen (one row per pair)."""
    return snapshot_rows(snapshot)


def reward_pairs(snapshot: DatasetSnapshot) -> Iterator[dict]:
    """The snapshot's preference pairs as plain records: prompt, chosen, rejected, margin, weight, group (the
    prompt, so the held-out split never puts one prompt on both sides) and kind (ranking or comparison)."""
    options = exports.ExportOptions.from_filter(snapshot.filter)
    if any(
        getattr(options, name) != getattr(REWARD_DATASET, name) for name in ("dataset", "style", "ties", "aggregation")
    ):
        raise ValueError(f"Snapshot {snapshot.pk} does not hold raw standard preference pairs without ties.")
    imports = {
        f"import-{pk}": f"{name} (import {pk})"
        for pk, name in ImportSource.objects.filter(project=snapshot.project).values_list("id", "name")
    }
    for row in exports.preference_rows(snapshot.project, options, only_ids=snapshot.annotation_ids):
        yield {
            "prompt": row["prompt"],
            "chosen": row["chosen"],
            "rejected": row["rejected"],
            "margin": float(row.get("margin") or 0.0),
            "weight": float(row["weight"]),
            "group": row["prompt"],
            "kind": row["source"],
            "source": imports.get(row["labeler"], "labelers"),
        }


# What the policy trainers read. The policy renders conversations with its own chat template, so they come as
# role/content turns; PPO's reward model still reads the standard prompt it was trained on.
SFT_DATASET = exports.ExportOptions(dataset="sft")
DPO_DATASET = exports.ExportOptions(dataset="preferences", style="conversational", ties="drop", margin=True)
PROMPT_DATASET = exports.ExportOptions(dataset="prompts", style="conversational")


def _check_snapshot(snapshot: DatasetSnapshot, expected: exports.ExportOptions, what: str) -> exports.ExportOptions:
    options = exports.ExportOptions.from_filter(snapshot.filter)
    if any(getattr(options, name) != getattr(expected, name) for name in ("dataset", "style", "ties", "aggregation")):
        raise ValueError(f"Snapshot {snapshot.pk} does not hold {what}.")
    return options


def sft_records(snapshot: DatasetSnapshot) -> Iterator[dict]:
    """Demonstrations as {turns, reply}: the conversation up to the labeler's reply, and the reply (the held-out
    split keeps each conversation on one side)."""
    options = _check_snapshot(snapshot, SFT_DATASET, "demonstrations")
    for row in exports.sft_rows(snapshot.project, options, only_ids=snapshot.annotation_ids):
        turns = row["messages"]
        yield {"turns": turns[:-1], "reply": turns[-1]["content"]}


def dpo_pairs(snapshot: DatasetSnapshot) -> Iterator[dict]:
    """Preference pairs as {turns, chosen, rejected, weight} for DPO."""
    options = _check_snapshot(snapshot, DPO_DATASET, "conversational preference pairs without ties")
    for row in exports.preference_rows(snapshot.project, options, only_ids=snapshot.annotation_ids):
        yield {
            "turns": row["prompt"],
            "chosen": row["chosen"][0]["content"],
            "rejected": row["rejected"][0]["content"],
            "weight": float(row["weight"]),
        }


def ppo_prompts(snapshot: DatasetSnapshot) -> Iterator[dict]:
    """Prompts as {turns, reward_prompt}: the turns for the policy, the standard prompt for the reward model."""
    options = _check_snapshot(snapshot, PROMPT_DATASET, "prompts")
    for row in exports.prompt_rows(snapshot.project, options, only_ids=snapshot.annotation_ids):
        yield {"turns": row["prompt"], "reward_prompt": exports.standard_prompt(row["prompt"])}


def snapshot_rows(snapshot: DatasetSnapshot) -> int:
    """How many rows (pairs, demonstrations, prompts) the snapshot counted when it was frozen."""
    return snapshot.row_counts.get("rows", 0)


@dataclass(frozen=True)
class PreferenceSummary:
    """What a reward-model run would train on, shown before it starts."""

    pairs: int
    pairs_by_kind: dict[str, int]
    prompts: int
    labelers: int
    imported_pairs: int
    first: datetime | None
    last: datetime | None


def preference_summary(project: Project) -> PreferenceSummary:
    """Pairs, prompts, labelers and date range of the project's current preference data (the reward dataset)."""
    by_kind: Counter[str] = Counter()
    prompts: set[str] = set()
    labelers: set[str] = set()
    imported = 0
    for row in exports.preference_rows(project, REWARD_DATASET):
        if row["tie"]:
            continue
        by_kind[row["source"]] += 1
        prompts.add(row["prompt"])
        labelers.add(row["labeler"])
        imported += row["labeler"].startswith("import-")
    spans = [
        model.objects.filter(task__project=project, discarded_at__isnull=True).aggregate(
            first=Min("created_at"), last=Max("created_at")
        )
        for model in (Ranking, Comparison)
    ]
    firsts = [span["first"] for span in spans if span["first"]]
    lasts = [span["last"] for span in spans if span["last"]]
    return PreferenceSummary(
        pairs=sum(by_kind.values()),
        pairs_by_kind=dict(by_kind),
        prompts=len(prompts),
        labelers=len(labelers),
        imported_pairs=imported,
        first=min(firsts, default=None),
        last=max(lasts, default=None),
    )


@dataclass(frozen=True)
class PolicyDataSummary:
    """What the policy runs of a project would read now."""

    demonstrations: int
    conversations: int  # distinct conversations with a demonstration
    prompts: int
    preference_pairs: int


def policy_data_summary(project: Project, *, with_pairs: bool = True) -> PolicyDataSummary:
    demonstrations = Demonstration.objects.filter(task__project=project, discarded_at__isnull=True)
    return PolicyDataSummary(
        demonstrations=demonstrations.count(),
        conversations=demonstrations.values("task__anchor_id").distinct().count(),
        prompts=len(exports.prompt_anchor_ids(project, PROMPT_DATASET)),
        preference_pairs=preference_summary(project).pairs if with_pairs else 0,
    )


# --- what the models read outside training runs: prompts to sample, replies to score, chat turns to answer --------


def reward_prompt(turns: list[dict]) -> str:
    """A conversation as the reward model reads it: TRL's standard prompt, as in its training pairs."""
    return exports.standard_prompt(turns)


@dataclass(frozen=True)
class PromptToSample:
    """A prompt a sampling run writes new candidates for: the turns the policy answers, the prompt the reward model
    reads, and the replies it has already (not to be written again)."""

    anchor_id: int
    turns: list[dict]
    reward_prompt: str
    existing: list[str]


def prompts_to_sample(anchor_ids: list[int]) -> list[PromptToSample]:
    """The prompts ending in these messages, in that order, with the replies each has already."""
    conversations = exports.Conversations()
    conversations.load(anchor_ids)
    existing: dict[int, list[str]] = {}
    replies = Message.objects.filter(parent_id__in=anchor_ids, role="assistant").order_by("pk")
    for parent, text in replies.values_list("parent", "text"):
        existing.setdefault(parent, []).append(text)
    prompts = []
    for anchor in anchor_ids:
        turns = conversations.prompt(anchor, "conversational")
        prompts.append(PromptToSample(anchor, turns, reward_prompt(turns), existing.get(anchor, [])))
    return prompts


@dataclass(frozen=True)
class ReplyToScore:
    """A candidate reply the reward model scores: its message id, its prompt (standard) and its text."""

    message_id: int
    prompt: str
    reply: str


def replies_to_score(version: ModelVersion, *, batch_size: int = 256) -> Iterator[list[ReplyToScore]]:
    """The project's candidate replies that `version` has not scored yet, in batches, oldest first. The caller stores
    each batch's scores before asking for the next (a stored score takes a reply out of the next batch)."""
    todo = (
        Message.objects.filter(project_id=version.project_id, candidate_in_tasks__isnull=False)
        .exclude(reward_scores__model_version=version)
        .values_list("pk", "parent_id")
        .distinct()
        .order_by("pk")
    )
    conversations = exports.Conversations()
    while batch := list(todo[:batch_size]):
        conversations.load([m for pair in batch for m in pair])
        yield [
            ReplyToScore(message, conversations.prompt(parent, "standard"), conversations.text(message))
            for message, parent in batch
        ]


def chat_turns(turn: ChatTurn) -> list[dict[str, str]]:
    """The conversation a live-chat turn answers, root first, as role/content turns for the policy's template."""
    return chat.turn_conversation(turn)

