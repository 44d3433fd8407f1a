"""Health of the pieces a deployment runs: the database, the broker and the Celery workers of each queue.

Each worker stamps a `WorkerHeartbeat` row every REWARDLAB_WORKER_HEARTBEAT_SECONDS from a thread started when it
is ready (see `training.tasks`); a queue is up when at least one worker consuming it has stamped within
REWARDLAB_WORKER_HEARTBEAT_TIMEOUT seconds. `/healthz` reports all three and answers 503 when any is down, so a
load balancer or an orchestrator can act on it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from training.models import WorkerHeartbeat

logger = logging.getLogger(__name__)


@dataclass
class Check:
    ok: bool
    ms: float
    error: str = ""


@dataclass
class QueueHealth:
    name: str
    workers: int  # alive
    last_heartbeat: datetime | None

    @property
    def ok(self) -> bool:
        return self.workers > 0


@dataclass
class Health:
    database: Check
    broker: Check
    queues: list[QueueHealth] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.database.ok and self.broker.ok and all(queue.ok for queue in self.queues)

    def as_dict(self) -> dict:
        now = timezone.now()
        return {
            "status": "ok" if self.ok else "fail",
            "database": {"ok": self.database.ok, "ms": round(self.database.ms, 1), "error": self.database.error},
            "broker": {"ok": self.broker.ok, "ms": round(self.broker.ms, 1), "error": self.broker.error},
            "queues": {
                queue.name: {
                    "ok": queue.ok,
                    "workers": queue.workers,
                    "last_heartbeat": queue.last_heartbeat.isoformat() if queue.last_heartbeat else None,
                    "age_seconds": round((now - queue.last_heartbeat).total_seconds(), 1)
                    if queue.last_heartbeat
                    else None,
                }
                for queue in self.queues
            },
        }


def _timed(check) -> Check:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:  # a health check reports every failure, whatever it is
        return Check(False, (time.perf_counter() - started) * 1000, f"{type(error).__name__}: {error}"[:300])
    return Check(True, (time.perf_counter() - started) * 1000)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    from celery import current_app as app

    with app.connection_for_write() as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=settings.REWARDLAB_HEALTH_TIMEOUT
        )


def alive_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.REWARDLAB_WORKER_HEARTBEAT_TIMEOUT)


def workers() -> list[WorkerHeartbeat]:
    """Every worker that ever stamped, with `alive` set (stamped recently and not shut down)."""
    cutoff = alive_cutoff()
    rows = list(WorkerHeartbeat.objects.all())
    for row in rows:
        row.alive = row.stopped_at is None and row.last_seen_at >= cutoff
    return rows


def queue_health(known: list[WorkerHeartbeat]) -> list[QueueHealth]:
    """For each queue `/healthz` checks: its live workers among `known` (from `workers()`), and the last stamp."""
    queues = []
    for name in settings.REWARDLAB_HEALTH_QUEUES:
        serving = [w for w in known if name in w.queues]
        last = max((w.last_seen_at for w in serving), default=None)
        queues.append(QueueHealth(name, sum(w.alive for w in serving), last))
    return queues


def check() -> Health:
    database = _timed(_database)
    broker = _timed(_broker)
    return Health(database, broker, queue_health(workers() if database.ok else []))


# --- the worker side ------------------------------------------------------------------------------------------


def worker_beat(*, hostname: str, queues: list[str], pid: int, started_at: datetime) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "queues": sorted(queues),
            "pid": pid,
            "started_at": started_at,
            "last_seen_at": now,
            "stopped_at": None,
        },
    )


def worker_stopped(*, hostname: str) -> None:
    WorkerHeartbeat.objects.filter(hostname=hostname).update(stopped_at=timezone.now())


class Heartbeat:
    """A daemon thread that stamps this worker's row every REWARDLAB_WORKER_HEARTBEAT_SECONDS until stopped. Each
    stamp uses its own short-lived database connection, so a database restart costs one missed stamp."""

    def __init__(self, hostname: str, queues: list[str], pid: int) -> None:
        self.hostname, self.queues, self.pid = hostname, queues, pid
        self.started_at = timezone.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{hostname}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            worker_stopped(hostname=self.hostname)
        finally:
            connection.close()

    def _run(self) -> None:
        while True:
            try:
                close_old_connections()
                worker_beat(hostname=self.hostname, queues=self.queues, pid=self.pid, started_at=self.started_at)
            except Exception:  # the next stamp tries again; /healthz shows the gap meanwhile
                logger.warning("worker %s: heartbeat failed", self.hostname, exc_info=True)
            finally:
                connection.close()
            if self._stop.wait(settings.REWARDLAB_WORKER_HEARTBEAT_SECONDS):
                return
