"""Live chat over HTTP: time from "send" to both replies shown, p50/p95, with 1 and 4 concurrent chats.

    .venv/bin/python bench/chat.py                                      # embedded broker; 1 and 4 chats, 5 turns each
    .venv/bin/python bench/chat.py --broker redis://127.0.0.1:6379/5    # the same on Redis
    .venv/bin/python bench/chat.py --chats 1,2,4,8 --turns 10 --max-tokens 64 --server gunicorn --keep

Set up from nothing in a temporary `REWARDLAB_VAR_DIR`, as `make demo` runs: SQLite, the embedded SQLAlchemy broker
on an SQLite file (it polls once a second; `--broker URL` uses another, e.g. Redis), `migrate`, `load_demo`, one
`add_user --role labeler` per simulated chat, chat enabled on the demo project (`chat_max_tokens` from
`--max-tokens`, default 32; turns and concurrency high enough never to refuse the bench). The serving policy is a
tiny SFT of the embedded policy (1 epoch on 12 demonstrations the demo labeler writes), trained in-process in
`manage.py shell` before any worker starts (its Celery message is never sent, so it runs once) and promoted.
Then `manage.py runserver 127.0.0.1:<free port> --noreload` (or `--server gunicorn`: sync workers, DEBUG off) and
one Celery worker `-Q inference --concurrency 1` (the pool of `scripts/demo.sh`, prefork; `--pool solo` to
compare), with the same environment. Loopback only; everything started is stopped, and the temporary directory
removed (unless `--keep`), also on Ctrl-C and errors.

What is measured: N chats at once (`--chats 1,4`, one level after the other, fresh labelers each), each a thread
with its own `requests.Session`, signed in through the login form (not timed). A chat posts its goal and first
message to `/projects/demo/chat/` (a 302 to the chat page, which it then GETs as a browser would), then for each
of M turns (`--turns`) polls the page as htmx does: `GET` with `HX-Request: true` (the `#chat` partial), the next
one `--poll-ms` (300, the page's interval) after the previous answer, until the partial shows
`data-turn-state="ready"` with both `<article class="candidate" data-side="A"|"B">`. Then it votes (POST
`.../turns/<id>/vote/`, an 8-point choice and the page's fresh `client_token`) and sends its next message (POST
`.../send/` with `HX-Request`, answered with the polling partial). Every POST carries the page's CSRF token in
`X-CSRFToken`, as the page's `hx-headers` do. After the last turn the chat is ended with a rating (not timed).

send→shown: from right before the POST that sends the message (the chat's start for turn 1, `send/` after) to the
poll answer that shows both replies. From `annotate_chatturn` afterwards, each turn splits into queue
(requested_at → started_at: the broker and a busy worker), generation (started_at → finished_at: two replies and
their storing) and rest (send→shown minus both: the POST, the enqueue, waiting for the next poll, the page).
replies/s: replies shown (2 per ready turn) over the level's wall time (the chats' common start to the last one's
end, votes included). failed: turns that ended `failed` (their errors are printed) or were not ready within the
time cap (`--seconds` per level). after written: finished_at → shown, the part of rest that is waiting for the
next poll (0 to `--poll-ms`) and the poll itself. polls/turn: partial GETs per turn. busy cores: CPU seconds over
the level's wall time, read from /proc, of the web server, the inference worker (with its pool), the chats (this
process) and other (the rest of the machine: another job on a shared machine slows generation, which wants both
cores). The run's very first turn loads the policy in the worker (and imports torch): it is left out of the
percentiles and printed on its own.
"""

from __future__ import annotations

import argparse
import math
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
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "demo"
PASSWORD = "bench-chat-pass-7x"  # noqa: S105 - benchmark users in a throwaway database
OWN_PREFIXES = ("DJANGO_", "REWARDLAB_", "CELERY_", "DATABASE_", "AXES_")
COMPARE_CHOICES = [-4, -3, -2, -1, 1, 2, 3, 4]
SERVER_ERROR = re.compile(r'" 5\d\d \d|"status": 5\d\d|Traceback|\[CRITICAL\]|WORKER TIMEOUT')
# The serving policy: the embedded tiny policy fine-tuned for one epoch (tests/rewardlab/conftest.py's SFT_TINY).
SFT_CONFIG = {"device": "cpu", "seed": 0, "epochs": 1, "batch_size": 8, "max_length": 128, "eval_share": 0.25}

SETUP_CODE = """
import json
from unittest import mock
from django.contrib.auth import get_user_model
from django.core.management import call_command
from annotate import services as labeling
from annotate.models import Project
from training import runner, services

call_command("load_demo")
for name in {names!r}:
    call_command("add_user", name, role="labeler", password={password!r})
project = Project.objects.get(slug={project!r})
project.chat_enabled = True
project.chat_max_tokens = {max_tokens}
project.chat_max_turns = {max_turns}
project.chat_max_concurrent = 50
project.save()
users = get_user_model().objects
labeler = users.get(username="labeler")
for n in range(12):
    lease = labeling.task_lease_next(labeler=labeler, project=project, kinds=["demonstrate"])
    text = f"Happy to help. Here is a short, careful answer ({{n}}): first the key point, then one example."
    labeling.demonstration_submit(labeler=labeler, assignment_id=lease.pk, text=text, client_token=f"bench-{{n}}")
# Trained here, before any worker runs: its Celery message is not sent, so nothing can take the run again.
with mock.patch("training.queue.run_send"):
    run = services.run_start(kind="sft", project=project, config={config!r}, created_by=users.get(username="admin"))
status = runner.run_execute(run_id=run.pk, worker="bench")
run.refresh_from_db()
assert status == "succeeded", run.error
version = services.model_version_promote(version=run.output_version)
print("SERVING " + json.dumps({{"version": str(version), "path": version.artifact_path}}))
"""


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores; idle and iowait excluded) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def group_cpu(pgid: int) -> float:
    """CPU seconds of the processes in this process group, with their reaped children."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if int(fields[2]) == pgid:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


# --- the app: set up, servers, worker -----------------------------------------------------------------------


class Demo:
    """The demo from nothing in `work`, its web server and its inference worker, each in its own process group
    (stopped as one; Ctrl-C here is ours to handle)."""

    def __init__(self, work: Path, args):
        self.work, self.args = work, args
        self.port = free_port()
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.broker = args.broker or f"sqla+sqlite:///{work / 'broker.sqlite3'}"
        self.database = work / "rewardlab.sqlite3"
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "rewardlab.settings",
                "REWARDLAB_VAR_DIR": str(work),
                "DATABASE_URL": f"sqlite:///{self.database}",
                "CELERY_BROKER_URL": self.broker,
                "PYTHONUNBUFFERED": "1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        if args.server == "gunicorn":
            env.update(
                {
                    "DJANGO_DEBUG": "0",
                    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                    "DJANGO_SECURE_SSL_REDIRECT": "0",
                    "DJANGO_SECURE_COOKIES": "0",
                }
            )
        self.env = env

    def manage(self, *command: str) -> str:
        result = subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *command], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {command[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def setup(self, names: list[str]) -> str:
        self.manage("migrate", "--noinput", "-v", "0")
        if self.args.server == "gunicorn":
            self.manage("collectstatic", "--noinput", "-v", "0")
        code = SETUP_CODE.format(
            names=names,
            password=PASSWORD,
            project=PROJECT,
            max_tokens=self.args.max_tokens,
            max_turns=max(self.args.turns, 1),
            config=SFT_CONFIG,
        )
        out = self.manage("shell", "-c", code)
        return next((line[8:] for line in out.splitlines() if line.startswith("SERVING ")), "?")

    def purge(self) -> None:
        """Empty the `inference` queue on a shared broker (a message left by another run would name a turn id of
        ours); the embedded broker is a file of our own."""
        if self.args.broker:
            subprocess.run(
                [sys.executable, "-m", "celery", "-A", "rewardlab.celery", "purge", "-f", "-Q", "inference"],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                timeout=60,
            )

    def _start(self, command: list[str], log: str) -> subprocess.Popen:
        return subprocess.Popen(  # noqa: S603 - our own server and worker
            [sys.executable, *command],
            cwd=ROOT,
            env=self.env,
            stdout=(self.work / log).open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        if self.args.server == "gunicorn":
            workers = str(2 * (os.cpu_count() or 1) + 1)
            command = ["-m", "gunicorn", "rewardlab.wsgi:application", "-b", f"127.0.0.1:{self.port}"]
            command += ["--workers", workers, "--graceful-timeout", "5"]
        else:
            command = ["manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"]
        self.server = self._start(command, "server.log")
        worker = ["-m", "celery", "-A", "rewardlab.celery", "worker", "-Q", "inference", "--concurrency", "1"]
        worker += ["--pool", self.args.pool, "--loglevel", "INFO", "--hostname", "inference@%h"]
        self.worker = self._start(worker, "worker.log")
        deadline = time.monotonic() + 120
        server_up = worker_up = False
        while not (server_up and worker_up):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not up in 120 s:\n{self.tail('server.log')}\n{self.tail('worker.log')}")
            for proc, log in ((self.server, "server.log"), (self.worker, "worker.log")):
                if proc.poll() is not None:
                    raise RuntimeError(f"{log[:-4]} exited:\n{self.tail(log)}")
            if not server_up:
                try:
                    server_up = requests.get(f"{self.url}/accounts/login/", timeout=10).status_code == 200
                except requests.RequestException:
                    pass
            worker_up = worker_up or " ready." in (self.work / "worker.log").read_text(errors="replace")
            time.sleep(0.2)
        if self.args.server == "gunicorn":  # each worker imports the app on its first request
            hits = [threading.Thread(target=requests.get, args=(f"{self.url}/accounts/login/",)) for _ in range(15)]
            for hit in hits:
                hit.start()
            for hit in hits:
                hit.join()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the web server, the worker, this process (the chats) and the whole machine."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "server": group_cpu(self.server.pid) if self.server else 0.0,
            "worker": group_cpu(self.worker.pid) if self.worker else 0.0,
            "client": usage.ru_utime + usage.ru_stime,
            "machine": machine_busy(),
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, log: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.work / log).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        for name in ("worker", "server"):
            proc = getattr(self, name)
            if proc is None:
                continue
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
            setattr(self, name, None)

    def turns(self, chat_ids: list[int]) -> dict[tuple[int, int], dict]:
        """(chat id, turn number) → the turn's row: status, error and its times as Unix seconds."""
        if not chat_ids:
            return {}
        marks = ",".join("?" * len(chat_ids))
        conn = sqlite3.connect(self.database)
        try:
            rows = conn.execute(
                "SELECT chat_id, number, status, error, attempts, requested_at, started_at, finished_at "  # noqa: S608 - placeholders only
                f"FROM annotate_chatturn WHERE chat_id IN ({marks})",
                chat_ids,
            ).fetchall()
        finally:
            conn.close()

        def stamp(value) -> float:
            if not value:
                return float("nan")
            moment = datetime.fromisoformat(str(value))
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

        return {
            (chat, number): {
                "status": status,
                "error": error,
                "attempts": attempts,
                "requested": stamp(requested),
                "started": stamp(started),
                "finished": stamp(finished),
            }
            for chat, number, status, error, attempts, requested, started, finished in rows
        }


# --- a chat -------------------------------------------------------------------------------------------------

STATE = re.compile(r'data-turn-state="(\w+)"')
TOKEN = re.compile(r'"X-CSRFToken": "([^"]+)"')
VOTE = re.compile(r'/turns/(\d+)/vote/"')
CLIENT_TOKEN = re.compile(r'name="client_token" value="([0-9a-f]*)"')
MESSAGES = [
    "Can you help me plan a week of vegetarian dinners?",
    "Make it cheaper, please.",
    "Which of these keeps best for lunch the next day?",
    "Give me a shopping list for the first three days.",
    "Thanks. Any tips to cook faster on weeknights?",
    "How would I adapt this for a family of four?",
]


def shown(html: str) -> bool:
    return 'data-turn-state="ready"' in html and 'data-side="A"' in html and 'data-side="B"' in html


class Client:
    """One labeler in a browser: a session (cookies), the page's CSRF token, htmx's polling."""

    def __init__(self, base: str, username: str, poll_s: float):
        self.base, self.username, self.poll_s = base, username, poll_s
        self.session = requests.Session()
        self.token = ""
        self.requests = 0

    def _note_token(self, html: str) -> None:
        found = TOKEN.search(html)
        if found:
            self.token = found.group(1)

    def get(self, path: str, htmx: bool = False) -> requests.Response:
        headers = {"HX-Request": "true"} if htmx else {}
        self.requests += 1
        response = self.session.get(self.base + path, headers=headers, timeout=60, allow_redirects=False)
        if not htmx:
            self._note_token(response.text)
        return response

    def post(self, path: str, data: dict, htmx: bool = True) -> requests.Response:
        headers = {"X-CSRFToken": self.token or self.session.cookies.get("csrftoken", "")}
        if htmx:
            headers["HX-Request"] = "true"
        self.requests += 1
        return self.session.post(self.base + path, data=data, headers=headers, timeout=60, allow_redirects=False)

    def login(self) -> None:
        page = self.session.get(f"{self.base}/accounts/login/", timeout=60).text
        field = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        response = self.session.post(
            f"{self.base}/accounts/login/",
            data={"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": field.group(1), "next": ""},
            timeout=60,
            allow_redirects=False,
        )
        if response.status_code != 302 or "sessionid" not in self.session.cookies:
            raise RuntimeError(f"{self.username}: login answered {response.status_code}")
        self.get(f"/projects/{PROJECT}/chat/")  # the chat home page: the (rotated) CSRF token in its hx-headers

    def wait_shown(self, page: str, html: str, deadline: float) -> tuple[str, int, str]:
        """Poll as htmx does until both replies are shown (or the turn failed, or the time is up): the final
        state, how many polls it took and the last answer."""
        polls = 0
        while True:
            if shown(html):
                return "ready", polls, html
            state = STATE.search(html)
            if state and state.group(1) == "failed":
                return "failed", polls, html
            if state is None or state.group(1) not in ("queued", "running"):
                return f"unexpected page ({state.group(1) if state else 'no turn state'})", polls, html
            if time.monotonic() + self.poll_s > deadline:
                return "timed out", polls, html
            time.sleep(self.poll_s)
            response = self.get(page, htmx=True)
            polls += 1
            if response.status_code != 200:
                return f"poll answered {response.status_code}", polls, response.text
            html = response.text


def chat_run(spec: dict, barrier: threading.Barrier, out: dict) -> None:
    rng = random.Random(spec["username"])
    client = Client(spec["base"], spec["username"], spec["poll_s"])
    out.update(username=spec["username"], turns=[], errors=[], chat=None)
    try:
        client.login()
    except Exception as exc:  # the others go on; this chat has nothing to measure
        out["errors"].append(f"login: {type(exc).__name__}: {exc}")
        barrier.wait()
        out["start"] = out["end"] = time.monotonic()
        return
    barrier.wait()
    out["start"] = time.monotonic()
    deadline = out["start"] + spec["seconds"]
    try:
        for number in range(1, spec["turns"] + 1):
            text = f"{MESSAGES[(number - 1) % len(MESSAGES)]} ({spec['username']}, turn {number})"
            wall0, t0 = time.time(), time.perf_counter()
            if number == 1:
                response = client.post(
                    f"/projects/{PROJECT}/chat/", {"goal": "Plan my meals for the week.", "text": text}, htmx=False
                )
                match = re.search(r"/chat/(\d+)/$", response.headers.get("Location", ""))
                if response.status_code != 302 or not match:
                    raise RuntimeError(f"chat start answered {response.status_code}: {response.text[:300]}")
                out["chat"] = int(match.group(1))
                page = f"/projects/{PROJECT}/chat/{out['chat']}/"
                response = client.get(page)  # the redirect, followed as a browser does: the full page
            else:
                response = client.post(f"{page}send/", {"text": text})
            if response.status_code != 200:
                raise RuntimeError(f"turn {number}: send answered {response.status_code}: {response.text[:300]}")
            state, polls, html = client.wait_shown(page, response.text, deadline)
            t1, wall1 = time.perf_counter(), time.time()
            out["turns"].append(
                {"number": number, "state": state, "ms": (t1 - t0) * 1000, "t0": wall0, "t1": wall1, "polls": polls}
            )
            if state != "ready":
                break
            turn = VOTE.search(html)
            token = CLIENT_TOKEN.search(html)
            vote = {
                "choice": rng.choice(COMPARE_CHOICES),
                "client_token": token.group(1) if token and token.group(1) else uuid.uuid4().hex,
                "edited_text": "",
                "time_spent_ms": rng.randint(3000, 20000),
            }
            response = client.post(f"{page}turns/{turn.group(1)}/vote/", vote)
            if response.status_code != 200 or STATE.search(response.text):
                raise RuntimeError(f"turn {number}: vote answered {response.status_code}: {response.text[:300]}")
        if out["chat"] is not None:
            response = client.post(f"{page}end/", {"rating": rng.randint(1, 7), "comment": ""})
            if response.status_code != 200 or "data-chat-ended" not in response.text:
                out["errors"].append(f"end answered {response.status_code}")
    except (requests.RequestException, RuntimeError, AttributeError) as exc:
        out["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        out["end"] = time.monotonic()
        out["requests"] = client.requests


def run_level(demo: Demo, names: list[str], args) -> tuple[list[dict], float, dict]:
    """N chats at once; returns their records, the level's wall time (common start to the last one's end) and the
    CPU seconds spent meanwhile (the web server, the worker, the chats, the machine and the rest of it)."""
    specs = [
        {
            "base": demo.url,
            "username": name,
            "poll_s": args.poll_ms / 1000,
            "turns": args.turns,
            "seconds": args.seconds,
        }
        for name in names
    ]
    barrier = threading.Barrier(len(specs) + 1)  # the chats and this thread: every chat signed in, then all start
    results: list[dict] = [{} for _ in specs]
    threads = [
        threading.Thread(target=chat_run, args=(spec, barrier, out), daemon=True)
        for spec, out in zip(specs, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=300)
    before = demo.cpu()
    for thread in threads:
        thread.join(timeout=args.seconds + 120)
    after = demo.cpu()
    wall = max(r.get("end", 0) for r in results) - min(r.get("start", 0) for r in results)
    cpu = {key: after[key] - before[key] for key in before}
    cpu["other"] = cpu["machine"] - cpu["server"] - cpu["worker"] - cpu["client"]
    return results, wall, cpu


HEADER = (
    f"{'chats':>5}{'turns':>6}  {'send→shown p50/p95/max ms':<27}{'queue p50/p95 ms':<18}"
    f"{'generation p50/p95 ms':<23}{'rest p50/p95 ms':<17}{'after written p50':>18}{'polls/turn':>11}"
    f"{'replies/s':>10}{'failed':>7}  busy cores: web/worker/chats/other"
)


def level_turns(results: list[dict], rows: dict) -> list[dict]:
    """The client's turns with the server's times: queue, generation, rest and after written (ms)."""
    turns = []
    for r in results:
        for t in r.get("turns", []):
            row = rows.get((r["chat"], t["number"]), {})
            queue = (row.get("started", math.nan) - row.get("requested", math.nan)) * 1000
            generation = (row.get("finished", math.nan) - row.get("started", math.nan)) * 1000
            turns.append(
                {
                    **t,
                    "chat": r["chat"],
                    "user": r["username"],
                    "row": row,
                    "queue": queue,
                    "generation": generation,
                    "rest": t["ms"] - queue - generation,
                    "after": (t["t1"] - row.get("finished", math.nan)) * 1000,
                }
            )
    return turns


def two(values: list[float], a: float = 50, b: float = 95) -> str:
    values = [v for v in values if not math.isnan(v)]
    return "/".join(ms(pct(values, q)) for q in (a, b))


def row_line(chats: int, turns: list[dict], wall: float, cpu: dict) -> str:
    ready = [t for t in turns if t["state"] == "ready"]
    measured = [t for t in ready if not t.get("warmup")]
    failed = len(turns) - len(ready)
    latency = [t["ms"] for t in measured]
    shown_ms = "/".join(ms(pct(latency, q)) for q in (50, 95)) + f"/{ms(max(latency) if latency else math.nan)}"
    return (
        f"{chats:>5}{len(measured):>6}  {shown_ms:<27}{two([t['queue'] for t in measured]):<18}"
        f"{two([t['generation'] for t in measured]):<23}{two([t['rest'] for t in measured]):<17}"
        f"{ms(pct([t['after'] for t in measured], 50)):>18}"
        f"{(sum(t['polls'] for t in measured) / len(measured) if measured else math.nan):>11.1f}"
        f"{(2 * len(ready) / wall if wall > 0 else math.nan):>10.2f}{failed:>7}  "
        + "/".join(
            f"{cpu[key] / wall if wall > 0 else math.nan:.2f}" for key in ("server", "worker", "client", "other")
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", default="1,4", help="comma-separated levels of concurrent chats (default 1,4)")
    parser.add_argument("--turns", type=int, default=5, help="turns (messages sent) per chat (default 5)")
    parser.add_argument("--max-tokens", type=int, default=32, help="the project's chat_max_tokens (default 32)")
    parser.add_argument("--poll-ms", type=int, default=300, help="the page's polling interval (default 300)")
    parser.add_argument("--seconds", type=float, default=300, help="time cap per level (default 300)")
    parser.add_argument("--broker", default="", help="Celery broker URL (default: the embedded SQLite one)")
    parser.add_argument("--server", choices=["runserver", "gunicorn"], default="runserver")
    parser.add_argument("--pool", choices=["prefork", "solo"], default="prefork", help="the inference worker's pool")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    args = parser.parse_args()
    levels = [int(x) for x in args.chats.split(",") if x.strip()]
    if args.turns < 1 or not levels or min(levels) < 1:
        parser.error("--turns and every level of --chats must be at least 1")
    names = {(i, n): [f"chat{i}_{n}_{j:02d}" for j in range(n)] for i, n in enumerate(levels)}

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rewardlab-chat-"))
    demo = Demo(work, args)
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    broker = args.broker or "embedded SQLAlchemy/SQLite (polls once a second)"
    print(
        f"machine: {os.cpu_count()} cores ({cpu_model}), load average {os.getloadavg()[0]:.2f}; broker: {broker}; "
        f"server: {args.server}; inference worker: 1, pool {args.pool}, concurrency 1; levels {levels} chats, "
        f"{args.turns} turns each, chat_max_tokens {args.max_tokens}, polling every {args.poll_ms} ms",
        flush=True,
    )
    lines, failures, notes, all_turns = [], [], [], {}
    try:
        started = time.perf_counter()
        serving = demo.setup([n for key in names for n in names[key]])
        took = time.perf_counter() - started
        print(f"set up (migrate, load_demo, users, a tiny SFT trained and promoted) in {took:.1f} s: serving {serving}")
        demo.purge()
        demo.start()
        print(f"web on 127.0.0.1:{demo.port} and the inference worker up; work dir {work}", flush=True)
        results_by_level = {}
        for key in names:
            results, wall, cpu = run_level(demo, names[key], args)
            results_by_level[key] = (results, wall, cpu)
            done = sum(len(r.get("turns", [])) for r in results)
            print(f"  {key[1]} chat(s): {done} turns in {wall:.1f} s", flush=True)
            for r in results:
                notes += [f"{r.get('username')}: {error}" for error in r.get("errors", [])]
        rows = demo.turns([r["chat"] for results, _, _ in results_by_level.values() for r in results if r.get("chat")])
        for key, (results, _, _) in results_by_level.items():
            all_turns[key] = level_turns(results, rows)
        # The turn the worker took first loaded the policy (and imported torch): the warm-up.
        first = min(
            (t for turns in all_turns.values() for t in turns if not math.isnan(t["row"].get("started", math.nan))),
            key=lambda t: t["row"]["started"],
            default=None,
        )
        if first is not None:
            first["warmup"] = True
        for key, (_, wall, cpu) in results_by_level.items():
            lines.append(row_line(key[1], all_turns[key], wall, cpu))
            for t in all_turns[key]:
                if t["state"] != "ready":
                    error = t["row"].get("error") or ""
                    failures.append(
                        f"{key[1]} chats, {t['user']} turn {t['number']}: {t['state']} "
                        f"(db: {t['row'].get('status', '?')}, attempts {t['row'].get('attempts', '?')}) {error}"
                    )
        demo.stop()
        for log in ("server.log", "worker.log"):
            bad = [line for line in demo.tail(log, 10**6).splitlines() if SERVER_ERROR.search(line)]
            if log == "worker.log":
                bad += [line for line in demo.tail(log, 10**6).splitlines() if "ERROR/" in line]
            if bad:
                notes.append(f"{log}: {len(bad)} error lines, e.g.:")
                notes += [f"  {line[:300]}" for line in bad[:5]]
        print("\n" + HEADER)
        print("\n".join(lines))
        if first is not None:
            print(
                f"first turn (loads the policy; {first['user']} turn {first['number']}): "
                f"send→shown {ms(first['ms'])} ms = queue {ms(first['queue'])} + "
                f"generation {ms(first['generation'])} + rest {ms(first['rest'])}"
            )
        print(f"failed turns: {len(failures)}" + "".join(f"\n  {f}" for f in failures))
        print(f"total {time.perf_counter() - began:.1f} s; load average after: {os.getloadavg()[0]:.2f}")
        if notes:
            print("notes:\n  " + "\n  ".join(notes[:40]))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the server and the worker, removing the data", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        demo.stop()
        try:
            demo.purge()
        finally:
            if args.keep:
                print(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
