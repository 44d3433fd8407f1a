"""Lease-and-submit latency on PostgreSQL with 1, 8 and 16 concurrent labelers at 10k, 100k and 1M open tasks.

    .venv/bin/python bench/lease.py                      # 10k, 100k, 1M tasks; 1, 8, 16 labelers
    .venv/bin/python bench/lease.py --sizes 10000 --labelers 1 16 --ops 200

It uses its own database, `rewardlab_bench` on the PostgreSQL of BENCH_DATABASE_URL (default: the local server,
trust auth), and drops it at the end. Each labeler is its own process with its own connection, like a web worker;
each operation is `task_lease_next` followed by `rating_submit`, back to back (no think time). Rating tasks need
an overlap of 3, and the 5,000 highest-priority tasks are already done, as in a project under way.

Side by side, in the same run, on the same data: the project's queue (a partial index over open tasks, kept by a
per-task count of taken places) and the baseline it replaced (the same filters computed with a correlated count
of assignments per task, over a plain index on project, kind, active, priority, age).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["DJANGO_SETTINGS_MODULE"] = "rewardlab.settings"
SERVER = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432")
os.environ["DATABASE_URL"] = f"{SERVER}/rewardlab_bench"

import django  # noqa: E402
import psycopg  # noqa: E402

PROMPTS = 1000
DONE_AT_HEAD = 5000
OVERLAP = 3


def admin_sql(statement: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(statement)


def setup_database() -> None:
    admin_sql("DROP DATABASE IF EXISTS rewardlab_bench")
    admin_sql("CREATE DATABASE rewardlab_bench")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if os.environ.get("BENCH_SYNCHRONOUS_COMMIT") == "off":  # to tell the disk's flush latency from the code's
        admin_sql("ALTER DATABASE rewardlab_bench SET synchronous_commit = off")


def load(size: int) -> tuple[int, list[int]]:
    """A project with `size` rating tasks over PROMPTS prompts; the DONE_AT_HEAD highest-priority tasks are done.
    Returns the project id and the labelers' ids."""
    from django.db import connection

    from annotate import services
    from annotate.models import ImportSource, Message
    from annotate.roles import RoleName

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE annotate_rating, annotate_comparison, annotate_ranking, annotate_demonstration, "
            "annotate_assignment, annotate_taskcandidate, annotate_task, annotate_message, annotate_importsource, "
            "annotate_project CASCADE"
        )
    project = services.project_create(
        name=f"Bench {size}",
        slug=f"bench-{size}",
        import_task_kinds=["rate"],
        overlap_rate=OVERLAP,
        kind_mix={"rate": 1},
    )
    source = ImportSource.objects.create(project=project, name="bench", sha256="0" * 64)
    prompts = Message.objects.bulk_create(
        Message(project=project, role="user", text=f"Prompt {i}", path_hash=f"u{i}", author_import=source)
        for i in range(PROMPTS)
    )
    Message.objects.bulk_create(
        Message(
            project=project,
            parent=p,
            role="assistant",
            text=f"Reply to {p.text}",
            depth=1,
            path_hash=f"a{i}",
            author_import=source,
        )
        for i, p in enumerate(prompts)
    )
    labelers = []
    for i in range(16 + OVERLAP):
        name = f"bench-labeler-{i}"
        user = services.user_create_with_role(username=name, password=None, role=RoleName.LABELER, update=True)
        labelers.append(user.pk)
    anchors = [p.pk for p in prompts]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotate_task (project_id, kind, anchor_id, candidates_key, required_labelers, taken, priority,
                                       is_gold, is_active, created_at)
            SELECT %s, 'rate', (%s::int[])[1 + g %% %s], md5(g::text), %s, 0,
                   CASE WHEN g <= %s THEN 1.0 ELSE 0.0 END, false, true,
                   now() - interval '30 days' + g * interval '1 millisecond'
            FROM generate_series(1, %s) g
            """,
            [project.pk, anchors, PROMPTS, OVERLAP, DONE_AT_HEAD, size],
        )
        cursor.execute(
            """
            INSERT INTO annotate_taskcandidate (task_id, message_id, position)
            SELECT t.id, r.id, 0 FROM annotate_task t JOIN annotate_message r ON r.parent_id = t.anchor_id
            WHERE t.project_id = %s
            """,
            [project.pk],
        )
        # The head of the queue is done: OVERLAP submitted assignments each, by labelers outside the benchmark.
        cursor.execute(
            """
            WITH head AS (SELECT id FROM annotate_task WHERE project_id = %s AND priority = 1.0)
            INSERT INTO annotate_assignment (task_id, labeler_id, status, leased_at, expires_at, finished_at,
                                             skip_reason)
            SELECT head.id, l, 'submitted', now() - interval '1 day', now() - interval '1 day' + interval '30 minutes',
                   now() - interval '1 day', ''
            FROM head CROSS JOIN unnest(%s::int[]) l
            """,
            [project.pk, labelers[16:]],
        )
        cursor.execute(
            "UPDATE annotate_task SET taken = %s WHERE project_id = %s AND priority = 1.0", [OVERLAP, project.pk]
        )
        # The index the queue used before: the baseline gets the plan it had.
        cursor.execute(
            "CREATE INDEX IF NOT EXISTS bench_baseline_queue ON annotate_task "
            "(project_id, kind, is_active, priority DESC, created_at)"
        )
    connection.close()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return project.pk, labelers[:16]


def baseline_lease(labeler, project, now):
    """The queue before: open places computed per task with a correlated count of assignments."""
    from django.db import IntegrityError, transaction
    from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery
    from django.db.models.functions import Coalesce

    from annotate.models import Assignment, AssignmentStatus, Task

    live = Q(status=AssignmentStatus.SUBMITTED) | Q(status=AssignmentStatus.ACTIVE, expires_at__gt=now)
    taken = Subquery(
        Assignment.objects.filter(live, task=OuterRef("pk"))
        .order_by()
        .values("task")
        .annotate(n=Count("id"))
        .values("n"),
        output_field=IntegerField(),
    )
    for _attempt in range(10):
        with transaction.atomic():
            task = (
                Task.objects.filter(project=project, is_active=True, kind="rate")
                .annotate(held=Coalesce(taken, 0))
                .filter(held__lt=F("required_labelers"))
                .exclude(Exists(Assignment.objects.filter(task=OuterRef("pk"), labeler=labeler)))
                .order_by("-priority", "created_at", "id")
                .select_for_update(skip_locked=True, of=("self",))
                .first()
            )
            if task is None:
                return None
            if Assignment.objects.filter(live, task=task).count() >= task.required_labelers:
                continue
            try:
                with transaction.atomic():
                    # Kept in step with the new queue's count, so both can run on the same data.
                    Task.objects.filter(pk=task.pk).update(taken=F("taken") + 1)
                    return Assignment.objects.create(
                        task=task, labeler=labeler, leased_at=now, expires_at=now + timedelta(minutes=30)
                    )
            except IntegrityError:
                continue
    return None


def labeler_loop(impl: str, project_id: int, labeler_id: int, ops: int, think_ms: int, barrier, results) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from annotate import services
    from annotate.models import Project

    connection.close()
    labeler = get_user_model().objects.get(pk=labeler_id)
    project = Project.objects.get(pk=project_id)
    latencies = []
    pause = random.Random(labeler_id)

    def operation(token: str) -> bool:
        if impl == "project":
            assignment = services.task_lease_next(labeler=labeler, project=project)
        else:
            assignment = baseline_lease(labeler, project, timezone.now())
        if assignment is None:
            return False
        services.rating_submit(labeler=labeler, assignment_id=assignment.pk, score=4, client_token=token)
        return True

    operation(f"{impl}-warm-{time.time_ns()}")  # a web worker's steady state: connection open, code paths warm
    barrier.wait()
    if think_ms:  # labelers arrive at their own moments, not all in the same millisecond
        time.sleep(pause.uniform(0, think_ms / 1000))
    for n in range(ops):
        start = time.perf_counter()
        if not operation(f"{impl}-{time.time_ns()}-{n}"):
            break
        latencies.append(time.perf_counter() - start)
        if think_ms:  # the time a labeler reads and decides, exponentially distributed around the mean
            time.sleep(pause.expovariate(1000 / think_ms))
    connection.close()
    results.put(latencies)


def run(impl: str, project_id: int, labelers: list[int], ops_total: int, think_ms: int) -> dict:
    from django.db import connection

    connection.close()
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(labelers) + 1), context.Queue()
    per = max(1, ops_total // len(labelers))
    processes = [
        context.Process(target=labeler_loop, args=(impl, project_id, pk, per, think_ms, barrier, results))
        for pk in labelers
    ]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.perf_counter()
    latencies = [x for _ in processes for x in results.get(timeout=600)]
    wall = time.perf_counter() - start
    for process in processes:
        process.join()
    latencies.sort()
    return {
        "ops": len(latencies),
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "throughput": len(latencies) / wall,
    }


def queue_plan(project_id: int, labeler_id: int) -> str:
    """The planner's access path for the project's queue query (is it the partial index?)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotate.models import Project
    from annotate.selectors import task_queue

    queue = task_queue(
        labeler=get_user_model().objects.get(pk=labeler_id), project=Project.objects.get(pk=project_id), kind="rate"
    )
    sql, params = queue[:1].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = [row[0] for row in cursor.fetchall()]
    return next((line.strip() for line in plan if "Index" in line or "Seq Scan" in line), plan[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--labelers", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--ops", type=int, default=320, help="lease-and-submit operations per measurement")
    parser.add_argument(
        "--think-ms",
        type=int,
        nargs="+",
        default=[0, 1000],
        help="mean pause between a labeler's operations: 0 is a closed loop (the machine's capacity); 1000 is a "
        "labeler submitting every second, still far faster than a person",
    )
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    setup_database()
    rows = []
    try:
        for size in args.sizes:
            started = time.perf_counter()
            project_id, labelers = load(size)
            print(
                f"loaded {size:,} tasks in {time.perf_counter() - started:.1f} s; queue plan: "
                f"{queue_plan(project_id, labelers[0])}",
                flush=True,
            )
            for think in args.think_ms:
                for count in args.labelers:
                    if think and count == 1:
                        continue  # one labeler alone: a pause changes nothing
                    for impl in ["project"] if args.no_baseline else ["project", "baseline"]:
                        result = run(impl, project_id, labelers[:count], args.ops, think)
                        rows.append((size, count, think, impl, result))
                        print(
                            f"  {size:>9,} tasks  {count:>2} labelers  think {think:>4} ms  {impl:<8}  "
                            f"p50 {result['p50']:7.1f} ms  p99 {result['p99']:7.1f} ms  "
                            f"{result['throughput']:6.1f} ops/s",
                            flush=True,
                        )
    finally:
        from django.db import connections

        connections.close_all()
        admin_sql("DROP DATABASE IF EXISTS rewardlab_bench")

    print("\n| open tasks | labelers | think ms | queue | ops | p50 ms | p99 ms | ops/s |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for size, count, think, impl, r in rows:
        print(
            f"| {size:,} | {count} | {think} | {impl} | {r['ops']} | {r['p50']:.1f} | {r['p99']:.1f} "
            f"| {r['throughput']:.0f} |"
        )


if __name__ == "__main__":
    main()
