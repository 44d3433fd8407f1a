"""What decides a training run, as plain dataclasses: no torch here, so the web app can check a config (and fill
in its defaults) without loading a deep-learning stack."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

EMBEDDED_BACKBONE = "embedded:all-MiniLM-L6-v2"
DEVICE = re.compile(r"(cpu|mps|cuda|xpu)(:\d+)?")


@dataclass
class RewardConfig:
    """Everything that decides a reward-model run. `eval_every` 0 evaluates at each epoch's end only; n > 0 also
    every n steps. `eval_share` is the share of prompt groups held out (0: no evaluation)."""

    base_model: str = EMBEDDED_BACKBONE
    max_length: int = 256
    batch_size: int = 16
    learning_rate: float = 5e-5
    epochs: int = 1
    eval_share: float = 0.1
    use_margin: bool = True
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    eval_every: int = 0
    length_grouped: bool = True

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")

        def number(name: str, *, low: float, high: float | None = None, low_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if low_open and value <= low:
                raise ValueError(f"{name} must be > {low}, got {value}")
            if not low_open and value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
            if high is not None and value >= high:
                raise ValueError(f"{name} must be < {high}, got {value}")
            setattr(self, name, float(value))

        def flag(name: str) -> None:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ValueError("base_model must be a non-empty string")
        integer("max_length", 8)  # room for the special tokens and a few of each text
        integer("batch_size", 1)
        number("learning_rate", low=0.0, low_open=True)
        integer("epochs", 1)
        number("eval_share", low=0.0, high=1.0)
        flag("use_margin")
        number("weight_decay", low=0.0)
        number("warmup_ratio", low=0.0, high=1.0)
        number("grad_clip", low=0.0)  # 0 turns clipping off
        integer("seed", 0)
        integer("eval_every", 0)
        flag("length_grouped")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")
        if self.device != "auto" and not DEVICE.fullmatch(self.device):
            raise ValueError(f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardConfig:
        """A config from JSON-like data; unknown keys and bad values raise `ValueError` naming the field."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown reward config field(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass
class PairRecord:
    """One preference: for `prompt`, `chosen` was preferred over `rejected`.

    `margin` is by how much (the loss asks for r⁺ − r⁻ > margin when the config uses margins), `weight` how much
    the pair counts in loss and metrics (> 0). `group` keeps related pairs on one side of the held-out split (empty:
    the prompt itself); `kind` names the source ("ranking", "comparison") for per-kind metrics.
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    weight: float = 1.0
    group: str = ""
    kind: str = ""
