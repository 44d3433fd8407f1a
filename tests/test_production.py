"""Production mode end to end: gunicorn (DEBUG off, static files by whitenoise, secrets from the environment), a
`default` Celery worker and a `training` worker (one task at a time, prefetch 1) against the machine's PostgreSQL
and Redis. The test drives the whole flow over HTTP, as a lab's clients would: health, import, labeling through
the real endpoints, a reward-model run started through the API, its success and its registered version. It stops
every process it started."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from annotate import services
from annotate.roles import RoleName
from tests.conftest import PASSWORD, jsonl
from tests.tiny_models import tiny_reward_backbone
from tests.training.conftest import tiny_config

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]
# Behind the TLS proxy: the app trusts X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER), so plain HTTP on the
# loopback stands for HTTPS at the proxy and no request is redirected.
PROXY = {"X-Forwarded-Proto": "https"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    def __init__(self, base: str) -> None:
        self.base, self.token = base, None

    def call(self, method: str, path: str, body=None, *, content_type="application/json", raw=False):
        headers = {**PROXY, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = self.base + path  # always http://127.0.0.1:<port>
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                payload = response.read()
                status, response_headers = response.status, response.headers
        except urllib.error.HTTPError as error:
            payload, status, response_headers = error.read(), error.code, error.headers
        if raw:
            return status, payload, response_headers
        return status, (json.loads(payload) if payload else None)

    def sign_in(self, username: str) -> Client:
        status, body = self.call("POST", "/api/auth/token/", {"username": username, "password": PASSWORD})
        assert status == 200, body
        self.token = body["token"]
        return self


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = log.open("wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(predicate, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    return None


@pytest.mark.skipif(
    connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith(("redis://", "amqp://")),
    reason="production mode runs on PostgreSQL and Redis or RabbitMQ (CI sets DATABASE_URL and CELERY_BROKER_URL)",
)
def test_production_mode_over_http(tmp_path, make_user):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "DATABASE_CONN_MAX_AGE": "60",
        # A broker database of its own, so no other test's worker takes these tasks.
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/9",
        "REWARDLAB_VAR_DIR": str(tmp_path / "var"),
        "REWARDLAB_ARTIFACTS_DIR": str(tmp_path / "shared"),  # the folder every worker and the web app can read
        "REWARDLAB_WORKER_HEARTBEAT_SECONDS": "1",
        "REWARDLAB_RUN_HEARTBEAT_SECONDS": "1",
        "REWARDLAB_LOG_FORMAT": "json",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    admin = make_user(RoleName.ADMIN, "ops")
    labelers = [make_user(RoleName.LABELER, name) for name in ("lena", "omar")]
    project = services.project_create(
        name="Production", slug="production", import_task_kinds=["compare"], overlap_compare=1
    )
    connections.close_all()  # the servers see everything committed so far

    port = free_port()
    python = sys.executable
    processes = {
        "web": start([python, "-m", "gunicorn", "rewardlab.wsgi:application", "-b", f"127.0.0.1:{port}",
                      "--workers", "2", "--timeout", "60"], env, tmp_path / "web.log"),
        "default": start([python, "-m", "celery", "-A", "rewardlab.celery", "worker", "-Q", "default", "-c", "1",
                          "-n", f"default-{port}@%h", "--loglevel", "INFO"], env, tmp_path / "default.log"),
        "training": start([python, "-m", "celery", "-A", "rewardlab.celery", "worker", "-Q", "training", "-c", "1",
                           "--prefetch-multiplier", "1", "-n", f"training-{port}@%h", "--loglevel", "INFO"],
                          env, tmp_path / "training.log"),
    }  # fmt: skip
    try:
        web = Client(f"http://127.0.0.1:{port}")

        # Health: database, broker, and a live worker on each queue.
        def healthy():
            try:
                status, body = web.call("GET", "/healthz")
            except OSError:
                return None
            return body if status == 200 else None

        health = wait_for(healthy, timeout=120)
        assert health, (tmp_path / "web.log").read_text()[-2000:] + (tmp_path / "training.log").read_text()[-2000:]
        assert health["queues"]["default"]["workers"] == health["queues"]["training"]["workers"] == 1

        # The login page: DEBUG off, static files from whitenoise with hashed names, CSP and secure cookies.
        status, page, headers = web.call("GET", "/accounts/login/", raw=True)
        assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
        assert "Secure" in headers["Set-Cookie"] and "csrftoken" in headers["Set-Cookie"]
        stylesheet = page.decode().split('rel="stylesheet" href="')[1].split('"')[0]
        assert stylesheet.startswith("/static/css/app.") and stylesheet != "/static/css/app.css"
        status, css, headers = web.call("GET", stylesheet, raw=True)
        assert status == 200 and b"--accent" in css and "max-age" in headers["Cache-Control"]
        assert web.call("GET", "/no-such-page/", raw=True)[0] == 404  # not DEBUG's page

        # Import over the API (admin), then label through the real endpoints.
        ops = Client(web.base).sign_in(admin.username)
        rows = [
            {"prompt": f"How do I fix issue {i}?", "completions": [f"Do step {i}.", f"No idea {i}."]} for i in range(12)
        ]
        status, body = ops.call(
            "POST", f"/api/projects/{project.slug}/prompts/import/", jsonl(*rows), content_type="application/jsonl"
        )
        assert status == 201, body
        submitted = 0
        for labeler in labelers:
            client = Client(web.base).sign_in(labeler.username)
            for n in range(12):
                status, lease = client.call("POST", f"/api/projects/{project.slug}/lease/", {})
                if status == 204:
                    break
                assert status == 200, lease
                choice = -3 if "Do step" in lease["candidates"][0]["text"] else 3
                path = f"/api/assignments/{lease['assignment']['id']}/submit/"
                status, body = client.call("POST", path, {"choice": choice, "client_token": f"{labeler.pk}-{n}"})
                assert status == 201, body
                submitted += 1
        assert submitted == 12

        # A reward-model run, started and followed over the API, trained by the training worker.
        config = tiny_config(tiny_reward_backbone(tmp_path / "tiny-bert"))
        status, run = ops.call("POST", f"/api/projects/{project.slug}/runs/", {"kind": "reward", "config": config})
        # the training worker may already have picked it up by the time the answer is written
        assert status == 201 and run["status"] in ("queued", "running"), run

        def finished():
            _, body = ops.call("GET", f"/api/runs/{run['id']}/")
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None

        done = wait_for(finished, timeout=240, every=1.0)
        assert done, (tmp_path / "training.log").read_text()[-3000:]
        assert done["status"] == "succeeded", done["error"]
        assert done["output_version"] == "reward-v1" and done["worker"].startswith("training-")
        assert done["progress_step"] == done["progress_total"] > 0
    finally:
        for process in processes.values():
            stop(process)
    assert all(process.poll() is not None for process in processes.values())

    # Structured logs: the web server's lines are JSON objects carrying the request id (and user id when known).
    lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "rewardlab.request"]
    assert access and all(line.get("request_id") for line in access)
    assert any(line.get("user_id") == admin.pk for line in access)
    training = (tmp_path / "training.log").read_text().splitlines()
    assert any(json.loads(line).get("run_id") == run["id"] for line in training if line.startswith("{"))
