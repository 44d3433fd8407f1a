"""Sampling candidates for labelers: unique replies per prompt, duplicates and known candidates dropped, prompts
left short drawn for again, cancel between batches."""

from __future__ import annotations

import pytest

from rewardlab.training.common import Cancelled
from rewardlab.training.config import SampleConfig
from rewardlab.training.sampling import SampleRequest, reply_key, sample_replies
from tests.rewardlab.training.policy_data import tiny_policy, user


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory) -> str:
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


def test_duplicates_and_known_candidates_are_dropped_and_not_redrawn_forever(policy_path):
    """A near-greedy temperature writes the same reply every time: one is kept per prompt, the repeats are
    counted, and a reply the prompt already has is never kept."""
    requests = [SampleRequest(user("Tell me about plant 1")), SampleRequest(user("Tell me about plant 2"))]
    cold = config(replies_per_prompt=4, temperature=1e-4, resample_rounds=1)
    first = sample_replies(policy_path, requests, cold)
    assert [len(replies) for replies in first.replies] == [1, 1]
    assert first.duplicates + first.empty == first.drawn - 2 and first.drawn == 8 + 6  # one more round for the 6
    again = [SampleRequest(r.turns, exclude=[f"  {first.replies[i][0]} "]) for i, r in enumerate(requests)]
    second = sample_replies(policy_path, again, cold)
    assert second.replies == [[], []] and second.duplicates + second.empty == second.drawn


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
