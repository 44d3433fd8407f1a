"""Pages for runs and the model registry: thin views over rewardlab's services and selectors."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from annotate import exports
from annotate import views as annotate_views
from annotate.forms import ExportForm
from annotate.models import Project
from annotate.permissions import role_required
from annotate.roles import RoleName
from training import charts, cycles, datasets, health, lineage, selectors, services
from training.forms import (
    DPORunForm,
    PPORunForm,
    RetrainSettingsForm,
    RewardRunForm,
    RunForm,
    SampleRunForm,
    SFTRunForm,
)
from training.models import CycleStatus, ModelKind, ModelVersion, RetrainCycle, RunKind, RunStatus


@role_required(RoleName.RESEARCHER)
def run_list(request):
    """Every run, newest first, and (for admins) a way to start one per project."""
    project = None
    if slug := request.GET.get("project"):
        project = get_object_or_404(Project, slug=slug)
    runs = selectors.run_list(project=project)[:200]
    projects = Project.objects.filter(is_active=True).order_by("name")
    workers = health.workers()
    queues_down = [queue.name for queue in health.queue_health(workers) if not queue.ok]
    context = {"runs": runs, "projects": projects, "project": project, "workers": workers, "queues_down": queues_down}
    return render(request, "training/run_list.html", context)


@role_required(RoleName.ADMIN)
@require_http_methods(["GET", "POST"])
def run_reward_new(request, slug: str):
    """See the dataset a reward-model run would use, adjust its config and start it."""
    project = get_object_or_404(Project, slug=slug)
    form = RewardRunForm(request.POST or None, initial=RewardRunForm.defaults())
    if request.method == "POST" and (run := _run_start(request, project, form)) is not None:
        return redirect("rewardlab:run_detail", run_id=run.pk)
    summary = datasets.preference_summary(project)
    return render(
        request,
        "training/run_reward_new.html",
        {"project": project, "form": form, "summary": summary, "min_pairs": services.MIN_REWARD_PAIRS},
    )


def _run_start(request, project: Project, form: RunForm):
    """Start the run a valid form describes and say so; None when the form or the service refused it (the error
    is then on the form, on its field where it names one)."""
    if not form.is_valid():
        return None
    try:
        run = services.run_start(
            kind=form.CONFIG_CLASS.KIND, project=project, config=form.config(), created_by=request.user, **form.links()
        )
    except services.RunError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return None
    messages.success(request, f"{run} is queued on the training queue.")
    return run


POLICY_RUNS = {RunKind.SFT: SFTRunForm, RunKind.DPO: DPORunForm, RunKind.PPO: PPORunForm, RunKind.SAMPLE: SampleRunForm}


@role_required(RoleName.ADMIN)
@require_http_methods(["GET", "POST"])
def run_policy_new(request, slug: str, kind: str):
    """Start an SFT, DPO or PPO run: what it would train on, where it starts, its config."""
    if kind not in POLICY_RUNS:
        raise Http404("No such run kind.")
    project = get_object_or_404(Project, slug=slug)
    form_class = POLICY_RUNS[kind]
    form = form_class(request.POST or None, project=project, initial=form_class.defaults(project))
    if request.method == "POST" and (run := _run_start(request, project, form)) is not None:
        return redirect("rewardlab:run_detail", run_id=run.pk)
    summary = datasets.policy_data_summary(project, with_pairs=kind == RunKind.DPO)
    serving_reward = selectors.serving_version(project=project, kind=ModelKind.REWARD)
    serving_policy = selectors.serving_version(project=project, kind=ModelKind.POLICY)
    needing = 0
    if kind == RunKind.SAMPLE:
        needing = len(selectors.prompts_needing_candidates(project=project, limit=100_000, version=serving_policy))
    if kind == RunKind.SAMPLE:
        ready = needing > 0 and form.fields["base_version"].queryset.exists()
    elif kind == RunKind.SFT:
        ready = summary.demonstrations >= services.MIN_DEMONSTRATIONS
    elif kind == RunKind.DPO:
        ready = summary.preference_pairs >= services.MIN_DPO_PAIRS
    else:
        ready = summary.prompts > 0 and form.fields["reward_version"].queryset.exists()
    return render(
        request,
        "training/run_policy_new.html",
        {
            "project": project,
            "form": form,
            "kind": kind,
            "summary": summary,
            "serving_reward": serving_reward,
            "serving_policy": serving_policy,
            "prompts_needing": needing,
            "ready": ready,
            "min_demonstrations": services.MIN_DEMONSTRATIONS,
            "min_pairs": services.MIN_DPO_PAIRS,
        },
    )


@role_required(RoleName.RESEARCHER)
def run_detail(request, run_id: int):
    """The run console: progress with ETA, curves, log tail, cancel. htmx polls the console partial every two
    seconds until the run ends."""
    run = selectors.run_detail(run_id=run_id)
    if run is None:
        raise Http404("No such run.")
    context = {"run": run, **_console(run)}
    if request.htmx:
        response = render(request, "training/run_detail.html#console", context)
        if run.is_finished:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "training/run_detail.html", context)


# The curves each kind of run draws: (history key, label, options).
CURVES = {
    RunKind.REWARD: [
        ("loss", "Training loss (smoothed)", {"smoothing": 0.8}),
        ("eval_accuracy", "Held-out accuracy", {"low": 0.0, "high": 1.0}),
        ("eval_loss", "Held-out loss", {}),
    ],
    RunKind.SFT: [
        ("loss", "Training loss (smoothed)", {"smoothing": 0.8}),
        ("eval_loss", "Held-out loss", {}),
    ],
    RunKind.DPO: [
        ("loss", "Training loss (smoothed)", {"smoothing": 0.8}),
        ("reward_margin", "Implicit reward margin (smoothed)", {"smoothing": 0.8}),
        ("reward_accuracy", "Implicit reward accuracy (smoothed)", {"smoothing": 0.8, "low": 0.0, "high": 1.0}),
        ("eval_reward_margin", "Held-out reward margin", {}),
    ],
    RunKind.SAMPLE: [
        ("replies_per_second", "Replies per second", {"low": 0.0}),
        ("duplicate_share", "Share of draws dropped as duplicates", {"low": 0.0, "high": 1.0}),
    ],
    RunKind.PPO: [
        ("reward_mean", "Mean reward", {"smoothing": 0.6}),
        ("kl", "KL to the reference (nats per reply)", {"smoothing": 0.6}),
        ("entropy", "Entropy (nats per token)", {}),
        ("clip_fraction", "Clip fraction", {"low": 0.0}),
        ("value_loss", "Value loss", {"smoothing": 0.6}),
        ("kl_coef", "KL coefficient β", {}),
    ],
}


def _console(run) -> dict:
    eta = None
    if run.status == RunStatus.RUNNING and run.started_at and 0 < run.progress_step < run.progress_total:
        elapsed = (timezone.now() - run.started_at).total_seconds()
        eta = elapsed / run.progress_step * (run.progress_total - run.progress_step)
    history = run.metrics_history or []
    curves = [charts.curve(history, key, label, **options) for key, label, options in CURVES.get(run.kind, [])]
    percent = round(100 * run.progress_step / run.progress_total) if run.progress_total else 0
    return {
        "eta_seconds": eta,
        "percent": percent,
        "curves": [c for c in curves if c.count],
        "log_lines": run.log_tail.splitlines()[-60:],
    }


@role_required(RoleName.ADMIN)
@require_POST
def run_cancel(request, run_id: int):
    run = selectors.run_detail(run_id=run_id)
    if run is None:
        raise Http404("No such run.")
    run = services.run_cancel(run=run)
    if request.htmx:
        return render(request, "training/run_detail.html#console", {"run": run, **_console(run)})
    messages.info(request, f"{run}: cancel requested." if not run.is_finished else f"{run} is {run.status}.")
    return redirect("rewardlab:run_detail", run_id=run.pk)


@role_required(RoleName.RESEARCHER)
def model_list(request, slug: str):
    """The project's model versions: metrics, lineage, which one serves; promote and roll back (admins)."""
    project = get_object_or_404(Project, slug=slug)
    rewards = list(selectors.version_list(project=project, kind=ModelKind.REWARD))
    serving = next((v for v in rewards if v.status == "serving"), None)
    live = selectors.live_accuracy(version=serving) if serving else None
    return render(
        request,
        "training/model_list.html",
        {
            "project": project,
            "rewards": rewards,
            "policies": list(selectors.version_list(project=project, kind=ModelKind.POLICY)),
            "serving": serving,
            "live": live,
        },
    )


@role_required(RoleName.ADMIN)
@require_POST
def model_promote(request, slug: str, version_id: int):
    version = get_object_or_404(ModelVersion, project__slug=slug, pk=version_id)
    try:
        services.model_version_promote(version=version)
    except services.RunError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{version} now serves.")
    return redirect("rewardlab:model_list", slug=slug)


@role_required(RoleName.ADMIN)
@require_POST
def model_rollback(request, slug: str, kind: str):
    project = get_object_or_404(Project, slug=slug)
    if kind not in ModelKind.values:
        raise Http404("No such model kind.")
    try:
        version = services.model_version_rollback(project=project, kind=kind)
    except services.RunError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Rolled back: {version} serves again.")
    return redirect("rewardlab:model_list", slug=slug)


@role_required(RoleName.RESEARCHER)
def lineage_detail(request, kind: str, pk: int):
    """Where a judgement, snapshot, run, model version, task or message came from and what came from it."""
    try:
        found = lineage.lineage(kind, pk)
    except lineage.LineageNotFound as error:
        raise Http404(str(error)) from None
    sides = [
        {"name": "upstream", "title": "Came from", "groups": found.upstream, "empty": "Nothing recorded upstream."},
        {"name": "downstream", "title": "Led to", "groups": found.downstream, "empty": "Nothing came from it yet."},
    ]
    return render(request, "training/lineage.html", {"lineage": found, "sides": sides, "limit": lineage.LIMIT})


# --- the retraining cycle ---------------------------------------------------------------------------------------


@role_required(RoleName.ADMIN)
@require_POST
def retrain_settings(request, slug: str):
    """Switch scheduled retraining on or off and set its thresholds, checks, run configs and active selection."""
    project = get_object_or_404(Project, slug=slug)
    form = RetrainSettingsForm(request.POST, instance=project)
    if form.is_valid():
        form.save()
        state = "on" if project.retrain_enabled else "off"
        messages.success(request, f"Retraining settings saved; scheduled retraining is {state}.")
        return redirect("annotate:project_overview", slug=project.slug)
    return annotate_views.project_overview(request, slug, status=400, retrain_form=form)


@role_required(RoleName.ADMIN)
@require_POST
def cycle_start(request, slug: str):
    project = get_object_or_404(Project, slug=slug)
    try:
        cycle = cycles.cycle_start(project=project, started_by=request.user)
    except cycles.CycleError as error:
        messages.error(request, str(error))
    else:
        if cycle.status == CycleStatus.FAILED:
            messages.error(request, cycle.error)
        else:
            messages.success(request, f"Cycle started: {' → '.join(cycle.stages)}.")
    return redirect("annotate:project_overview", slug=project.slug)


@role_required(RoleName.ADMIN)
@require_POST
def cycle_stop(request, slug: str, cycle_id: int):
    cycle = get_object_or_404(RetrainCycle, pk=cycle_id, project__slug=slug)
    cycles.cycle_stop(cycle=cycle)
    messages.success(request, f"{cycle} stopped; its current run is cancelled.")
    return redirect("annotate:project_overview", slug=slug)


@role_required(RoleName.RESEARCHER)
@require_http_methods(["GET"])
def project_cycles(request, slug: str):
    """The overview's cycles, polled by htmx while one runs (a 286 stops the polling once none does)."""
    project = get_object_or_404(Project, slug=slug)
    cycles_shown = selectors.recent_cycles(project=project)
    loop = {"cycles": cycles_shown, "running": selectors.running_cycle_in(cycles_shown)}
    response = render(request, "training/_project_loop.html#cycles", {"project": project, "loop": loop})
    if loop["running"] is None:
        response.status_code = HttpResponseStopPolling.status_code
    return response


def overview_section(request, project: Project, *, retrain_form=None, **_) -> str:
    """The project overview's loop: retraining state, cycles, settings and the model leaderboard."""
    context = {
        "project": project,
        "loop": cycles.project_loop(project=project),
        "retrain_form": retrain_form or RetrainSettingsForm(instance=project),
    }
    return render_to_string("training/_project_loop.html", context, request=request)


# --- snapshots: frozen exports, which runs record as their data -------------------------------------------------


def snapshot_freeze_section(request, project: Project, *, form, preview, **_) -> str:
    """Under the export's preview: freeze what is previewed as a snapshot."""
    if not preview:
        return ""
    return render_to_string("training/_snapshot_freeze.html", {"project": project, "form": form}, request=request)


def snapshots_section(request, project: Project, **_) -> str:
    snapshots = project.snapshots.select_related("created_by")[:20]
    return render_to_string("training/_snapshots.html", {"project": project, "snapshots": snapshots}, request=request)


@role_required(RoleName.RESEARCHER)
@require_POST
def snapshot_create(request, slug: str):
    project = get_object_or_404(Project, slug=slug)
    form = ExportForm(request.POST)
    options = form.options() if form.is_valid() else None
    if options is None:
        messages.error(
            request,
            "The export options are not valid: "
            + "; ".join(str(error) for errors in form.errors.values() for error in errors),
        )
        return redirect("annotate:project_export", slug=project.slug)
    result = services.snapshot_freeze(
        project=project, options=options, name=request.POST.get("name", "")[:200], created_by=request.user
    )
    snapshot = result.snapshot
    if result.created:
        messages.success(
            request, f"Snapshot {snapshot.content_hash[:12]} frozen: {snapshot.row_counts.get('rows', 0):,} rows."
        )
    else:
        messages.info(request, f"Nothing changed since snapshot {snapshot.content_hash[:12]}; it is the same data.")
    return redirect("annotate:project_export", slug=project.slug)


@role_required(RoleName.RESEARCHER)
@require_http_methods(["GET"])
def snapshot_download(request, slug: str, snapshot_id: int):
    """The snapshot's file exactly as it was frozen."""
    project = get_object_or_404(Project, slug=slug)
    snapshot = get_object_or_404(project.snapshots, pk=snapshot_id)
    return exports.snapshot_response(project, snapshot)
