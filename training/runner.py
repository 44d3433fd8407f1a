"""Running a claimed run on this worker: the Django side of a training run.

The trainers under `ml/` know nothing of the database. This module gives them plain records and
three hooks, and records what they report:

- progress: step/total and the step's metrics, written to the run at most once a second (and on every
  evaluation), so the run page's progress bar and curves follow the training;
- cancel: the run's `cancel_requested` flag, read at most once a second, checked by the trainer between steps;
- log: the run's log tail (the last LOG_LINES lines), which the run page shows.

A heartbeat thread stamps the run every few seconds while it runs, whatever the trainer is doing (loading a
model, a long step), so a run whose worker died is found by `runs_fail_stale` and never stays "running"."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from collections import deque

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from ml.logs import run_context
from training import datasets, selectors, services
from training.models import RunKind, RunStatus, TrainingRun

logger = logging.getLogger(__name__)

LOG_LINES = 200
WRITE_EVERY_SECONDS = 1.0


HISTORY_CAP = 4000  # rows of per-step metrics kept on the run; longer runs keep every other step, evals all


def thin_history(history: list[dict]) -> list[dict]:
    """Half the per-step rows (every other one, and always the last); rows with evaluation metrics all stay."""
    kept, odd = [], False
    for index, row in enumerate(history):
        evaluated = any(key.startswith("eval_") for key in row)
        if evaluated or index == len(history) - 1 or not odd:
            kept.append(row)
        odd = not odd if not evaluated else odd
    return kept


class RunReporter:
    """The hooks a trainer calls, bound to one run."""

    def __init__(self, run: TrainingRun) -> None:
        self.run_id = run.pk
        self.lines: deque[str] = deque(run.log_tail.splitlines(), maxlen=LOG_LINES)
        self.history: list[dict] = []
        self.step = self.total = 0
        self._last_write = self._last_cancel_check = 0.0
        self._cancelled = False
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beat, name=f"run-{run.pk}-heartbeat", daemon=True)

    # --- the trainer's hooks ---

    def progress(self, progress) -> None:
        self.step, self.total = progress.step, progress.total
        self.history.append({"step": progress.step, **progress.metrics})
        if len(self.history) > HISTORY_CAP:
            self.history = thin_history(self.history)
        evaluated = any(key.startswith("eval_") for key in progress.metrics)
        if evaluated or progress.step == progress.total or time.monotonic() - self._last_write >= WRITE_EVERY_SECONDS:
            self.flush()

    def should_cancel(self) -> bool:
        if not self._cancelled and time.monotonic() - self._last_cancel_check >= WRITE_EVERY_SECONDS:
            self._last_cancel_check = time.monotonic()
            self._cancelled = TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        return self._cancelled

    def log(self, line: str) -> None:
        stamp = timezone.localtime().strftime("%H:%M:%S")
        for part in str(line).splitlines() or [""]:
            self.lines.append(f"{stamp} {part}")
        logger.info("run %s: %s", self.run_id, line, extra={"run_id": self.run_id})

    # --- writing ---

    def flush(self) -> None:
        self._last_write = time.monotonic()
        TrainingRun.objects.filter(pk=self.run_id).update(
            progress_step=min(self.step, self.total),
            progress_total=self.total,
            metrics_history=self.history,
            log_tail="\n".join(self.lines),
            heartbeat_at=timezone.now(),
        )

    def _beat(self) -> None:
        try:
            while not self._stop.wait(settings.REWARDLAB_RUN_HEARTBEAT_SECONDS):
                TrainingRun.objects.filter(pk=self.run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> RunReporter:
        self._heart.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._heart.join(timeout=5)


def run_execute(*, run_id: int, worker: str) -> str:
    """Claim the run and train it; returns the run's final status (or "skipped" when it was not queued: a
    duplicate delivery, or cancelled before a worker took it). A run of a retraining cycle then advances its
    cycle (promotes the version and starts the next stage, or ends the cycle). Every line logged meanwhile in this
    thread (the trainers', the libraries') carries the run's id as `run_id`."""
    with run_context(run_id):
        return _run_execute(run_id=run_id, worker=worker)


def _run_execute(*, run_id: int, worker: str) -> str:
    close_old_connections()
    run = services.run_claim(run_id=run_id, worker=worker)
    if run is None:
        return "skipped"
    status = _execute(run, worker)
    if run.cycle_id is not None:
        from training import cycles

        try:
            cycles.cycle_run_finished(run_id=run.pk)
        except Exception:  # the beat tick advances it again; the run itself has ended as it did
            logger.exception("run %s: advancing its cycle failed", run.pk, extra={"run_id": run.pk})
    return status


def _execute(run: TrainingRun, worker: str) -> str:
    trainers = {
        RunKind.REWARD: _train_reward,
        RunKind.SFT: _train_sft,
        RunKind.DPO: _train_dpo,
        RunKind.PPO: _train_ppo,
        RunKind.SAMPLE: _run_sample,
    }
    if run.kind not in trainers:
        services.run_fail(run_id=run.pk, error=f"No trainer for {run.get_kind_display()} runs yet.")
        return RunStatus.FAILED
    with RunReporter(run) as reporter:
        reporter.log(f"{run} started on {worker}")
        try:
            trainers[run.kind](run, reporter)
        except Exception as error:  # every failure ends the run here, in one place
            from ml.common import Cancelled

            reporter.flush()
            if isinstance(error, Cancelled):
                reporter.log("Cancelled at the admin's request; no version registered.")
                reporter.flush()
                services.run_mark_cancelled(run_id=run.pk)
                return RunStatus.CANCELLED
            reporter.log(f"Failed: {type(error).__name__}: {error}")
            reporter.flush()
            services.run_fail(run_id=run.pk, error="".join(traceback.format_exception(error)))
            logger.exception("run %s failed", run.pk, extra={"run_id": run.pk})
            return RunStatus.FAILED
    return RunStatus.SUCCEEDED


def _train_reward(run: TrainingRun, reporter: RunReporter) -> None:
    from ml.config import PairRecord, RewardConfig
    from ml.reward import train_reward_model

    config = RewardConfig.from_dict(run.config)
    records = [PairRecord(**row) for row in datasets.reward_pairs(run.snapshot)]
    reporter.log(f"{len(records)} preference pairs from snapshot {run.snapshot.content_hash[:12]}")
    result = train_reward_model(
        records,
        config,
        services.run_output_dir(run),
        progress=reporter.progress,
        should_cancel=reporter.should_cancel,
        log=reporter.log,
    )
    reporter.flush()
    version = services.model_version_register(
        run=run, checkpoint=result.checkpoint, metrics=result.metrics, history=reporter.history
    )
    accuracy = result.metrics.get("eval_accuracy")
    reporter.log(f"Registered {version}" + (f" (held-out accuracy {accuracy:.3f})" if accuracy is not None else ""))
    reporter.flush()


def _hooks(reporter: RunReporter) -> dict:
    return {"progress": reporter.progress, "should_cancel": reporter.should_cancel, "log": reporter.log}


def _policy_config(run: TrainingRun, config_class):
    """The run's config, loading the base policy version's checkpoint when the run starts from one."""
    config = config_class.from_dict(run.config)
    if run.base_version is not None:
        config = dataclasses.replace(config, base_model=run.base_version.artifact_path)
    return config


def _register_policy(run: TrainingRun, reporter: RunReporter, result, summary: str) -> None:
    reporter.flush()
    version = services.model_version_register(
        run=run, checkpoint=result.checkpoint, metrics=result.metrics, history=reporter.history
    )
    reporter.log(f"Registered {version} ({summary})")
    reporter.flush()


def _train_sft(run: TrainingRun, reporter: RunReporter) -> None:
    from ml.config import ChatRecord, SFTConfig
    from ml.sft import train_sft

    records = [ChatRecord(**row) for row in datasets.sft_records(run.snapshot)]
    reporter.log(f"{len(records)} demonstrations from snapshot {run.snapshot.content_hash[:12]}")
    config = _policy_config(run, SFTConfig)
    result = train_sft(records, config, services.run_output_dir(run), **_hooks(reporter))
    loss = result.metrics.get("eval_loss")
    _register_policy(run, reporter, result, f"held-out loss {loss:.3f}" if loss is not None else "no held-out set")


def _train_dpo(run: TrainingRun, reporter: RunReporter) -> None:
    from ml.config import ChatPairRecord, DPOConfig
    from ml.dpo import train_dpo

    records = [ChatPairRecord(**row) for row in datasets.dpo_pairs(run.snapshot)]
    reporter.log(f"{len(records)} preference pairs from snapshot {run.snapshot.content_hash[:12]}")
    config = _policy_config(run, DPOConfig)
    result = train_dpo(records, config, services.run_output_dir(run), **_hooks(reporter))
    _register_policy(run, reporter, result, f"implicit reward margin {result.metrics['train_reward_margin']:.3f}")


def _train_ppo(run: TrainingRun, reporter: RunReporter) -> None:
    from ml.config import PPOConfig, PromptRecord
    from ml.ppo import train_ppo
    from ml.reward import RewardScorer

    prompts = [PromptRecord(**row) for row in datasets.ppo_prompts(run.snapshot)]
    config = _policy_config(run, PPOConfig)
    snapshot = run.snapshot.content_hash[:12]
    reporter.log(f"{len(prompts)} prompts from snapshot {snapshot}; reward model {run.reward_version}")
    scorer = RewardScorer.load(run.reward_version.artifact_path, device=config.device)
    result = train_ppo(prompts, scorer.score, config, services.run_output_dir(run), **_hooks(reporter))
    first, last, kl = (result.metrics[key] for key in ("reward_mean_first", "reward_mean_last", "kl_last"))
    _register_policy(run, reporter, result, f"mean reward {first:.3f} → {last:.3f}, KL {kl:.2f}")


def _run_sample(run: TrainingRun, reporter: RunReporter) -> None:
    """Draw new candidates from the run's policy (and the opponent's), score them with the serving reward model if
    there is one, and store them with their tasks (one transaction, in the service)."""
    from ml.common import Progress
    from ml.config import SampleConfig
    from ml.reward import RewardScorer
    from ml.sampling import SampleRequest, sample_replies

    config = SampleConfig.from_dict(run.config)
    anchors = selectors.prompts_needing_candidates(project=run.project, limit=config.prompts, version=run.base_version)
    if not anchors:
        raise RuntimeError("No prompt needs candidates any more (their tasks were created since the run was queued).")
    prompts = datasets.prompts_to_sample(anchors)
    requests = [SampleRequest(p.turns, p.existing) for p in prompts]
    reporter.log(f"{len(anchors)} prompts need candidates; {run.base_version} writes {config.replies_per_prompt} each")
    hooks = _hooks(reporter)
    drawn = sample_replies(run.base_version.artifact_path, requests, config, **hooks)
    reporter.log(
        f"{drawn.kept} replies kept of {drawn.drawn} drawn ({drawn.duplicates} duplicates, {drawn.empty} empty), "
        f"{drawn.replies_per_second:.1f} replies/s"
    )
    opponent: list[str | None] = [None] * len(anchors)
    if run.opponent_version is not None:
        versus = [SampleRequest(r.turns, r.exclude + mine) for r, mine in zip(requests, drawn.replies, strict=True)]
        offset = reporter.step  # the opponent's batches continue the run's step count

        def progress(p: Progress) -> None:
            reporter.progress(dataclasses.replace(p, step=p.step + offset, total=p.total + offset))

        theirs = sample_replies(
            run.opponent_version.artifact_path, versus, config, replies_per_prompt=1, **{**hooks, "progress": progress}
        )
        opponent = [replies[0] if replies else None for replies in theirs.replies]
        reporter.log(f"{run.opponent_version} wrote {sum(o is not None for o in opponent)} head-to-head replies")
    scores: list[list[float] | None] = [None] * len(anchors)
    opponent_scores: list[float | None] = [None] * len(anchors)
    if run.reward_version is not None:
        scorer = RewardScorer.load(run.reward_version.artifact_path, device=config.device)
        flat = [(i, text) for i, replies in enumerate(drawn.replies) for text in replies]
        flat += [(i, text) for i, text in enumerate(opponent) if text is not None]
        texts = [text for _, text in flat]
        values = [float(v) for v in scorer.score([prompts[i].reward_prompt for i, _ in flat], texts)] if flat else []
        scores = [[] for _ in anchors]
        for n, ((i, _), value) in enumerate(zip(flat, values, strict=True)):
            if n < drawn.kept:  # the new policy's replies come first, then the opponent's
                scores[i].append(value)
            else:
                opponent_scores[i] = value
        reporter.log(f"{run.reward_version} scored {len(values)} replies for active selection")
    sampled = [
        services.SampledPrompt(a, drawn.replies[i], opponent[i], scores[i], opponent_scores[i])
        for i, a in enumerate(anchors)
    ]
    metrics = {
        "drawn": drawn.drawn,
        "duplicates": drawn.duplicates,
        "empty": drawn.empty,
        "replies_per_second": round(drawn.replies_per_second, 3),
        "seconds": round(drawn.seconds, 3),
    }
    reporter.flush()
    counts = services.sampled_tasks_create(run=run, sampled=sampled, metrics=metrics)
    reporter.log(
        f"Created {counts['rank_tasks']} ranking and {counts['compare_tasks']} A/B tasks "
        f"({counts['head_to_head_tasks']} head-to-head) from {counts['candidates']} new candidates"
    )
    reporter.flush()
