"""Celery integration: a real worker on the configured broker (Redis in CI) runs the lease sweep."""

import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections
from django.utils import timezone

from annotate import services, tasks
from annotate.models import Assignment, AssignmentStatus, Task
from rewardlab.celery import app
from tests.conftest import jsonl


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_returns_expired_leases_to_the_pool(project, labeler, settings):
    services.prompts_import(project=project, data=jsonl({"prompt": "Q", "completions": ["a", "b"]}), filename="q.jsonl")
    task = Task.objects.get(kind="rank")
    past = timezone.now() - timedelta(hours=2)
    stale = Assignment.objects.create(
        task=task, labeler=labeler, leased_at=past, expires_at=past + timedelta(minutes=30)
    )

    # The beat schedule names this task; the worker must know it under that name.
    assert settings.CELERY_BEAT_SCHEDULE["release-expired-leases"]["task"] in app.tasks

    with start_worker(app, pool="solo", queues=["default"], perform_ping_check=False, shutdown_timeout=30):
        tasks.leases_release_expired.delay()
        released = wait_for(lambda: Assignment.objects.get(pk=stale.pk).status == AssignmentStatus.EXPIRED)
    connections.close_all()
    assert released, f"no worker on {app.conf.broker_url} released the lease"
