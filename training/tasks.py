"""Thin Celery tasks for the training side: take ids, re-fetch, call a service. Training tasks go to the
`training` queue (see CELERY_TASK_ROUTES); a worker for it runs one task at a time with prefetch 1."""

from __future__ import annotations

import os

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from training import cycles, health, runner, services
from training.models import ModelStatus, ModelVersion


@shared_task(
    name="training.tasks.run_execute",
    bind=True,
    ignore_result=True,
    acks_late=False,
    soft_time_limit=settings.REWARDLAB_RUN_TIME_LIMIT,  # raises inside the trainer: the run fails cleanly
    time_limit=settings.REWARDLAB_RUN_TIME_LIMIT + 300,
)
def run_execute(self, run_id: int) -> str:
    """Train one run. Not acks_late: a killed worker's run is failed by the heartbeat check, not redelivered
    into a half-finished state (running it again is a new run)."""
    return runner.run_execute(run_id=run_id, worker=self.request.hostname or "unknown")


@shared_task(name="training.tasks.runs_fail_stale", ignore_result=True)
def runs_fail_stale() -> int:
    """Beat: fail runs whose worker stopped sending heartbeats."""
    return services.runs_fail_stale()


@shared_task(name="training.tasks.score_candidates", ignore_result=True)
def candidate_scores_compute(version_id: int) -> int:
    """Score the project's candidates with a reward model (after it is promoted, and for new candidates)."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return 0
    scored = services.candidate_scores_compute(version=version)
    if version.status == ModelStatus.SERVING:
        services.tasks_prioritize(project=version.project, version=version)
    return scored


@shared_task(name="training.tasks.score_serving_candidates", ignore_result=True)
def score_serving_candidates() -> int:
    """Beat: new candidates get the serving reward models' scores."""
    return services.serving_scores_enqueue()


@shared_task(name="training.tasks.cycles_tick", ignore_result=True)
def cycles_tick() -> dict[str, int]:
    """Beat: advance retraining cycles whose run ended, and start cycles whose thresholds are crossed."""
    return cycles.cycles_tick()


@shared_task(
    name="training.tasks.chat_generate",
    ignore_result=True,
    soft_time_limit=settings.REWARDLAB_CHAT_TIMEOUT_SECONDS,  # raises inside generation: the turn fails cleanly
    time_limit=settings.REWARDLAB_CHAT_TIMEOUT_SECONDS + 30,
)
def chat_generate(turn_id: int) -> str:
    """Write a live chat turn's two replies (the `inference` queue: a worker that keeps the policy loaded)."""
    from training import inference  # torch and transformers: only the worker that writes replies loads them

    return inference.generate_turn(turn_id)


@worker_ready.connect
def _fail_runs_of_previous_process(sender, **_) -> None:
    """A worker coming up runs nothing yet: a run still marked running under its name died with it."""
    services.runs_fail_on_worker(worker=sender.hostname)


_heartbeats: dict[str, health.Heartbeat] = {}


@worker_ready.connect
def _start_heartbeat(sender, **_) -> None:
    """Stamp this worker's heartbeat (with the queues it consumes) until it shuts down: /healthz reads it."""
    if settings.REWARDLAB_WORKER_HEARTBEAT_SECONDS <= 0:
        return
    queues = sorted(sender.app.amqp.queues.consume_from or sender.app.amqp.queues)
    _heartbeats[sender.hostname] = health.Heartbeat(sender.hostname, queues, os.getpid()).start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **_) -> None:
    for hostname in list(_heartbeats):
        _heartbeats.pop(hostname).stop()
