"""What every trainer shares: progress and cancellation hooks, device and dtype choice, seeding, atomic output."""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch


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
