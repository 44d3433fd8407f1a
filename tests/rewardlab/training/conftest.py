"""Fixtures for the pure trainer tests: a tiny BERT reward backbone and a separable preference set."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rewardlab.training.reward import EMBEDDED_BACKBONE, PairRecord, resolve_model_path

SUBJECTS = [
    "the weather", "my garden", "a python error", "the train times", "a birthday gift", "the tax form",
    "a broken bike", "the recipe", "my cat", "the museum", "a job interview", "the printer", "the meeting",
    "a cold", "the budget", "my homework", "the new phone", "a flight delay", "the lease", "a wedding toast",
]  # fmt: skip
POLITE = [
    "thank you for asking, here is a careful and correct answer about",
    "happy to help, this is the right way to handle",
    "good question, the accurate answer is simple for",
]
RUDE = [
    "stupid question, figure it out yourself, whatever about",
    "no idea and do not care, go away with",
    "this is wrong and useless, stop asking about",
]


def make_tiny_backbone(directory: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with the real MiniLM tokenizer, saved to `directory`."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, set_seed

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_BACKBONE))
    set_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"))


def separable_pairs(n_groups: int = 100, per_group: int = 2, seed: int = 0) -> list[PairRecord]:
    """Pairs whose chosen reply is polite and on topic and whose rejected one is rude: any reward model that
    reads the words can separate them. Each prompt is one group; kinds alternate ranking/comparison."""
    rng = random.Random(seed)
    pairs = []
    for g in range(n_groups):
        subject = SUBJECTS[g % len(SUBJECTS)]
        prompt = f"question {g}: can you help me with {subject}?"
        for k in range(per_group):
            pairs.append(
                PairRecord(
                    prompt=prompt,
                    chosen=f"{rng.choice(POLITE)} {subject}.",
                    rejected=f"{rng.choice(RUDE)} {subject}.",
                    kind="ranking" if k % 2 == 0 else "comparison",
                )
            )
    return pairs
