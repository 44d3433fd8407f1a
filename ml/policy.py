"""The embedded default policy: a small GPT-2-style causal LM built from a config, with a byte-level BPE tokenizer
trained on the project's own text, so SFT, PPO, DPO and sampling run offline on a CPU. Any Hugging Face causal LM
name or path is used as is instead.

Conversations are rendered for a causal LM with a chat template of our own (`render_prompt`): each turn is
`<|role|>` and its text, ended by `<|end|>`; a prompt ends with `<|assistant|>`, so the model's continuation is the
assistant's reply, ended by `<|end|>` (the tokenizer's end-of-sequence token). A model whose tokenizer has a chat
template of its own is prompted with that template instead (`format_prompt`).

The shared pieces of the SFT, DPO and PPO trainers live here too: loading a policy (optionally with LoRA
adapters), encoding prompt + reply with the reply's tokens marked, per-token log-probabilities with position ids
that are right for left- and right-padded rows alike, batched sampling with the KV cache, and saving."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ml.common import pick_device, pick_dtype, quiet_transformers, seed_everything
from ml.config import EMBEDDED_POLICY

POLICY_CHECKPOINT_FILE = "rewardlab_policy.json"
POLICY_CHECKPOINT_FORMAT = "rewardlab-policy/1"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END = "<|end|>"
PAD = "<|pad|>"


@dataclass(frozen=True)
class TinyPolicyConfig:
    """The embedded policy's size: small enough for CI, large enough to learn a toy task."""

    vocab_size: int = 2048
    n_positions: int = 512
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4


def render_prompt(turns: Sequence[dict[str, str]]) -> str:
    """A conversation (role/content dicts) as the policy's prompt, ending where the assistant's reply begins."""
    text = "".join(f"{ROLE_TOKENS[turn['role']]}{turn['content']}{END}" for turn in turns)
    return text + ROLE_TOKENS["assistant"]


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 2048):
    """A byte-level BPE tokenizer (GPT-2's scheme: any text encodes, nothing is unknown) trained on `texts`, with
    the chat template's special tokens, as a transformers `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, END, *ROLE_TOKENS.values()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS.values()),
        padding_side="left",  # generation continues prompts from their right end
    )


def build_tiny_policy(texts: Iterable[str], directory: Path, config: TinyPolicyConfig | None = None) -> Path:
    """Train the tokenizer on `texts`, build a randomly initialised GPT-2 of `config`'s size around it and save
    both to `directory` (a normal Hugging Face folder: `from_pretrained` loads it). Returns `directory`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = config or TinyPolicyConfig()
    tokenizer = train_tokenizer(texts, vocab_size=config.vocab_size)
    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(model_config)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    return directory


# --- loading ----------------------------------------------------------------------------------------------------


def resolve_policy_path(name: str, texts: Iterable[str], workdir: Path, tiny: TinyPolicyConfig | None = None) -> str:
    """What `from_pretrained` should load for `name`: for `EMBEDDED_POLICY`, a tiny GPT-2 built now from `texts`
    (the project's own conversations) into `workdir`; any other name or path as it is."""
    if name == EMBEDDED_POLICY:
        texts = [t for t in texts if t]
        if not texts:
            raise ValueError("the embedded policy's tokenizer is trained on the project's text, and there is none")
        return str(build_tiny_policy(texts, Path(workdir), tiny))
    if name.startswith("embedded:"):
        raise ValueError(f"unknown embedded policy {name!r}; the one built in is {EMBEDDED_POLICY!r}")
    return name


def load_policy(path: str, config: Any = None, *, trainable: bool = True) -> tuple[Any, Any]:
    """(tokenizer, model): a causal LM in fp32 (autocast brings bf16 on a GPU), dropout off (so the sampled and the
    optimised log-probabilities agree), a pad token, left padding. With `config.lora_r` > 0 and `trainable`, LoRA
    adapters are added and only they train."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{path}: the tokenizer has no end-of-sequence token, so replies could never end")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.config.pad_token_id = tokenizer.pad_token_id
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if trainable and config is not None and getattr(config, "lora_r", 0) > 0:
        from peft import LoraConfig, get_peft_model

        targets = [t.strip() for t in config.lora_target_modules.split(",") if t.strip()] or None
        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=targets,
                task_type="CAUSAL_LM",
                fan_in_fan_out=model.config.model_type == "gpt2",  # GPT-2 keeps its weights transposed (Conv1D)
            ),
        )
    return tokenizer, model


def prepare(config: Any, records: Sequence[Any]) -> tuple[Any, Any, torch.device, torch.dtype]:
    """What every policy trainer does first: seed, pick the device and the autocast dtype, and load
    `config.base_model` onto the device (the embedded policy is built from `records`' text, in a temporary folder).
    Returns (tokenizer, model, device, dtype)."""
    seed_everything(config.seed)
    device = pick_device(config.device)
    with tempfile.TemporaryDirectory(prefix="rewardlab-base-") as workdir:
        path = resolve_policy_path(config.base_model, corpus(records), Path(workdir))
        tokenizer, model = load_policy(path, config)
    return tokenizer, model.to(device), device, pick_dtype(device)


def check_context(tokenizer: Any, model: Any, base_model: str, name: str, needed: int) -> None:
    """Refuse a length (`name`, `needed` tokens) longer than the model's context."""
    limit = context_limit(tokenizer, model)
    if limit is not None and needed > limit:
        raise ValueError(f"{name} must be <= {limit} for {base_model}, got {needed}")


def frozen_copy(model: Any) -> Any:
    """The reference policy: a copy of `model` that never trains."""
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def uses_lora(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


def context_limit(tokenizer: Any, model: Any) -> int | None:
    config = model.config
    limits = [getattr(config, "n_positions", None), getattr(config, "max_position_embeddings", None)]
    limits.append(tokenizer.model_max_length)
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else None


def save_policy(model: Any, tokenizer: Any, directory: Path, metadata: dict[str, Any]) -> None:
    """A plain Hugging Face folder (LoRA adapters merged in) plus our metadata file."""
    if uses_lora(model):
        model = model.merge_and_unload()
    with quiet_transformers():
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    meta = {"format": POLICY_CHECKPOINT_FORMAT, **metadata}
    (Path(directory) / POLICY_CHECKPOINT_FILE).write_text(json.dumps(meta, indent=2) + "\n")


# --- encoding ---------------------------------------------------------------------------------------------------


def chat_group(record: Any) -> str:
    """The held-out split's key: the record's group, else its conversation."""
    return record.group or "\x1e".join(f"{t['role']}\x1f{t['content']}" for t in record.turns)


def check_turns(index: int, turns: Any) -> None:
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"record {index}: turns must be a non-empty list of role/content dicts")
    for turn in turns:
        if (
            not isinstance(turn, dict)
            or turn.get("role") not in ROLE_TOKENS
            or not isinstance(turn.get("content"), str)
        ):
            raise ValueError(f"record {index}: each turn needs a role (system, user, assistant) and a content string")


def corpus(records: Sequence[Any]) -> list[str]:
    """Every text of `records`, rendered as the policy reads it: what the embedded policy's tokenizer learns from."""
    texts = []
    for record in records:
        texts.append(render_prompt(record.turns))
        for name in ("reply", "chosen", "rejected"):
            if hasattr(record, name):
                texts.append(getattr(record, name) + END)
    return texts


def format_prompt(tokenizer: Any, turns: Sequence[dict[str, str]]) -> str:
    """The conversation as the policy reads it: its own chat template when it has one, else ours."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(turns), tokenize=False, add_generation_prompt=True)
    return render_prompt(turns)


def encode_chat(
    tokenizer: Any, prompt: str, reply: str, max_length: int, max_prompt_length: int | None = None
) -> tuple[list[int], int]:
    """(ids, n): the rendered prompt's tokens then the reply's, ended by end-of-sequence; the first `n` ids are the
    prompt. Prompt and reply are tokenized apart, so no token straddles the boundary and the reply's tokens are
    exactly what the policy would generate. Too long: the prompt loses tokens from the left (down to
    `max_prompt_length`, default half of `max_length`), then the reply from the right."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) + len(reply_ids) > max_length:
        floor = max_prompt_length if max_prompt_length is not None else max_length // 2
        keep_prompt = max(min(len(prompt_ids), floor), max_length - len(reply_ids))
        prompt_ids = prompt_ids[len(prompt_ids) - min(keep_prompt, len(prompt_ids)) :]
        reply_ids = reply_ids[: max_length - len(prompt_ids)]
    return prompt_ids + reply_ids, len(prompt_ids)


def pad_completions(rows: Sequence[tuple[list[int], int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`, `attention_mask` and `completion_mask` (1 on the reply's tokens) for rows made by
    `encode_chat`, as wide as the longest row."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        completion_mask[row, n_prompt : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only: 0 at each row's first real token, whether the row is padded on the
    left (a prompt for generation) or the right (a training row), as `generate` numbers them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log π(x_t | x_<t) for t = 1…L−1 (`[batch, L−1]`), from logits over the whole sequence, in fp32. Uses
    gather − logsumexp, never a full log-softmax copy of the logits."""
    return _gather_logprobs(logits[:, :-1], input_ids[:, 1:])


def _gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def _keeps_logits(model: Any) -> bool:
    """Whether the model's forward takes `logits_to_keep` (most causal LMs of transformers do)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _forward_takes_logits_to_keep(type(base))


@functools.cache
def _forward_takes_logits_to_keep(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def reply_logprobs(
    model: Any, sequences: torch.Tensor, attention_mask: torch.Tensor, start: int, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(log π of each token from position `start` on, the logits that predicted them, the model's output) for
    `[prompt | reply]` rows whose replies begin at `start`. The language-model head runs on the reply positions
    only when the model allows it (`logits_to_keep`): a prompt's positions never cost a vocabulary-wide row."""
    keep = sequences.shape[1] - start + 1
    if _keeps_logits(model):
        kwargs["logits_to_keep"] = keep
    out = forward(model, sequences, attention_mask, **kwargs)
    logits = out.logits[:, -keep:-1]
    return _gather_logprobs(logits, sequences[:, start:]), logits, out


def forward(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
    return model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask), **kwargs
    )


def completion_logprobs(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token log-probabilities `[batch, L−1]`, mask of the reply's tokens among them) for a `pad_completions`
    batch."""
    logits = forward(model, batch["input_ids"], batch["attention_mask"]).logits
    return token_logprobs(logits, batch["input_ids"]), batch["completion_mask"][:, 1:]


# --- sampling ---------------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """Replies sampled for a batch of prompts: `sequences` is `[prompt (left-padded) | reply (right-padded)]`,
    `prompt_width` where the replies start, `reply_mask` 1 on each reply's tokens (its end-of-sequence included),
    `texts` the replies decoded (no special tokens)."""

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    prompt_width: int
    reply_mask: torch.Tensor
    texts: list[str]
    seconds: float

    @property
    def reply_tokens(self) -> int:
        return int(self.reply_mask.sum())


@torch.no_grad()
def sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    max_prompt_length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    do_sample: bool = True,
) -> Samples:
    """One reply per prompt, all prompts in one batch: left-padded (each prompt cut to its last
    `max_prompt_length` tokens), generated with the KV cache, each reply stopped at end-of-sequence."""
    from transformers import GenerationConfig

    started = time.perf_counter()
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    encoded = tokenizer(
        list(prompts),
        add_special_tokens=False,
        padding=True,
        truncation=True,
        max_length=max_prompt_length,
        return_tensors="pt",
    ).to(device)
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_k=top_k if do_sample else None,
        top_p=top_p if do_sample else None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    was_training = model.training
    model.eval()
    try:
        sequences = model.generate(**encoded, generation_config=generation)
    finally:
        model.train(was_training)
    width = encoded["input_ids"].shape[1]
    replies = sequences[:, width:]
    is_end = replies == tokenizer.eos_token_id
    # Up to and including the first end-of-sequence; what generate wrote after it is padding.
    after_end = (is_end.long().cumsum(-1) - is_end.long()) > 0
    reply_mask = (~after_end).long()
    sequences[:, width:] = torch.where(after_end, torch.full_like(replies, tokenizer.pad_token_id), replies)
    attention_mask = torch.cat([encoded["attention_mask"], reply_mask], dim=1)
    texts = tokenizer.batch_decode(
        [row[mask.bool() & (row != tokenizer.eos_token_id)] for row, mask in zip(replies, reply_mask, strict=True)],
        skip_special_tokens=True,
    )
    return Samples(sequences, attention_mask, width, reply_mask, texts, time.perf_counter() - started)
