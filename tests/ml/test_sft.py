"""Supervised fine-tuning: the loss covers the reply's tokens only, and training teaches the demonstrated replies."""

import json

import pytest
import torch

from ml import policy
from ml.common import Cancelled
from ml.config import ChatRecord, SFTConfig
from ml.policy import POLICY_CHECKPOINT_FILE
from ml.sft import completion_loss, train_sft
from tests.ml.policy_data import demonstrations, tiny_policy, user


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_policy(tmp_path_factory.mktemp("policy") / "base")


def test_the_reply_tokens_and_only_they_are_targets(base):
    tokenizer, _ = policy.load_policy(str(base))
    prompt = policy.format_prompt(tokenizer, user("What colour is item 3?"))
    ids, n_prompt = policy.encode_chat(tokenizer, prompt, "Item 3 is red.", max_length=128)
    assert tokenizer.decode(ids[:n_prompt]) == prompt
    assert tokenizer.decode(ids[n_prompt:]) == "Item 3 is red." + policy.END
    batch = policy.pad_completions([(ids, n_prompt), (ids[:5], 3)], tokenizer.pad_token_id)
    assert batch["completion_mask"][0].tolist() == [0] * n_prompt + [1] * (len(ids) - n_prompt)
    assert batch["completion_mask"][1].tolist() == [0, 0, 0, 1, 1] + [0] * (len(ids) - 5)
    assert batch["attention_mask"][1].tolist() == [1] * 5 + [0] * (len(ids) - 5)


def test_the_loss_ignores_the_prompt_tokens_whatever_their_probability():
    logprobs = torch.tensor([[-9.0, -9.0, -1.0, -3.0], [-7.0, -2.0, -50.0, -50.0]])
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]])
    assert completion_loss(logprobs, mask).item() == pytest.approx((1 + 3 + 2) / 3)
    changed = logprobs.clone()
    changed[mask == 0] = -1000.0  # prompt and padding positions: no effect
    assert completion_loss(changed, mask).item() == pytest.approx((1 + 3 + 2) / 3)


def test_encoding_cuts_a_long_prompt_from_the_left_first(base):
    tokenizer, _ = policy.load_policy(str(base))
    prompt = policy.format_prompt(tokenizer, user("word " * 100))
    ids, n_prompt = policy.encode_chat(tokenizer, prompt, "Item 3 is red.", max_length=40)
    assert len(ids) == 40
    assert tokenizer.decode(ids[n_prompt:]) == "Item 3 is red." + policy.END
    assert tokenizer.decode(ids[:n_prompt]).endswith("<|end|><|assistant|>")


def test_sft_learns_the_demonstrations_and_saves_a_loadable_policy(base, tmp_path):
    config = SFTConfig(base_model=str(base), max_length=128, epochs=12, batch_size=8, learning_rate=3e-3, device="cpu")
    steps = []
    result = train_sft(demonstrations(), config, tmp_path / "sft", progress=steps.append)
    history = result.history
    assert [p.step for p in steps] == list(range(1, result.metrics["steps"] + 1))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert result.metrics["eval_loss"] is not None and result.metrics["eval_examples"] > 0
    meta = json.loads((result.checkpoint / POLICY_CHECKPOINT_FILE).read_text())
    assert meta["kind"] == "sft" and meta["config"]["epochs"] == 12
    tokenizer, model = policy.load_policy(str(result.checkpoint))
    prompts = [policy.format_prompt(tokenizer, r.turns) for r in demonstrations()[:6]]
    samples = policy.sample(model, tokenizer, prompts, max_new_tokens=24, max_prompt_length=64, do_sample=False)
    assert all(text.startswith("Item ") and text.endswith(".") for text in samples.texts), samples.texts
    replies = samples.sequences[:, samples.prompt_width :]
    assert (replies == tokenizer.eos_token_id).any(-1).all()  # every reply ended by itself


def test_sft_builds_the_embedded_policy_from_the_records_text(tmp_path):
    config = SFTConfig(epochs=1, batch_size=16, device="cpu", eval_share=0.0)
    result = train_sft(demonstrations(16), config, tmp_path / "sft")
    tokenizer, model = policy.load_policy(str(result.checkpoint))
    assert model.config.model_type == "gpt2" and tokenizer.eos_token == policy.END


def test_sft_with_lora_trains_adapters_and_saves_them_merged(base, tmp_path):
    config = SFTConfig(
        base_model=str(base), max_length=128, epochs=1, batch_size=8, device="cpu", lora_r=4, eval_share=0.0
    )
    lines = []
    result = train_sft(demonstrations(16), config, tmp_path / "sft", log=lines.append)
    trainable = next(line for line in lines if "trainable parameters" in line)
    _, full = policy.load_policy(str(base))
    assert int(trainable.split(", ")[-1].split()[0].replace(",", "")) < sum(p.numel() for p in full.parameters()) / 10
    _, merged = policy.load_policy(str(result.checkpoint))
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_bad_records_and_cancel_leave_nothing(base, tmp_path):
    with pytest.raises(ValueError, match="record 1: reply must be non-empty"):
        train_sft([demonstrations(1)[0], ChatRecord(turns=user("x"), reply=" ")], SFTConfig(), tmp_path / "a")
    with pytest.raises(ValueError, match="record 0: each turn needs a role"):
        train_sft([ChatRecord(turns=[{"role": "robot", "content": "x"}], reply="y")], SFTConfig(), tmp_path / "a")
    config = SFTConfig(base_model=str(base), max_length=128, epochs=1, device="cpu")
    with pytest.raises(Cancelled):
        train_sft(demonstrations(16), config, tmp_path / "b", should_cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []
