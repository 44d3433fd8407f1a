"""What every trainer shares: progress and cancellation hooks, device and dtype choice, seeding, atomic output."""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn


class Cancelled(Exception):
    """Raised by a trainer when its cancel check says stop; nothing is left at the output directory."""


@dataclass
class Progress:
    """One optimisation step done: `step` of `total` (1-based), `epoch` as a fraction (1.5 = half way through
    the second), and that step's `metrics`: `loss`, `lr`, plus `eval_accuracy` and `eval_loss` on steps where an
    evaluation ran."""

    step: int
    total: int
    epoch: float
    metrics: dict[str, float]


T = TypeVar("T")


@dataclass
class TrainResult:
    """What a run leaves: the checkpoint directory, the final metrics (as saved beside it) and one history entry
    per step (``step``, ``loss``, ``lr``, and evaluation metrics where an evaluation ran)."""

    checkpoint: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]
LogFn = Callable[[str], None]


def pick_device(requested: str = "auto") -> torch.device:
    """ "auto" is the first CUDA device when there is one, else the CPU; anything else is taken as a torch device
    name ("cpu", "cuda", "cuda:1", "mps")."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} asked for, but CUDA is not available")
    return device


def pick_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype for `device`: bfloat16 on a CUDA device that supports it, float32 elsewhere (CPU bf16
    autocast is slower than fp32 on most CPUs, and fp16 would need loss scaling)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's (when installed) and torch's generators, CUDA's included."""
    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


@contextlib.contextmanager
def atomic_output_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `final` and rename it to `final` on a clean exit.

    The temporary directory lies in `final`'s parent (so the rename stays on one file system) and its name starts
    with ``.tmp-``. On any exception, `Cancelled` included, it is removed and `final` is never created: a crash
    leaves no half-written checkpoint where a reader would look for one. Refuses (`FileExistsError`) when `final`
    already exists, on entry and again just before the rename.
    """
    final = Path(final)
    if final.exists():
        raise FileExistsError(f"output directory {final} already exists; refusing to overwrite it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            raise FileExistsError(f"output directory {final} appeared while writing; refusing to overwrite it")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- the loop's pieces that every trainer uses ------------------------------------------------------------


def linear_warmup_decay(step: int, total: int, warmup: int, peak: float) -> float:
    """Learning rate of optimisation step `step` (1-based): up in a line to `peak` over `warmup` steps, then down
    in a line to `peak / (total - warmup)` on the last step (no step runs at a learning rate of 0).

    >>> [linear_warmup_decay(step, total=5, warmup=1, peak=1.0) for step in range(1, 6)]
    [1.0, 1.0, 0.75, 0.5, 0.25]
    """
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    return peak * (total - step + 1) / max(1, total - warmup)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: no decay on biases and normalisation weights (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide the loading and saving progress bars and the "newly initialized: classifier" report (the reward head
    is new on purpose); restore the settings after."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


# --- held-out split -------------------------------------------------------------------------------------


def _group_rank(key: str, seed: int) -> float:
    """A stable number in [0, 1) for a group: the same on every machine and run (unlike `hash`)."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_groups(
    records: Sequence[T], eval_share: float, seed: int, *, key: Callable[[T], str]
) -> tuple[list[T], list[T]]:
    """(train, eval): whole groups (`key` of a record) go to one side, chosen by a hash of the group and the seed.

    A group goes to eval when its rank (`_group_rank`) is below `eval_share`, so the share is of groups, not of
    pairs, and a group keeps its side when other groups are added or removed: a prompt held out once stays held
    out as the data set grows. With two groups or more and `eval_share` > 0, at least one group lands on each side.
    Both lists keep the input order.

    >>> split_groups(["a1", "a2", "b1", "c1", "d1"], 0.4, seed=1, key=lambda record: record[0])
    (['b1', 'c1', 'd1'], ['a1', 'a2'])
    """
    if not 0 <= eval_share < 1:
        raise ValueError(f"eval_share must be in [0, 1), got {eval_share}")
    ranks = {key: _group_rank(key, seed) for key in dict.fromkeys(key(r) for r in records)}
    held_out = {key for key, rank in ranks.items() if rank < eval_share}
    if eval_share > 0 and len(ranks) >= 2:
        if not held_out:
            held_out = {min(ranks, key=ranks.__getitem__)}
        elif len(held_out) == len(ranks):
            held_out.discard(max(ranks, key=ranks.__getitem__))
    train = [r for r in records if key(r) not in held_out]
    evaluation = [r for r in records if key(r) in held_out]
    return train, evaluation


# --- batching and the epoch loop ------------------------------------------------------------------------

# Pairs sorted by length together: the batches of one mega-batch have similar lengths (little padding), while
# the shuffle before and after keeps the order of examples random enough for SGD.
MEGA_BATCH_FACTOR = 50


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, *, grouped: bool = True
) -> list[list[int]]:
    """One epoch of batches (lists of indices), each index once; only the last batch may be short.

    Grouped: shuffle, cut into mega-batches of `MEGA_BATCH_FACTOR` batches, sort each mega-batch by length
    (longest first), cut it into batches, shuffle the order of the batches. Not grouped: shuffle and cut.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not grouped:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    mega = batch_size * MEGA_BATCH_FACTOR
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    # The one short batch (the tail of the last mega-batch) is shuffled in with the rest.
    rng.shuffle(batches)
    return batches


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    evaluation: dict[str, Any] | None  # the last one
    train_loss: float  # mean over the last epoch's examples (weighted, when the examples have weights)
    steps: int
    examples: int  # examples seen, epochs counted
    train_seconds: float


def fit(
    *,
    model: nn.Module,
    lengths: Sequence[int],
    config: Any,
    step_loss: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]],
    evaluate: Callable[[], dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    say: LogFn = lambda _line: None,
    unit: str = "examples",
    weights: torch.Tensor | None = None,
    eval_every: int = 0,
    length_grouped: bool = True,
) -> FitResult:
    """The epoch loop of the trainers that pass over a data set (reward model, SFT, DPO): `config.epochs` passes over
    `len(lengths)` examples in batches of `config.batch_size` (grouped by length unless `length_grouped` is false);
    AdamW with `weight_decay`, linear warmup (`warmup_ratio`) and decay from `learning_rate`, gradient clipping at
    `grad_clip` (0: off).

    `step_loss(indices)` returns the batch's loss (to minimise, with its graph) and metrics to record with it.
    `evaluate()` runs at each epoch's end, and every `eval_every` steps too when that is above 0; it returns metrics
    named ``eval_*``, of which the numbers go into the step's history row (all of the last evaluation is in the
    result). The reported train loss is the mean of the last epoch's batch losses weighted by their examples, or by
    the examples' `weights` when given. Cancellation is asked before every step and raises `Cancelled`."""
    steps_per_epoch = math.ceil(len(lengths) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = round(config.warmup_ratio * total)
    trainable = [p for p in model.parameters() if p.requires_grad]
    device = trainable[0].device
    optimizer = torch.optim.AdamW(
        decay_groups(model, config.weight_decay), lr=config.learning_rate, fused=device.type in ("cuda", "cpu")
    )
    rng = random.Random(config.seed)
    log_every = max(1, round(total / 10))
    say(f"{total} steps ({config.epochs} epoch(s) of {steps_per_epoch}), warmup {warmup}")
    history: list[dict[str, Any]] = []
    evaluation = None
    step = examples = 0
    train_seconds, train_loss = 0.0, float("nan")
    model.train()
    for _ in range(config.epochs):
        epoch_loss, epoch_weight = 0.0, 0.0
        batches = length_grouped_batches(lengths, config.batch_size, rng, grouped=length_grouped)
        for batch_index, batch in enumerate(batches):
            if should_cancel is not None and should_cancel():
                say(f"cancelled before step {step + 1}/{total}")
                raise Cancelled(f"cancelled before step {step + 1} of {total}")
            started = time.perf_counter()
            step += 1
            lr = linear_warmup_decay(step, total, warmup, config.learning_rate)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, metrics = step_loss(batch)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_seconds += time.perf_counter() - started
            examples += len(batch)
            batch_weight = float(weights[batch].sum()) if weights is not None else float(len(batch))
            epoch_loss += loss.item() * batch_weight
            epoch_weight += batch_weight
            row = {"loss": loss.item(), "lr": lr, **metrics}
            epoch_end = batch_index == steps_per_epoch - 1
            if evaluate is not None and (epoch_end or (eval_every and step % eval_every == 0)):
                evaluation = evaluate()
                model.train()
                numbers = {k: v for k, v in evaluation.items() if isinstance(v, int | float)}
                row |= numbers
                say(f"eval at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in numbers.items()))
            history.append({"step": step, **row})
            if progress is not None:
                progress(Progress(step=step, total=total, epoch=step / steps_per_epoch, metrics=row))
            if step % log_every == 0 or step == total:
                say(
                    f"step {step}/{total} ({100 * step / total:.0f}%): loss {loss.item():.4f}, lr {lr:.2e}, "
                    f"{examples / train_seconds:.1f} {unit}/s"
                )
        train_loss = epoch_loss / epoch_weight
    return FitResult(history, evaluation, train_loss, total, examples, train_seconds)
