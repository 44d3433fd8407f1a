"""What decides a training run, as plain dataclasses: no torch here, so the web app can check a config (and fill
in its defaults) without loading a deep-learning stack.

Each field carries its help text and its bounds as dataclass field metadata (TRL's habit): ``help``, and ``min`` /
``max`` (inclusive) or ``gt`` / ``lt`` (exclusive). The config checks itself against them, and the web app builds
its run forms from them (`config_fields`), so the page, the API and the trainer accept the same runs.

>>> config = RewardConfig(epochs=3)
>>> config.epochs, config.learning_rate
(3, 5e-05)
>>> config_fields(RewardConfig)["max_length"].bounds
{'min': 8}
>>> RewardConfig.from_dict({"max_length": 4})
Traceback (most recent call last):
    ...
ml.config.ConfigError: max_length must be >= 8, got 4
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

EMBEDDED_BACKBONE = "embedded:all-MiniLM-L6-v2"
EMBEDDED_POLICY = "embedded:tiny-gpt2"
DEVICE = re.compile(r"(cpu|mps|cuda|xpu)(:\d+)?")
BOUNDS = ("min", "max", "gt", "lt")


class ConfigError(ValueError):
    """A config value is wrong; `field` names the field at fault (empty when no one field is)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ConfigField:
    """What a config field is, for whoever builds an input for it: its name, Python type (int, float, bool or
    str), default, help text and bounds (``min``/``max`` inclusive, ``gt``/``lt`` exclusive)."""

    name: str
    type: type
    default: Any
    help: str
    bounds: dict[str, float]


@functools.cache
def config_fields(config_class: type) -> dict[str, ConfigField]:
    """The fields of a config dataclass, in declaration order.

    >>> top_p = config_fields(SampleConfig)["top_p"]
    >>> top_p.type, top_p.default, top_p.bounds
    (<class 'float'>, 0.95, {'gt': 0.0, 'max': 1})
    >>> top_p.help
    'Sample from the fewest tokens whose probabilities add up to p; 1: from all.'
    """
    hints = typing.get_type_hints(config_class)
    return {
        f.name: ConfigField(
            name=f.name,
            type=hints[f.name],
            default=f.default,
            help=f.metadata["help"],
            bounds={key: value for key, value in f.metadata.items() if key in BOUNDS},
        )
        for f in dataclasses.fields(config_class)
    }


class _Checked:
    """Value checks for config dataclasses, from the fields' types and bounds: each error names the field at fault,
    so the web form and the API can point at it. Numbers given as ints are stored as floats where the field is a
    float."""

    KIND: ClassVar[str]

    def _check_fields(self) -> None:
        """Every int, float and bool field against its type and bounds, in declaration order (strings are each
        config's own business)."""
        for spec in config_fields(type(self)).values():
            if spec.type is bool:
                self._flag(spec.name)
            elif spec.type is int:
                self._integer(spec.name, spec.bounds["min"], spec.bounds.get("max"))
            elif spec.type is float:
                self._number(spec.name, spec.bounds)

    def _integer(self, name: str, low: int, high: int | None = None) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}", field=name)
        if value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}", field=name)
        if high is not None and value > high:
            raise ConfigError(f"{name} must be <= {high}, got {value}", field=name)

    def _number(self, name: str, bounds: dict[str, float]) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}", field=name)
        for key, fails, sign in (
            ("gt", value <= bounds.get("gt", -math.inf), ">"),
            ("min", value < bounds.get("min", -math.inf), ">="),
            ("lt", value >= bounds.get("lt", math.inf), "<"),
            ("max", value > bounds.get("max", math.inf), "<="),
        ):
            if key in bounds and fails:
                raise ConfigError(f"{name} must be {sign} {bounds[key]}, got {value}", field=name)
        setattr(self, name, float(value))

    def _flag(self, name: str) -> None:
        if not isinstance(getattr(self, name), bool):
            raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}", field=name)

    def _common(self) -> None:
        """base_model and device (every config has them), then every number and flag."""
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ConfigError("base_model must be a non-empty string", field="base_model")
        if not isinstance(self.device, str):
            raise ConfigError(f"device must be a string, got {self.device!r}", field="device")
        if self.device != "auto" and not DEVICE.fullmatch(self.device):
            raise ConfigError(
                f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got {self.device!r}",
                field="device",
            )
        self._check_fields()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """A config from JSON-like data; unknown keys and bad values raise `ConfigError` (a `ValueError`) naming
        the field.

        >>> SFTConfig.from_dict({"epochs": 2, "lr": 0.1})
        Traceback (most recent call last):
            ...
        ml.config.ConfigError: unknown sft config field(s): lr
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.KIND} config field(s): {', '.join(unknown)}")
        return cls(**data)


# Help texts shared by several configs.
SEED = "Seeds the held-out split, the batch order and torch: the same seed and data give the same run."
AUTO_DEVICE = "'auto' (the first GPU when there is one, else the CPU), or a torch device such as 'cpu' or 'cuda:0'."
LEARNING_RATE = "AdamW's peak learning rate, reached after the warmup and decayed linearly after it."
WEIGHT_DECAY = "AdamW weight decay (never on biases and normalisation weights)."
WARMUP_RATIO = "Share of the steps over which the learning rate rises linearly from 0."
GRAD_CLIP = "Largest gradient norm a step may take; 0 turns clipping off."
REPLY_TOKENS = "Tokens of conversation + reply; a longer one loses conversation tokens first."
PROMPT_TOKENS = "Tokens kept of the conversation (its end: the question being answered)."
NEW_TOKENS = "Longest reply sampled, in tokens."
TEMPERATURE = "Sampling temperature: below 1 sharpens the distribution, above 1 flattens it."
TOP_K = "Sample among the k likeliest tokens only; 0: among all."
TOP_P = "Sample from the fewest tokens whose probabilities add up to p; 1: from all."


@dataclass
class RewardConfig(_Checked):
    """Everything that decides a reward-model run. `eval_every` 0 evaluates at each epoch's end only; n > 0 also
    every n steps. `eval_share` is the share of prompt groups held out (0: no evaluation).

    >>> RewardConfig(eval_share=1.0)
    Traceback (most recent call last):
        ...
    ml.config.ConfigError: eval_share must be < 1.0, got 1.0
    >>> RewardConfig(learning_rate=1).learning_rate  # a float field stores an int as a float
    1.0
    """

    KIND: ClassVar[str] = "reward"

    base_model: str = field(
        default=EMBEDDED_BACKBONE,
        metadata={
            "help": "embedded:all-MiniLM-L6-v2 (shipped, offline), or any Hugging Face sequence-classification "
            "model name or local path."
        },
    )
    # min 8: room for the special tokens and a few of each text.
    max_length: int = field(default=256, metadata={"help": "Tokens of prompt + reply.", "min": 8})
    batch_size: int = field(default=16, metadata={"help": "Pairs per step.", "min": 1})
    learning_rate: float = field(default=5e-5, metadata={"help": LEARNING_RATE, "gt": 0.0})
    epochs: int = field(default=1, metadata={"help": "Passes over the training pairs.", "min": 1})
    eval_share: float = field(
        default=0.1, metadata={"help": "Of prompts, kept out of training (0: no evaluation).", "min": 0.0, "lt": 1.0}
    )
    use_margin: bool = field(default=True, metadata={"help": "A stronger A/B preference asks for a larger score gap."})
    weight_decay: float = field(default=0.0, metadata={"help": WEIGHT_DECAY, "min": 0.0})
    warmup_ratio: float = field(default=0.1, metadata={"help": WARMUP_RATIO, "min": 0.0, "lt": 1.0})
    grad_clip: float = field(default=1.0, metadata={"help": GRAD_CLIP, "min": 0.0})
    seed: int = field(default=0, metadata={"help": SEED, "min": 0})
    device: str = field(default="auto", metadata={"help": AUTO_DEVICE})
    eval_every: int = field(
        default=0,
        metadata={"help": "Evaluate every n steps too, besides each epoch's end; 0: at epoch ends only.", "min": 0},
    )
    length_grouped: bool = field(
        default=True, metadata={"help": "Batch pairs of similar length together, so little compute goes to padding."}
    )

    def __post_init__(self) -> None:
        self._common()


@dataclass
class _PolicyConfig(_Checked):
    """What every policy run shares: the starting policy, LoRA, seed and device.

    `base_model` is a Hugging Face causal LM name or path, a policy version's checkpoint, or `EMBEDDED_POLICY` (a
    tiny GPT-2 built from the project's own text). `lora_r` > 0 trains LoRA adapters of that rank (peft) on
    `lora_target_modules` (comma-separated; empty: peft's default for the architecture) instead of every weight;
    the saved checkpoint has them merged in, so it loads like any other model."""

    base_model: str = field(
        default=EMBEDDED_POLICY,
        metadata={
            "help": "embedded:tiny-gpt2 (a small GPT-2 built from the project's own text, offline), or any Hugging "
            "Face causal LM name or local path."
        },
    )
    seed: int = field(default=0, metadata={"help": SEED, "min": 0})
    device: str = field(default="auto", metadata={"help": AUTO_DEVICE})
    lora_r: int = field(
        default=0,
        metadata={
            "help": "0 trains every weight; 8–64 trains LoRA adapters only (large models), merged on save.",
            "min": 0,
            "max": 1024,
        },
    )
    lora_alpha: int = field(
        default=16, metadata={"help": "LoRA scale: the adapters' update is scaled by alpha / r.", "min": 1}
    )
    lora_dropout: float = field(
        default=0.05, metadata={"help": "Dropout on the LoRA adapters' input.", "min": 0.0, "lt": 1.0}
    )
    lora_target_modules: str = field(
        default="",
        metadata={"help": "Comma-separated names of the modules LoRA adapts; empty: peft's default for the model."},
    )

    def _common(self) -> None:
        super()._common()
        if not isinstance(self.lora_target_modules, str):
            raise ConfigError(
                f"lora_target_modules must be a comma-separated string, got {self.lora_target_modules!r}",
                field="lora_target_modules",
            )


@dataclass
class SFTConfig(_PolicyConfig):
    """Supervised fine-tuning on demonstrations: cross-entropy on the assistant's reply tokens only.

    >>> SFTConfig(lora_r=2048)
    Traceback (most recent call last):
        ...
    ml.config.ConfigError: lora_r must be <= 1024, got 2048
    """

    KIND: ClassVar[str] = "sft"

    max_length: int = field(default=512, metadata={"help": REPLY_TOKENS, "min": 8})
    batch_size: int = field(default=8, metadata={"help": "Demonstrations per step.", "min": 1})
    learning_rate: float = field(default=1e-4, metadata={"help": LEARNING_RATE, "gt": 0.0})
    epochs: int = field(default=3, metadata={"help": "Passes over the demonstrations.", "min": 1})
    eval_share: float = field(
        default=0.1, metadata={"help": "Of conversations, kept out of training.", "min": 0.0, "lt": 1.0}
    )
    weight_decay: float = field(default=0.0, metadata={"help": WEIGHT_DECAY, "min": 0.0})
    warmup_ratio: float = field(default=0.1, metadata={"help": WARMUP_RATIO, "min": 0.0, "lt": 1.0})
    grad_clip: float = field(default=1.0, metadata={"help": GRAD_CLIP, "min": 0.0})

    def __post_init__(self) -> None:
        self._common()


@dataclass
class DPOConfig(_PolicyConfig):
    """Direct preference optimisation (Rafailov et al. 2023) against a frozen copy of the starting policy: `beta`
    is the strength of the implicit KL constraint.

    >>> DPOConfig(max_length=256, max_prompt_length=300)
    Traceback (most recent call last):
        ...
    ml.config.ConfigError: max_prompt_length must be < max_length (256), got 300
    """

    KIND: ClassVar[str] = "dpo"

    beta: float = field(default=0.1, metadata={"help": "Strength of the pull toward the reference policy.", "gt": 0.0})
    max_length: int = field(default=512, metadata={"help": REPLY_TOKENS, "min": 8})
    max_prompt_length: int = field(default=256, metadata={"help": PROMPT_TOKENS + " Less than max_length.", "min": 1})
    batch_size: int = field(default=8, metadata={"help": "Pairs per step.", "min": 1})
    learning_rate: float = field(default=5e-6, metadata={"help": LEARNING_RATE, "gt": 0.0})
    epochs: int = field(default=1, metadata={"help": "Passes over the preference pairs.", "min": 1})
    eval_share: float = field(
        default=0.1, metadata={"help": "Of conversations, kept out of training.", "min": 0.0, "lt": 1.0}
    )
    weight_decay: float = field(default=0.0, metadata={"help": WEIGHT_DECAY, "min": 0.0})
    warmup_ratio: float = field(default=0.1, metadata={"help": WARMUP_RATIO, "min": 0.0, "lt": 1.0})
    grad_clip: float = field(default=1.0, metadata={"help": GRAD_CLIP, "min": 0.0})

    def __post_init__(self) -> None:
        self._common()
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(
                f"max_prompt_length must be < max_length ({self.max_length}), got {self.max_prompt_length}",
                field="max_prompt_length",
            )


@dataclass
class PPOConfig(_PolicyConfig):
    """PPO against a reward model with a per-token KL penalty toward the starting policy (InstructGPT).

    Each of `steps` iterations samples one reply to each of `batch_size` prompts, scores them, and takes
    `ppo_epochs` passes of mini-batches of `mini_batch_size` over them. `init_kl_coef` is β at the start;
    `target_kl` (per reply, in nats) makes β adaptive, 0 keeps it fixed. `vf_coef` weighs the value loss.

    >>> PPOConfig(batch_size=4, mini_batch_size=8)
    Traceback (most recent call last):
        ...
    ml.config.ConfigError: mini_batch_size must be <= batch_size (4), got 8
    """

    KIND: ClassVar[str] = "ppo"

    steps: int = field(default=50, metadata={"help": "Each samples one batch of replies.", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "Prompts (replies) per step.", "min": 1})
    mini_batch_size: int = field(
        default=8, metadata={"help": "Replies per gradient step; at most batch_size.", "min": 1}
    )
    ppo_epochs: int = field(default=4, metadata={"help": "Passes over each batch.", "min": 1})
    learning_rate: float = field(default=1e-5, metadata={"help": LEARNING_RATE, "gt": 0.0})
    max_prompt_length: int = field(default=256, metadata={"help": PROMPT_TOKENS, "min": 1})
    max_new_tokens: int = field(default=48, metadata={"help": NEW_TOKENS, "min": 1})
    temperature: float = field(default=1.0, metadata={"help": TEMPERATURE, "gt": 0.0})
    top_k: int = field(default=0, metadata={"help": TOP_K, "min": 0})
    top_p: float = field(default=1.0, metadata={"help": TOP_P, "gt": 0.0, "max": 1})
    init_kl_coef: float = field(default=0.1, metadata={"help": "Per-token penalty on log π/π_SFT.", "min": 0.0})
    target_kl: float = field(
        default=6.0, metadata={"help": "Nats per reply β adapts toward; 0 keeps β fixed.", "min": 0.0}
    )
    kl_horizon: int = field(
        default=10_000,
        metadata={"help": "How slowly β adapts: it moves by at most 20% per kl_horizon replies.", "min": 1},
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount per token of the reply.", "min": 0.0, "max": 1})
    lam: float = field(
        default=0.95,
        metadata={"help": "GAE λ: lower trades variance of the advantages for bias.", "min": 0.0, "max": 1},
    )
    cliprange: float = field(
        default=0.2, metadata={"help": "How far one update may move a token's probability ratio from 1.", "gt": 0.0}
    )
    cliprange_value: float = field(
        default=0.2, metadata={"help": "How far one update may move a value estimate.", "gt": 0.0}
    )
    vf_coef: float = field(
        default=0.1, metadata={"help": "Weight of the value loss beside the policy loss.", "min": 0.0}
    )
    whiten_advantages: bool = field(
        default=True, metadata={"help": "Normalise each batch's advantages to mean 0 and variance 1."}
    )
    grad_clip: float = field(default=1.0, metadata={"help": GRAD_CLIP, "min": 0.0})

    def __post_init__(self) -> None:
        self._common()
        if self.mini_batch_size > self.batch_size:
            raise ConfigError(
                f"mini_batch_size must be <= batch_size ({self.batch_size}), got {self.mini_batch_size}",
                field="mini_batch_size",
            )


@dataclass
class SampleConfig(_PolicyConfig):
    """A sampling run: `replies_per_prompt` replies from a policy version to each of up to `prompts` prompts that
    need candidates, for new ranking (`rank`) and A/B (`compare`) tasks. Replies that repeat one another or a
    candidate the prompt already has are dropped, and the short prompts are drawn for again, up to
    `resample_rounds` more times. `compare_previous` also samples one reply per prompt from the policy that
    served before and pits it against a new one, so people judge whether the new version is better.

    >>> SampleConfig(rank=False, compare=False, compare_previous=False)
    Traceback (most recent call last):
        ...
    ml.config.ConfigError: rank: a sampling run creates ranking tasks, A/B tasks or both; all three are off
    """

    KIND: ClassVar[str] = "sample"

    prompts: int = field(
        default=32, metadata={"help": "At most this many prompts, neediest first.", "min": 1, "max": 100_000}
    )
    replies_per_prompt: int = field(default=4, metadata={"help": "New replies to each prompt.", "min": 1, "max": 32})
    max_new_tokens: int = field(default=64, metadata={"help": NEW_TOKENS, "min": 1})
    max_prompt_length: int = field(default=256, metadata={"help": PROMPT_TOKENS, "min": 1})
    temperature: float = field(default=0.9, metadata={"help": TEMPERATURE, "gt": 0.0})
    top_k: int = field(default=0, metadata={"help": TOP_K, "min": 0})
    top_p: float = field(default=0.95, metadata={"help": TOP_P, "gt": 0.0, "max": 1})
    batch_size: int = field(default=32, metadata={"help": "Prompts sampled together.", "min": 1})
    resample_rounds: int = field(
        default=2,
        metadata={"help": "Draws again for prompts left short by duplicates, at most this often.", "min": 0, "max": 10},
    )
    rank: bool = field(default=True, metadata={"help": "The K replies, ranked best to worst."})
    compare: bool = field(default=True, metadata={"help": "The K replies in disjoint pairs."})
    compare_previous: bool = field(
        default=True, metadata={"help": "One reply of the earlier policy against one of this one."}
    )

    def __post_init__(self) -> None:
        self._common()
        if not (self.rank or self.compare or self.compare_previous):
            raise ConfigError(
                "rank: a sampling run creates ranking tasks, A/B tasks or both; all three are off", field="rank"
            )


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
