"""Writes on the training side: dataset snapshots, runs (start, claim, cancel, fail), the model registry (register,
promote, roll back) and reward scores of candidates."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotate import exports
from annotate import services as annotate_services
from annotate.models import ActiveSelection, Message, Project, TaskCandidate, TaskKind
from ml.config import DPOConfig, PPOConfig, RewardConfig, SampleConfig, SFTConfig
from training import datasets, queue, selectors
from training.models import (
    CandidateScore,
    DatasetSnapshot,
    ModelKind,
    ModelStatus,
    ModelVersion,
    RunKind,
    RunStatus,
    TrainingRun,
)

SNAPSHOT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FreezeResult:
    snapshot: DatasetSnapshot
    created: bool  # False: an identical snapshot (same judgements, same options) existed and is returned


def snapshot_content_hash(options: exports.ExportOptions, annotation_ids: dict[str, list[int]]) -> str:
    canonical = json.dumps(
        {"version": SNAPSHOT_FORMAT_VERSION, "options": options.as_filter(), "ids": annotation_ids},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def snapshot_path(project: Project, content_hash: str, options: exports.ExportOptions) -> Path:
    return (
        Path(settings.REWARDLAB_ARTIFACTS_DIR)
        / "snapshots"
        / project.slug
        / f"{content_hash}.{options.filename_suffix}"
    )


def snapshot_freeze(
    *, project: Project, options: exports.ExportOptions, name: str = "", created_by=None
) -> FreezeResult:
    """Freeze the judgements an export with `options` reads now: their ids, the options, the row counts and the
    exported file itself, content-addressed. Freezing the same data with the same options twice returns the
    first snapshot. The file is written to a temporary name and renamed into place, so a crash leaves no half
    file behind a snapshot row."""
    annotation_ids = exports.matching_annotation_ids(project, options)
    content_hash = snapshot_content_hash(options, annotation_ids)
    existing = DatasetSnapshot.objects.filter(project=project, content_hash=content_hash).first()
    if existing is not None:
        return FreezeResult(existing, created=False)
    path = snapshot_path(project, content_hash, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    counted = exports.Counted(exports.export_rows(project, options, only_ids=annotation_ids))
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as out:
            for chunk in exports.export_chunks(counted, options.format):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    snapshot = DatasetSnapshot(
        project=project,
        name=name or f"{options.dataset} {options.format}",
        filter=options.as_filter(),
        annotation_ids=annotation_ids,
        row_counts={**counted.counts, "rows": sum(counted.counts.values())},
        content_hash=content_hash,
        export_path=str(path),
        created_by=created_by,
    )
    snapshot.full_clean(exclude=["created_by"])
    try:
        with transaction.atomic():
            snapshot.save()
    except IntegrityError:  # the same snapshot, frozen at the same moment by someone else
        return FreezeResult(DatasetSnapshot.objects.get(project=project, content_hash=content_hash), created=False)
    return FreezeResult(snapshot, created=True)


# --- runs -----------------------------------------------------------------------------------------------------


class RunError(ValueError):
    """A run cannot start or change as asked; `field` names the config field or input at fault."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message, self.field = message, field


MIN_REWARD_PAIRS = 2  # one to train on and one to hold out, at the very least


CONFIGS = {
    RunKind.REWARD: RewardConfig,
    RunKind.SFT: SFTConfig,
    RunKind.PPO: PPOConfig,
    RunKind.DPO: DPOConfig,
    RunKind.SAMPLE: SampleConfig,
}


def config_clean(kind: str, data: dict) -> dict:
    """A run config of `kind` with every field, defaults filled in, as the kind's config dataclass checks it; a bad
    value raises RunError naming its field."""
    config_class = CONFIGS[kind]
    try:
        return config_class.from_dict(data).to_dict()
    except (TypeError, ValueError) as error:
        field = getattr(error, "field", "") or _field_named_in(str(error), config_class)
        raise RunError(str(error), field=field) from None


def _field_named_in(message: str, config_class) -> str:
    names = [field.name for field in dataclasses.fields(config_class)]
    return next((name for name in sorted(names, key=len, reverse=True) if name in message), "")


MIN_DEMONSTRATIONS = 2
MIN_DPO_PAIRS = 2

# What each kind of run takes besides its config (`run_start`'s keyword arguments).
RUN_INPUTS = {
    RunKind.REWARD: ("snapshot", "imported"),
    RunKind.SFT: ("snapshot", "base_version"),
    RunKind.DPO: ("snapshot", "base_version"),
    RunKind.PPO: ("snapshot", "base_version", "reward_version"),
    RunKind.SAMPLE: ("base_version", "opponent_version"),
}


@dataclass(frozen=True)
class RunData:
    """The data a kind of run trains on: the export frozen as its snapshot, the snapshot's name, and the least
    number of rows it needs (`what` they are, and a `hint` for when there are too few)."""

    options: exports.ExportOptions
    name: str
    minimum: int
    what: str
    hint: str


RUN_DATA = {
    RunKind.REWARD: RunData(
        datasets.REWARD_DATASET, "Reward model dataset", MIN_REWARD_PAIRS, "preference pairs",
        "Collect rankings or comparisons first.",
    ),
    RunKind.SFT: RunData(
        datasets.SFT_DATASET, "SFT demonstrations", MIN_DEMONSTRATIONS, "demonstrations",
        "Collect demonstrations first.",
    ),
    RunKind.DPO: RunData(
        datasets.DPO_DATASET, "DPO preference pairs", MIN_DPO_PAIRS, "preference pairs",
        "Collect rankings or comparisons first.",
    ),
    RunKind.PPO: RunData(datasets.PROMPT_DATASET, "PPO prompts", 1, "prompts", "Import prompts first."),
}  # fmt: skip


def run_start(
    *,
    kind: str,
    project: Project,
    config: dict,
    created_by=None,
    snapshot: DatasetSnapshot | None = None,
    base_version: ModelVersion | None = None,
    reward_version: ModelVersion | None = None,
    opponent_version: ModelVersion | None = None,
    imported: str | None = None,
) -> TrainingRun:
    """Queue a run of `kind` on the `training` queue. Its config is checked by the kind's config dataclass, which
    fills in the defaults; a bad config or input raises RunError naming its field, and an input the kind does not
    take (`RUN_INPUTS`) is refused.

    A run that trains on data (all but sampling) freezes its dataset first, or uses the given `snapshot`, so it
    trains on exactly the rows recorded with it however many arrive while it runs. By kind:

    - reward: a reward model on the preference pairs. `imported`: the judgements imported with datasets are
      included (the default), excluded, or the only ones ("only": a first reward model from imported data alone).
    - sft: supervised fine-tuning on the demonstrations, from `config["base_model"]` or from `base_version`.
    - dpo: DPO on the preference pairs, from `base_version`, else the newest SFT policy, else the base model.
    - ppo: PPO on the prompts against `reward_version` (default: the serving reward model), from `base_version`
      (default: the newest SFT policy). Starting from the embedded policy needs an SFT version: a randomly
      initialised policy has nothing to optimise from.
    - sample: the serving policy (or `base_version`) writes new candidates for the prompts that need them
      (`selectors.prompts_needing_candidates`), which become ranking and A/B tasks. With `compare_previous`, the
      policy that served before it (or `opponent_version`) writes one reply per prompt too, for head-to-head A/B
      tasks. The serving reward model, if any, scores the new replies, and the project's active-selection rule
      turns its scores into task priorities.

    A run from a policy version records that version's root base model as its config's `base_model`."""
    if kind not in RUN_INPUTS:
        raise RunError(f"{kind!r} is not a run kind ({', '.join(RUN_INPUTS)}).", field="kind")
    given = {
        "snapshot": snapshot, "base_version": base_version, "reward_version": reward_version,
        "opponent_version": opponent_version, "imported": imported,
    }  # fmt: skip
    for name, value in given.items():
        if value is not None and name not in RUN_INPUTS[kind]:
            raise RunError(f"A {RunKind(kind).label} run does not take {name}.", field=name)

    links: dict[str, ModelVersion | None] = {}
    if "base_version" in RUN_INPUTS[kind]:
        if base_version is None and kind in (RunKind.DPO, RunKind.PPO):
            base_version = newest_sft_policy(project)
        elif base_version is None and kind == RunKind.SAMPLE:
            base_version = serving_policy(project)
        links["base_version"] = base_version = _policy_version(project, base_version)
        if kind == RunKind.SAMPLE and base_version is None:
            raise RunError(
                "No policy is serving: promote one, or choose the version to sample from.", field="base_version"
            )
    clean = _lineage_config(config_clean(kind, config), base_version)
    if kind == RunKind.PPO:
        links["reward_version"] = _ppo_reward_version(project, clean, base_version, reward_version)
    elif kind == RunKind.SAMPLE:
        links |= _sample_links(project, clean, base_version, opponent_version)

    data = RUN_DATA.get(kind)
    if data is not None:
        options = data.options
        if kind == RunKind.REWARD:
            imported = "include" if imported is None else imported
            if imported not in exports.IMPORTED:
                raise RunError(
                    f"imported must be one of {', '.join(exports.IMPORTED)}, not {imported!r}.", field="imported"
                )
            options = dataclasses.replace(options, imported=imported)
        snapshot = _snapshot_for(project, options, data.name, snapshot, created_by)
        _require_rows(kind, snapshot, data)
    return _run_queue(project=project, kind=kind, config=clean, snapshot=snapshot, created_by=created_by, **links)


def _snapshot_for(
    project: Project, options: exports.ExportOptions, name: str, snapshot: DatasetSnapshot | None, created_by
) -> DatasetSnapshot:
    """The given snapshot (checked to be the project's and of the right dataset), or a fresh freeze."""
    if snapshot is None:
        return snapshot_freeze(project=project, options=options, name=name, created_by=created_by).snapshot
    if snapshot.project_id != project.pk:
        raise RunError("That snapshot belongs to another project.", field="snapshot")
    frozen = exports.ExportOptions.from_filter(snapshot.filter)
    if (frozen.dataset, frozen.style) != (options.dataset, options.style):
        raise RunError(
            f"Snapshot {snapshot.pk} holds {frozen.dataset} ({frozen.style}); this run needs {options.dataset} "
            f"({options.style}).",
            field="snapshot",
        )
    return snapshot


def _policy_version(project: Project, version: ModelVersion | None, field: str = "base_version"):
    if version is None:
        return None
    if version.project_id != project.pk or version.kind != ModelKind.POLICY:
        raise RunError(f"{version} is not a policy of {project}.", field=field)
    if not version.artifact_path or not Path(version.artifact_path).is_dir():
        recorded = version.artifact_path or "none recorded"
        raise RunError(f"{version} has no checkpoint on disk ({recorded}).", field=field)
    return version


def newest_sft_policy(project: Project) -> ModelVersion | None:
    return (
        ModelVersion.objects.filter(project=project, kind=ModelKind.POLICY, training_run__kind=RunKind.SFT)
        .order_by("-version")
        .first()
    )


def _lineage_config(clean: dict, base_version: ModelVersion | None) -> dict:
    """A run from a policy version records that version's root base model (a Hugging Face name, a path or the
    embedded policy): the version's own checkpoint is what the worker loads, through `run.base_version`."""
    if base_version is not None:
        clean["base_model"] = base_version.base_model
    return clean


def _require_rows(kind: str, snapshot: DatasetSnapshot, data: RunData) -> None:
    if kind == RunKind.REWARD:  # counted in pairs: a ranking row holds several
        pairs = datasets.reward_pair_count(snapshot)
        if pairs < data.minimum:
            raise RunError(
                f"The dataset has {pairs} preference pair{'s' if pairs != 1 else ''}; a reward model needs at least "
                f"{data.minimum}. {data.hint}",
                field="dataset",
            )
        return
    rows = datasets.snapshot_rows(snapshot)
    if rows < data.minimum:
        raise RunError(
            f"The dataset has {rows} {data.what}; this run needs at least {data.minimum}. {data.hint}", field="dataset"
        )


def _ppo_reward_version(
    project: Project, clean: dict, base_version: ModelVersion | None, reward_version: ModelVersion | None
) -> ModelVersion:
    """The reward model a PPO run optimises against: the one given, else the serving one."""
    if base_version is None and clean["base_model"].startswith("embedded:"):
        raise RunError(
            "PPO starts from a fine-tuned policy: run SFT first, or name a Hugging Face model as the base.",
            field="base_version",
        )
    if reward_version is None:
        reward_version = ModelVersion.objects.filter(
            project=project, kind=ModelKind.REWARD, status=ModelStatus.SERVING
        ).first()
        if reward_version is None:
            raise RunError("No reward model is serving: train one and promote it first.", field="reward_version")
    elif reward_version.project_id != project.pk or reward_version.kind != ModelKind.REWARD:
        raise RunError(f"{reward_version} is not a reward model of {project}.", field="reward_version")
    if not reward_version.artifact_path or not Path(reward_version.artifact_path).is_dir():
        raise RunError(f"{reward_version} has no checkpoint on disk.", field="reward_version")
    return reward_version


def serving_policy(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, kind=ModelKind.POLICY, status=ModelStatus.SERVING).first()


def previous_policy(project: Project, version: ModelVersion) -> ModelVersion | None:
    """The policy that served most recently before `version` (the serving one when `version` is not serving): what a
    new version meets head-to-head."""
    return (
        ModelVersion.objects.filter(project=project, kind=ModelKind.POLICY, promoted_at__isnull=False)
        .exclude(pk=version.pk)
        .order_by("-promoted_at")
        .first()
    )


def _sample_links(
    project: Project, clean: dict, base_version: ModelVersion, opponent_version: ModelVersion | None
) -> dict[str, ModelVersion | None]:
    """A sampling run's opponent (with `compare_previous`: the one given, else the policy that served before) and
    the serving reward model that scores its replies; refused while another sampling run of the project is queued
    or running, or when no prompt needs candidates from `base_version`."""
    if clean["compare_previous"]:
        opponent_version = _policy_version(
            project, opponent_version or previous_policy(project, base_version), "opponent_version"
        )
        if opponent_version is not None and opponent_version.pk == base_version.pk:
            raise RunError("A policy cannot meet itself head-to-head.", field="opponent_version")
    else:
        opponent_version = None
    if TrainingRun.objects.filter(
        project=project, kind=RunKind.SAMPLE, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
    ).exists():
        raise RunError("A sampling run of this project is queued or running; wait for it to finish.")
    if not selectors.prompts_needing_candidates(project=project, limit=1, version=base_version):
        raise RunError(
            f"No prompt needs candidates from {base_version}: it has written replies to every prompt. Import "
            "prompts, or sample from a newer policy.",
            field="dataset",
        )
    reward_version = ModelVersion.objects.filter(
        project=project, kind=ModelKind.REWARD, status=ModelStatus.SERVING
    ).first()
    return {"opponent_version": opponent_version, "reward_version": reward_version}


def _run_queue(*, project: Project, kind: str, config: dict, snapshot=None, created_by=None, **links) -> TrainingRun:
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        run = TrainingRun(
            project=project,
            kind=kind,
            config=config,
            snapshot=snapshot,
            created_by=created_by,
            celery_task_id=task_id,
            **links,
        )
        run.full_clean(exclude=["project", "snapshot", "created_by", *links])
        run.save()
        run_id = run.pk
        # After the commit, so the worker always finds the row.
        transaction.on_commit(lambda: queue.run_send(run_id, task_id))
    return run


def run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Stop a run: a queued one is cancelled at once; a running one stops at its next step (the trainer checks
    between steps). Cancelling a finished run changes nothing."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.status == RunStatus.QUEUED:
            _run_finish(run, RunStatus.CANCELLED, error="Cancelled before it started.")
        elif run.status == RunStatus.RUNNING and not run.cancel_requested:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested"])
    return run


def run_claim(*, run_id: int, worker: str) -> TrainingRun | None:
    """The worker takes a queued run; None when it is not queued (already taken, finished or cancelled), so a
    task delivered twice runs once."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.QUEUED:
            return None
        now = timezone.now()
        run.status, run.worker, run.started_at, run.heartbeat_at = RunStatus.RUNNING, worker, now, now
        run.save(update_fields=["status", "worker", "started_at", "heartbeat_at"])
    return run


def _run_finish(run: TrainingRun, status: str, *, error: str = "", metrics: dict | None = None) -> None:
    run.status, run.finished_at = status, timezone.now()
    fields = ["status", "finished_at"]
    if error:
        run.error = error[-8000:]
        fields.append("error")
    if metrics is not None:
        run.metrics = metrics
        fields.append("metrics")
    run.save(update_fields=fields)


def run_fail(*, run_id: int, error: str) -> None:
    """Mark a run failed (if it is not finished already) and remove whatever its trainer left on disk."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished:
            return
        _run_finish(run, RunStatus.FAILED, error=error)
    run_artifacts_remove(run)


def run_mark_cancelled(*, run_id: int) -> None:
    """The trainer stopped at a cancel request: the run ends cancelled and leaves nothing on disk."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished:
            return
        _run_finish(run, RunStatus.CANCELLED, error="Cancelled while running.")
    run_artifacts_remove(run)


def run_artifacts_remove(run: TrainingRun) -> None:
    """A run that did not register a version leaves nothing behind: no checkpoint, no temporary folder."""
    if run.output_version_id:
        return
    final = run_output_dir(run)
    if final.parent.is_dir():
        for leftover in [final, *final.parent.glob(f".tmp-{final.name}*")]:
            shutil.rmtree(leftover, ignore_errors=True)


def run_output_dir(run: TrainingRun) -> Path:
    return Path(settings.REWARDLAB_ARTIFACTS_DIR) / "models" / run.project.slug / f"{run.kind}-run-{run.pk}"


def runs_fail_stale(*, timeout_seconds: int | None = None) -> int:
    """Runs whose worker stopped sending heartbeats (it was killed, or its machine went away) are failed, so a
    run never stays "running" forever. Beat calls this every minute; returns how many were failed."""
    timeout = timeout_seconds if timeout_seconds is not None else settings.REWARDLAB_RUN_HEARTBEAT_TIMEOUT
    cutoff = timezone.now() - timedelta(seconds=timeout)
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    ids = list(stale)
    for run_id in ids:
        run_fail(
            run_id=run_id,
            error=f"The worker stopped responding (no heartbeat for {timeout} s); it was "
            "probably killed or lost its machine. Start the run again.",
        )
    return len(ids)


def runs_fail_on_worker(*, worker: str) -> int:
    """A worker that starts again runs nothing yet, so any run still marked running on it died with its last
    process. Called when a worker comes up."""
    ids = list(TrainingRun.objects.filter(status=RunStatus.RUNNING, worker=worker).values_list("pk", flat=True))
    for run_id in ids:
        run_fail(run_id=run_id, error=f"The worker {worker} restarted while this run was running. Start it again.")
    return len(ids)


# --- the model registry ---------------------------------------------------------------------------------------


def model_version_register(*, run: TrainingRun, checkpoint: Path, metrics: dict, history: list[dict]) -> ModelVersion:
    """Register a finished run's checkpoint as the next version of its kind and mark the run succeeded, in one
    transaction: a version exists if and only if its run succeeded."""
    kind = ModelKind.REWARD if run.kind == RunKind.REWARD else ModelKind.POLICY
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=run.project_id).first()  # numbers are given one at a time
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.status != RunStatus.RUNNING:
            raise RunError(f"Run #{run.pk} is {run.status}, not running; its checkpoint is not registered.")
        last = ModelVersion.objects.filter(project_id=run.project_id, kind=kind).aggregate(n=Max("version"))["n"]
        version = ModelVersion(
            project_id=run.project_id,
            kind=kind,
            version=(last or 0) + 1,
            base_model=run.config.get("base_model", ""),
            parent=run.base_version,
            artifact_path=str(checkpoint),
            metrics=metrics,
        )
        version.full_clean(exclude=["project", "parent"])
        version.save()
        run.output_version = version
        run.metrics_history = history
        run.progress_step = run.progress_total = max(run.progress_total, run.progress_step)
        run.save(update_fields=["output_version", "metrics_history", "progress_step", "progress_total"])
        _run_finish(run, RunStatus.SUCCEEDED, metrics=metrics)
    return version


def model_version_promote(*, version: ModelVersion) -> ModelVersion:
    """Make `version` the project's serving model of its kind; the one serving before goes back to ready (so
    rolling back is promoting it again). A serving reward model's scores are then computed for every candidate."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelStatus.SERVING:
            return version
        if not version.artifact_path or not Path(version.artifact_path).is_dir():
            raise RunError(f"{version} has no checkpoint on disk ({version.artifact_path or 'none recorded'}).")
        ModelVersion.objects.filter(
            project_id=version.project_id, kind=version.kind, status=ModelStatus.SERVING
        ).update(status=ModelStatus.READY)
        version.status, version.promoted_at = ModelStatus.SERVING, timezone.now()
        version.save(update_fields=["status", "promoted_at"])
        if version.kind == ModelKind.REWARD:
            version_id = version.pk
            transaction.on_commit(lambda: queue.scores_send(version_id))
    return version


def model_version_rollback(*, project: Project, kind: str) -> ModelVersion:
    """Serve again the newest earlier version (a lower number) that has served before; any other ready version
    can be promoted directly."""
    current = ModelVersion.objects.filter(project=project, kind=kind, status=ModelStatus.SERVING).first()
    if current is None:
        raise RunError(f"No {ModelKind(kind).label.lower()} is serving; there is nothing to roll back.")
    previous = (
        ModelVersion.objects.filter(
            project=project, kind=kind, version__lt=current.version, promoted_at__isnull=False, status=ModelStatus.READY
        )
        .order_by("-version")
        .first()
    )
    if previous is None:
        raise RunError(f"No version before {current} has served; there is nothing to roll back to.")
    return model_version_promote(version=previous)


# --- reward scores of candidates ------------------------------------------------------------------------------


def candidate_scores_compute(*, version: ModelVersion, batch_size: int = 256, scorer=None) -> int:
    """Score every candidate reply of the project that `version` has not scored yet (the prompt and reply
    rendered as in training) and cache the scores. Returns how many were scored."""
    scorer = scorer or _scorer_for(version)
    scored = 0
    for batch in datasets.replies_to_score(version, batch_size=batch_size):
        scores = scorer.score([item.prompt for item in batch], [item.reply for item in batch])
        CandidateScore.objects.bulk_create(
            [
                CandidateScore(model_version=version, message_id=item.message_id, score=float(score))
                for item, score in zip(batch, scores, strict=True)
            ],
            ignore_conflicts=True,
        )
        scored += len(batch)
    return scored


_SCORERS: dict[str, object] = {}


def _scorer_for(version: ModelVersion):
    """One loaded reward model per worker process (the latest asked for); loading costs seconds."""
    from ml.reward import RewardScorer

    if version.artifact_path not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[version.artifact_path] = RewardScorer.load(version.artifact_path)
    return _SCORERS[version.artifact_path]


def serving_scores_enqueue() -> int:
    """Queue scoring for each serving reward model with unscored candidates; returns how many were queued."""
    queued = 0
    for version in ModelVersion.objects.filter(kind=ModelKind.REWARD, status=ModelStatus.SERVING):
        unscored = Message.objects.filter(project_id=version.project_id, candidate_in_tasks__isnull=False).exclude(
            reward_scores__model_version=version
        )
        if unscored.exists():
            queue.scores_send(version.pk)
            queued += 1
    return queued


# --- sampled candidates become tasks; active selection --------------------------------------------------------


def uncertainty(gap: float) -> float:
    """How unsure a reward model is between two replies whose scores differ by `gap`: 1 − |2σ(gap) − 1| =
    1 − |tanh(gap/2)|. 1 when it cannot tell them apart, toward 0 as it grows sure (Bradley–Terry odds)."""
    return 1.0 - abs(math.tanh(gap / 2))


def task_priority(rule: str, scores: list[float | None]) -> float:
    """A ranking or A/B task's priority from its candidates' reward scores under the project's rule:

    - `closest_pair`: the uncertainty of the two candidates with the closest scores (a ranking is worth asking
      when any two of its replies are hard to tell apart);
    - `mean_pair`: the mean uncertainty over all pairs of candidates;
    - `off`: 0 (oldest first).

    In (0, 1]; 0 when a candidate has no score (no reward model was serving)."""
    if rule == ActiveSelection.OFF or len(scores) < 2 or any(score is None for score in scores):
        return 0.0
    gaps = [abs(a - b) for a, b in itertools.combinations(scores, 2)]
    if rule == ActiveSelection.MEAN_PAIR:
        return sum(uncertainty(gap) for gap in gaps) / len(gaps)
    if rule == ActiveSelection.CLOSEST_PAIR:
        return uncertainty(min(gaps))
    raise ValueError(f"unknown active-selection rule {rule!r}")


def tasks_prioritize(*, project: Project, version: ModelVersion | None = None) -> int:
    """Set the priority of the project's open ranking and A/B tasks from reward model `version`'s cached scores
    (default: the serving one) by the project's rule; returns how many tasks were updated."""
    version = (
        version
        or ModelVersion.objects.filter(project=project, kind=ModelKind.REWARD, status=ModelStatus.SERVING).first()
    )
    if version is None:
        return 0
    open_tasks = selectors.open_preference_tasks(project=project)
    members: dict[int, list[int]] = {}
    for task_id, message_id in (
        TaskCandidate.objects.filter(task__in=open_tasks)
        .order_by("task_id", "position")
        .values_list("task_id", "message_id")
    ):
        members.setdefault(task_id, []).append(message_id)
    scores = dict(
        CandidateScore.objects.filter(
            model_version=version, message_id__in={m for ids in members.values() for m in ids}
        ).values_list("message_id", "score")
    )
    priorities = {
        task_id: task_priority(project.active_selection, [scores.get(m) for m in ids])
        for task_id, ids in members.items()
    }
    return annotate_services.tasks_set_priority(priorities=priorities)


@dataclass
class SampledPrompt:
    """What a sampling run drew for one prompt: the new policy's replies, the previous policy's reply (or None) and,
    when a reward model was serving, the score of each (same order)."""

    anchor_id: int
    replies: list[str]
    opponent_reply: str | None = None
    scores: list[float] | None = None
    opponent_score: float | None = None


def sampled_tasks_create(*, run: TrainingRun, sampled: list[SampledPrompt], metrics: dict) -> dict[str, int]:
    """Store a sampling run's replies as candidates written by its policy version (and the opponent's), cache
    their reward scores, create the ranking and A/B tasks (each recording the run) with priorities by the
    project's active-selection rule, and mark the run succeeded: all in one transaction, so a run either added
    all its tasks or none. Returns the counts, which are also the run's metrics."""
    config = SampleConfig.from_dict(run.config)
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("project").get(pk=run.pk)
        if run.status != RunStatus.RUNNING:
            raise RunError(f"Run #{run.pk} is {run.status}, not running; its samples are not stored.")
        project = run.project
        anchors = Message.objects.in_bulk([item.anchor_id for item in sampled])
        score_of: dict[str, float] = {}
        author_of: dict[str, int | None] = {}  # the first writer of each text, as replies_store keeps it
        replies: list[annotate_services.NewReply] = []
        for item in sampled:
            anchor = anchors[item.anchor_id]
            written = [
                (text, run.base_version_id, score)
                for text, score in zip(item.replies, item.scores or [None] * len(item.replies), strict=True)
            ]
            if item.opponent_reply is not None:
                written.append((item.opponent_reply, run.opponent_version_id, item.opponent_score))
            for text, author, score in written:
                reply = annotate_services.NewReply(anchor, text, author, {"run": run.pk})
                replies.append(reply)
                author_of.setdefault(reply.path_hash, author)
                if score is not None:
                    score_of[reply.path_hash] = score
        ids = annotate_services.replies_store(project, replies)
        if run.reward_version_id:
            CandidateScore.objects.bulk_create(
                [
                    CandidateScore(model_version_id=run.reward_version_id, message_id=ids[h], score=score_of[h])
                    for h in ids
                    if h in score_of
                ],
                ignore_conflicts=True,
            )

        rng = random.Random(run.pk)
        planned: list[tuple[str, int, list[int]]] = []
        head_to_head = 0
        for item in sampled:
            anchor = anchors[item.anchor_id]
            new = [
                ids[h]
                for h in (annotate_services.path_hash(anchor.path_hash, "assistant", t) for t in item.replies)
                if h in ids
            ]
            if config.rank:
                planned += [
                    (TaskKind.RANK, anchor.pk, g) for g in annotate_services.split_for_ranking(new, project.ranking_k)
                ]
            if config.compare:
                planned += [(TaskKind.COMPARE, anchor.pk, g) for g in annotate_services.pairs_for_comparison(new)]
            if item.opponent_reply is not None and new:
                theirs = ids.get(annotate_services.path_hash(anchor.path_hash, "assistant", item.opponent_reply))
                if theirs is not None:
                    pair = [new[0], theirs]
                    rng.shuffle(pair)  # which side each version is on
                    planned.append((TaskKind.COMPARE, anchor.pk, pair))
                    head_to_head += 1
        scores = {m: s for h, m in ids.items() if (s := score_of.get(h)) is not None}
        annotate_services.tasks_create(
            project,
            [
                annotate_services.NewTask(
                    kind,
                    anchor_id,
                    group,
                    priority=task_priority(project.active_selection, [scores.get(m) for m in group]),
                )
                for kind, anchor_id, group in planned
            ],
            origin_run_id=run.pk,
        )
        counts = {
            "prompts": len(sampled),
            "candidates": sum(1 for h in ids if author_of[h] == run.base_version_id),
            "opponent_candidates": sum(1 for h in ids if author_of[h] == run.opponent_version_id),
            "rank_tasks": sum(1 for kind, _, _ in planned if kind == TaskKind.RANK),
            "compare_tasks": sum(1 for kind, _, _ in planned if kind == TaskKind.COMPARE),
            "head_to_head_tasks": head_to_head,
        }
        run.progress_step = run.progress_total = max(run.progress_total, run.progress_step)
        run.save(update_fields=["progress_step", "progress_total"])
        _run_finish(run, RunStatus.SUCCEEDED, metrics={**metrics, **counts})
    return counts
