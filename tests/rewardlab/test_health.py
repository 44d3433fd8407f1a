"""/healthz: the database, the broker and each worker queue's last heartbeat; 503 when any is down. The Runs page
lists the workers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from training import health
from training.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def beat(hostname: str, queues: list[str], *, ago: float = 0.0, stopped: bool = False) -> WorkerHeartbeat:
    now = timezone.now()
    return WorkerHeartbeat.objects.create(
        hostname=hostname, queues=queues, pid=1, started_at=now - timedelta(hours=1),
        last_seen_at=now - timedelta(seconds=ago), stopped_at=now if stopped else None,
    )  # fmt: skip


@pytest.fixture
def broker_up(monkeypatch):
    monkeypatch.setattr(health, "_broker", lambda: None)


def test_all_up_is_200_and_names_no_host(client, broker_up):
    beat("default@a", ["default"], ago=5)
    beat("training@gpu1", ["training"], ago=2)
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert body["queues"]["training"]["workers"] == 1 and body["queues"]["training"]["age_seconds"] < 10
    assert "gpu1" not in response.content.decode() and response["Cache-Control"].startswith("max-age=0")


def test_a_queue_without_a_live_worker_is_503(client, broker_up, settings):
    settings.REWARDLAB_WORKER_HEARTBEAT_TIMEOUT = 60
    beat("default@a", ["default"], ago=5)
    beat("training@gpu1", ["training"], ago=300)  # silent: killed, or its machine went away
    beat("training@gpu2", ["training"], stopped=True)  # shut down cleanly
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "fail"
    assert body["queues"]["default"]["ok"] and not body["queues"]["training"]["ok"]
    assert body["queues"]["training"]["workers"] == 0 and body["queues"]["training"]["age_seconds"] >= 0


def test_a_broker_that_does_not_answer_is_503_with_the_error(client, settings, monkeypatch):
    from kombu import Connection

    from rewardlab.celery import app

    beat("both@a", ["default", "training"])
    settings.REWARDLAB_HEALTH_TIMEOUT = 1
    # A broker address where nothing listens (port 1), whatever broker this test run uses.
    monkeypatch.setattr(app, "connection_for_write", lambda: Connection("redis://127.0.0.1:1/0"))
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503 and not body["broker"]["ok"] and body["broker"]["error"]
    assert body["database"]["ok"] and body["queues"]["default"]["ok"]


def test_the_heartbeat_thread_stamps_until_stopped(settings, monkeypatch):
    settings.REWARDLAB_WORKER_HEARTBEAT_SECONDS = 0.02
    stamps, stopped = [], []
    monkeypatch.setattr(health, "worker_beat", lambda **kw: stamps.append(kw))
    monkeypatch.setattr(health, "worker_stopped", lambda **kw: stopped.append(kw))
    monkeypatch.setattr(health, "close_old_connections", lambda: None)
    monkeypatch.setattr(health.connection, "close", lambda: None)
    beater = health.Heartbeat("w@host", ["default"], pid=42).start()
    for _ in range(200):
        if len(stamps) >= 3:
            break
        beater._stop.wait(0.02)
    beater.stop()
    count = len(stamps)
    beater._stop.wait(0.1)
    assert count >= 3 and len(stamps) == count  # it stamped while alive and stops with the worker
    assert (
        stamps[0]["hostname"] == "w@host" and stamps[0]["queues"] == ["default"] and stopped == [{"hostname": "w@host"}]
    )


def test_a_beat_records_the_worker_and_a_clean_stop_marks_it(broker_up):
    started = timezone.now()
    health.worker_beat(hostname="w@host", queues=["training", "default"], pid=7, started_at=started)
    health.worker_stopped(hostname="w@host")
    health.worker_beat(hostname="w@host", queues=["training"], pid=8, started_at=started)  # it came back
    row = WorkerHeartbeat.objects.get()
    assert row.queues == ["training"] and row.pid == 8 and row.stopped_at is None
    assert [w.alive for w in health.workers()] == [True]


def test_the_runs_page_shows_which_workers_are_alive(client, researcher, broker_up):
    beat("default@a", ["default"], ago=5)
    beat("training@gpu1", ["training"], ago=600)
    client.force_login(researcher)
    page = client.get(reverse("rewardlab:run_list")).content.decode()
    assert 'data-worker="default@a" data-alive="yes"' in page and 'data-worker="training@gpu1" data-alive="no"' in page
    assert "No live worker on training" in page
