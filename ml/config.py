"""What decides a training run, as plain dataclasses: no torch here, so the web app can check a config (and fill
in its defaults) without loading a deep-learning stack."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

EMBEDDED_BACKBONE = "embedded:all-MiniLM-L6-v2"
EMBEDDED_POLICY = "embedded:tiny-gpt2"
DEVICE = re.compile(r"(cpu|mps|cuda|xpu)(:\d+)?")


class _Checked:
    """Value checks for config dataclasses: each names the field at fault, so the web form and the API can point
    at it. Numbers given as ints are stored as floats where the field is a float."""

    def _integer(self, name: str, low: int, high: int | None = None) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ValueError(f"{name} must be <= {high}, got {value}")

    def _number(self, name: str, *, low: float, high: float | None = None, low_open: bool = False) -> None:
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

    def _flag(self, name: str) -> None:
        if not isinstance(getattr(self, name), bool):
            raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _common(self) -> None:
        """base_model, seed and device: every config has them."""
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ValueError("base_model must be a non-empty string")
        self._integer("seed", 0)
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")
        if self.device != "auto" and not DEVICE.fullmatch(self.device):
            raise ValueError(f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got {self.device!r}")

    def _epoch_loop(self) -> None:
        """The fields of an epoch loop over a data set (reward, SFT, DPO). grad_clip 0 turns clipping off."""
        self._integer("batch_size", 1)
        self._number("learning_rate", low=0.0, low_open=True)
        self._integer("epochs", 1)
        self._number("eval_share", low=0.0, high=1.0)
        self._number("weight_decay", low=0.0)
        self._number("warmup_ratio", low=0.0, high=1.0)
        self._number("grad_clip", low=0.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """A config from JSON-like data; unknown keys and bad values raise `ValueError` naming the field."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.KIND} config field(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass
class RewardConfig(_Checked):
    """Everything that decides a reward-model run. `eval_every` 0 evaluates at each epoch's end only; n > 0 also
    every n steps. `eval_share` is the share of prompt groups held out (0: no evaluation)."""

    KIND: ClassVar[str] = "reward"

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
        self._common()
        self._integer("max_length", 8)  # room for the special tokens and a few of each text
        self._epoch_loop()
        self._flag("use_margin")
        self._integer("eval_every", 0)
        self._flag("length_grouped")


@dataclass
class _PolicyConfig(_Checked):
    """What every policy run shares: the starting policy, LoRA, seed and device.

    `base_model` is a Hugging Face causal LM name or path, a policy version's checkpoint, or `EMBEDDED_POLICY` (a
    tiny GPT-2 built from the project's own text). `lora_r` > 0 trains LoRA adapters of that rank (peft) on
    `lora_target_modules` (comma-separated; empty: peft's default for the architecture) instead of every weight;
    the saved checkpoint has them merged in, so it loads like any other model."""

    base_model: str = EMBEDDED_POLICY
    seed: int = 0
    device: str = "auto"
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = ""

    def _policy_common(self) -> None:
        self._common()
        self._integer("lora_r", 0, 1024)
        self._integer("lora_alpha", 1)
        self._number("lora_dropout", low=0.0, high=1.0)
        if not isinstance(self.lora_target_modules, str):
            raise ValueError(f"lora_target_modules must be a comma-separated string, got {self.lora_target_modules!r}")


@dataclass
class SFTConfig(_PolicyConfig):
    """Supervised fine-tuning on demonstrations: cross-entropy on the assistant's reply tokens only."""

    KIND: ClassVar[str] = "sft"

    max_length: int = 512
    batch_size: int = 8
    learning_rate: float = 1e-4
    epochs: int = 3
    eval_share: float = 0.1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self._policy_common()
        self._integer("max_length", 8)
        self._epoch_loop()


@dataclass
class DPOConfig(_PolicyConfig):
    """Direct preference optimisation (Rafailov et al. 2023) against a frozen copy of the starting policy: `beta`
    is the strength of the implicit KL constraint."""

    KIND: ClassVar[str] = "dpo"

    beta: float = 0.1
    max_length: int = 512
    max_prompt_length: int = 256
    batch_size: int = 8
    learning_rate: float = 5e-6
    epochs: int = 1
    eval_share: float = 0.1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self._policy_common()
        self._number("beta", low=0.0, low_open=True)
        self._integer("max_length", 8)
        self._integer("max_prompt_length", 1)
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length must be < max_length ({self.max_length}), got {self.max_prompt_length}"
            )
        self._epoch_loop()


@dataclass
class PPOConfig(_PolicyConfig):
    """PPO against a reward model with a per-token KL penalty toward the starting policy (InstructGPT).

    Each of `steps` iterations samples one reply to each of `batch_size` prompts, scores them, and takes
    `ppo_epochs` passes of mini-batches of `mini_batch_size` over them. `init_kl_coef` is β at the start;
    `target_kl` (per reply, in nats) makes β adaptive, 0 keeps it fixed. `vf_coef` weighs the value loss."""

    KIND: ClassVar[str] = "ppo"

    steps: int = 50
    batch_size: int = 16
    mini_batch_size: int = 8
    ppo_epochs: int = 4
    learning_rate: float = 1e-5
    max_prompt_length: int = 256
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    init_kl_coef: float = 0.1
    target_kl: float = 6.0
    kl_horizon: int = 10_000
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    whiten_advantages: bool = True
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self._policy_common()
        self._integer("steps", 1)
        self._integer("batch_size", 1)
        self._integer("mini_batch_size", 1)
        if self.mini_batch_size > self.batch_size:
            raise ValueError(f"mini_batch_size must be <= batch_size ({self.batch_size}), got {self.mini_batch_size}")
        self._integer("ppo_epochs", 1)
        self._number("learning_rate", low=0.0, low_open=True)
        self._integer("max_prompt_length", 1)
        self._integer("max_new_tokens", 1)
        self._number("temperature", low=0.0, low_open=True)
        self._integer("top_k", 0)
        self._number("top_p", low=0.0, low_open=True)
        if self.top_p > 1:
            raise ValueError(f"top_p must be <= 1, got {self.top_p}")
        self._number("init_kl_coef", low=0.0)
        self._number("target_kl", low=0.0)
        self._integer("kl_horizon", 1)
        self._number("gamma", low=0.0)
        self._number("lam", low=0.0)
        if self.gamma > 1 or self.lam > 1:
            raise ValueError(f"{'gamma' if self.gamma > 1 else 'lam'} must be <= 1")
        self._number("cliprange", low=0.0, low_open=True)
        self._number("cliprange_value", low=0.0, low_open=True)
        self._number("vf_coef", low=0.0)
        self._flag("whiten_advantages")
        self._number("grad_clip", low=0.0)


@dataclass
class SampleConfig(_PolicyConfig):
    """A sampling run: `replies_per_prompt` replies from a policy version to each of up to `prompts` prompts that
    need candidates, for new ranking (`rank`) and A/B (`compare`) tasks. Replies that repeat one another or a
    candidate the prompt already has are dropped, and the short prompts are drawn for again, up to
    `resample_rounds` more times. `compare_previous` also samples one reply per prompt from the policy that
    served before and pits it against a new one, so people judge whether the new version is better."""

    KIND: ClassVar[str] = "sample"

    prompts: int = 32
    replies_per_prompt: int = 4
    max_new_tokens: int = 64
    max_prompt_length: int = 256
    temperature: float = 0.9
    top_k: int = 0
    top_p: float = 0.95
    batch_size: int = 32
    resample_rounds: int = 2
    rank: bool = True
    compare: bool = True
    compare_previous: bool = True

    def __post_init__(self) -> None:
        self._policy_common()
        self._integer("prompts", 1, 100_000)
        self._integer("replies_per_prompt", 1, 32)
        self._integer("max_new_tokens", 1)
        self._integer("max_prompt_length", 1)
        self._number("temperature", low=0.0, low_open=True)
        self._integer("top_k", 0)
        self._number("top_p", low=0.0, low_open=True)
        if self.top_p > 1:
            raise ValueError(f"top_p must be <= 1, got {self.top_p}")
        self._integer("batch_size", 1)
        self._integer("resample_rounds", 0, 10)
        for name in ("rank", "compare", "compare_previous"):
            self._flag(name)
        if not (self.rank or self.compare or self.compare_previous):
            raise ValueError("rank: a sampling run creates ranking tasks, A/B tasks or both; all three are off")


@dataclass
class PairRecord:
    """One preference: for `prompt`, `chosen` was preferred over `rejected`.

    `margin` is by how much (the loss asks for r⁺ − r⁻ > margin when the config uses margins), `weight` how much
    the pair counts in loss and metrics (> 0). `group` keeps related pairs on one side of the held-out split (empty:
    the prompt itself); `kind` names the judgement ("ranking", "comparison") for per-kind metrics, `source` where it
    came from ("labelers", or an imported dataset's name) for the counts by source.
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    weight: float = 1.0
    group: str = ""
    kind: str = ""
    source: str = "labelers"


@dataclass
class ChatRecord:
    """One demonstration: the conversation so far (`turns`, role/content dicts ending with a user turn) and the
    assistant's `reply` a person wrote for it. `group` keeps records of one prompt on one side of the held-out
    split (empty: the conversation itself)."""

    turns: list[dict[str, str]]
    reply: str
    group: str = ""


@dataclass
class ChatPairRecord:
    """One preference for DPO: `chosen` over `rejected` as the assistant's reply to `turns`."""

    turns: list[dict[str, str]]
    chosen: str
    rejected: str
    weight: float = 1.0
    group: str = ""


@dataclass
class PromptRecord:
    """One prompt for PPO: `turns` for the policy (its chat template renders them) and `reward_prompt`, the same
    conversation as the reward model was trained to read it (the export's standard prompt)."""

    turns: list[dict[str, str]]
    reward_prompt: str
