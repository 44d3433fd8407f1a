"""The inference worker's side of live chat: two replies from the serving tiny policy (or the serving one against
the one before it), the policy kept loaded between turns, and failures that leave a retry."""

from __future__ import annotations

import pytest

from annotate import chat
from annotate.models import ChatOpponent, TurnStatus
from tests.training.conftest import SFT_TINY, execute
from training import inference
from training import services as run_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def chatting(taught, monkeypatch):
    taught.chat_enabled = True
    taught.chat_max_tokens = 12
    taught.save()
    monkeypatch.setattr("annotate.chat.generation_send", lambda turn_id: None)
    inference._loaded.clear()
    return taught


def first_turn(project, labeler, text="How do I fix problem 3?"):
    c = chat.chat_start(labeler=labeler, project=project, goal="Fix things.", text=text)
    return c.turns.get()


def test_two_different_replies_from_the_serving_policy_kept_loaded(chatting, labeler, sft_version):
    run_services.model_version_promote(version=sft_version)
    before = inference.loads["count"]
    turn = first_turn(chatting, labeler)
    assert inference.generate_turn(turn.pk) == "ready"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.READY and turn.started_at and turn.finished_at
    assert turn.reply_a.text != turn.reply_b.text
    assert turn.reply_a.author_model == turn.reply_b.author_model == sft_version
    assert turn.reply_a.parent == turn.prompt
    chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=-2, client_token="t")
    second = chat.chat_send(labeler=labeler, chat_id=turn.chat_id, text="And then?")
    assert inference.generate_turn(second.pk) == "ready"
    assert inference.loads["count"] == before + 1  # loaded once, used for both turns
    assert inference.generate_turn(second.pk) == "not queued"  # a duplicate delivery does nothing


def test_the_previous_policy_writes_the_other_reply_when_the_project_asks(
    chatting, labeler, admin_user, sft_version, no_broker
):
    run_services.model_version_promote(version=sft_version)
    newer = execute(run_services.run_start(kind="sft", project=chatting, config=SFT_TINY, created_by=admin_user))
    run_services.model_version_promote(version=newer.output_version)
    chatting.chat_opponent = ChatOpponent.PREVIOUS
    chatting.save()
    turn = first_turn(chatting, labeler)
    assert inference.generate_turn(turn.pk) == "ready"
    turn.refresh_from_db()
    assert {turn.reply_a.author_model, turn.reply_b.author_model} == {sft_version, newer.output_version}


def test_no_serving_policy_fails_the_turn_with_a_message_and_a_retry(chatting, labeler):
    turn = first_turn(chatting, labeler)
    assert inference.generate_turn(turn.pk) == "failed"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED and "No policy is serving" in turn.error
    assert chat.chat_retry(labeler=labeler, turn_id=turn.pk).status == TurnStatus.QUEUED


def test_a_crash_in_generation_fails_the_turn_and_keeps_the_conversation(chatting, labeler, sft_version, monkeypatch):
    run_services.model_version_promote(version=sft_version)

    def broken(path):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(inference, "loaded_policy", broken)
    turn = first_turn(chatting, labeler)
    assert inference.generate_turn(turn.pk) == "failed"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED and "CUDA out of memory" in turn.error
    assert turn.prompt.text == "How do I fix problem 3?" and turn.reply_a is None


def test_the_same_message_in_two_chats_gets_its_own_replies(chatting, labeler, sft_version):
    run_services.model_version_promote(version=sft_version)
    chatting.chat_max_concurrent = 5
    chatting.save()
    turns = [first_turn(chatting, labeler), first_turn(chatting, labeler)]
    for turn in turns:
        outcome = inference.generate_turn(turn.pk)
        turn.refresh_from_db()
        assert outcome == "ready", turn.error
    pairs = [{turn.reply_a.text, turn.reply_b.text} for turn in turns]
    assert pairs[0] != pairs[1]  # sampling is seeded per turn, not restarted from one seed every time
