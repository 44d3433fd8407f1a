"""Prompt import throughput: the bulk, level-by-level import against a naive row-by-row baseline.

    .venv/bin/python bench/import_prompts.py [--rows 5000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/import_prompts.py

Both run in the same process on a fresh test database, alternating, on the same synthetic file (prompts with 4
completions, a quarter of them multi-turn). The table reports wall time, rows per second and SQL queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rewardlab.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from annotate import services  # noqa: E402
from annotate.formats import parse_prompts_jsonl  # noqa: E402
from annotate.models import ImportSource, Message, Project, Task, TaskCandidate  # noqa: E402


def synthetic_file(rows: int) -> bytes:
    lines = []
    for i in range(rows):
        completions = [f"Reply {j} to prompt {i}: " + "lorem ipsum " * 20 for j in range(4)]
        if i % 4 == 0:
            row = {
                "messages": [
                    {"role": "user", "content": f"Opening question {i}"},
                    {"role": "assistant", "content": f"An earlier answer {i}"},
                    {"role": "user", "content": f"Follow-up {i}: " + "please explain " * 10},
                ],
                "completions": completions,
            }
        else:
            row = {"prompt": f"Prompt {i}: " + "write something useful " * 10, "completions": completions}
        lines.append(json.dumps(row))
    return "\n".join(lines).encode()


def naive_import(project: Project, data: bytes) -> None:
    """Baseline: what a first version would do — one get_or_create per message and one insert per task."""
    records = parse_prompts_jsonl(data, limits=services.import_limits())
    with transaction.atomic():
        source = ImportSource.objects.create(project=project, name="naive", sha256="0" * 64, row_count=len(records))
        for record in records:
            parent, parent_hash = None, ""
            for depth, turn in enumerate(record.conversation):
                h = services.path_hash(parent_hash, turn.role, turn.text)
                parent, _ = Message.objects.get_or_create(
                    project=project,
                    path_hash=h,
                    author_user=None,
                    defaults=dict(parent=parent, role=turn.role, text=turn.text, depth=depth, author_import=source),
                )
                parent_hash = h
            candidates = []
            for text in record.completions:
                h = services.path_hash(parent_hash, "assistant", text)
                message, _ = Message.objects.get_or_create(
                    project=project,
                    path_hash=h,
                    author_user=None,
                    defaults=dict(
                        parent=parent, role="assistant", text=text, depth=parent.depth + 1, author_import=source
                    ),
                )
                candidates.append(message.pk)
            for kind in project.import_task_kinds:
                for group in services.task_candidate_groups(kind, candidates, project.ranking_k):
                    task, created = Task.objects.get_or_create(
                        project=project,
                        kind=kind,
                        anchor=parent,
                        candidates_key=services.candidates_key(group),
                        defaults=dict(required_labelers=project.overlap_for(kind), origin_import=source),
                    )
                    if created:
                        for position, message_id in enumerate(group):
                            TaskCandidate.objects.create(task=task, message_id=message_id, position=position)


def bulk_import(project: Project, data: bytes) -> None:
    services.prompts_import(project=project, data=data, filename="bench.jsonl")


def measure(name: str, fn, data: bytes, rows: int) -> dict:
    project = services.project_create(
        name=f"bench-{name}-{time.monotonic_ns()}", import_task_kinds=["demonstrate", "rank", "compare", "rate"]
    )
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(1)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        start = time.perf_counter()
        fn(project, data)
        seconds = time.perf_counter() - start
    assert Message.objects.filter(project=project, role="user", anchored_tasks__isnull=False).distinct().count() == rows
    return {"name": name, "seconds": seconds, "rows_per_s": rows / seconds, "queries": len(queries)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        data = synthetic_file(args.rows)
        results: dict[str, list[dict]] = {"prompts_import (bulk)": [], "naive row-by-row (baseline)": []}
        for _ in range(args.repeats):  # alternate, so a noisy neighbour hits both alike
            results["prompts_import (bulk)"].append(measure("bulk", bulk_import, data, args.rows))
            results["naive row-by-row (baseline)"].append(measure("naive", naive_import, data, args.rows))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    vendor = connection.vendor
    print(f"\nImport of {args.rows} rows x 4 completions ({len(data) / 1e6:.1f} MB), {vendor}, best of {args.repeats}")
    print(f"{'implementation':<30} {'seconds':>9} {'rows/s':>9} {'queries':>9}")
    baseline = min(r["seconds"] for r in results["naive row-by-row (baseline)"])
    for name, runs in results.items():
        best = min(runs, key=lambda r: r["seconds"])
        speedup = baseline / best["seconds"]
        print(f"{name:<30} {best['seconds']:>9.2f} {best['rows_per_s']:>9.0f} {best['queries']:>9}   x{speedup:.1f}")


if __name__ == "__main__":
    main()
