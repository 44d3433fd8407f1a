"""The reward-model trainer on its own: loss, encoding, batching, split, config, a real (tiny) run, scoring."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ml.common import Cancelled, Progress, atomic_output_dir
from ml.reward import (
    CHECKPOINT_FILE,
    EMBEDDED_BACKBONE,
    PairRecord,
    RewardConfig,
    RewardScorer,
    bradley_terry_loss,
    encode,
    length_grouped_batches,
    linear_warmup_decay,
    pad_batch,
    preference_metrics,
    resolve_model_path,
    split_by_group,
    train_reward_model,
)
from tests.ml.conftest import separable_pairs


def tiny_config(backbone: Path, **overrides) -> RewardConfig:
    # A learning rate this high suits only a randomly initialised 2-layer model.
    settings = {
        "base_model": str(backbone),
        "max_length": 64,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "epochs": 2,
        "eval_share": 0.2,
        "device": "cpu",
    }
    return RewardConfig(**{**settings, **overrides})


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


# --- pure pieces ------------------------------------------------------------------------------------------------


def test_bradley_terry_loss_is_the_weighted_mean_of_minus_log_sigmoid_with_margins():
    chosen = torch.tensor([2.0, 0.5, -1.0])
    rejected = torch.tensor([1.0, 1.0, 0.0])
    margin = torch.tensor([0.5, 0.0, 1.0])
    weight = torch.tensor([1.0, 2.0, 0.5])

    # -log σ(d) = log(1 + e^-d), with d = r⁺ − r⁻ − m = 0.5, −0.5, −2.0
    expected = (
        1.0 * math.log(1 + math.exp(-0.5)) + 2.0 * math.log(1 + math.exp(0.5)) + 0.5 * math.log(1 + math.exp(2.0))
    ) / 3.5

    loss = bradley_terry_loss(chosen, rejected, margin, weight)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.99591, abs=1e-5)  # (0.47408 + 2 × 0.97408 + 0.5 × 2.12693) / 3.5


def test_learning_rate_warms_up_then_decays_without_a_zero_step():
    rates = [linear_warmup_decay(step, total=10, warmup=2, peak=1.0) for step in range(1, 11)]
    assert rates == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert linear_warmup_decay(1, total=4, warmup=0, peak=2.0) == 2.0


def test_pad_batch_pads_to_the_longest_sequence_of_the_batch():
    batch = pad_batch(
        [{"input_ids": [5, 6, 7], "token_type_ids": [0, 1, 1]}, {"input_ids": [8], "token_type_ids": [0]}],
        pad_token_id=0,
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert set(pad_batch([{"input_ids": [1]}], pad_token_id=9)) == {"input_ids", "attention_mask"}


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_BACKBONE))


def test_encode_is_the_tokenizer_text_pair_when_it_fits(minilm_tokenizer):
    [row] = encode(minilm_tokenizer, ["how are you"], ["fine thanks"], max_length=64)
    expected = minilm_tokenizer("how are you", "fine thanks")
    assert row["input_ids"] == expected["input_ids"]
    assert row["token_type_ids"] == expected["token_type_ids"]


def test_encode_cuts_the_prompt_from_the_left_before_the_reply_from_the_right(minilm_tokenizer):
    prompt = "a b c d e f"  # one token per word
    long_reply = "one two three four five six seven"
    short_reply = "yes no"
    # 3 special tokens + a budget of 8; the prompt keeps at least a quarter of the budget (2 tokens).
    cut_both, cut_prompt = encode(minilm_tokenizer, [prompt, prompt + " g h i j"], [long_reply, short_reply], 11)

    assert minilm_tokenizer.decode(cut_both["input_ids"]) == "[CLS] e f [SEP] one two three four five six [SEP]"
    assert cut_both["token_type_ids"] == [0, 0, 0, 0] + [1] * 7
    assert minilm_tokenizer.decode(cut_prompt["input_ids"]) == "[CLS] e f g h i j [SEP] yes no [SEP]"


def test_length_grouped_batches_hold_every_pair_once_and_pad_less_than_random_batches():
    rng = random.Random(0)
    lengths = [rng.randint(10, 400) for _ in range(1000)]
    grouped = length_grouped_batches(lengths, 16, random.Random(1))
    shuffled = length_grouped_batches(lengths, 16, random.Random(1), grouped=False)

    for batches in (grouped, shuffled):
        assert sorted(i for batch in batches for i in batch) == list(range(1000))
        assert sorted(len(b) for b in batches)[1:] == [16] * 62  # one short batch of 8

    def padded_tokens(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    assert padded_tokens(grouped) < 0.6 * padded_tokens(shuffled)
    assert length_grouped_batches(lengths, 16, random.Random(1)) == grouped


def test_split_by_group_keeps_each_group_on_one_side_and_is_deterministic():
    records = [PairRecord(prompt=f"prompt {i % 40}", chosen="a", rejected="b") for i in range(200)]
    records += [PairRecord(prompt=f"other {i}", chosen="a", rejected="b", group="shared") for i in range(10)]

    train, held_out = split_by_group(records, eval_share=0.25, seed=3)

    def groups(side):
        return {r.group or r.prompt for r in side}

    assert len(train) + len(held_out) == len(records)
    assert not groups(train) & groups(held_out)
    assert 3 <= len(groups(held_out)) <= 20
    assert split_by_group(records, eval_share=0.25, seed=3) == (train, held_out)
    assert split_by_group(records, eval_share=0.25, seed=4) != (train, held_out)


def test_split_by_group_puts_a_group_on_each_side_whatever_the_share():
    two = [PairRecord(prompt=p, chosen="a", rejected="b") for p in ("x", "y")]
    for share in (0.001, 0.999):
        train, held_out = split_by_group(two, eval_share=share, seed=0)
        assert len(train) == len(held_out) == 1
    assert split_by_group(two, eval_share=0.0, seed=0) == (two, [])


def test_preference_metrics_weigh_pairs_and_bin_confidence():
    chosen = torch.tensor([3.0, 0.1, -2.0, 1.0])
    rejected = torch.tensor([0.0, 0.0, 0.0, 1.0])
    metrics = preference_metrics(
        chosen, rejected, torch.zeros(4), torch.tensor([1.0, 1.0, 2.0, 1.0]), ["ranking", "ranking", "comparison", "x"]
    )

    assert metrics["eval_accuracy"] == pytest.approx(2 / 5)  # the tie counts as wrong
    assert metrics["accuracy_by_kind"] == {"comparison": 0.0, "ranking": 1.0, "x": 0.0}
    bins = metrics["calibration"]["bins"]
    assert len(bins) == 10
    # The preferred reply's probability: σ(3) = 0.95 (bin 9), σ(2) = 0.88 (bin 7, preferring the rejected one),
    # σ(0.1) = 0.52 and the tie's 0.5 (both bin 0, one right and one wrong).
    assert [b["count"] for b in bins] == [2, 0, 0, 0, 0, 0, 0, 1, 0, 1]
    p3, p2, p01 = (1 / (1 + math.exp(-x)) for x in (3.0, 2.0, 0.1))
    assert bins[9] == {"p_mean": pytest.approx(p3), "accuracy": 1.0, "count": 1}
    assert bins[7] == {"p_mean": pytest.approx(p2), "accuracy": 0.0, "count": 1}
    assert bins[0] == {"p_mean": pytest.approx((p01 + 0.5) / 2), "accuracy": 0.5, "count": 2}
    assert bins[1] == {"p_mean": None, "accuracy": None, "count": 0}
    expected_ece = (1 * abs(1 - p3) + 2 * abs(0 - p2) + 2 * abs(0.5 - (p01 + 0.5) / 2)) / 5
    assert metrics["calibration"]["ece"] == pytest.approx(expected_ece)


# --- configuration ----------------------------------------------------------------------------------------------


def test_config_round_trips_through_a_dict():
    config = RewardConfig(learning_rate=1e-4, epochs=3, eval_every=50, device="cpu")
    assert RewardConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"epochs": 1.5}, "epochs must be an integer"),
        ({"eval_share": 1.0}, "eval_share must be < 1"),
        ({"warmup_ratio": -0.1}, "warmup_ratio must be >= 0"),
        ({"max_length": 4}, "max_length must be >= 8"),
        ({"use_margin": "yes"}, "use_margin must be true or false"),
        ({"device": "toaster"}, "device must be"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"lr": 0.1, "epoch": 2}, "unknown reward config field(s): epoch, lr"),
    ],
)
def test_config_from_dict_names_the_bad_field(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RewardConfig.from_dict(data)


def test_embedded_backbone_resolves_to_the_packaged_minilm():
    path = Path(resolve_model_path(EMBEDDED_BACKBONE))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


# --- training ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    """One run on the separable set, evaluated every 5 steps, with its progress reports and log lines."""
    reports: list[Progress] = []
    lines: list[str] = []
    output = tmp_path_factory.mktemp("run") / "reward-model"
    result = train_reward_model(
        separable_pairs(),
        tiny_config(tiny_backbone, eval_every=5),
        output,
        progress=reports.append,
        log=lines.append,
    )
    return result, reports, lines


def test_training_moves_the_encoder_and_the_reward_head(tiny_backbone, trained):
    result, _, _ = trained
    before = load_file(tiny_backbone / "model.safetensors")
    after = load_file(result.checkpoint / "model.safetensors")
    for name in ("bert.encoder.layer.0.attention.self.query.weight", "classifier.weight"):
        assert not torch.equal(before[name], after[name]), name


def test_separable_pairs_are_learned_on_held_out_prompts(trained):
    result, _, _ = trained
    metrics = result.metrics
    assert metrics["eval_accuracy"] > 0.9
    evaluated = [h for h in result.history if "eval_loss" in h]
    assert evaluated[-1]["eval_loss"] < 0.5 * evaluated[0]["eval_loss"]
    assert metrics["train_pairs"] + metrics["eval_pairs"] == 200
    assert metrics["train_groups"] + metrics["eval_groups"] == 100
    assert metrics["pairs_by_kind"] == {"comparison": 100, "ranking": 100}
    assert set(metrics["accuracy_by_kind"]) == {"comparison", "ranking"}
    assert sum(b["count"] for b in metrics["calibration"]["bins"]) == metrics["eval_pairs"]
    assert metrics["steps"] == len(result.history) == 2 * math.ceil(metrics["train_pairs"] / 16)
    assert metrics["train_pairs_per_second"] > 0


def test_checkpoint_holds_model_tokenizer_config_and_metrics(trained):
    result, _, _ = trained
    saved = json.loads((result.checkpoint / CHECKPOINT_FILE).read_text())
    assert RewardConfig.from_dict(saved["config"]).max_length == 64
    assert saved["metrics"] == json.loads(json.dumps(result.metrics))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(leftovers(result.checkpoint))
    assert leftovers(result.checkpoint.parent) == [result.checkpoint.name]


def test_progress_reports_every_step_of_the_total(trained):
    result, reports, lines = trained
    total = result.metrics["steps"]
    assert [r.step for r in reports] == list(range(1, total + 1))
    assert {r.total for r in reports} == {total}
    assert reports[-1].epoch == pytest.approx(2.0)
    assert all({"loss", "lr"} <= set(r.metrics) for r in reports)
    assert [r.step for r in reports if "eval_accuracy" in r.metrics] == [
        s for s in range(1, total + 1) if s % 5 == 0 or s in (total // 2, total)
    ]
    assert lines[0].startswith("reward model: ") and lines[-1].startswith("saved reward model to ")


def test_scorer_from_the_checkpoint_prefers_the_chosen_reply(trained):
    result, _, _ = trained
    scorer = RewardScorer.load(result.checkpoint, device="cpu")
    pairs = separable_pairs(n_groups=10, per_group=1, seed=7)
    prompts = [p.prompt for p in pairs]
    chosen = scorer.score(prompts, [p.chosen for p in pairs], batch_size=4)
    rejected = scorer.score(prompts, [p.rejected for p in pairs], batch_size=4)
    assert all(c > r for c, r in zip(chosen, rejected, strict=True))
    # Batching and padding do not change a score.
    assert scorer.score(prompts[:1], [pairs[0].chosen])[0] == pytest.approx(chosen[0], abs=1e-5)


def test_cancel_raises_and_leaves_nothing(tiny_backbone, tmp_path):
    asked = []

    def should_cancel():
        asked.append(1)
        return len(asked) > 3

    reports = []
    with pytest.raises(Cancelled):
        train_reward_model(
            separable_pairs(20, 2),
            tiny_config(tiny_backbone),
            tmp_path / "model",
            progress=reports.append,
            should_cancel=should_cancel,
        )
    assert [r.step for r in reports] == [1, 2, 3]
    assert leftovers(tmp_path) == []


def test_a_run_that_fails_mid_training_leaves_nothing(tiny_backbone, tmp_path):
    def progress(report: Progress) -> None:
        if report.step == 2:
            raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError, match="worker lost"):
        train_reward_model(separable_pairs(20, 2), tiny_config(tiny_backbone), tmp_path / "model", progress=progress)
    assert leftovers(tmp_path) == []


def test_a_run_that_fails_while_saving_leaves_nothing(tiny_backbone, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train_reward_model(separable_pairs(20, 2), tiny_config(tiny_backbone, epochs=1), tmp_path / "model")
    assert leftovers(tmp_path) == []


def test_atomic_output_dir_renames_on_success_and_refuses_an_existing_dir(tmp_path):
    with atomic_output_dir(tmp_path / "out") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-")
        (tmp / "weights").write_text("w")
    assert leftovers(tmp_path) == ["out"]
    assert (tmp_path / "out" / "weights").read_text() == "w"
    with pytest.raises(FileExistsError), atomic_output_dir(tmp_path / "out"):
        pass


@pytest.mark.parametrize(
    ("records", "eval_share", "message"),
    [
        ([], 0.1, "no pairs to train on"),
        ([PairRecord("one prompt", "a", "b"), PairRecord("one prompt", "c", "d")], 0.1, "no pairs held out"),
        ([PairRecord("p", "a", "b", weight=0.0)], 0.0, "pair 0: weight must be > 0"),
    ],
)
def test_unusable_data_is_refused_before_any_work(tmp_path, records, eval_share, message):
    # A backbone that does not exist: loading it would fail differently.
    config = RewardConfig(base_model=str(tmp_path / "no-such-model"), eval_share=eval_share)
    with pytest.raises(ValueError, match=message):
        train_reward_model(records, config, tmp_path / "model")
    assert leftovers(tmp_path) == []


def test_without_held_out_share_everything_trains_and_eval_metrics_are_empty(tiny_backbone, tmp_path):
    records = [PairRecord("one prompt", "thank you, here is the answer", "go away")] * 8
    result = train_reward_model(records, tiny_config(tiny_backbone, eval_share=0.0, epochs=1), tmp_path / "model")
    assert result.metrics["train_pairs"] == 8 and result.metrics["eval_pairs"] == 0
    assert result.metrics["eval_accuracy"] is None and result.metrics["calibration"] is None
    assert all("eval_loss" not in h for h in result.history)
