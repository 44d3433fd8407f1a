"""Export throughput and memory: 1M preference pairs from PostgreSQL as JSONL and as Parquet.

    .venv/bin/python bench/export.py                 # 1M pairs; baseline on 100k
    .venv/bin/python bench/export.py --pairs 200000 --baseline-pairs 50000

It creates (and drops) its own database, `rewardlab_bench_export`, and generates the pairs in SQL: A/B
comparisons over 1,000 prompts with two replies each, imported judgements (no labeler), none of them a tie, so
every comparison is one exported pair. Each export runs in a
fresh process, so its peak RSS is its own. The baseline is what a first version would do: load every judgement
as ORM objects with their prompt and replies, build the rows in a list, then write them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["DJANGO_SETTINGS_MODULE"] = "rewardlab.settings"
SERVER = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432")
os.environ["DATABASE_URL"] = f"{SERVER}/rewardlab_bench_export"

import django  # noqa: E402
import psycopg  # noqa: E402

PROMPTS = 1000


def admin_sql(statement: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(statement)


def load(pairs: int) -> int:
    admin_sql("DROP DATABASE IF EXISTS rewardlab_bench_export")
    admin_sql("CREATE DATABASE rewardlab_bench_export")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from annotate import services
    from annotate.models import ImportSource, Message, Task, TaskCandidate

    call_command("migrate", verbosity=0)
    project = services.project_create(name="Export bench", slug="export-bench", import_task_kinds=["compare"])
    source = ImportSource.objects.create(project=project, name="bench", sha256="0" * 64)
    filler = "A reply of ordinary length that explains its answer in a couple of sentences. " * 3
    prompts = Message.objects.bulk_create(
        Message(
            project=project,
            role="user",
            text=f"Prompt {i}: please explain something.",
            path_hash=f"u{i}",
            author_import=source,
        )
        for i in range(PROMPTS)
    )
    replies = Message.objects.bulk_create(
        Message(
            project=project,
            parent=p,
            role="assistant",
            text=f"Reply {side} to {p.pk}. {filler}",
            depth=1,
            path_hash=f"a{p.pk}{side}",
            author_import=source,
        )
        for p in prompts
        for side in "ab"
    )
    tasks = Task.objects.bulk_create(
        Task(project=project, kind="compare", anchor=p, candidates_key=f"k{p.pk}") for p in prompts
    )
    TaskCandidate.objects.bulk_create(
        TaskCandidate(task=t, message=replies[2 * i + side], position=side)
        for i, t in enumerate(tasks)
        for side in (0, 1)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotate_comparison (task_id, import_source_id, client_token, shown_order, time_spent_ms,
                                             created_at, candidate_a_id, candidate_b_id, choice, both_bad)
            SELECT t.id, %s, 'b' || g, '[]'::jsonb, 1000, now(), a.message_id, b.message_id,
                   (ARRAY[-4, -3, -2, 2, 3, 4])[1 + g %% 6], false
            FROM generate_series(1, %s) g
            JOIN annotate_task t ON t.id = (%s::int[])[1 + g %% %s]
            JOIN annotate_taskcandidate a ON a.task_id = t.id AND a.position = 0
            JOIN annotate_taskcandidate b ON b.task_id = t.id AND b.position = 1
            """,
            [source.pk, pairs, [t.pk for t in tasks], PROMPTS],
        )
    connection.close()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return project.pk


def naive_rows(project, limit: int) -> list[dict]:
    from annotate.models import Comparison

    rows = []
    for c in (
        Comparison.objects.filter(task__project=project)
        .select_related("task__anchor", "candidate_a", "candidate_b")
        .order_by("id")[:limit]
    ):
        chosen, rejected = (c.candidate_a, c.candidate_b) if c.choice < 0 else (c.candidate_b, c.candidate_a)
        if abs(c.choice) > 1:
            rows.append(
                {
                    "prompt": c.task.anchor.text,
                    "chosen": chosen.text,
                    "rejected": rejected.text,
                    "margin": float(abs(c.choice) - 1),
                    "weight": 1.0,
                    "annotation_id": c.pk,
                }
            )
    return rows


def measure(impl: str, fmt: str, project_id: int, limit: int, out: Path, results) -> None:
    django.setup()
    from annotate import exports
    from annotate.models import Project

    project = Project.objects.get(pk=project_id)
    start = time.perf_counter()
    rows = 0
    with out.open("wb") as handle:
        if impl == "export":
            counted = exports.Counted(exports.export_rows(project, exports.ExportOptions(format=fmt)))
            for chunk in exports.export_chunks(counted, fmt):
                handle.write(chunk)
            rows = sum(counted.counts.values())
        else:
            built = naive_rows(project, limit)
            rows = len(built)
            for chunk in exports.export_chunks(iter(built), fmt):
                handle.write(chunk)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    results.put(
        {"impl": impl, "format": fmt, "rows": rows, "seconds": seconds, "peak": peak, "bytes": out.stat().st_size}
    )


def run(impl: str, fmt: str, project_id: int, limit: int, tmp: Path) -> dict:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=measure, args=(impl, fmt, project_id, limit, tmp / f"{impl}.{fmt}", results))
    process.start()
    result = results.get(timeout=3600)
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--baseline-pairs", type=int, default=100_000, help="rows the in-memory baseline exports")
    args = parser.parse_args()
    import tempfile

    started = time.perf_counter()
    project_id = load(args.pairs)
    from django.db import connections

    connections.close_all()
    print(f"generated {args.pairs:,} comparisons in {time.perf_counter() - started:.1f} s", flush=True)
    table = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("jsonl", "parquet"):
                for impl in ("export", "baseline"):
                    result = run(impl, fmt, project_id, args.baseline_pairs, Path(tmp))
                    table.append(result)
                    print(
                        f"  {impl:<8} {fmt:<7} {result['rows']:>9,} rows  "
                        f"{result['rows'] / result['seconds']:>9,.0f} rows/s"
                        f"  peak RSS {result['peak']:7.0f} MiB",
                        flush=True,
                    )
    finally:
        admin_sql("DROP DATABASE IF EXISTS rewardlab_bench_export")
    print("\n| export | format | rows | seconds | rows/s | peak RSS MiB | file MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['impl']} | {r['format']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
            f"| {r['peak']:.0f} | {r['bytes'] / 2**20:.0f} |"
        )


if __name__ == "__main__":
    main()
