"""Thin pages: check the role, call a selector or service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from annotate import selectors, services
from annotate.formats import ImportFormatError
from annotate.forms import PromptImportForm
from annotate.models import Project
from annotate.permissions import role_required
from annotate.roles import RoleName, user_has_role


@login_required
def home(request):
    context = {"queues": None, "projects": None}
    if user_has_role(request.user, RoleName.LABELER):
        context["queues"] = selectors.labeler_queues(labeler=request.user)
    if user_has_role(request.user, RoleName.RESEARCHER):
        context["projects"] = selectors.projects_with_counts()
    return render(request, "annotate/home.html", context)


@role_required(RoleName.RESEARCHER)
def project_overview(request, slug: str):
    project = get_object_or_404(Project, slug=slug)
    return render(request, "annotate/project_overview.html", {"overview": selectors.project_overview(project=project)})


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
