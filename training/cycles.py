"""The retraining cycle: the loop from new human judgements to new tasks for people, one run at a time.

Celery beat calls `cycles_tick` every minute. For a project whose admin switched retraining on, with no cycle
running, it counts what arrived since the last models were trained and plans a cycle:

1. **reward** when at least `retrain_min_comparisons` new preference judgements (A/B comparisons and rankings,
   from labelers) arrived since the newest reward model's data was frozen;
2. **sft** when at least `retrain_min_demonstrations` new demonstrations arrived since the newest SFT policy's;
3. **ppo** or **dpo** (the project's `retrain_policy_method`) after a new reward model, from the serving policy;
4. **sample**: the new serving policy writes candidates for the prompts that need them, as new ranking and A/B
   tasks (head-to-head against the policy that served before).

Each stage is an ordinary run with its own console, started when the one before succeeded and its version passed
its checks (`version_checks`); a version that passes is promoted (so the next stage and the labelers' new tasks
use it; an admin can roll it back). A failed or cancelled run, a version that fails its checks, or a stage that
cannot start ends the cycle as failed with the reason, shown on the project page. A database constraint keeps
two cycles of one project from running at once.

The worker that finishes a cycle's run advances the cycle at once (`cycle_run_finished`); the tick advances any
cycle whose run ended without that (cancelled while queued, or failed by the heartbeat check)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.models import Comparison, Demonstration, Project, Ranking
from training import arena, selectors, services
from training.models import CycleStatus, ModelKind, ModelVersion, RetrainCycle, RunKind, RunStatus, TrainingRun

logger = logging.getLogger(__name__)


class CycleError(ValueError):
    """A cycle cannot start as asked."""


@dataclass(frozen=True)
class NewData:
    """What arrived since the newest reward model and SFT policy were trained."""

    preferences: int
    demonstrations: int

    def plan(self, project: Project, *, minimum_preferences: int, minimum_demonstrations: int) -> list[str]:
        stages = []
        if self.preferences >= max(minimum_preferences, 1):
            stages.append(RunKind.REWARD)
        if self.demonstrations >= max(minimum_demonstrations, 1):
            stages.append(RunKind.SFT)
        if RunKind.REWARD in stages:
            stages.append(project.retrain_policy_method)
        if stages:
            stages.append(RunKind.SAMPLE)
        return [str(stage) for stage in stages]


def _frozen_at(project: Project, kind: str):
    """When the data of the newest successful run of `kind` was frozen (None: never trained)."""
    run = (
        TrainingRun.objects.filter(project=project, kind=kind, status=RunStatus.SUCCEEDED, snapshot__isnull=False)
        .select_related("snapshot")
        .order_by("-created_at")
        .first()
    )
    return run.snapshot.created_at if run else None


def new_data(project: Project) -> NewData:
    """Labelers' judgements (discarded ones and imported ones left out) newer than the data of the newest reward
    model and SFT policy."""
    mine = {"task__project": project, "labeler__isnull": False, "discarded_at__isnull": True}
    reward_at, sft_at = _frozen_at(project, RunKind.REWARD), _frozen_at(project, RunKind.SFT)
    after_reward = {"created_at__gt": reward_at} if reward_at else {}
    after_sft = {"created_at__gt": sft_at} if sft_at else {}
    preferences = sum(model.objects.filter(**mine, **after_reward).count() for model in (Comparison, Ranking))
    return NewData(preferences, Demonstration.objects.filter(**mine, **after_sft).count())


def _reason(data: NewData, project: Project, *, forced_by=None) -> str:
    seen = f"{data.preferences} new preference judgements, {data.demonstrations} new demonstrations"
    if forced_by is not None:
        return f"Started by {forced_by} ({seen})."
    return (
        f"Thresholds crossed: {seen} (at least {project.retrain_min_comparisons} and "
        f"{project.retrain_min_demonstrations} start a reward model and SFT)."
    )


def running_cycle(project: Project) -> RetrainCycle | None:
    return RetrainCycle.objects.filter(project=project, status=CycleStatus.RUNNING).first()


def cycle_start(*, project: Project, started_by=None, use_thresholds: bool | None = None) -> RetrainCycle:
    """Start a cycle now: by the thresholds (beat; an admin may ask for them too), or, for an admin pressing "Run a
    cycle now" (`started_by`), with whatever new data there is. Raises CycleError when one is running or there is
    nothing (enough) new to train on."""
    data = new_data(project)
    if use_thresholds is None:
        use_thresholds = started_by is None
    if use_thresholds:
        stages = data.plan(
            project,
            minimum_preferences=project.retrain_min_comparisons,
            minimum_demonstrations=project.retrain_min_demonstrations,
        )
    else:
        stages = data.plan(project, minimum_preferences=1, minimum_demonstrations=1)
    if not stages:
        raise CycleError(
            f"The thresholds are not crossed yet ({data.preferences} of {project.retrain_min_comparisons} new "
            f"preference judgements, {data.demonstrations} of {project.retrain_min_demonstrations} demonstrations)."
            if use_thresholds
            else "Nothing new to train on: no preference judgements or demonstrations since the last models."
        )
    try:
        with transaction.atomic():  # the cycle and its first run together: a running cycle always has a run
            reason = _reason(data, project, forced_by=started_by)
            cycle = RetrainCycle.objects.create(project=project, stages=stages, reason=reason, started_by=started_by)
            _stage_start(cycle)
    except IntegrityError:
        raise CycleError("A retraining cycle of this project is already running.") from None
    return cycle


def _stage_start(cycle: RetrainCycle) -> None:
    """Start the cycle's current stage; a stage that cannot start ends the cycle as failed, saying why."""
    project = cycle.project
    kind = cycle.stage_kind
    config = (project.retrain_run_configs or {}).get(kind, {})
    owner = cycle.started_by
    try:
        with transaction.atomic():
            if kind not in services.RUN_INPUTS:
                raise services.RunError(f"unknown stage {kind!r}")
            # A cycle's policy runs go on from the serving policy; sampling takes it by default.
            base = services.serving_policy(project) if kind in (RunKind.SFT, RunKind.PPO, RunKind.DPO) else None
            run = services.run_start(kind=kind, project=project, config=config, created_by=owner, base_version=base)
            TrainingRun.objects.filter(pk=run.pk).update(cycle=cycle)
    except services.RunError as error:
        _cycle_finish(cycle, CycleStatus.FAILED, error=f"The {_stage_label(kind)} stage could not start: {error}")


def _stage_label(kind: str | None) -> str:
    return RunKind(kind).label if kind in RunKind.values else str(kind)


def version_checks(run: TrainingRun) -> list[str]:
    """Why the version a cycle's run registered must not serve (empty: it passes):

    - a reward model's held-out accuracy is at least the project's `retrain_min_reward_accuracy`;
    - an SFT policy's held-out loss is finite;
    - a PPO policy's mean reward is finite and its final KL to the starting policy is at most `retrain_max_kl`;
    - a DPO policy prefers the chosen reply on at least half of the held-out pairs.

    A check whose figure is missing (no held-out set) passes."""
    project, metrics = run.project, run.metrics or {}
    problems = []

    def bad(value) -> bool:
        return value is not None and not math.isfinite(value)

    if run.kind == RunKind.REWARD:
        accuracy = metrics.get("eval_accuracy")
        if accuracy is not None and accuracy < project.retrain_min_reward_accuracy:
            problems.append(f"held-out accuracy {accuracy:.3f} < {project.retrain_min_reward_accuracy:.3f}")
    elif run.kind == RunKind.SFT:
        if bad(metrics.get("eval_loss")):
            problems.append("the held-out loss is not finite")
    elif run.kind == RunKind.PPO:
        if bad(metrics.get("reward_mean_last")):
            problems.append("the mean reward is not finite")
        kl = metrics.get("kl_last")
        if kl is not None and (bad(kl) or kl > project.retrain_max_kl):
            problems.append(f"KL to the starting policy {kl:.2f} > {project.retrain_max_kl:.2f} nats")
    elif run.kind == RunKind.DPO:
        accuracy = metrics.get("eval_reward_accuracy")
        if accuracy is not None and accuracy < 0.5:
            problems.append(f"it prefers the chosen reply on only {accuracy:.0%} of held-out pairs")
    return problems


def _current_run(cycle: RetrainCycle) -> TrainingRun | None:
    return cycle.runs.filter(kind=cycle.stage_kind).order_by("-pk").first()


def cycle_run_finished(*, run_id: int) -> RetrainCycle | None:
    """Advance the cycle of a run that has ended: promote its version if it passes its checks and start the next
    stage, or end the cycle. Safe to call more than once for the same run (the worker and the tick both may)."""
    run = TrainingRun.objects.filter(pk=run_id).select_related("project", "output_version").first()
    if run is None or run.cycle_id is None or not run.is_finished:
        return None
    with transaction.atomic():
        cycle = RetrainCycle.objects.select_for_update().select_related("project").get(pk=run.cycle_id)
        current = _current_run(cycle)
        if cycle.status != CycleStatus.RUNNING or current is None or current.pk != run.pk:
            return cycle  # already advanced past this run
        label = _stage_label(run.kind)
        if run.status != RunStatus.SUCCEEDED:
            last_line = ((run.error or "").strip().splitlines() or [""])[-1]
            _cycle_finish(cycle, CycleStatus.FAILED, error=f"{label} run #{run.pk} {run.status}. {last_line}".strip())
            return cycle
        version: ModelVersion | None = run.output_version
        if version is not None:
            problems = version_checks(run)
            if problems:
                _cycle_finish(
                    cycle,
                    CycleStatus.FAILED,
                    error=f"{version} did not pass its checks ({'; '.join(problems)}); it was not promoted.",
                )
                return cycle
            services.model_version_promote(version=version)
            _outcome(cycle, f"{label}: {version} passed its checks and now serves (run #{run.pk}).")
        else:
            counts = run.metrics or {}
            _outcome(
                cycle,
                f"{label}: {counts.get('rank_tasks', 0)} ranking and {counts.get('compare_tasks', 0)} A/B tasks "
                f"from {counts.get('candidates', 0)} new candidates (run #{run.pk}).",
            )
        cycle.stage += 1
        cycle.save(update_fields=["stage"])
        if cycle.stage >= len(cycle.stages):
            _cycle_finish(cycle, CycleStatus.SUCCEEDED)
        else:
            _stage_start(cycle)  # in the same transaction: a running cycle always has its current run
    return cycle


def _outcome(cycle: RetrainCycle, line: str) -> None:
    cycle.outcome = f"{cycle.outcome}\n{line}".strip()
    cycle.save(update_fields=["outcome"])


def _cycle_finish(cycle: RetrainCycle, status: str, *, error: str = "") -> None:
    cycle.status, cycle.finished_at, cycle.error = status, timezone.now(), error[-4000:]
    cycle.save(update_fields=["status", "finished_at", "error"])


def cycle_stop(*, cycle: RetrainCycle) -> RetrainCycle:
    """An admin stops a running cycle: its current run is cancelled and no further stage starts."""
    with transaction.atomic():
        cycle = RetrainCycle.objects.select_for_update().get(pk=cycle.pk)
        if cycle.status != CycleStatus.RUNNING:
            return cycle
        current = _current_run(cycle)
        _cycle_finish(cycle, CycleStatus.FAILED, error="Stopped by an admin.")
    if current is not None and not current.is_finished:
        services.run_cancel(run=current)
    return cycle


def cycles_tick() -> dict[str, int]:
    """Beat: advance cycles whose run ended without the worker doing it, and start a cycle for each project with
    retraining on whose thresholds are crossed. Returns how many cycles were advanced and started."""
    advanced = started = 0
    for cycle in RetrainCycle.objects.filter(status=CycleStatus.RUNNING).select_related("project"):
        current = _current_run(cycle)
        try:
            if current is not None and current.is_finished:
                cycle_run_finished(run_id=current.pk)
                advanced += 1
            elif current is None:  # its run was deleted
                error = f"The {_stage_label(cycle.stage_kind)} stage has no run."
                _cycle_finish(cycle, CycleStatus.FAILED, error=error)
        except Exception:  # one project's trouble never stops the others' cycles; the next tick tries again
            logger.exception("advancing %s of project %s failed", cycle, cycle.project_id)
    for project in Project.objects.filter(retrain_enabled=True, is_active=True):
        if running_cycle(project) is not None:
            continue
        try:
            cycle_start(project=project)
        except CycleError:
            continue
        except Exception:
            logger.exception("starting a cycle of project %s failed", project.pk)
            continue
        started += 1
    return {"advanced": advanced, "started": started}


@dataclass(frozen=True)
class ProjectLoop:
    """The loop on the project page: recent cycles with their runs, what arrived since the last models, the
    serving versions and the model leaderboard."""

    cycles: list
    running: object | None
    new_data: object
    serving_policy: ModelVersion | None
    serving_reward: ModelVersion | None
    leaderboard: object


def project_loop(*, project: Project) -> ProjectLoop:
    recent = selectors.recent_cycles(project=project)
    return ProjectLoop(
        cycles=recent,
        running=selectors.running_cycle_in(recent),
        new_data=new_data(project),
        serving_policy=selectors.serving_version(project=project, kind=ModelKind.POLICY),
        serving_reward=selectors.serving_version(project=project, kind=ModelKind.REWARD),
        leaderboard=arena.project_leaderboard(project),
    )
