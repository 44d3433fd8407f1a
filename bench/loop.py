"""The whole loop on the demo, timed: from the retraining threshold being crossed to new tasks in a labeler's queue.

A fresh demo (its own SQLite database, embedded SQLAlchemy broker and artifacts folder in a temporary directory,
exactly `make demo`'s defaults) gets judgements from simulated labelers through the services until the project's
thresholds are crossed. Then beat's tick starts a cycle and one real Celery worker (`-Q default,training`, one task
at a time, as `make demo` starts it) runs it: reward model → SFT → PPO → sampling. The table gives, per stage, the
wait in the queue (run queued → a worker took it) and the run itself (taken → finished), and the total from the
tick to the first new task a labeler is served.

    .venv/bin/python bench/loop.py            # demo-sized runs (a few minutes on a 2-core CPU)
    .venv/bin/python bench/loop.py --quick    # tiny runs: the loop's own overhead
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Demo-sized runs: what a laptop does in minutes. --quick: a few steps each, to time the loop's own overhead.
CONFIGS = {
    "demo": {
        "reward": {"epochs": 2, "batch_size": 16, "max_length": 192, "learning_rate": 5e-5},
        "sft": {"epochs": 3, "batch_size": 8, "max_length": 384},
        "ppo": {"steps": 20, "batch_size": 16, "mini_batch_size": 8, "max_new_tokens": 32},
        "sample": {"prompts": 32, "replies_per_prompt": 4, "max_new_tokens": 48},
    },
    "quick": {
        "reward": {"epochs": 1, "batch_size": 16, "max_length": 128},
        "sft": {"epochs": 1, "batch_size": 8, "max_length": 256},
        "ppo": {"steps": 2, "batch_size": 8, "mini_batch_size": 4, "max_new_tokens": 16},
        "sample": {"prompts": 16, "replies_per_prompt": 3, "max_new_tokens": 24},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs: the loop's overhead, not the training")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the cycle")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rewardlab-loop-"))
    env = {
        **os.environ,
        "REWARDLAB_VAR_DIR": str(work),
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{work / 'broker.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "rewardlab.settings",
    }
    os.environ.update(env)
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([python, "manage.py", "load_demo"], cwd=ROOT, env=env, check=True, capture_output=True)

    import django

    django.setup()
    from annotate import services as annotate_services
    from annotate.models import Project, Task
    from annotate.roles import RoleName
    from tests.simulate import simulate
    from training import cycles
    from training.models import RetrainCycle

    project = Project.objects.get(slug="demo")
    project.overlap_rank = project.overlap_compare = 1
    project.kind_mix = {"demonstrate": 1, "rank": 1, "compare": 1}  # every prompt's preference tasks get done
    project.save()
    annotate_services.project_overlap_apply(project=project)
    labelers = {
        annotate_services.user_create_with_role(username=f"sim{i}", password="x" * 12, role=RoleName.LABELER): noise
        for i, noise in enumerate((0.05, 0.1, 0.2))
    }
    judged = simulate(project, labelers, tasks_each=70)
    data = cycles.new_data(project)
    project.retrain_enabled = True
    project.retrain_min_comparisons = data.preferences
    project.retrain_min_demonstrations = data.demonstrations
    project.retrain_run_configs = CONFIGS["quick" if args.quick else "demo"]
    # The simulated labelers follow a hidden quality per reply that the text does not show, so no reward model can
    # learn it; the accuracy check would (rightly) stop the cycle after the reward model.
    project.retrain_min_reward_accuracy = 0.0
    project.save()
    print(f"demo: {judged} judgements by 3 simulated labelers: {data.preferences} preference judgements, "
          f"{data.demonstrations} demonstrations; thresholds set to exactly these")  # fmt: skip

    log = open(work / "worker.log", "w")
    worker = subprocess.Popen(
        [python, "-m", "celery", "-A", "rewardlab.celery", "worker", "-Q", "default,training", "--concurrency", "1",
         "--loglevel", "INFO", "--hostname", "loop@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(5)  # the worker connects and declares its queues
        started = time.perf_counter()
        tick = cycles.cycles_tick()
        assert tick["started"] == 1, f"the tick started no cycle: {tick}"
        cycle = RetrainCycle.objects.get(project=project)
        first_task_at = None
        probe = annotate_services.user_create_with_role(username="fresh", password="x" * 12, role=RoleName.LABELER)
        while time.perf_counter() - started < args.timeout:
            cycle.refresh_from_db()
            if cycle.status != "running":
                break
            time.sleep(0.5)
        sample_run = cycle.runs.filter(kind="sample").first()
        if sample_run is not None:
            lease = annotate_services.task_lease_next(labeler=probe, project=project, kinds=["rank", "compare"])
            if lease is not None and Task.objects.filter(origin_run=sample_run, pk=lease.task_id).exists():
                first_task_at = time.perf_counter()
        total = (first_task_at or time.perf_counter()) - started
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()

    print(f"\ncycle #{cycle.pk}: {cycle.status}{' — ' + cycle.error if cycle.error else ''}")
    print(f"{'stage':<10}{'run':>6}{'queued s':>10}{'ran s':>10}  result")
    previous_end = None
    for run in cycle.runs.order_by("pk"):
        queued = (run.started_at - run.created_at).total_seconds() if run.started_at else float("nan")
        ran = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else float("nan")
        gap = (run.created_at - previous_end).total_seconds() if previous_end else 0.0
        previous_end = run.finished_at
        result = str(run.output_version or "")
        if run.kind == "sample" and run.metrics:
            result = (f"{run.metrics['rank_tasks']} ranking + {run.metrics['compare_tasks']} A/B tasks from "
                      f"{run.metrics['candidates']} candidates")  # fmt: skip
        elif run.kind == "reward":
            result += f" (held-out accuracy {run.metrics.get('eval_accuracy') or float('nan'):.3f})"
        elif run.kind == "ppo":
            result += f" (reward {run.metrics['reward_mean_first']:.3f} → {run.metrics['reward_mean_last']:.3f})"
        print(f"{run.kind:<10}{run.pk:>6}{queued:>10.1f}{ran:>10.1f}  {result}  [hand-off {gap:.2f} s]")
    verdict = "a labeler is served a new task" if first_task_at else "no new task was served"
    print(f"\nthreshold crossed → {verdict}: {total:.1f} s  (worker log: {work / 'worker.log'})")


if __name__ == "__main__":
    main()
