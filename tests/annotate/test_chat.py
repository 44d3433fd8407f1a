"""Live chat: the tree a chat builds (turns, siblings, the comparison, an edit as a demonstration, the end rating),
its limits and errors, and the pages (roles, polling, escaping). Replies are stored as the inference worker stores
them (`turn_begin` then `turn_replies_store`); the worker itself is tested in tests/rewardlab/test_inference.py."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotate import chat, exports, services
from annotate.models import (
    Assignment,
    AssignmentStatus,
    Chat,
    ChatStatus,
    ChatTurn,
    Comparison,
    Demonstration,
    Message,
    Task,
    TurnStatus,
)
from annotate.roles import RoleName
from annotate.services import LabelingError
from training.models import ModelKind, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def chatty(project):
    project.chat_enabled = True
    project.save()
    return project


@pytest.fixture
def enqueued(monkeypatch):
    sent = []
    monkeypatch.setattr("annotate.chat.generation_send", lambda turn_id: sent.append(turn_id))
    return sent


def policy(project, number=1) -> ModelVersion:
    return ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=number, base_model="tiny")


def answer(turn: ChatTurn, texts=("Reply one.", "Reply two.")) -> ChatTurn:
    """What the inference worker does: take the turn, store two replies."""
    version = policy(turn.chat.project, 1) if not ModelVersion.objects.exists() else ModelVersion.objects.first()
    assert chat.turn_begin(turn.pk) is not None
    return chat.turn_replies_store(turn_id=turn.pk, replies=[(t, version) for t in texts])


def last_turn(c: Chat) -> ChatTurn:
    return c.turns.order_by("-number").first()


def test_a_three_turn_chat_builds_the_conversation_tree(labeler, chatty, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        c = chat.chat_start(labeler=labeler, project=chatty, goal="Plan dinners.", text="Ideas for Monday?")
    first = last_turn(c)
    assert enqueued == [first.pk] and first.status == TurnStatus.QUEUED
    assert first.prompt.parent is None and first.prompt.author_user == labeler and c.goal == "Plan dinners."

    answer(first, ("Pasta.", "Soup."))
    first.refresh_from_db()
    assert first.status == TurnStatus.READY and {first.reply_a.text, first.reply_b.text} == {"Pasta.", "Soup."}
    assert first.reply_a.parent == first.reply_b.parent == first.prompt  # siblings under the labeler's message
    vote = chat.chat_vote(labeler=labeler, turn_id=first.pk, choice=-3, client_token="t1")
    assert vote.created and vote.comparison.candidate_a_id == first.reply_a_id and vote.comparison.choice == -3
    first.refresh_from_db()
    assert first.status == TurnStatus.VOTED and first.continued_from == first.reply_a  # A was better

    with django_capture_on_commit_callbacks(execute=True):
        second = chat.chat_send(labeler=labeler, chat_id=c.pk, text="Something quicker?")
    assert second.number == 2 and second.prompt.parent == first.reply_a and second.prompt.depth == 2
    answer(second, ("Salad.", "Toast."))
    second.refresh_from_db()
    chat.chat_vote(labeler=labeler, turn_id=second.pk, choice=2, client_token="t2", edited_text="A big salad.")
    second.refresh_from_db()
    edit = second.continued_from
    assert edit.text == "A big salad." and edit.author_user == labeler and edit.parent == second.prompt
    assert Demonstration.objects.get(message=edit).labeler == labeler  # the rewrite is a demonstration

    third = chat.chat_send(labeler=labeler, chat_id=c.pk, text="Thanks!")
    assert third.prompt.parent == edit  # the conversation goes on from the rewrite
    answer(third, ("You are welcome.", "Enjoy."))
    chat.chat_vote(labeler=labeler, turn_id=third.pk, choice=1, client_token="t3")
    chat.chat_end(labeler=labeler, chat_id=c.pk, rating=6, comment="Helpful.")
    c.refresh_from_db()
    assert (c.status, c.rating, c.comment) == (ChatStatus.ENDED, 6, "Helpful.")

    # Each turn's comparison is an ordinary judgement on a task nobody else is served.
    tasks = Task.objects.filter(pk__in=[t.comparison_task_id for t in c.turns.all()])
    assert tasks.count() == 3 and not tasks.filter(is_active=True).exists()
    assert Comparison.objects.filter(task__in=tasks, labeler=labeler).count() == 3
    assert not Assignment.objects.filter(labeler=labeler).exclude(status=AssignmentStatus.SUBMITTED).exists()
    other = services.task_lease_next(labeler=labeler, project=chatty)  # the project's ordinary queue
    assert other is None or other.task_id not in {t.pk for t in tasks}


def test_the_export_holds_every_turn_as_a_conversational_pair(labeler, chatty, enqueued):
    c = chat.chat_start(labeler=labeler, project=chatty, goal="Learn.", text="What is 2+2?")
    for number, (question, choice) in enumerate([(None, -4), ("And 3+3?", 4), ("And 4+4?", -2)], start=1):
        turn = last_turn(c) if number == 1 else chat.chat_send(labeler=labeler, chat_id=c.pk, text=question)
        answer(turn, (f"Right {number}.", f"Wrong {number}."))
        turn.refresh_from_db()
        chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=choice, client_token=f"x{number}")
    rows = list(exports.preference_rows(chatty, exports.ExportOptions(style="conversational")))
    assert len(rows) == 3
    longest = max(rows, key=lambda r: len(r["prompt"]))
    assert [m["role"] for m in longest["prompt"]] == ["user", "assistant", "user", "assistant", "user"]
    assert longest["prompt"][0]["content"] == "What is 2+2?"


def test_a_repeated_vote_returns_the_first_and_a_second_one_is_refused(labeler, chatty, enqueued):
    c = chat.chat_start(labeler=labeler, project=chatty, goal="G.", text="Hi")
    turn = answer(last_turn(c))
    first = chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=-1, client_token="same")
    again = chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=-1, client_token="same")
    assert again.comparison == first.comparison and not again.created
    with pytest.raises(chat.ChatError, match="already voted"):
        chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=3, client_token="other")
    assert Comparison.objects.filter(labeler=labeler).count() == 1


@pytest.mark.parametrize(
    ("change", "call", "message"),
    [
        ({"chat_enabled": False}, "start", "not open"),
        ({}, "vote-early", "Both replies must be written"),
        ({}, "send-early", "Choose between the two replies"),
        ({"chat_max_turns": 1}, "send-past-limit", "reached the project's 1 turns"),
        ({"chat_max_concurrent": 1}, "second-chat", "replies being written already"),
        ({}, "bad-choice", "Choose a point on the scale"),
        ({}, "bad-rating", "from 1 (bad) to 7 (good)"),
    ],
)
def test_limits_and_mistakes_are_refused_with_a_clear_message(labeler, chatty, enqueued, change, call, message):
    for field, value in change.items():
        setattr(chatty, field, value)
    chatty.save()
    with pytest.raises(LabelingError, match=re.escape(message)):  # ChatError, or the judgement's own check
        if call == "start":
            chat.chat_start(labeler=labeler, project=chatty, goal="G.", text="Hi")
        c = chat.chat_start(labeler=labeler, project=chatty, goal="G.", text="Hi")
        turn = last_turn(c)
        if call == "vote-early":
            chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=1, client_token="t")
        if call == "send-early":
            chat.chat_send(labeler=labeler, chat_id=c.pk, text="More")
        if call == "second-chat":
            chat.chat_start(labeler=labeler, project=chatty, goal="G2.", text="Hi again")
        answer(turn)
        if call == "bad-choice":
            chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=0, client_token="t")
        if call == "bad-rating":
            chat.chat_end(labeler=labeler, chat_id=c.pk, rating=9)
        chat.chat_vote(labeler=labeler, turn_id=turn.pk, choice=1, client_token="t")
        chat.chat_send(labeler=labeler, chat_id=c.pk, text="More")


def test_someone_elses_chat_cannot_be_touched(labeler, make_user, chatty, enqueued):
    c = chat.chat_start(labeler=labeler, project=chatty, goal="Mine.", text="Hi")
    other = make_user(RoleName.LABELER)
    turn = answer(last_turn(c))
    for call in (
        lambda: chat.chat_vote(labeler=other, turn_id=turn.pk, choice=1, client_token="t"),
        lambda: chat.chat_send(labeler=other, chat_id=c.pk, text="x"),
        lambda: chat.chat_end(labeler=other, chat_id=c.pk, rating=3),
        lambda: chat.chat_retry(labeler=other, turn_id=turn.pk),
    ):
        with pytest.raises(chat.ChatError, match="not yours"):
            call()


def test_a_failed_turn_keeps_the_conversation_and_can_be_retried(
    labeler, chatty, enqueued, django_capture_on_commit_callbacks
):
    c = chat.chat_start(labeler=labeler, project=chatty, goal="G.", text="Hi")
    turn = last_turn(c)
    chat.turn_begin(turn.pk)
    chat.turn_fail(turn_id=turn.pk, error="The model failed.")
    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED and turn.prompt.text == "Hi"
    with django_capture_on_commit_callbacks(execute=True):
        chat.chat_retry(labeler=labeler, turn_id=turn.pk)
        chat.chat_retry(labeler=labeler, turn_id=turn.pk)  # a double click changes nothing more
    turn.refresh_from_db()
    assert turn.status == TurnStatus.QUEUED and turn.error == "" and enqueued == [turn.pk]
    assert answer(turn).status == TurnStatus.READY


def test_a_turn_nobody_answers_times_out_into_a_retry(labeler, chatty, enqueued, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.REWARDLAB_CHAT_TIMEOUT_SECONDS = 30
    c = chat.chat_start(labeler=labeler, project=chatty, goal="G.", text="Hi")
    turn = chat.turn_time_out(last_turn(c), now=timezone.now() + timedelta(seconds=10))
    assert turn.status == TurnStatus.QUEUED
    turn = chat.turn_time_out(turn, now=timezone.now() + timedelta(seconds=31))
    assert turn.status == TurnStatus.FAILED and "no inference worker" in turn.error
    assert chat.turn_begin(turn.pk) is None  # a late worker leaves it alone


# --- pages --------------------------------------------------------------------------------------------------


def url(name, project, *args):
    return reverse(f"annotate:{name}", args=[project.slug, *args])


def test_only_labelers_reach_chat_pages(client, make_user, chatty, enqueued):
    client.force_login(make_user(RoleName.RESEARCHER))
    assert client.get(url("chat_home", chatty)).status_code == 403
    assert client.post(url("chat_home", chatty), {"goal": "g", "text": "t"}).status_code == 403
    assert not Chat.objects.exists()
    client.logout()
    assert client.get(url("chat_home", chatty)).status_code == 302  # to the login page


def test_a_chat_through_the_pages_polls_until_the_replies_are_there(client, labeler, chatty, enqueued):
    client.force_login(labeler)
    response = client.post(url("chat_home", chatty), {"goal": "Help me.", "text": "<script>alert(1)</script>"})
    c = Chat.objects.get(labeler=labeler)
    assert response.status_code == 302 and response["Location"] == url("chat_page", chatty, c.pk)
    page = client.get(url("chat_page", chatty, c.pk)).content.decode()
    assert 'hx-trigger="every 300ms"' in page and "<script>alert(1)</script>" not in page
    answer(last_turn(c), ("<img src=x onerror=alert(1)>", "Fine."))
    partial = client.get(url("chat_page", chatty, c.pk), HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial and 'data-turn-state="ready"' in partial
    assert "<img src=x" not in partial  # model output is untrusted text
    turn = last_turn(c)
    response = client.post(
        url("chat_vote", chatty, c.pk, turn.pk), {"choice": "4", "client_token": "abc"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "data-send-form" in response.content.decode()
    response = client.post(url("chat_send", chatty, c.pk), {"text": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422 and "Write your message first." in response.content.decode()
    response = client.post(url("chat_end", chatty, c.pk), {"rating": "5", "comment": "ok"})
    assert response.status_code == 302
    c.refresh_from_db()
    assert c.rating == 5


def test_the_chat_pages_are_hidden_where_chat_is_off(client, labeler, project):
    client.force_login(labeler)
    assert client.get(url("chat_home", project)).status_code == 404


def test_a_vote_without_a_choice_names_the_problem(client, labeler, chatty, enqueued):
    client.force_login(labeler)
    c = chat.chat_start(labeler=labeler, project=chatty, goal="G.", text="Hi")
    turn = answer(last_turn(c))
    response = client.post(url("chat_vote", chatty, c.pk, turn.pk), {"client_token": "abc"})
    assert response.status_code == 422 and "Choose a point on the scale" in response.content.decode()
    assert Message.objects.filter(parent=turn.prompt).count() == 2  # nothing lost


def test_two_chats_opening_with_the_same_words_can_get_the_same_replies(make_user, chatty, enqueued):
    turns = []
    for _ in range(2):
        c = chat.chat_start(labeler=make_user(RoleName.LABELER), project=chatty, goal="G.", text="Hello")
        turns.append(answer(last_turn(c), ("Hi there.", "Hello!")))
    assert turns[0].reply_a.path_hash != turns[1].reply_a.path_hash  # separate conversations, no collision
