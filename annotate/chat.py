"""Live chat: a labeler sets their own task, talks to the serving policy, and at every turn picks the better of two
replies on the 8-point scale, optionally rewriting the chosen one, then goes on from it (Anthropic's HH
collection interface). Services (every write) and the reads the pages need.

Everything lands in the conversation tree. The labeler's first message is a root; each turn's two replies are
siblings under the labeler's message, with a one-labeler compare task (never served to anyone else) holding the
comparison, and an edit is a demonstration under the same message. So the exports' conversational pairs and
SFT rows include chats with no extra work.

Replies are written by a Celery task on the `inference` queue (`training.inference`), never in a web request:
the page polls the turn until both replies are there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotate import services
from annotate.models import (
    Assignment,
    AssignmentStatus,
    Chat,
    ChatStatus,
    ChatTurn,
    Comparison,
    Message,
    Project,
    Task,
    TaskKind,
    TurnStatus,
)
from annotate.selectors import conversation_path, shown_order
from annotate.services import LabelingError


class ChatError(LabelingError):
    """A chat request that cannot be done; the message says why (and `field` which input, where there is one)."""


def _clean(text: str, field: str, what: str) -> str:
    cleaned = (text or "").strip()
    if not cleaned:
        raise ChatError(f"Write {what} first.", field=field)
    if len(cleaned) > settings.REWARDLAB_MAX_TEXT_CHARS:
        raise ChatError(
            f"{what.capitalize()} is {len(cleaned):,} characters; the limit is {settings.REWARDLAB_MAX_TEXT_CHARS:,}.",
            field=field,
        )
    return cleaned


def _check_generation_room(labeler, project: Project) -> None:
    waiting = ChatTurn.objects.filter(
        chat__labeler=labeler, chat__project=project, status__in=[TurnStatus.QUEUED, TurnStatus.RUNNING]
    ).count()
    if waiting >= project.chat_max_concurrent:
        raise ChatError(
            f"You have {waiting} replies being written already (this project allows {project.chat_max_concurrent} "
            "at once); wait for them.",
            field="text",
        )


# The inference worker's task, enqueued by name: the web side never imports the worker's (model) code.
CHAT_GENERATE_TASK = "training.tasks.chat_generate"


def generation_send(turn_id: int) -> None:
    current_app.send_task(CHAT_GENERATE_TASK, args=(turn_id,))


def _enqueue(turn: ChatTurn) -> None:
    transaction.on_commit(lambda: generation_send(turn.pk))


def _new_turn(chat: Chat, number: int, parent: Message | None, text: str, now: datetime) -> ChatTurn:
    depth = parent.depth + 1 if parent else 0
    message = Message.objects.create(
        project=chat.project,
        parent=parent,
        role="user",
        text=text,
        depth=depth,
        # A chat's paths are its own (the root is salted with the chat): two labelers who open with the same words
        # start two conversations, and replies the model writes to each never collide as one path.
        path_hash=services.path_hash(parent.path_hash if parent else f"chat-{chat.pk}", "user", text),
        author_user=chat.labeler,
        metadata={"chat": chat.pk},
    )
    turn = ChatTurn.objects.create(chat=chat, number=number, prompt=message, requested_at=now)
    _enqueue(turn)
    return turn


@transaction.atomic
def chat_start(*, labeler, project: Project, goal: str, text: str, now: datetime | None = None) -> Chat:
    """Open a chat: the labeler's task in their words and their first message, whose two replies are requested."""
    if not project.is_active or not project.chat_enabled:
        raise ChatError(f"Live chat is not open in {project.name}.")
    goal = _clean(goal, "goal", "what you want help with")
    text = _clean(text, "text", "your message")
    _check_generation_room(labeler, project)
    now = now or timezone.now()
    chat = Chat.objects.create(project=project, labeler=labeler, goal=goal)
    _new_turn(chat, 1, None, text, now)
    return chat


def _locked_chat(labeler, chat_id: int) -> Chat:
    chat = Chat.objects.select_for_update(of=("self",)).select_related("project").filter(pk=chat_id).first()
    if chat is None or chat.labeler_id != labeler.pk:
        raise ChatError("This chat is not yours.")
    return chat


@transaction.atomic
def chat_send(*, labeler, chat_id: int, text: str, now: datetime | None = None) -> ChatTurn:
    """The labeler's next message, going on from the reply they chose (or rewrote) at the last turn."""
    chat = _locked_chat(labeler, chat_id)
    if chat.status != ChatStatus.OPEN:
        raise ChatError("This chat has ended.")
    last = chat.turns.order_by("-number").select_related("continued_from").first()
    if last is None or last.status != TurnStatus.VOTED:
        raise ChatError("Choose between the two replies before you write again.", field="text")
    if last.number >= chat.project.chat_max_turns:
        raise ChatError(
            f"This chat has reached the project's {chat.project.chat_max_turns} turns; end it with a rating.",
            field="text",
        )
    text = _clean(text, "text", "your message")
    _check_generation_room(labeler, chat.project)
    return _new_turn(chat, last.number + 1, last.continued_from, text, now or timezone.now())


@transaction.atomic
def chat_retry(*, labeler, turn_id: int, now: datetime | None = None) -> ChatTurn:
    """Ask again for the replies of a turn whose generation failed (nothing in the conversation is lost)."""
    turn = ChatTurn.objects.select_for_update(of=("self",)).select_related("chat__project").filter(pk=turn_id).first()
    if turn is None or turn.chat.labeler_id != labeler.pk:
        raise ChatError("This chat is not yours.")
    if turn.status != TurnStatus.FAILED:
        return turn  # already retried (a double click), or it worked meanwhile
    _check_generation_room(labeler, turn.chat.project)
    turn.status, turn.error, turn.requested_at = TurnStatus.QUEUED, "", now or timezone.now()
    turn.started_at = turn.finished_at = None
    turn.save(update_fields=["status", "error", "requested_at", "started_at", "finished_at"])
    _enqueue(turn)
    return turn


def turn_time_out(turn: ChatTurn, now: datetime | None = None) -> ChatTurn:
    """A turn still waiting past REWARDLAB_CHAT_TIMEOUT_SECONDS fails (no inference worker, or one that died), so
    the page can offer a retry instead of waiting for ever. Called by the page's poll."""
    now = now or timezone.now()
    limit = timedelta(seconds=settings.REWARDLAB_CHAT_TIMEOUT_SECONDS)
    if turn.generating and turn.requested_at < now - limit:
        changed = ChatTurn.objects.filter(pk=turn.pk, status=turn.status).update(
            status=TurnStatus.FAILED,
            error=f"No replies within {settings.REWARDLAB_CHAT_TIMEOUT_SECONDS} s: the model is busy or no inference "
            "worker is running.",
            finished_at=now,
        )
        if changed:
            turn.refresh_from_db()
    return turn


# --- the worker's side: replies written ---------------------------------------------------------------------


def turn_begin(turn_id: int, now: datetime | None = None) -> ChatTurn | None:
    """The worker takes a queued turn (None when it is not queued any more: a duplicate delivery, or it timed out)."""
    with transaction.atomic():
        turn = ChatTurn.objects.select_for_update().filter(pk=turn_id).first()
        if turn is None or turn.status != TurnStatus.QUEUED:
            return None
        turn.status, turn.started_at = TurnStatus.RUNNING, now or timezone.now()
        turn.attempts += 1
        turn.save(update_fields=["status", "started_at", "attempts"])
    return ChatTurn.objects.select_related("chat__project", "chat__labeler", "prompt").get(pk=turn_id)


def turn_conversation(turn: ChatTurn) -> list[dict[str, str]]:
    """The conversation the replies answer, root first, as role/content turns."""
    return [{"role": m.role, "content": m.text} for m in conversation_path(message=turn.prompt)]


@transaction.atomic
def turn_replies_store(*, turn_id: int, replies: list[tuple[str, object]], now: datetime | None = None) -> ChatTurn:
    """Store the two replies (text, the ModelVersion that wrote it) and their compare task; the sides shown are
    the task's per-labeler shuffle, kept on the turn. A turn no longer running (timed out meanwhile) is left."""
    turn = ChatTurn.objects.select_for_update(of=("self",)).select_related("chat__project", "prompt").get(pk=turn_id)
    if turn.status != TurnStatus.RUNNING:
        return turn
    if len(replies) != 2:
        raise ValueError("a chat turn needs exactly two replies")
    prompt = turn.prompt
    messages = [
        Message.objects.create(
            project_id=prompt.project_id,
            parent=prompt,
            role="assistant",
            text=text,
            depth=prompt.depth + 1,
            path_hash=services.path_hash(prompt.path_hash, "assistant", text),
            author_model=version,
            metadata={"chat_turn": turn.pk},
        )
        for text, version in replies
    ]
    ids = [m.pk for m in messages]
    # Served to nobody (inactive, its one place taken by the chat's labeler): it only holds the comparison.
    task_id = _own_task(turn.chat.project, TaskKind.COMPARE, prompt.pk, ids)
    a, b = shown_order(task_id=task_id, labeler_id=turn.chat.labeler_id, candidate_ids=ids)
    turn.reply_a_id, turn.reply_b_id, turn.comparison_task_id = a, b, task_id
    turn.status, turn.finished_at, turn.error = TurnStatus.READY, now or timezone.now(), ""
    turn.save(update_fields=["reply_a", "reply_b", "comparison_task", "status", "finished_at", "error"])
    return turn


def turn_fail(*, turn_id: int, error: str, now: datetime | None = None) -> None:
    ChatTurn.objects.filter(pk=turn_id, status__in=[TurnStatus.QUEUED, TurnStatus.RUNNING]).update(
        status=TurnStatus.FAILED, error=error[:2000], finished_at=now or timezone.now()
    )


# --- votes and the end --------------------------------------------------------------------------------------


def _own_task(project: Project, kind: str, anchor_id: int, candidate_ids: list[int]) -> int:
    """A task only the chat's labeler judges (inactive, so served to nobody, with one place), written by the
    services' one writer of tasks."""
    new = services.NewTask(kind=kind, anchor_id=anchor_id, candidate_ids=candidate_ids, required_labelers=1)
    (task_id,) = services.tasks_create(project, [new], is_active=False)
    return task_id


def _own_submitted_lease(task_id: int, labeler, now: datetime) -> Assignment:
    """A live lease for the chat labeler on their own turn's task, so that the caller submits the judgement through
    the ordinary services (validated and stored exactly as any other)."""
    Task.objects.filter(pk=task_id).update(taken=1)
    return Assignment.objects.create(
        task_id=task_id,
        labeler=labeler,
        leased_at=now,
        expires_at=now + timedelta(hours=1),
        status=AssignmentStatus.ACTIVE,
    )


@dataclass(frozen=True)
class Vote:
    turn: ChatTurn
    comparison: Comparison
    created: bool


@transaction.atomic
def chat_vote(
    *,
    labeler,
    turn_id: int,
    choice: int,
    client_token: str,
    edited_text: str = "",
    time_spent_ms: int | None = None,
    now: datetime | None = None,
) -> Vote:
    """The labeler's choice between the turn's two replies on the 8-point scale (negative: A better). With
    `edited_text` different from the chosen reply, the rewrite is stored as a demonstration under the same
    message, and the conversation goes on from it; else from the chosen reply. Sending the same vote again (same
    `client_token`) returns the first."""
    now = now or timezone.now()
    turn = (
        ChatTurn.objects.select_for_update(of=("self",))
        .select_related("chat__project", "reply_a", "reply_b")
        .filter(pk=turn_id)
        .first()
    )
    if turn is None or turn.chat.labeler_id != labeler.pk:
        raise ChatError("This chat is not yours.")
    if turn.status == TurnStatus.VOTED:
        comparison = Comparison.objects.filter(task_id=turn.comparison_task_id, labeler=labeler).first()
        if comparison is not None and comparison.client_token == client_token:
            return Vote(turn, comparison, created=False)
        raise ChatError("You already voted on this turn.")
    if turn.status != TurnStatus.READY:
        raise ChatError("Both replies must be written before you vote.", field="choice")
    if turn.chat.status != ChatStatus.OPEN:
        raise ChatError("This chat has ended.")
    assignment = _own_submitted_lease(turn.comparison_task_id, labeler, now)
    submission = services.submission_submit(
        labeler=labeler,
        assignment_id=assignment.pk,
        kind=TaskKind.COMPARE,
        data={"choice": choice},
        client_token=client_token,
        time_spent_ms=time_spent_ms,
        now=now,
    )
    chosen = turn.reply_a if int(choice) < 0 else turn.reply_b
    continued = chosen
    edited = (edited_text or "").strip()
    if edited and edited != chosen.text.strip():
        lease = _own_submitted_lease(
            _own_task(turn.chat.project, TaskKind.DEMONSTRATE, turn.prompt_id, []), labeler, now
        )
        demonstration = services.submission_submit(
            labeler=labeler,
            assignment_id=lease.pk,
            kind=TaskKind.DEMONSTRATE,
            data={"text": edited},
            client_token=uuid.uuid4().hex,
            now=now,
        )
        continued = demonstration.annotation.message
    turn.status, turn.continued_from = TurnStatus.VOTED, continued
    turn.save(update_fields=["status", "continued_from"])
    return Vote(turn, submission.annotation, created=submission.created)


@transaction.atomic
def chat_end(*, labeler, chat_id: int, rating: int, comment: str = "", now: datetime | None = None) -> Chat:
    """End the chat with an overall rating, 1 (bad) to 7 (good), and a comment."""
    chat = _locked_chat(labeler, chat_id)
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 7:
        raise ChatError("Rate the chat from 1 (bad) to 7 (good).", field="rating")
    if chat.status == ChatStatus.ENDED:
        return chat
    if len(comment or "") > settings.REWARDLAB_MAX_TEXT_CHARS:
        raise ChatError("The comment is too long.", field="comment")
    chat.status, chat.rating, chat.comment, chat.ended_at = (
        ChatStatus.ENDED,
        rating,
        (comment or "").strip(),
        (now or timezone.now()),
    )
    chat.save(update_fields=["status", "rating", "comment", "ended_at"])
    return chat


# --- reads --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShownTurn:
    turn: ChatTurn
    prompt: Message
    replies: list[tuple[str, Message]]  # ("A", message), ("B", message) once written
    chosen_side: str  # "A", "B" or "" (not voted)
    edited: Message | None  # the labeler's rewrite, when they made one
    choice: int | None


def chat_for(*, labeler, chat_id: int) -> Chat | None:
    return Chat.objects.select_related("project").filter(pk=chat_id, labeler=labeler).first()


def chat_turns(chat: Chat) -> list[ShownTurn]:
    """Every turn as the page shows it: the message, the two replies by side, what was chosen."""
    turns = list(chat.turns.select_related("prompt", "reply_a", "reply_b", "continued_from").order_by("number"))
    tasks = [t.comparison_task_id for t in turns if t.comparison_task_id]
    choices = dict(Comparison.objects.filter(task_id__in=tasks).values_list("task_id", "choice"))
    shown = []
    for turn in turns:
        replies = [("A", turn.reply_a), ("B", turn.reply_b)] if turn.reply_a_id and turn.reply_b_id else []
        choice = choices.get(turn.comparison_task_id)
        side = "" if choice is None else ("A" if choice < 0 else "B")
        edited = None
        if turn.continued_from_id and turn.continued_from_id not in (turn.reply_a_id, turn.reply_b_id):
            edited = turn.continued_from
        shown.append(ShownTurn(turn, turn.prompt, replies, side, edited, choice))
    return shown


def labeler_chats(*, labeler, project: Project, limit: int = 20) -> list[Chat]:
    return list(Chat.objects.filter(labeler=labeler, project=project).order_by("-created_at", "-id")[:limit])
