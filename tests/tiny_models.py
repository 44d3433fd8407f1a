"""Tiny models for tests, built from a config (random weights) with the real MiniLM tokenizer: seconds to
train on a CPU, and the same code paths as the real backbone."""

from __future__ import annotations

from pathlib import Path


def tiny_reward_backbone(directory: Path) -> str:
    """A 2-layer, 32-wide BERT sequence classifier saved in `directory`; returns its path for `base_model`."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rewardlab.training.reward import EMBEDDED_BACKBONE, resolve_model_path

    if not (directory / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_BACKBONE))
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
            num_labels=1,
        )
        BertForSequenceClassification(config).save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    return str(directory)
