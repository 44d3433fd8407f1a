"""The embedded default policy: a small GPT-2-style causal LM built from a config, with a byte-level BPE tokenizer
trained on the project's own text, so SFT, PPO, DPO and sampling run offline on a CPU. Any Hugging Face causal LM
name or path is used as is instead.

Conversations are rendered for a causal LM with a chat template of our own (`render_prompt`): each turn is
`<|role|>` and its text, ended by `<|end|>`; a prompt ends with `<|assistant|>`, so the model's continuation is the
assistant's reply, ended by `<|end|>` (the tokenizer's end-of-sequence token)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_POLICY = "embedded:tiny-gpt2"
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
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
