"""Enqueue the training app's Celery tasks by name, so services never import the tasks that call them (the tasks
module imports the services, the runner and, on an inference worker, the model code). The names are the tasks'
own (`training/tasks.py`), and CELERY_TASK_ROUTES sends each to its queue."""

from __future__ import annotations

from celery import current_app

RUN_EXECUTE = "training.tasks.run_execute"
SCORE_CANDIDATES = "training.tasks.score_candidates"


def run_send(run_id: int, task_id: str) -> None:
    """Queue a run on the training queue; `task_id` is stored on the run first, so a cancel can revoke it."""
    current_app.send_task(RUN_EXECUTE, args=(run_id,), task_id=task_id)


def scores_send(version_id: int) -> None:
    """Queue scoring of a reward model's unscored candidates."""
    current_app.send_task(SCORE_CANDIDATES, args=(version_id,))
