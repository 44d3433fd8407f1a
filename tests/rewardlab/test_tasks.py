"""Reward-model runs on real Celery workers (Redis as the broker and PostgreSQL as the database in CI): a run
trains and registers a version, a cancel stops it between steps, and a killed worker leaves a failed run, no
version and no half-written checkpoint, after which a new run succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection, connections

from annotate.models import Message
from rewardlab import services
from rewardlab.celery import app
from rewardlab.models import CandidateScore, ModelVersion, RunStatus, TrainingRun
from tests.rewardlab.conftest import tiny_config

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 120.0, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def status_of(run) -> str:
    return TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk)


def leftovers(artifacts: Path) -> list[Path]:
    models = artifacts / "models"
    return sorted(models.rglob("*")) if models.exists() else []


def test_a_training_worker_trains_and_registers_a_reward_model(judged, admin_user, tiny_backbone):
    run = services.run_start_reward(project=judged, config=tiny_config(tiny_backbone), created_by=admin_user)
    candidates = Message.objects.filter(project=judged, candidate_in_tasks__isnull=False).distinct().count()
    with start_worker(app, pool="solo", queues=["training"], perform_ping_check=False, shutdown_timeout=60):
        finished = wait_for(lambda: status_of(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED))
        run.refresh_from_db()
        if run.status == RunStatus.SUCCEEDED:
            # Promoting it queues the scoring of every candidate on the same worker.
            services.model_version_promote(version=run.output_version)
            scored = wait_for(lambda: CandidateScore.objects.count() == candidates, timeout=60)
    connections.close_all()
    assert finished, f"no training worker on {app.conf.broker_url} finished the run"
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert scored, f"{CandidateScore.objects.count()} of {candidates} candidates scored"
    version = run.output_version
    assert version.kind == "reward" and version.version == 1 and Path(version.artifact_path).is_dir()
    for key in ("eval_accuracy", "eval_loss", "accuracy_by_kind", "calibration", "train_pairs", "eval_pairs"):
        assert key in version.metrics, key
    assert run.progress_step == run.progress_total > 0 and run.metrics_history
    assert "Registered reward-v1" in run.log_tail


def test_a_training_worker_runs_sft_then_ppo_from_labelers_data(taught, admin_user, tiny_backbone):
    """The second half of the recipe end to end: demonstrations submitted through the services train an SFT
    policy; PPO then optimises it against the serving reward model, on the worker."""
    from tests.rewardlab.conftest import PPO_TINY, SFT_TINY

    reward = services.run_start_reward(project=taught, config=tiny_config(tiny_backbone), created_by=admin_user)
    sft = services.run_start_sft(project=taught, config=SFT_TINY, created_by=admin_user)
    with start_worker(app, pool="solo", queues=["training"], perform_ping_check=False, shutdown_timeout=60):
        done = wait_for(lambda: {status_of(reward), status_of(sft)} <= {RunStatus.SUCCEEDED, RunStatus.FAILED})
        reward.refresh_from_db()
        sft.refresh_from_db()
        if done and reward.status == sft.status == RunStatus.SUCCEEDED:
            services.model_version_promote(version=reward.output_version)
            ppo = services.run_start_ppo(project=taught, config=PPO_TINY, created_by=admin_user)
            wait_for(lambda: status_of(ppo) in (RunStatus.SUCCEEDED, RunStatus.FAILED))
            ppo.refresh_from_db()
    connections.close_all()
    assert done, f"no training worker on {app.conf.broker_url} finished the runs"
    assert reward.status == RunStatus.SUCCEEDED, reward.error
    assert sft.status == RunStatus.SUCCEEDED, sft.error
    assert ppo.status == RunStatus.SUCCEEDED, ppo.error
    policy = ppo.output_version
    assert policy.kind == "policy" and policy.parent == sft.output_version
    assert ppo.base_version == sft.output_version and ppo.reward_version == reward.output_version
    assert Path(policy.artifact_path).is_dir() and ppo.metrics_history[-1]["step"] == PPO_TINY["steps"]
    assert "Registered policy-v2" in ppo.log_tail


def test_cancel_stops_a_running_run_at_the_next_step(judged, admin_user, tiny_backbone, artifacts):
    config = tiny_config(tiny_backbone, epochs=200, batch_size=2)
    run = services.run_start_reward(project=judged, config=config, created_by=admin_user)
    with start_worker(app, pool="solo", queues=["training"], perform_ping_check=False, shutdown_timeout=60):
        assert wait_for(lambda: TrainingRun.objects.get(pk=run.pk).progress_step > 0)
        services.run_cancel(run=run)
        stopped = wait_for(lambda: status_of(run) != RunStatus.RUNNING, timeout=60)
    connections.close_all()
    run.refresh_from_db()
    assert stopped and run.status == RunStatus.CANCELLED
    assert run.progress_step < run.progress_total
    assert not ModelVersion.objects.exists() and leftovers(artifacts) == []


def _worker(name: str, artifacts: Path) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "REWARDLAB_ARTIFACTS_DIR": str(artifacts),
        "REWARDLAB_RUN_HEARTBEAT_SECONDS": "1",
    }
    command = [sys.executable, "-m", "celery", "-A", "rewardlab", "worker", "-Q", "training", "-P", "solo"]
    command += ["-n", name, "--loglevel", "WARNING", "--without-mingle", "--without-gossip"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a worker process needs a database it can share")
def test_a_killed_worker_leaves_a_failed_run_and_no_half_model(judged, admin_user, tiny_backbone, artifacts):
    long_run = services.run_start_reward(
        project=judged, config=tiny_config(tiny_backbone, epochs=200, batch_size=2), created_by=admin_user
    )
    name = f"killed-{os.getpid()}@test"
    worker = _worker(name, artifacts)
    try:
        assert wait_for(lambda: TrainingRun.objects.get(pk=long_run.pk).progress_step > 0, timeout=180)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert status_of(long_run) == RunStatus.RUNNING  # nobody has noticed yet

        # The same worker comes back: the run it was running died with it.
        worker = _worker(name, artifacts)
        assert wait_for(lambda: status_of(long_run) == RunStatus.FAILED, timeout=120)
        long_run.refresh_from_db()
        assert "restarted" in long_run.error and long_run.output_version is None
        assert not ModelVersion.objects.exists() and leftovers(artifacts) == []

        # And trains the next run.
        retry = services.run_start_reward(project=judged, config=tiny_config(tiny_backbone), created_by=admin_user)
        assert wait_for(lambda: status_of(retry) in (RunStatus.SUCCEEDED, RunStatus.FAILED), timeout=180)
        retry.refresh_from_db()
        assert retry.status == RunStatus.SUCCEEDED, retry.error
        assert ModelVersion.objects.get().training_run == retry
    finally:
        _stop(worker)
        connections.close_all()
