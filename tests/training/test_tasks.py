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
from rewardlab.celery import app
from tests.training.conftest import tiny_config
from training import services
from training.models import CandidateScore, ModelVersion, RunStatus, TrainingRun

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
    run = services.run_start(kind="reward", project=judged, config=tiny_config(tiny_backbone), created_by=admin_user)
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


def test_the_loop_on_a_real_worker_from_labelers_judgements_to_new_tasks(taught, tiny_backbone):
    """The whole loop end to end on the embedded defaults: labelers' comparisons, rankings and demonstrations
    (submitted through the services) cross the thresholds; beat's tick starts a cycle, which a real worker runs:
    reward model → SFT → PPO → sampling. The new tasks are in a labeler's queue with candidates the new policy
    wrote, and the lineage links hold both ways."""
    from annotate import services as annotate_services
    from annotate.models import Task
    from annotate.roles import RoleName
    from tests.training.conftest import PPO_TINY, SAMPLE_TINY, SFT_TINY
    from training import cycles, lineage
    from training.models import CycleStatus, RetrainCycle

    taught.retrain_enabled = True
    taught.retrain_min_comparisons, taught.retrain_min_demonstrations = 20, 10
    taught.retrain_min_reward_accuracy = 0.0  # simulated preferences follow no text (see test_cycles.py)
    taught.retrain_run_configs = {
        "reward": tiny_config(tiny_backbone), "sft": SFT_TINY, "ppo": PPO_TINY, "sample": SAMPLE_TINY,
    }  # fmt: skip
    taught.save()
    with start_worker(app, pool="solo", queues=["default", "training"], perform_ping_check=False, shutdown_timeout=60):
        assert cycles.cycles_tick()["started"] == 1
        cycle = RetrainCycle.objects.get(project=taught)
        finished = wait_for(
            lambda: RetrainCycle.objects.values_list("status", flat=True).get(pk=cycle.pk) != CycleStatus.RUNNING,
            timeout=300,
        )
    connections.close_all()
    cycle.refresh_from_db()
    assert finished, f"the cycle did not finish on {app.conf.broker_url}: stage {cycle.stage_kind}"
    assert cycle.status == CycleStatus.SUCCEEDED, cycle.error
    runs = {run.kind: run for run in cycle.runs.all()}
    assert set(runs) == {"reward", "sft", "ppo", "sample"}
    ppo_policy = runs["ppo"].output_version
    assert ppo_policy.status == "serving" and ppo_policy.parent == runs["sft"].output_version
    assert runs["ppo"].reward_version == runs["reward"].output_version
    sample = runs["sample"]
    assert sample.base_version == ppo_policy and sample.metrics["candidates"] > 0

    # A labeler who has seen nothing yet is served the new tasks first: they carry the reward model's priorities.
    labeler = annotate_services.user_create_with_role(username="newcomer", password="x" * 12, role=RoleName.LABELER)
    lease = annotate_services.task_lease_next(labeler=labeler, project=taught, kinds=["rank"])
    assert lease.task.origin_run_id == sample.pk and lease.task.priority > 0
    authors = {c.author_model_id for c in lease.task.candidates.all()}
    assert authors == {ppo_policy.pk}

    # Lineage: task → the sampling run and the policy that wrote its candidates → the PPO run → its data; and back.
    up = {(n.kind, n.id) for g in lineage.lineage("task", lease.task_id).upstream for n in g.nodes}
    assert ("run", sample.pk) in up and ("version", ppo_policy.pk) in up
    version_up = {(n.kind, n.id) for g in lineage.lineage("version", ppo_policy.pk).upstream for n in g.nodes}
    assert {("run", runs["ppo"].pk), ("version", runs["sft"].output_version_id)} <= version_up
    assert ("snapshot", runs["ppo"].snapshot_id) in version_up
    down = lineage.lineage("version", ppo_policy.pk).downstream
    assert ("run", sample.pk) in {(n.kind, n.id) for g in down for n in g.nodes}
    showing = next(g for g in down if g.relation == "tasks showing its replies")
    created = Task.objects.filter(origin_run=sample)
    assert showing.total == created.count() == sample.metrics["rank_tasks"] + sample.metrics["compare_tasks"]


def test_cancel_stops_a_running_run_at_the_next_step(judged, admin_user, tiny_backbone, artifacts):
    config = tiny_config(tiny_backbone, epochs=200, batch_size=2)
    run = services.run_start(kind="reward", project=judged, config=config, created_by=admin_user)
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
    command = [sys.executable, "-m", "celery", "-A", "rewardlab.celery", "worker", "-Q", "training", "-P", "solo"]
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
    long_run = services.run_start(
        kind="reward",
        project=judged,
        config=tiny_config(tiny_backbone, epochs=200, batch_size=2),
        created_by=admin_user,
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
        retry = services.run_start(
            kind="reward", project=judged, config=tiny_config(tiny_backbone), created_by=admin_user
        )
        assert wait_for(lambda: status_of(retry) in (RunStatus.SUCCEEDED, RunStatus.FAILED), timeout=180)
        retry.refresh_from_db()
        assert retry.status == RunStatus.SUCCEEDED, retry.error
        assert ModelVersion.objects.get().training_run == retry
    finally:
        _stop(worker)
        connections.close_all()


def test_the_web_side_enqueues_chat_replies_by_the_workers_task_name():
    from annotate import chat
    from training import tasks

    assert chat.CHAT_GENERATE_TASK == tasks.chat_generate.name
    assert "training.tasks.chat_generate" in settings.CELERY_TASK_ROUTES


def test_services_enqueue_the_tasks_by_their_names():
    from training import queue, tasks

    assert queue.RUN_EXECUTE == tasks.run_execute.name and queue.SCORE_CANDIDATES == tasks.candidate_scores_compute.name
    assert settings.CELERY_TASK_ROUTES[queue.RUN_EXECUTE] == {"queue": "training"}
