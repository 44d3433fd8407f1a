"""Data for the pure trainer tests: a separable preference set (the tiny backbone comes from tests/rewardlab)."""

from __future__ import annotations

import random

from ml.config import PairRecord

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
