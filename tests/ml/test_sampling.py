"""Sampling candidates for labelers: unique replies per prompt, duplicates and known candidates dropped, prompts
left short drawn for again, cancel between batches."""

from __future__ import annotations

import pytest

from ml.common import Cancelled, seed_everything
from ml.config import SampleConfig
from ml.sampling import SampleRequest, reply_key, sample_replies
from tests.ml.policy_data import tiny_policy, user


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory) -> str:
    seed_everything(0)  # the same random weights whatever ran before
    return str(tiny_policy(tmp_path_factory.mktemp("sampling") / "policy"))


def config(**overrides) -> SampleConfig:
    return SampleConfig(**{"device": "cpu", "max_new_tokens": 6, "batch_size": 8, "seed": 0, **overrides})


def test_each_prompt_gets_k_distinct_replies_in_batches(policy_path):
    requests = [SampleRequest(user(f"Tell me about plant {i}")) for i in range(5)]
    steps = []
    result = sample_replies(policy_path, requests, config(replies_per_prompt=3), progress=steps.append)
    assert [len(replies) for replies in result.replies] == [3] * 5
    for replies in result.replies:
        assert len({reply_key(r) for r in replies}) == 3 and all(r == r.strip() and r for r in replies)
    assert result.drawn == result.kept + result.duplicates + result.empty >= 15
    assert steps[0].step == 1 and steps[-1].step == steps[-1].total >= 2  # 15 draws in batches of 8
    assert result.tokens > 0 and result.replies_per_second > 0


def test_duplicates_empties_and_known_candidates_are_dropped_and_redrawn_a_bounded_number_of_times(
    policy_path, monkeypatch
):
    """A policy that repeats itself (scripted here, so the test does not hang on what random weights write): one
    reply is kept per distinct text, repeats and empty replies are counted, a reply the prompt already has is never
    kept, and prompts left short are drawn for again `resample_rounds` times, then given up on."""
    from types import SimpleNamespace

    scripted = iter(
        [
            ["Same.", "  Same. ", "", "Other."],  # round 1: prompt 0 gets 2 draws, prompt 1 gets 2
            ["Third.", "Known  reply"],  # round 2: one more for each (the second is one prompt 1 has)
            ["Fourth."],  # round 3: prompt 1 is still one short
        ]
    )
    draws = []

    def fake_sample(model, tokenizer, prompts, **kwargs):
        texts = next(scripted)
        draws.append(len(prompts))
        assert len(texts) == len(prompts)
        return SimpleNamespace(texts=texts, reply_tokens=len(texts))

    monkeypatch.setattr("ml.sampling.policy.sample", fake_sample)
    requests = [SampleRequest(user("one")), SampleRequest(user("two"), exclude=["Known reply"])]
    result = sample_replies(policy_path, requests, config(replies_per_prompt=2, resample_rounds=2, batch_size=8))
    assert result.replies == [["Same.", "Third."], ["Other.", "Fourth."]]
    assert draws == [4, 2, 1] and result.drawn == 7
    assert (result.duplicates, result.empty) == (2, 1)  # "  Same. " and the known reply; ""


def test_prompts_left_short_are_given_up_on_after_the_last_round(policy_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(
        "ml.sampling.policy.sample",
        lambda model, tokenizer, prompts, **kw: SimpleNamespace(texts=["Again."] * len(prompts), reply_tokens=1),
    )
    result = sample_replies(policy_path, [SampleRequest(user("x"))], config(replies_per_prompt=3, resample_rounds=1))
    assert result.replies == [["Again."]] and result.drawn == 3 + 2 and result.duplicates == 4


def test_cancel_stops_between_batches(policy_path):
    requests = [SampleRequest(user(f"Tell me about plant {i}")) for i in range(4)]
    with pytest.raises(Cancelled):
        sample_replies(policy_path, requests, config(), should_cancel=lambda: True)


def test_bad_requests_and_configs_name_what_is_wrong(policy_path):
    with pytest.raises(ValueError, match="record 1: turns must be a non-empty list"):
        sample_replies(policy_path, [SampleRequest(user("hi")), SampleRequest([])], config())
    with pytest.raises(ValueError, match="replies_per_prompt must be <= 32"):
        config(replies_per_prompt=33)
    with pytest.raises(ValueError, match="all three are off"):
        config(rank=False, compare=False, compare_previous=False)
    with pytest.raises(ValueError, match="top_p must be <= 1"):
        config(top_p=1.5)


def test_a_decoded_nul_character_is_dropped_from_a_reply():
    from ml.sampling import clean_reply

    assert clean_reply("  Hel\x00lo \x00") == "Hello"
