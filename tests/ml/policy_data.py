"""Small chat data for the policy trainer tests, and a tiny base policy built from it."""

from __future__ import annotations

from pathlib import Path

from ml.config import ChatPairRecord, ChatRecord, PromptRecord
from ml.policy import TinyPolicyConfig, build_tiny_policy, render_prompt

COLOURS = ["red", "blue", "green"]
TINY = TinyPolicyConfig(vocab_size=300, n_positions=128, n_embd=64, n_layer=2, n_head=2)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def demonstrations(n: int = 60) -> list[ChatRecord]:
    return [
        ChatRecord(turns=user(f"What colour is item {i}?"), reply=f"Item {i} is {COLOURS[i % 3]}.") for i in range(n)
    ]


def preference_pairs(n: int = 40) -> list[ChatPairRecord]:
    return [
        ChatPairRecord(
            turns=user(f"What colour is item {i}?"),
            chosen=f"Item {i} is {COLOURS[i % 3]}, I am glad to help.",
            rejected="No idea. Go away.",
        )
        for i in range(n)
    ]


def prompts(n: int = 32) -> list[PromptRecord]:
    return [
        PromptRecord(turns=user(f"Tell me about plant {i}"), reward_prompt=f"Tell me about plant {i}") for i in range(n)
    ]


def tiny_policy(directory: Path) -> Path:
    """A randomly initialised tiny GPT-2 whose tokenizer learnt the data above."""
    texts = [render_prompt(r.turns) + r.reply for r in demonstrations()] + [render_prompt(p.turns) for p in prompts()]
    texts += [f"How do I water plant number {i}? Give it a cup of water every {i % 7 + 1} days." for i in range(200)]
    return build_tiny_policy(texts, directory, TINY)
