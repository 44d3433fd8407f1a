"""Self-check of tests/trl_roundtrip.py on hand-written JSONL and Parquet preference files (no database)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("trl")
pyarrow = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from tests.trl_roundtrip import (  # noqa: E402  (offline environment first)
    detect_format,
    dpo_trainer_two_steps,
    reward_trainer_two_steps,
)

# TRL itself reads the deprecated `is_gradient_checkpointing` alias of transformers 5.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTIONS = [
    ("What is the capital of France?", " Paris.", " Berlin, I think."),
    ("Name a primary colour.", " Red is a primary colour.", " Purple."),
    ("How many legs does a spider have?", " Eight.", " Six legs."),
    ("Translate 'bonjour' into English.", " Hello.", " Goodbye."),
    ("Is water wet?", " Water makes things wet.", " Water is dry."),
]


def _extras(i: int) -> dict:
    return {
        "weight": 1.0 if i % 2 else 0.5,
        "labeler": f"labeler{i % 2}",
        "task_id": 100 + i,
        "annotation_id": 1000 + i,
        "source": "compare",
        "shown_order": ["b", "a"] if i % 2 else ["a", "b"],
        "time_spent_ms": 1500 + 10 * i,
        "flags": ["low_confidence"] if i == 0 else [],
    }


def standard_rows(*, margin: float | None = -1.0) -> list[dict]:
    """margin=-1 means 'vary by row', None means 'no margin column', anything else is used as-is."""
    rows = []
    for i, (prompt, chosen, rejected) in enumerate(QUESTIONS):
        row = {"prompt": f"Question: {prompt}\nAnswer:", "chosen": chosen, "rejected": rejected}
        if margin is not None:
            row["margin"] = (i % 3) / 2 if margin == -1.0 else margin
        rows.append(row | _extras(i))
    return rows


def conversational_rows(*, margin: float | None = -1.0) -> list[dict]:
    rows = []
    for i, (prompt, chosen, rejected) in enumerate(QUESTIONS):
        conversation = [{"role": "system", "content": "You are a helpful assistant."}]
        if i % 2:  # a multi-turn prompt that already holds an assistant turn
            conversation += [
                {"role": "user", "content": "Hi."},
                {"role": "assistant", "content": "Hello! Ask me anything."},
            ]
        conversation.append({"role": "user", "content": prompt})
        row = {
            "prompt": conversation,
            "chosen": [{"role": "assistant", "content": chosen.strip()}],
            "rejected": [{"role": "assistant", "content": rejected.strip()}],
        }
        if margin is not None:
            row["margin"] = (i % 3) / 2 if margin == -1.0 else margin
        rows.append(row | _extras(i))
    return rows


def write(rows: list[dict], path: Path, file_format: str) -> Path:
    if file_format == "json":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        pq.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


CASES = [
    pytest.param(kind, file_format, id=f"{kind}-{file_format}")
    for kind in ("standard", "conversational")
    for file_format in ("json", "parquet")
]
ROWS = {"standard": standard_rows, "conversational": conversational_rows}
SUFFIX = {"json": "jsonl", "parquet": "parquet"}


def _assert_trained(result: dict, *, rows: int, kind: str) -> None:
    assert result["rows"] == rows
    assert result["trained_rows"] == rows, "TRL silently dropped rows"
    assert result["format"] == kind
    assert result["steps"] == 2
    assert result["params_changed"] is True
    assert len(result["losses"]) == 2
    assert all(math.isfinite(loss) for loss in result["losses"])
    assert result["seconds"] < 30


@pytest.mark.parametrize(("kind", "file_format"), CASES)
def test_reward_trainer_takes_export(kind, file_format, tmp_path):
    rows = ROWS[kind]()
    path = write(rows, tmp_path / f"prefs.{SUFFIX[file_format]}", file_format)

    result = reward_trainer_two_steps(path, file_format=file_format, tmp_dir=tmp_path)

    _assert_trained(result, rows=len(rows), kind=kind)
    assert result["margin"] is True
    assert "margin" not in result["dropped_columns"]
    assert {"weight", "labeler", "flags", "shown_order"} <= set(result["dropped_columns"])
    # One [CLS] in front and one [SEP] at the end of each sequence: no doubled EOS.
    for text in result["first_row"].values():
        assert text.startswith("[CLS]")
        assert text.rstrip().endswith("[SEP]")
        assert text.count("[CLS]") == 1


@pytest.mark.parametrize(("kind", "file_format"), CASES)
def test_dpo_trainer_takes_export(kind, file_format, tmp_path):
    rows = ROWS[kind]()
    path = write(rows, tmp_path / f"prefs.{SUFFIX[file_format]}", file_format)

    result = dpo_trainer_two_steps(path, file_format=file_format, tmp_dir=tmp_path)

    _assert_trained(result, rows=len(rows), kind=kind)
    # The policy starts equal to the reference, so the first sigmoid-DPO loss is log 2.
    assert result["losses"][0] == pytest.approx(math.log(2), abs=1e-4)
    assert "margin" in result["dropped_columns"]
    first = result["first_row"]
    assert first["prompt_ids"].startswith("[CLS]")
    assert "[SEP]" not in first["prompt_ids"]  # the prompt is not closed: the completion continues it
    assert first["chosen_ids"].strip().endswith("[SEP]")
    assert first["rejected_ids"].strip().endswith("[SEP]")
    if kind == "conversational":
        assert first["prompt_ids"].endswith("assistant :")


@pytest.mark.parametrize("kind", ["standard", "conversational"])
def test_reward_loss_subtracts_margin(kind, tmp_path):
    """At initialisation r_chosen ≈ r_rejected, so the first loss is ≈ mean(softplus(margin)): log 2 without one."""
    with_margin = write(ROWS[kind](margin=2.0), tmp_path / "m.jsonl", "json")
    without = write(ROWS[kind](margin=None), tmp_path / "n.jsonl", "json")

    loss_with = reward_trainer_two_steps(with_margin, file_format="json", tmp_dir=tmp_path / "m")["losses"][0]
    result = reward_trainer_two_steps(without, file_format="json", tmp_dir=tmp_path / "n")

    assert loss_with == pytest.approx(math.log1p(math.exp(2.0)), abs=0.02)
    assert result["margin"] is False
    assert result["losses"][0] == pytest.approx(math.log(2), abs=0.02)


def test_null_margin_is_refused(tmp_path):
    rows = standard_rows()
    rows[2]["margin"] = None
    path = write(rows, tmp_path / "prefs.jsonl", "json")
    with pytest.raises(ValueError, match="margin"):
        reward_trainer_two_steps(path, file_format="json", tmp_dir=tmp_path)


def test_detect_format():
    assert detect_format(standard_rows()[0]) == "standard"
    assert detect_format(conversational_rows()[0]) == "conversational"
    with pytest.raises(ValueError, match="lacks"):
        detect_format({"prompt": "x", "chosen": "y"})
    with pytest.raises(ValueError, match="assistant"):
        detect_format(
            {
                "prompt": [{"role": "user", "content": "x"}],
                "chosen": [{"role": "user", "content": "y"}],
                "rejected": [{"role": "assistant", "content": "z"}],
            }
        )
    with pytest.raises(ValueError, match="standard"):
        detect_format({"prompt": "x", "chosen": [{"role": "assistant", "content": "y"}], "rejected": "z"})
