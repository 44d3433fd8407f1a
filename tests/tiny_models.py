"""Tiny models for tests, built from a config (random weights) with the real MiniLM tokenizer: seconds to
train on a CPU, and the same code paths as the real backbone."""

from __future__ import annotations

from pathlib import Path


def tiny_reward_backbone(directory: Path) -> Path:
    """A seeded, randomly initialised 2-layer BERT sequence classifier (hidden 32) with the MiniLM tokenizer, saved
    in `directory` (once); returns `directory` for `base_model`."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, set_seed

    from ml.reward import EMBEDDED_BACKBONE, resolve_model_path

    if not (directory / "config.json").exists():
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
