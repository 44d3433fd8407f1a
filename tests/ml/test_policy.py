"""The embedded default policy: a tokenizer made from the project's text and a tiny GPT-2 around it."""

import torch

from ml.policy import END, TinyPolicyConfig, build_tiny_policy, render_prompt, train_tokenizer

TEXTS = [f"How do I water plant number {i}? Give it a cup of water every {i % 7 + 1} days." for i in range(200)]
SMALL = TinyPolicyConfig(vocab_size=400, n_positions=128, n_embd=32, n_layer=2, n_head=2)


def test_prompts_end_where_the_assistant_reply_begins():
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "?"},
    ]
    assert render_prompt(turns) == "<|user|>Hi<|end|><|assistant|>Hello<|end|><|user|>?<|end|><|assistant|>"


def test_the_tokenizer_round_trips_any_text_and_keeps_the_template_tokens_whole():
    tokenizer = train_tokenizer(TEXTS, vocab_size=400)
    for text in [
        "How do I water plant 12?",
        "Ünïcödé and emoji 🌱 are bytes too",
        render_prompt([{"role": "user", "content": "x"}]),
    ]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert tokenizer.convert_tokens_to_ids(END) == tokenizer.eos_token_id
    assert len(tokenizer("<|user|>", add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_the_tiny_policy_loads_and_generates_with_left_padded_prompts(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_policy(TEXTS, tmp_path / "policy", SMALL)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [render_prompt([{"role": "user", "content": text}]) for text in ("Hi", "How do I water plant 3?")]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert batch["attention_mask"][0, 0] == 0  # the shorter prompt is padded on the left
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[0] == 2 and out.shape[1] <= batch["input_ids"].shape[1] + 5
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_batched_left_padded_sampling_and_log_probs_match_one_prompt_at_a_time(tmp_path):
    """Padding must change nothing: greedy replies and per-token log-probabilities of a batch of prompts of
    different lengths equal those of each prompt alone."""
    from ml import policy

    path = build_tiny_policy(TEXTS, tmp_path / "policy", SMALL)
    tokenizer, model = policy.load_policy(str(path))
    prompts = [render_prompt([{"role": "user", "content": text}]) for text in ("Hi", "How do I water plant 3 today?")]
    kw = {"max_new_tokens": 6, "max_prompt_length": 64, "do_sample": False}
    batched = policy.sample(model, tokenizer, prompts, **kw)
    assert batched.attention_mask[0, 0] == 0  # the short prompt is padded on the left
    for row, prompt in enumerate(prompts):
        alone = policy.sample(model, tokenizer, [prompt], **kw)
        assert alone.texts[0] == batched.texts[row]
        with torch.no_grad():
            logits_batched = policy.forward(model, batched.sequences, batched.attention_mask).logits
            logits_alone = policy.forward(model, alone.sequences, alone.attention_mask).logits
        lp_batched = policy.token_logprobs(logits_batched, batched.sequences)[row, batched.prompt_width - 1 :]
        lp_alone = policy.token_logprobs(logits_alone, alone.sequences)[0, alone.prompt_width - 1 :]
        n = int(alone.reply_mask.sum())
        assert torch.allclose(lp_batched[:n], lp_alone[:n], atol=1e-4)


def test_reply_log_probs_run_the_head_on_reply_positions_only_and_agree_with_the_full_logits(tmp_path):
    from ml import policy

    path = build_tiny_policy(TEXTS, tmp_path / "policy", SMALL)
    tokenizer, model = policy.load_policy(str(path))
    prompts = [render_prompt([{"role": "user", "content": text}]) for text in ("Hi", "How do I water plant 3?")]
    samples = policy.sample(model, tokenizer, prompts, max_new_tokens=5, max_prompt_length=64)
    start = samples.prompt_width
    with torch.no_grad():
        logprobs, logits, _ = policy.reply_logprobs(model, samples.sequences, samples.attention_mask, start)
        full = policy.forward(model, samples.sequences, samples.attention_mask).logits
    assert logits.shape[1] == samples.sequences.shape[1] - start  # no logits for the prompt's positions
    expected = policy.token_logprobs(full, samples.sequences)[:, start - 1 :]
    assert torch.allclose(logprobs, expected, atol=1e-5)
