"""Live chat pages (labelers). Thin: forms parse, `annotate.chat` decides. Every POST answers with the chat as
it now is (htmx swaps `#chat`; without JavaScript, a redirect to the page), and a generating turn is polled."""

from __future__ import annotations

import uuid

from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotate import chat as chat_services
from annotate.forms import ChatEndForm, ChatSendForm, ChatStartForm, ChatVoteForm
from annotate.models import COMPARISON_SCALE, Chat, ChatStatus, Project, TurnStatus
from annotate.permissions import role_required
from annotate.roles import RoleName
from annotate.services import LabelingError

# How often the page asks whether a turn's replies are written (milliseconds).
POLL_MS = 300


def _chat_project(slug: str) -> Project:
    project = get_object_or_404(Project, slug=slug, is_active=True)
    if not project.chat_enabled:
        raise Http404("Live chat is not open in this project.")
    return project


def _own_chat(request, project: Project, chat_id: int) -> Chat:
    chat = chat_services.chat_for(labeler=request.user, chat_id=chat_id)
    if chat is None or chat.project_id != project.pk:
        raise Http404("No such chat of yours.")
    return chat


def _render_chat(request, project: Project, chat: Chat, *, status: int = 200, **extra):
    turns = chat_services.chat_turns(chat)
    for shown in turns:
        chat_services.turn_time_out(shown.turn)
    last = turns[-1] if turns else None
    context = {
        "project": project,
        "chat": chat,
        "turns": turns,
        "last": last,
        "scale": COMPARISON_SCALE,
        "poll_ms": POLL_MS,
        "client_token": uuid.uuid4().hex,
        "can_send": chat.status == ChatStatus.OPEN
        and last is not None
        and last.turn.status == TurnStatus.VOTED
        and last.turn.number < project.chat_max_turns,
        "turns_left": max(0, project.chat_max_turns - (last.turn.number if last else 0)),
        "send_form": extra.pop("send_form", None) or ChatSendForm(),
        "vote_form": extra.pop("vote_form", None),
        "end_form": extra.pop("end_form", None) or ChatEndForm(),
        **extra,
    }
    template = "annotate/chat.html#chat" if request.htmx else "annotate/chat.html"
    return render(request, template, context, status=status)


def _after_post(request, project: Project, chat: Chat):
    if request.htmx:
        return _render_chat(request, project, chat)
    return redirect("annotate:chat_page", project.slug, chat.pk)


@role_required(RoleName.LABELER)
@require_http_methods(["GET", "POST"])
def chat_home(request, slug: str):
    """The labeler's chats in this project, and a new one: their task, then their first message."""
    project = _chat_project(slug)
    form = ChatStartForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            chat = chat_services.chat_start(
                labeler=request.user, project=project, goal=form.cleaned_data["goal"], text=form.cleaned_data["text"]
            )
            return redirect("annotate:chat_page", project.slug, chat.pk)
        except LabelingError as exc:  # ChatError, or a judgement the services refused
            error = exc.message
    context = {
        "project": project,
        "form": form,
        "error": error,
        "chats": chat_services.labeler_chats(labeler=request.user, project=project),
    }
    return render(request, "annotate/chat_home.html", context, status=422 if request.method == "POST" else 200)


@role_required(RoleName.LABELER)
@require_http_methods(["GET"])
def chat_page(request, slug: str, chat_id: int):
    project = _chat_project(slug)
    return _render_chat(request, project, _own_chat(request, project, chat_id))


@role_required(RoleName.LABELER)
@require_POST
def chat_send(request, slug: str, chat_id: int):
    project = _chat_project(slug)
    chat = _own_chat(request, project, chat_id)
    form = ChatSendForm(request.POST)
    form.is_valid()
    try:
        chat_services.chat_send(labeler=request.user, chat_id=chat.pk, text=form.cleaned_data.get("text", ""))
    except LabelingError as exc:  # ChatError, or a judgement the services refused
        form.add_error(None, exc.message)
        return _render_chat(request, project, chat, status=422, send_form=form)
    return _after_post(request, project, chat)


@role_required(RoleName.LABELER)
@require_POST
def chat_vote(request, slug: str, chat_id: int, turn_id: int):
    project = _chat_project(slug)
    chat = _own_chat(request, project, chat_id)
    form = ChatVoteForm(request.POST)
    if not form.is_valid():
        return _render_chat(request, project, chat, status=422, vote_form=form)
    data = form.cleaned_data
    try:
        chat_services.chat_vote(
            labeler=request.user,
            turn_id=turn_id,
            choice=data["choice"],
            client_token=data["client_token"],
            edited_text=data["edited_text"],
            time_spent_ms=data.get("time_spent_ms"),
        )
    except LabelingError as exc:  # ChatError, or a judgement the services refused
        form.add_error(None, exc.message)
        return _render_chat(request, project, chat, status=422, vote_form=form)
    return _after_post(request, project, chat)


@role_required(RoleName.LABELER)
@require_POST
def chat_retry(request, slug: str, chat_id: int, turn_id: int):
    project = _chat_project(slug)
    chat = _own_chat(request, project, chat_id)
    try:
        chat_services.chat_retry(labeler=request.user, turn_id=turn_id)
    except LabelingError as exc:  # ChatError, or a judgement the services refused
        return _render_chat(request, project, chat, status=422, retry_error=exc.message)
    return _after_post(request, project, chat)


@role_required(RoleName.LABELER)
@require_POST
def chat_end(request, slug: str, chat_id: int):
    project = _chat_project(slug)
    chat = _own_chat(request, project, chat_id)
    form = ChatEndForm(request.POST)
    if not form.is_valid():
        return _render_chat(request, project, chat, status=422, end_form=form)
    try:
        chat_services.chat_end(
            labeler=request.user,
            chat_id=chat.pk,
            rating=form.cleaned_data["rating"],
            comment=form.cleaned_data["comment"],
        )
    except LabelingError as exc:  # ChatError, or a judgement the services refused
        form.add_error(None, exc.message)
        return _render_chat(request, project, chat, status=422, end_form=form)
    chat.refresh_from_db()
    return _after_post(request, project, chat)
