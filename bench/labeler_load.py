"""Labelers over HTTP: lease-and-submit latency and throughput of the REST API, production beside a bare Django floor.

    .venv/bin/python bench/labeler_load.py                 # production and the floor; 1, 8 and 16 labelers
    .venv/bin/python bench/labeler_load.py --quick         # smoke run: 1 and 4 labelers, a few submissions each
    .venv/bin/python bench/labeler_load.py --modes demo,production,floor
    .venv/bin/python bench/labeler_load.py --modes production --labelers 16 --submissions 300 --seconds 60

What is measured: N simulated labelers, each with its own keep-alive HTTP connection (`http.client`), against a
server this script starts on 127.0.0.1 (loopback only) and stops at the end. Each labeler gets a token
(`POST /api/auth/token/`, not timed), then, back to back with no think time (a closed loop, the machine's capacity):
`POST /api/projects/demo/lease/` and `POST /api/assignments/<id>/submit/` with its kind's fields (`choice`, `tiers`,
`text` or `score`) and a fresh `client_token` (a uuid), until it has M acknowledged submissions (`--submissions`) or
T seconds have passed (`--seconds`, checked before each lease). Every 20th submission is sent a second time with the
same token right after its 201: the repeat must answer 200 with the same judgement id. Latencies are per request,
from sending to the last byte of the response; throughput is acknowledged submissions over the level's wall time
(from the labelers' common start to the last one's end); repeats are not counted as submissions.

Levels (`--labelers 1,8,16`) run one after the other on the same server, each with fresh labelers (empty
histories, so the kind mix starts afresh). Up to three servers (`--modes`, default `production,floor`), each set up
from nothing in the same run:

- demo: `manage.py runserver --noreload` on SQLite in a temporary `REWARDLAB_VAR_DIR`, DEBUG on, as `make demo` runs
  it (one process, a thread per request; SQLite takes the write lock at the start of each transaction).
- production: gunicorn (sync workers, 2 × cores + 1 unless `--gunicorn-workers`) with DEBUG off, a random secret
  key and `collectstatic`, on PostgreSQL (a fresh database `rewardlab_bench_load_<pid>` on BENCH_DATABASE_URL, by
  default the local server with trust auth, created and dropped by this script) with `DATABASE_CONN_MAX_AGE=60`.
  HTTPS redirects and secure cookies are off: plain HTTP on loopback. Sync workers close the connection after every
  response, so here each request opens a new one (column conn/req). `VACUUM ANALYZE` after the import and `ANALYZE`
  before each level stand in for autovacuum, which is off on this machine's server (`--no-analyze` leaves the
  statistics as the import left them).
- floor: what Django costs on the same setup, for scale: the same gunicorn (workers, DEBUG off,
  `DATABASE_CONN_MAX_AGE=60`), PostgreSQL server (a fresh database of its own) and the project's settings and
  middleware (`--floor-bare`: no middleware, no apps), with a bare view at each of the same addresses (written to
  the run's temporary folder), every view one query: the lease `SELECT 1` (it answers one rating task), the submit
  `SELECT 1` (201; `--floor-write`: the submit is one `INSERT … ON CONFLICT` of its client token instead, committed
  as a judgement is, and a repeat answers 200 with the same id). The summary gives RewardLab (production) / floor
  per level: throughput, lease and submit p50/p99, and the app server's CPU per submission.

Both get `REWARDLAB_API_USER_RATE=100000/minute` (and the same for the anonymous rate the token endpoint has), so
the API's throttling does not cut the load, and an embedded SQLite broker (no worker runs; labeling enqueues
nothing). The data: `load_demo` (51 prompts, every task kind, the default kind mix and overlaps: demonstrate 1,
rank 2, compare 3, rate 1) plus `import_prompts` of a generated file of `--prompts` prompts with 4 replies each
(per prompt one demonstration, one ranking of 4, two A/B pairs and four ratings), and one `add_user --role labeler`
per simulated labeler.

Labelers are threads in this process by default (`--client processes`: one process each; both give the same
figures within noise, and a labeler spends ~0.6 ms of CPU per request against the server's ~20). The table gives
the CPU time per acknowledged submission (its lease, its submit and 1/20 of a repeat) of the client, the app server
(all its processes), PostgreSQL (all its processes) and "other" (the rest of the machine: other users' work, about
0 on a quiet machine), read from /proc between the labelers' common start and the last one's end; busy is the
machine's busy cores over the level (2.00: both saturated). `--no-keepalive` opens a new connection for every
request: Django's development server answers on a kept-alive connection ~40 ms late (a response leaves in several
small writes with Nagle's algorithm on, and one waits for the client's delayed ACK).

After each mode (but the floor), the database is checked against the client's record: every acknowledged submission
(201 with a judgement id) must be stored exactly once under its (labeler, client_token), with that id: nothing lost,
nothing doubled. Targets, printed beside the figures: production at 16 labelers p99 < 50 ms for lease and for submit;
against the floor, back to back (think 0): at 1 labeler at least 25% of the floor's submissions per second, at 8
labelers lease and submit p99 at most 3 times the floor's; zero lost or doubled.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432")
PROJECT = "demo"
PASSWORD = "bench-labeler-pass-7x"  # noqa: S105 - benchmark users in a throwaway database
RETRY_EVERY = 20
BARRIER_TIMEOUT = 300  # seconds for every labeler to sign in
TARGET_P99_MS = 50.0
TARGET_FLOOR_RATE = 0.25  # production's submissions per second at 1 labeler, as a share of the floor's
TARGET_FLOOR_P99 = 3.0  # production's lease and submit p99 at 8 labelers, as a multiple of the floor's
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A 5xx in runserver's log or the app's JSON request log, or a traceback.
SERVER_ERROR = re.compile(r'" 5\d\d \d|"status": 5\d\d|Traceback|\[CRITICAL\]|WORKER TIMEOUT')
COMPARE_CHOICES = [-4, -3, -2, -1, 1, 2, 3, 4]
# The environment of the servers and commands is ours alone: none of these leak in from the caller's shell.
OWN_PREFIXES = ("DJANGO_", "REWARDLAB_", "CELERY_", "DATABASE_", "AXES_")


# --- data ---------------------------------------------------------------------------------------------------

WORDS = (
    "the a reply model answer careful short long clear vague helpful wrong right step first then because so "
    "we you it data list code example test value result error note point idea plan rule case time way part"
).split()


def prompts_file(path: Path, count: int, seed: int = 7) -> None:
    """`count` prompts with 4 distinct replies each (100–600 characters), as `import_prompts` reads them."""
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        words, size, target = [], 0, rng.randint(low, high)
        while size < target:
            words.append(rng.choice(WORDS))
            size += len(words[-1]) + 1
        return " ".join(words).capitalize() + "."

    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            replies = [f"Reply {j + 1} to prompt {i}: {text(100, 600)}" for j in range(4)]
            out.write(json.dumps({"prompt": f"Bench prompt {i}: {text(40, 200)}", "completions": replies}) + "\n")


SETUP_CODE = """
from django.core.management import call_command
call_command("load_demo")
call_command("import_prompts", {project!r}, {path!r})
for name in {names!r}:
    call_command("add_user", name, role="labeler", password={password!r})
"""


# --- servers ------------------------------------------------------------------------------------------------

# The floor: a bare Django view for each of the labeling API's addresses, one query each, under the project's own
# settings (middleware, logging, DEBUG off: `--floor-bare` drops the middleware and apps), served by the same
# gunicorn setup as production. Written to the run's folder.
FLOOR_SETTINGS = """
import os

if os.environ.get("FLOOR_BARE") == "1":
    SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
    ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    INSTALLED_APPS, MIDDLEWARE, USE_TZ = [], [], True
    import dj_database_url

    DATABASES = {"default": dj_database_url.config(conn_max_age=int(os.environ["DATABASE_CONN_MAX_AGE"]))}
else:
    from rewardlab.settings import *  # noqa: F403

ROOT_URLCONF = "floor_app"
"""

FLOOR_APP = """
import json
import os

os.environ["DJANGO_SETTINGS_MODULE"] = "floor_settings"

from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

WRITE = os.environ.get("FLOOR_WRITE") == "1"


def one_query(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@csrf_exempt
def token(request):
    return JsonResponse({"token": "floor"})


def me(request):
    return JsonResponse({"error": "no credentials"}, status=401)


def healthz(request):
    return JsonResponse({"database": one_query("SELECT 1")[0] == 1})


@csrf_exempt
def lease(request, slug):
    (task,) = one_query("SELECT 1")
    return JsonResponse({"kind": "rate", "task": task, "assignment": {"id": task}, "candidates": [{"id": task}]})


@csrf_exempt
def submit(request, assignment_id):
    token = json.loads(request.body)["client_token"]
    if WRITE:
        judgement, created = one_query(
            "INSERT INTO floor_judgement (token) VALUES (%s) ON CONFLICT (token) DO UPDATE SET token = EXCLUDED.token "
            "RETURNING id, xmax = 0",
            [token],
        )
    else:
        (judgement,), created = one_query("SELECT 1"), True
    return JsonResponse({"created": created, "annotation": {"id": judgement}}, status=201 if created else 200)


urlpatterns = [
    path("api/auth/token/", token),
    path("api/me/", me),
    path("healthz", healthz),
    path("api/projects/<slug:slug>/lease/", lease),
    path("api/assignments/<int:assignment_id>/submit/", submit),
]

import gc  # noqa: E402

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
gc.collect()  # as rewardlab/wsgi.py does
gc.freeze()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def admin_sql(statement: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(statement)


def proc_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes, with their reaped children (a gunicorn worker or PostgreSQL backend that
    exited is counted in its parent's cutime)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores; idle and iowait excluded) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def pids_where(test) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if test(stat):
            pids.append(int(entry.name))
    return pids


def group_pids(pgid: int) -> list[int]:
    return pids_where(lambda stat: int(stat.rsplit(")", 1)[1].split()[2]) == pgid)


def postgres_pids() -> list[int]:
    return pids_where(lambda stat: stat.split(" (", 1)[1].startswith("postgres)"))


class Server:
    """One mode's server and data: set up from nothing in `work`, started in its own process group, stopped (the
    whole group) and its database dropped by `close`."""

    def __init__(self, mode: str, work: Path, args, usernames: list[str]):
        self.mode, self.work, self.args, self.usernames = mode, work, args, usernames
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.database = f"rewardlab_bench_{mode}_{os.getpid()}" if mode in ("production", "floor") else None
        self.db_created = False
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "rewardlab.settings",
                "REWARDLAB_VAR_DIR": str(work),
                "CELERY_BROKER_URL": f"sqla+sqlite:///{work / 'broker.sqlite3'}",
                "REWARDLAB_API_USER_RATE": "100000/minute",
                "REWARDLAB_API_ANON_RATE": "100000/minute",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if mode == "demo":
            env["DATABASE_URL"] = f"sqlite:///{work / 'rewardlab.sqlite3'}"
        else:  # production and the floor: the same server setup
            env.update(
                {
                    "DATABASE_URL": f"{PG_SERVER}/{self.database}",
                    "DATABASE_CONN_MAX_AGE": "60",
                    "DJANGO_DEBUG": "0",
                    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                    "DJANGO_SECURE_SSL_REDIRECT": "0",
                    "DJANGO_SECURE_COOKIES": "0",
                }
            )
        if mode == "floor":
            env.update({"FLOOR_WRITE": "1" if args.floor_write else "0", "FLOOR_BARE": "1" if args.floor_bare else "0"})
        self.env = env
        self.workers = args.gunicorn_workers or 2 * (os.cpu_count() or 1) + 1

    def manage(self, *command: str) -> str:
        result = subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *command], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {command[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def setup(self) -> float:
        started = time.perf_counter()
        if self.database:
            admin_sql(f"DROP DATABASE IF EXISTS {self.database}")
            admin_sql(f"CREATE DATABASE {self.database}")
            self.db_created = True
        if self.mode == "floor":
            (self.work / "floor_app.py").write_text(FLOOR_APP)
            (self.work / "floor_settings.py").write_text(FLOOR_SETTINGS)
            with psycopg.connect(f"{PG_SERVER}/{self.database}", autocommit=True) as conn:
                conn.execute("CREATE TABLE floor_judgement (id bigserial PRIMARY KEY, token text UNIQUE NOT NULL)")
            return time.perf_counter() - started
        self.manage("migrate", "--noinput", "-v", "0")
        if self.mode == "production":
            self.manage("collectstatic", "--noinput", "-v", "0")
        path = self.work / "prompts.jsonl"
        prompts_file(path, self.args.prompts)
        code = SETUP_CODE.format(project=PROJECT, path=str(path), names=self.usernames, password=PASSWORD)
        self.manage("shell", "-c", code)
        self.analyze("VACUUM ANALYZE")
        return time.perf_counter() - started

    def analyze(self, statement: str = "ANALYZE") -> None:
        """Fresh planner statistics on PostgreSQL, as autovacuum would keep them (it is off on some servers, this
        bench's among them; on a small fresh database with none, the kind-mix query nested-looped: 15 ms, not 0.1)."""
        if self.database and self.args.analyze:
            with psycopg.connect(f"{PG_SERVER}/{self.database}", autocommit=True) as conn:
                conn.execute(statement)

    def autovacuum(self) -> str:
        with psycopg.connect(f"{PG_SERVER}/postgres") as conn:
            return conn.execute("SHOW autovacuum").fetchone()[0]

    def start(self) -> None:
        if self.mode == "demo":
            command = ["manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"]
        else:
            app = ["floor_app:application", "--pythonpath", str(self.work)] if self.mode == "floor" else []
            command = ["-m", "gunicorn", *(app or ["rewardlab.wsgi:application"]), "-b", f"127.0.0.1:{self.port}"]
            command += ["--workers", str(self.workers), "--graceful-timeout", "5"]
        self.log = (self.work / "server.log").open("w")
        self.proc = subprocess.Popen(  # noqa: S603 - our own server
            [sys.executable, *command],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one, and Ctrl-C here is ours to handle
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.mode} server exited:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/api/me/")
                status = conn.getresponse().status
                conn.close()
                if status == 401:  # up, and the API answers an anonymous caller as it should
                    if self.mode != "demo":
                        self.warm_workers()
                    return
                raise RuntimeError(f"GET /api/me/ answered {status}, not 401:\n{self.log_tail()}")
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the {self.mode} server did not answer within 60 s:\n{self.log_tail()}")

    def warm_workers(self) -> None:
        """gunicorn's workers import the app lazily on their first request, and open their database connection on
        the first that queries; a few parallel requests that query (a token that is none: 401) make each worker do
        both before the clock starts."""

        def hit() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            if self.mode == "floor":
                conn.request("GET", "/healthz")
            else:
                conn.request("GET", "/api/me/", headers={"Authorization": "Token warm-up-is-not-a-token"})
            conn.getresponse().read()
            conn.close()

        for _round in range(3):
            threads = [threading.Thread(target=hit) for _ in range(self.workers * 2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def cpu(self) -> float:
        return proc_cpu(group_pids(self.proc.pid)) if self.proc else 0.0

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.work / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.db_created:
                admin_sql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
                self.db_created = False

    def stored(self) -> dict[tuple[str, str], list[int]]:
        """(username, client_token) → ids of the judgements stored under it, across the four kinds."""
        tables = ["annotate_demonstration", "annotate_ranking", "annotate_comparison", "annotate_rating"]
        query = " UNION ALL ".join(
            f"SELECT u.username, t.client_token, t.id FROM {table} t JOIN auth_user u ON u.id = t.labeler_id "  # noqa: S608 - our table names
            "WHERE u.username LIKE 'lv%'"
            for table in tables
        )
        if self.mode == "demo":
            conn = sqlite3.connect(self.work / "rewardlab.sqlite3")
            try:
                rows = conn.execute(query).fetchall()
            finally:
                conn.close()
        else:
            with psycopg.connect(f"{PG_SERVER}/{self.database}") as conn:
                rows = conn.execute(query).fetchall()
        stored: dict[tuple[str, str], list[int]] = {}
        for username, token, pk in rows:
            stored.setdefault((username, token), []).append(pk)
        return stored


# --- a labeler ----------------------------------------------------------------------------------------------


def submission_body(kind: str, candidates: list[dict], rng: random.Random) -> dict:
    ids = [c["id"] for c in candidates]
    if kind == "compare":
        body = {"choice": rng.choice(COMPARE_CHOICES), "both_bad": rng.random() < 0.05}
    elif kind == "rank":
        rng.shuffle(ids)
        tiers, i = [], 0
        while i < len(ids):  # now and then two replies tie
            width = 2 if i + 1 < len(ids) and rng.random() < 0.2 else 1
            tiers.append(ids[i : i + width])
            i += width
        body = {"tiers": tiers}
    elif kind == "demonstrate":
        body = {"text": f"A careful reply written by a bench labeler ({uuid.uuid4().hex[:8]})."}
    else:
        body = {"score": rng.randint(1, 7), "flags": []}
    body["time_spent_ms"] = rng.randint(2000, 60000)
    return body


def labeler_run(spec: dict, barrier) -> dict:
    """One labeler: sign in, wait for the others, then lease and submit until done. Returns what it saw."""
    rng = random.Random(spec["username"])
    conn = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=60)
    headers = {"Content-Type": "application/json"}
    out = {
        "username": spec["username"],
        "lease_ms": [],
        "submit_ms": [],
        "retry_ms": [],
        "acked": {},  # client_token → judgement id
        "submit_ms_by_kind": {},
        "errors": Counter(),
        "error_samples": [],
        "retry_ok": 0,
        "retry_bad": [],
        "dry": False,
        "requests": 0,
        "connects": 0,
    }

    def call(path: str, payload: dict) -> tuple[int, dict | None, float]:
        if not spec["keepalive"]:
            conn.close()
        if conn.sock is None:  # a new connection: the first, or the server closed the last one
            out["connects"] += 1
        body = json.dumps(payload)
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise
        elapsed = (time.perf_counter() - started) * 1000
        out["requests"] += 1
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
        parsed = (
            json.loads(data) if data and response.getheader("Content-Type", "").startswith("application/json") else None
        )
        return response.status, parsed, elapsed

    def error(where: str, status, data) -> None:
        out["errors"][f"{where} {status}"] += 1
        if len(out["error_samples"]) < 3:
            out["error_samples"].append(f"{where} {status}: {json.dumps(data)[:300] if data is not None else ''}")

    def one_task(done: int) -> int | None:
        """Lease one task and submit it (and every RETRY_EVERY-th submission again): 1 if acknowledged, None when
        nothing is left to lease."""
        status, lease, elapsed = call(f"/api/projects/{PROJECT}/lease/", {})
        out["lease_ms"].append(elapsed)
        if status == 204:
            out["dry"] = True
            return None
        if status != 200:
            error("lease", status, lease)
            return 0
        kind = lease["kind"]
        if spec["think"]:  # reading the task and judging it: exponential, cut at five times the mean
            time.sleep(min(rng.expovariate(1 / spec["think"]), 5 * spec["think"]))
        body = submission_body(kind, lease["candidates"], rng)
        body["client_token"] = token = uuid.uuid4().hex
        path = f"/api/assignments/{lease['assignment']['id']}/submit/"
        try:
            status, data, elapsed = call(path, body)
        except (OSError, http.client.HTTPException) as exc:
            # Lost on the way: sent again with its token, as a real client would (the stored one, if any, answers).
            error("submit", type(exc).__name__, None)
            status, data, elapsed = call(path, body)
        out["submit_ms"].append(elapsed)
        out["submit_ms_by_kind"].setdefault(kind, []).append(elapsed)
        if status not in (200, 201) or not data or "annotation" not in data:
            error("submit", status, data)
            return 0
        judgement = data["annotation"]["id"]
        out["acked"][token] = judgement
        if (done + 1) % RETRY_EVERY == 0:  # the idempotency check: the same token again
            status, again, elapsed = call(path, body)
            out["retry_ms"].append(elapsed)
            same = again is not None and again.get("annotation", {}).get("id") == judgement
            if not spec["repeats_checked"]:
                pass  # a floor that stores nothing cannot tell a repeat: sent for the same load, not judged
            elif status == 200 and same and again.get("created") is False:
                out["retry_ok"] += 1
            else:
                out["retry_bad"].append(f"{status}: {json.dumps(again)[:200]}")
        return 1

    try:
        status, data, _ = call("/api/auth/token/", {"username": spec["username"], "password": spec["password"]})
    except (OSError, http.client.HTTPException) as exc:
        status, data = type(exc).__name__, None
    if status != 200:
        error("token", status, data)
        barrier.wait(timeout=BARRIER_TIMEOUT)
        out["start"] = out["end"] = time.monotonic()
        return out
    headers["Authorization"] = f"Token {data['token']}"
    cpu0 = resource.getrusage(resource.RUSAGE_THREAD if spec["threads"] else resource.RUSAGE_SELF)
    barrier.wait(timeout=BARRIER_TIMEOUT)
    out["start"] = time.monotonic()
    deadline = out["start"] + spec["seconds"]
    if spec["think"]:  # labelers who think do not all start in the same millisecond
        time.sleep(rng.uniform(0, spec["think"]))
    done = 0
    while done < spec["submissions"] and time.monotonic() < deadline:
        try:
            acknowledged = one_task(done)
            if acknowledged is None:
                break
            done += acknowledged
        except (OSError, http.client.HTTPException) as exc:
            error("connection", type(exc).__name__, None)
        except (KeyError, TypeError, ValueError) as exc:  # an answer of the wrong shape
            error("client", f"{type(exc).__name__} {exc}", None)
    out["end"] = time.monotonic()
    cpu1 = resource.getrusage(resource.RUSAGE_THREAD if spec["threads"] else resource.RUSAGE_SELF)
    out["cpu"] = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    conn.close()
    return out


def _process_main(spec: dict, barrier, results) -> None:
    results.put(labeler_run(spec, barrier))


def run_level(server: Server, names: list[str], args, think: float) -> tuple[list[dict], dict]:
    """Run one level; returns the labelers' records and the CPU seconds the client, the server and PostgreSQL
    spent from the labelers' common start (after sign-in: a password hash is ~0.3 s of CPU) to the last one's end."""
    specs = [
        {
            "username": name,
            "password": PASSWORD,
            "port": server.port,
            "submissions": args.submissions,
            "seconds": args.seconds,
            "threads": args.client == "threads",
            "keepalive": args.keepalive,
            "think": think,
            "repeats_checked": server.mode != "floor" or args.floor_write,
        }
        for name in names
    ]

    def snapshot() -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "client": usage.ru_utime + usage.ru_stime,
            "server": server.cpu(),
            "pg": proc_cpu(postgres_pids()) if server.mode != "demo" else 0.0,
            "machine": machine_busy(),
        }

    if args.client == "threads":
        barrier = threading.Barrier(len(specs) + 1)  # the labelers and this thread, which starts the clocks
        results: list[dict] = []
        lock = threading.Lock()

        def run(spec: dict) -> None:
            result = labeler_run(spec, barrier)
            with lock:
                results.append(result)

        threads = [threading.Thread(target=run, args=(spec,), daemon=True) for spec in specs]
        for thread in threads:
            thread.start()
        barrier.wait(timeout=BARRIER_TIMEOUT)
        before = snapshot()
        for thread in threads:
            thread.join()
        after = snapshot()
        return results, {key: after[key] - before[key] for key in before}
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(len(specs) + 1), context.Queue()
    procs = [context.Process(target=_process_main, args=(spec, barrier, queue), daemon=True) for spec in specs]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT)
        before = snapshot()
        results = [queue.get(timeout=args.seconds + 300) for _ in procs]
        after = snapshot()
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
    cpu = {key: after[key] - before[key] for key in before}
    cpu["client"] = sum(r.get("cpu", 0.0) for r in results)  # each process's own, from its start to its end
    return results, cpu


# --- figures ------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def three(values: list[float]) -> str:
    return "/".join(f"{pct(values, q):.1f}" if values else "-" for q in (50, 95, 99))


HEADER = (
    f"{'mode':<11}{'think s':>7}{'labelers':>9}{'subs':>7}{'subs/s':>8}  "
    f"{'lease p50/p95/p99 ms':<22}{'submit p50/p95/p99 ms':<23}"
    f"{'errors':>6}{'conn/req':>9}{'busy':>6}  CPU ms/sub: client/server/pg/other"
)


def row(mode: str, think: float, level: int, results: list[dict], cpu: dict) -> tuple[str, dict]:
    lease = [v for r in results for v in r["lease_ms"]]
    submit = [v for r in results for v in r["submit_ms"]]
    subs = sum(len(r["acked"]) for r in results)
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    errors = sum(sum(r["errors"].values()) for r in results)
    requests = sum(r["requests"] for r in results)
    connects = sum(r["connects"] for r in results)
    cpu["other"] = cpu["machine"] - cpu["client"] - cpu["server"] - cpu["pg"]
    per = [1000 * cpu[key] / subs if subs else float("nan") for key in ("client", "server", "pg", "other")]
    line = (
        f"{mode:<11}{think:>7g}{level:>9}{subs:>7}{subs / wall if wall else 0:>8.1f}  "
        f"{three(lease):<22}{three(submit):<23}"
        f"{errors:>6}{connects / requests if requests else 0:>9.2f}{cpu['machine'] / wall if wall else 0:>6.2f}  "
        + " / ".join(f"{value:.1f}" for value in per)
    )
    return line, {"lease": lease, "submit": submit, "subs": subs, "wall": wall, "server_ms": per[1]}


def ratio(ours: float, floor: float) -> str:
    return f"{ours / floor:.1f}x" if floor and not math.isnan(floor) and not math.isnan(ours) else "-"


def floor_lines(figures: dict, thinks: list[float], levels: list[int]) -> list[str]:
    """RewardLab (production) beside the floor, level by level, and the targets against it."""
    lines = [
        "",
        "RewardLab (production) / floor:",
        f"{'think s':>7}{'labelers':>9}  {'subs/s: production / floor = share':<36}"
        f"{'lease p50, p99':<18}{'submit p50, p99':<18}server CPU ms/sub",
    ]
    for think in thinks:
        for level in levels:
            ours, floor = figures.get(("production", think, level)), figures.get(("floor", think, level))
            if not ours or not floor:
                continue
            rate, floor_rate = ours["subs"] / ours["wall"], floor["subs"] / floor["wall"]
            times = [
                f"{ratio(pct(ours[name], q), pct(floor[name], q))}" for name in ("lease", "submit") for q in (50, 99)
            ]
            lines.append(
                f"{think:>7g}{level:>9}  {f'{rate:.1f} / {floor_rate:.1f} = {rate / floor_rate:.0%}':<36}"
                f"{', '.join(times[:2]):<18}{', '.join(times[2:]):<18}"
                f"{ours['server_ms']:.1f} / {floor['server_ms']:.1f} = {ratio(ours['server_ms'], floor['server_ms'])}"
            )
    ours, floor = figures.get(("production", 0.0, 1)), figures.get(("floor", 0.0, 1))
    if ours and floor:
        share = (ours["subs"] / ours["wall"]) / (floor["subs"] / floor["wall"])
        lines.append(
            f"target: 1 labeler, think 0, production at >= {TARGET_FLOOR_RATE:.0%} of the floor's submissions/s: "
            f"{share:.0%} {'met' if share >= TARGET_FLOOR_RATE else 'NOT met'}"
        )
    else:
        lines.append("target: 1 labeler against the floor: not run (needs production and floor at level 1, think 0)")
    ours, floor = figures.get(("production", 0.0, 8)), figures.get(("floor", 0.0, 8))
    if ours and floor:
        for name in ("lease", "submit"):
            times = pct(ours[name], 99) / pct(floor[name], 99)
            lines.append(
                f"target: 8 labelers, think 0, production {name} p99 <= {TARGET_FLOOR_P99:g}x the floor's: "
                f"{pct(ours[name], 99):.1f} / {pct(floor[name], 99):.1f} ms = {times:.1f}x "
                f"{'met' if times <= TARGET_FLOOR_P99 else 'NOT met'}"
            )
    else:
        lines.append("target: 8 labelers against the floor: not run (needs production and floor at level 8, think 0)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modes",
        default="production,floor",
        help="comma-separated: demo, production, floor (default production,floor)",
    )
    parser.add_argument("--labelers", default=None, help="comma-separated levels (default 1,8,16; --quick 1,4)")
    parser.add_argument("--submissions", type=int, default=None, help="per labeler (default 150; --quick 20)")
    parser.add_argument("--seconds", type=float, default=None, help="per level at most (default 60; --quick 15)")
    parser.add_argument("--prompts", type=int, default=None, help="to import (default 1500; --quick 200)")
    parser.add_argument(
        "--think",
        default=None,
        help="comma-separated mean think times in seconds, each a series of levels (default 0,2; --quick 0): "
        "0 is back to back (the machine's capacity); t > 0 waits an exponential time of mean t (cut at 5t) between "
        "getting a task and submitting it, as a labeler reads and judges",
    )
    parser.add_argument("--gunicorn-workers", type=int, default=0, help="default 2 × cores + 1")
    parser.add_argument(
        "--floor-write",
        action="store_true",
        help="the floor's submit is one INSERT of its token (committed, idempotent) instead of one SELECT",
    )
    parser.add_argument(
        "--floor-bare",
        action="store_true",
        help="the floor without the project's settings: no middleware, no apps (default: the project's settings)",
    )
    parser.add_argument("--client", choices=["threads", "processes"], default="threads", help="one labeler is …")
    parser.add_argument("--quick", action="store_true", help="smoke run: levels 1,4, few submissions")
    parser.add_argument(
        "--no-keepalive",
        dest="keepalive",
        action="store_false",
        help="a new connection for every request (the demo server stalls ~40 ms per request on a kept-alive one)",
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="production: no VACUUM ANALYZE after the import and no ANALYZE before each level",
    )
    args = parser.parse_args()
    args.labelers = args.labelers or ("1,4" if args.quick else "1,8,16")
    args.submissions = args.submissions or (20 if args.quick else 150)
    args.seconds = args.seconds or (15 if args.quick else 60)
    args.prompts = args.prompts or (200 if args.quick else 1500)
    args.think = args.think or ("0" if args.quick else "0,2")
    levels = [int(x) for x in args.labelers.split(",")]
    thinks = [float(x) for x in args.think.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in ("demo", "production", "floor"):
            parser.error(f"unknown mode {mode!r}")
    series = [(think, level) for think in thinks for level in levels]
    names = {
        (think, level): [f"lv{j}_{level}_{i:02d}" for i in range(level)] for j, (think, level) in enumerate(series)
    }

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model}), load average {os.getloadavg()[0]:.2f}; "
        f"client: {args.client}, {'keep-alive' if args.keepalive else 'a new connection per request'}; "
        f"levels {levels}; think {thinks} s; {args.submissions} submissions or {args.seconds:.0f} s per labeler; "
        f"{args.prompts} + 51 prompts"
    )
    lines, verdicts, figures, notes = [], [], {}, []
    for mode in modes:
        work = Path(tempfile.mkdtemp(prefix=f"rewardlab-load-{mode}-"))
        server = Server(mode, work, args, [n for key in series for n in names[key]])
        try:
            took = server.setup()
            server.start()
            what = "runserver, SQLite, DEBUG on" if mode == "demo" else (
                f"gunicorn {server.workers} sync workers, PostgreSQL (autovacuum {server.autovacuum()}; "
                f"{'ANALYZE before each level' if args.analyze else 'no ANALYZE'}), DEBUG off"
            )  # fmt: skip
            if mode == "floor":
                query = "INSERT … ON CONFLICT of its token" if args.floor_write else "SELECT 1"
                stack = "no middleware, no apps" if args.floor_bare else "the project's settings and middleware"
                what = (
                    f"a bare Django view per address, one query each (lease SELECT 1, submit {query}), {stack}; {what}"
                )
            print(f"{mode}: {what}; set up in {took:.1f} s; listening on 127.0.0.1:{server.port}", flush=True)
            acked: dict[tuple[str, str], int] = {}
            retries_ok = retries = 0
            by_kind: dict[str, list[float]] = {}
            for think, level in series:
                server.analyze()
                results, cpu = run_level(server, names[(think, level)], args, think)
                line, figures[(mode, think, level)] = row(mode, think, level, results, cpu)
                print(line, flush=True)
                lines.append(line)
                for r in results:
                    for token, judgement in r["acked"].items():
                        acked[(r["username"], token)] = judgement
                    retries_ok += r["retry_ok"]
                    retries += r["retry_ok"] + len(r["retry_bad"])
                    for kind, values in r["submit_ms_by_kind"].items():
                        by_kind.setdefault(kind, []).extend(values)
                    where = f"{mode} think {think:g} s, {level}"
                    for sample in r["error_samples"]:
                        notes.append(f"{where}: {r['username']}: {sample}")
                    notes += [f"{where}: {r['username']}: repeat gave {bad}" for bad in r["retry_bad"]]
                    if r["dry"]:
                        notes.append(f"{where}: {r['username']} ran out of tasks (204)")
            kinds = ", ".join(
                f"{kind} {len(values)} ({pct(values, 50):.1f}/{pct(values, 99):.1f})"
                for kind, values in sorted(by_kind.items())
            )
            if mode == "floor":
                verdict = (
                    f"verify floor: {len(acked)} acknowledged (the floor keeps no judgements to check); repeats "
                    + (f"{retries_ok}/{retries} answered 200 with the same id" if args.floor_write else "not judged")
                )
            else:
                stored = server.stored()
                lost = sum(1 for key in acked if key not in stored)
                doubled = sum(1 for ids in stored.values() if len(ids) > 1)
                wrong_id = sum(1 for key, pk in acked.items() if key in stored and pk not in stored[key])
                unacked = sum(1 for key in stored if key not in acked)
                verdict = (
                    f"verify {mode}: {len(acked)} acknowledged, {sum(len(ids) for ids in stored.values())} stored "
                    f"for these labelers: lost {lost}, doubled {doubled}, other id {wrong_id}, stored unacknowledged "
                    f"{unacked}; repeats {retries_ok}/{retries} answered 200 with the same judgement"
                    f"{'  [OK]' if lost == doubled == wrong_id == 0 and retries_ok == retries else '  [FAILED]'}\n"
                    f"  submit by kind, all levels (n, p50/p99 ms): {kinds}"
                )
            print(verdict, flush=True)
            verdicts.append(verdict)
            server.stop()
            errors_in_log = [line for line in server.log_tail(10**6).splitlines() if SERVER_ERROR.search(line)]
            if errors_in_log:
                notes.append(f"{mode}: {len(errors_in_log)} 5xx/traceback lines in the server log, e.g.:")
                notes += [f"  {line}" for line in errors_in_log[:5]]
        except KeyboardInterrupt:
            print(f"\ninterrupted: stopping the {mode} server and removing its data", file=sys.stderr)
            raise SystemExit(130) from None
        finally:
            server.close()
            shutil.rmtree(work, ignore_errors=True)

    print("\n" + HEADER)
    print("\n".join(lines))
    print("\n".join(verdicts))
    for think in thinks:
        if ("production", think, 16) not in figures:
            continue
        f = figures[("production", think, 16)]
        for name in ("lease", "submit"):
            p99 = pct(f[name], 99)
            print(
                f"target: production, 16 labelers, think {think:g} s, {name} p99 < {TARGET_P99_MS:.0f} ms: "
                f"{p99:.1f} ms {'met' if p99 < TARGET_P99_MS else 'NOT met'}"
            )
    if "floor" in modes and "production" in modes:
        print("\n".join(floor_lines(figures, thinks, levels)))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if notes:
        print("notes:\n  " + "\n  ".join(notes[:40]))


if __name__ == "__main__":
    main()
