"""Thin pages: check the role, call a selector or service, render."""

from __future__ import annotations

import json
import uuid
from itertools import islice

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import push_url

from annotate import exports, extensions, quality, selectors, services
from annotate.formats import ImportFormatError
from annotate.forms import (
    ComparisonForm,
    DeactivateLabelerForm,
    DemonstrationForm,
    ExportForm,
    PromptImportForm,
    RankingForm,
    RatingForm,
    ReportForm,
    SkipForm,
)
from annotate.models import COMPARISON_SCALE, Assignment, Project, Task, TaskKind
from annotate.permissions import role_required
from annotate.roles import RoleName, user_has_role

User = get_user_model()


@login_required
def home(request):
    context = {"queues": None, "projects": None}
    if user_has_role(request.user, RoleName.LABELER):
        context["queues"] = selectors.labeler_queues(labeler=request.user)
    if user_has_role(request.user, RoleName.RESEARCHER):
        context["projects"] = selectors.projects_with_counts()
    return render(request, "annotate/home.html", context)


@role_required(RoleName.RESEARCHER)
def project_overview(request, slug: str, *, status: int = 200, **section_context):
    """The project at a glance; installed apps add their sections (the training app: the loop, with retraining
    cycles and their runs, and the model leaderboard). `section_context` reaches every section (a form with
    errors to show again, with `status` 400)."""
    project = get_object_or_404(Project, slug=slug)
    context = {
        "overview": selectors.project_overview(project=project),
        "sections": extensions.sections("overview", request, project, **section_context),
    }
    return render(request, "annotate/project_overview.html", context, status=status)


# --- exports and snapshots -----------------------------------------------------------------------------------

EXPORT_DEFAULTS = {"dataset": "preferences", "style": "standard", "aggregation": "raw", "ties": "drop", "margin": True}
EXPORT_DEFAULTS["format"] = "jsonl"


@role_required(RoleName.RESEARCHER)
@require_http_methods(["GET"])
def project_export(request, slug: str):
    """Choose what to export; preview the first rows, download it streamed, or freeze it as a snapshot."""
    project = get_object_or_404(Project, slug=slug)
    form = ExportForm(request.GET or None, initial=EXPORT_DEFAULTS)
    preview, options = None, None
    if form.is_bound and form.is_valid():
        options = form.options()
    if options is not None and "download" in request.GET:
        return exports.export_response(project, options)
    if options is not None:
        preview = [
            json.dumps(exports.plain_row(row), ensure_ascii=False, indent=1)
            for row in islice(exports.export_rows(project, options), 3)
        ]
    context = {
        "project": project,
        "form": form,
        "options": options,
        "preview": preview,
        "query": request.GET.urlencode(),
        "sections": {
            "preview": extensions.sections("export_preview", request, project, form=form, preview=preview),
            "after": extensions.sections("export", request, project, form=form, options=options),
        },
    }
    return render(request, "annotate/project_export.html", context, status=400 if form.errors else 200)


# --- quality control ----------------------------------------------------------------------------------------

CHART_DAYS = 30
KIND_ORDER = list(TaskKind.values)


def _day_bars(days: list[quality.DayCount], *, height: int = 120) -> list[dict]:
    """Stacked bar geometry (in SVG units) for the judgements-per-day chart: one bar per day, one segment per
    task kind, scaled to the busiest day."""
    top = max((day.total for day in days), default=0) or 1
    bars = []
    for index, day in enumerate(days):
        y = height
        segments = []
        for kind in KIND_ORDER:
            h = day.counts[kind] * height / top
            if h:
                y -= h
                segments.append({"kind": kind, "y": round(y, 2), "height": round(h, 2)})
        bars.append({"day": day, "x": index * 10 + 1, "segments": segments})
    return bars


@role_required(RoleName.RESEARCHER)
@require_http_methods(["GET"])
def project_quality(request, slug: str):
    """Who labeled what, how fast and how well, and how much labelers agree."""
    project = get_object_or_404(Project, slug=slug)
    report = quality.quality_report(project=project, days=CHART_DAYS)
    texts = selectors.message_texts(ids={i for p in report.contested for i in [p.anchor_id, *p.scores]})
    rewards = extensions.candidate_scores(project=project, message_ids={m for p in report.contested for m in p.scores})
    contested = [
        {
            "prompt": p,
            "text": texts.get(p.anchor_id, ""),
            "candidates": sorted(
                ((score, texts.get(m, ""), rewards.scores.get(m)) for m, score in p.scores.items()), reverse=True
            ),
        }
        for p in report.contested
    ]
    return render(
        request,
        "annotate/project_quality.html",
        {
            "report": report,
            "project": project,
            "bars": _day_bars(report.days),
            "contested": contested,
            "kinds": TaskKind.choices,
            "reward_model": rewards.model,
            "kind_columns": [("demonstrate", "Demos"), ("rank", "Rankings"), ("compare", "A/B"), ("rate", "Ratings")],
        },
    )


@role_required(RoleName.ADMIN)
@require_http_methods(["GET", "POST"])
def labeler_deactivate(request, slug: str, user_id: int):
    """Confirm, then close a labeler's account and, if asked, send their judgements in this project back for
    re-labeling."""
    project = get_object_or_404(Project, slug=slug)
    labeler = get_object_or_404(User, pk=user_id)
    if labeler == request.user:
        messages.error(request, "You cannot deactivate your own account.")
        return redirect("annotate:project_quality", slug=project.slug)
    form = DeactivateLabelerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = services.labeler_deactivate(labeler=labeler, requeue=form.cleaned_data["requeue"], project=project)
        messages.success(
            request,
            f"{labeler.username} is deactivated. {result.leases_released} lease(s) released; "
            f"{result.annotations_requeued} judgement(s) sent back for re-labeling "
            f"({result.tasks_reopened} task(s) reopened).",
        )
        return redirect("annotate:project_quality", slug=project.slug)
    context = {
        "project": project,
        "labeler": labeler,
        "form": form,
        **selectors.labeler_footprint(labeler=labeler, project=project),
    }
    return render(request, "annotate/labeler_deactivate.html", context)


@role_required(RoleName.ADMIN)
@require_http_methods(["GET", "POST"])
def project_import(request, slug: str):
    project = get_object_or_404(Project, slug=slug)
    form = PromptImportForm(request.POST or None, request.FILES or None)
    problems = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            result = services.prompts_import(
                project=project, data=upload.read(), filename=upload.name, imported_by=request.user
            )
        except ImportFormatError as exc:
            problems = exc.problems
        else:
            messages.success(request, f"Imported {upload.name}: {result.summary()}.")
            return redirect("annotate:project_overview", slug=project.slug)
    return render(
        request,
        "annotate/project_import.html",
        {"project": project, "form": form, "problems": problems},
        status=400 if problems else 200,
    )


# --- labeling -----------------------------------------------------------------------------------------------

LABEL_TEMPLATE = "annotate/label.html"


def _modes(mode: str) -> list[str]:
    """The task kinds in a `mode` ("rank,compare"); unknown names are ignored."""
    return [kind for kind in mode.split(",") if kind in TaskKind.values]


def _mode(raw: str) -> str:
    """A cleaned `mode` to carry from page to page."""
    return ",".join(_modes(raw))


def _labeling_context(request, project: Project, assignment: Assignment | None, **extra) -> dict:
    mode = _mode(extra.pop("mode", ""))
    view = selectors.labeling_task(assignment=assignment) if assignment else None
    context = {
        "project": project,
        "view": view,
        "mode": mode,
        "progress": selectors.labeler_progress(labeler=request.user, project=project),
        "client_token": uuid.uuid4().hex,
        "scale": COMPARISON_SCALE,
        "skip_form": SkipForm(initial={"mode": mode}),
        **extra,
    }
    if view is not None and "form" not in context:
        context["form"] = _submission_form(view.task, project, candidate_ids=[c.message.pk for c in view.candidates])
    return context


def _submission_form(task: Task, project: Project, *, candidate_ids: list[int], data=None):
    if task.kind == TaskKind.DEMONSTRATE:
        return DemonstrationForm(data)
    if task.kind == TaskKind.RANK:
        return RankingForm(data, candidate_ids=candidate_ids, project=project)
    if task.kind == TaskKind.COMPARE:
        return ComparisonForm(data)
    return RatingForm(data, project=project)


def _render_workspace(request, project, assignment, *, status=200, url: str | None = None, **extra):
    """The whole page, or only the workspace partial when htmx asks (it swaps it in place, and shows `url`)."""
    context = _labeling_context(request, project, assignment, **extra)
    template = f"{LABEL_TEMPLATE}#workspace" if request.htmx else LABEL_TEMPLATE
    response = render(request, template, context, status=status)
    if request.htmx and url:
        push_url(response, url)
    return response


def _task_url(project: Project, task_id: int, mode: str) -> str:
    url = reverse("annotate:label_task", args=[project.slug, task_id])
    return f"{url}?mode={mode}" if mode else url


def _start_url(project: Project, mode: str) -> str:
    url = reverse("annotate:label_start", args=[project.slug])
    return f"{url}?mode={mode}" if mode else url


def _serve_next(request, project: Project, mode: str):
    """After a submit or a skip: the next task. htmx gets it at once, swapped in with its URL shown; a plain form
    is sent to "take the next task" (`label_start`, which leases it and sends the browser on to it)."""
    if not request.htmx:
        return redirect(_start_url(project, mode))
    assignment = services.task_lease_next(labeler=request.user, project=project, kinds=_modes(mode) or None)
    url = _task_url(project, assignment.task_id, mode) if assignment else _start_url(project, mode)
    return _render_workspace(request, project, assignment, url=url, mode=mode)


def _labeling_project(slug: str) -> Project:
    project = selectors.active_project(slug=slug)
    if project is None:
        raise Http404("No Project matches the given query.")
    return project


@role_required(RoleName.LABELER)
@require_http_methods(["GET"])
def label_start(request, slug: str):
    """ "Start labeling": the labeler's live lease in this project, or a new one; `?mode=rank,compare` narrows
    new leases to those task kinds."""
    project = _labeling_project(slug)
    mode = _mode(request.GET.get("mode", ""))
    assignment = services.task_lease_next(labeler=request.user, project=project, kinds=_modes(mode) or None)
    if assignment is None:
        return _render_workspace(request, project, None, mode=mode)
    return redirect(_task_url(project, assignment.task_id, mode))


@role_required(RoleName.LABELER)
@require_http_methods(["GET"])
def label_task(request, slug: str, task_id: int):
    mode = _mode(request.GET.get("mode", ""))
    assignment = selectors.live_assignment(labeler=request.user, task_id=task_id, project_slug=slug)
    if assignment is None:
        project = _labeling_project(slug)
        messages.info(request, "That task is not leased to you any more; here is your next one.")
        return redirect(_start_url(project, mode))
    return _render_workspace(request, assignment.task.project, assignment, mode=mode)


def _lease_problem(request, slug: str, error: services.LeaseError, mode: str, project: Project | None = None):
    project = project or _labeling_project(slug)
    return _render_workspace(request, project, None, status=error.status, lease_error=error.message, mode=mode)


@role_required(RoleName.LABELER)
@require_POST
def label_submit(request, slug: str, task_id: int):
    mode = _mode(request.POST.get("mode", ""))
    # The labeler's own assignment on this project's task, whatever its state (the service judges it), with what the
    # form and the service need (the service takes it as read).
    target = selectors.submission_target(
        labeler=request.user, task_id=task_id, project_slug=slug, client_token=request.POST.get("client_token", "")
    )
    if target is None:
        return _lease_problem(request, slug, services.LeaseError("This task is not leased to you."), mode)
    task, project = target.task, target.task.project
    # In the order this labeler saw them, so tied replies are stored within their tier in the order shown.
    candidate_ids = selectors.candidate_order_for(task=task, labeler=request.user, candidate_ids=target.candidate_ids)
    form = _submission_form(task, project, candidate_ids=candidate_ids, data=request.POST)
    if not form.is_valid():
        return _render_workspace(request, project, target, status=422, form=form, mode=mode)
    try:
        services.submission_submit(
            labeler=request.user,
            assignment_id=target.pk,
            kind=task.kind,
            data=form.judgement(),
            client_token=form.cleaned_data["client_token"],
            time_spent_ms=form.cleaned_data.get("time_spent_ms"),
            target=target,
        )
    except services.LeaseError as error:
        return _lease_problem(request, slug, error, mode, project)
    except services.LabelingError as error:
        form.add_error(None, error.message)
        return _render_workspace(request, project, target, status=error.status, form=form, mode=mode)
    return _serve_next(request, project, mode)


def _assignment_for(request, project: Project, task_id: int) -> Assignment:
    """The labeler's own assignment on this project's task, whatever its state (the service judges it)."""
    return get_object_or_404(
        Assignment.objects.select_related("task__project"), labeler=request.user, task_id=task_id, task__project=project
    )


@role_required(RoleName.LABELER)
@require_POST
def label_skip(request, slug: str, task_id: int):
    project = _labeling_project(slug)
    form = SkipForm(request.POST)
    mode = _mode(request.POST.get("mode", ""))
    try:
        assignment = _assignment_for(request, project, task_id)
    except Http404:
        return _lease_problem(request, slug, services.LeaseError("This task is not leased to you."), mode, project)
    if not form.is_valid():
        return _render_workspace(request, project, assignment, status=422, skip_form=form, skip_open=True, mode=mode)
    try:
        services.task_skip(
            labeler=request.user,
            assignment_id=assignment.pk,
            reason=form.cleaned_data["reason"],
            note=form.cleaned_data["note"],
        )
    except services.LeaseError as error:
        return _lease_problem(request, slug, error, mode, project)
    except services.LabelingError as error:
        form.add_error(None, error.message)
        return _render_workspace(
            request, project, assignment, status=error.status, skip_form=form, skip_open=True, mode=mode
        )
    return _serve_next(request, project, mode)


@role_required(RoleName.LABELER)
@require_POST
def label_report(request, slug: str, task_id: int, message_id: int):
    project = _labeling_project(slug)
    assignment = _assignment_for(request, project, task_id)
    form = ReportForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        services.candidate_report(
            labeler=request.user, assignment_id=assignment.pk, message_id=message_id, reason=reason
        )
    except services.LabelingError as error:
        return HttpResponse(error.message, status=error.status, content_type="text/plain")
    if request.htmx:
        return render(
            request,
            f"{LABEL_TEMPLATE}#report-button",
            {"project": project, "task_id": task_id, "message_id": message_id, "reported": True},
        )
    messages.success(request, "Thank you: the reply was reported to the project admins.")
    return redirect(_task_url(project, task_id, request.POST.get("mode", "")))


@role_required(RoleName.LABELER)
@require_http_methods(["GET"])
def project_guidelines(request, slug: str):
    project = _labeling_project(slug)
    return render(request, "annotate/guidelines.html", {"project": project})
