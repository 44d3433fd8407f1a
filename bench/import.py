"""Importing a preference dataset with its judgements into PostgreSQL: pairs/s and peak memory, by file size.

    .venv/bin/python bench/import.py                      # 10k, 30k and 100k HH pairs
    .venv/bin/python bench/import.py --pairs 100000       # one size
    .venv/bin/python bench/import.py --quick              # 2k and 10k

For each size, the script writes an HH-style file (`{"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": …}`,
one pair per line: a multi-turn conversation every fourth line, replies of 40–400 characters, every prompt distinct)
to a temporary folder, creates a fresh PostgreSQL database (`rewardlab_bench_import_<pid>_<n>` on BENCH_DATABASE_URL,
by default the local server with trust auth), migrates it, makes a project, and times `manage.py import_judgements
<project> <file> --format hh` in a process of its own, after a CHECKPOINT (so that no size pays for writing out the
one before): wall time (from start to exit, Django's start-up included), pairs per second over the command itself
(timed inside the process, once Django is set up), and the process's peak resident memory (ru_maxrss). The
databases are dropped at the end. Memory is flat in the file size when the peak stays the same from 10k to 100k
pairs (the import reads and stores the file 5,000 lines at a time, in one transaction). Target: at least 5,000
pairs/s. Beside it, in a database of its own that sees the same imports, the baseline: the same import with its
foreign keys checked by PostgreSQL's row triggers (REWARDLAB_IMPORT_BULK_CHECKS=0), as for a database role that may
not skip them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432")
TARGET = 5000.0
WORDS = (
    "the a reply model answer careful short long clear vague helpful wrong right step first then because so "
    "we you it data list code example test value result error note point idea plan rule case time way part"
).split()


def text(rng: random.Random, low: int, high: int) -> str:
    words, size, target = [], 0, rng.randint(low, high)
    while size < target:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    return " ".join(words).capitalize() + "."


def write_pairs(path: Path, count: int, seed: int = 11) -> int:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            history = f"\n\nHuman: Question {i}: {text(rng, 30, 160)}"
            if i % 4 == 0:  # multi-turn: an earlier exchange both replies share
                history += f"\n\nAssistant: {text(rng, 40, 200)}\n\nHuman: And then? ({i})"
            chosen, rejected = text(rng, 40, 400), text(rng, 40, 400)
            while rejected == chosen:
                rejected = text(rng, 40, 400)
            row = {"chosen": f"{history}\n\nAssistant: {chosen}", "rejected": f"{history}\n\nAssistant: {rejected}"}
            out.write(json.dumps(row) + "\n")
    return path.stat().st_size


def admin_sql(statement: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(statement)


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result


# Runs a manage.py command once Django is set up, and on the way out writes to stderr the seconds the command itself
# took (start-up left out, measured in the process: start-up varies by a second between runs) and the process's own
# peak resident memory (KiB).
MEASURED = (
    "import os, resource, sys, time\n"
    "import django\n"
    "from django.core.management import execute_from_command_line\n"
    "django.setup()\n"
    "started = time.perf_counter()\n"
    "try:\n"
    "    execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
    "finally:\n"
    "    print('RAN', time.perf_counter() - started, file=sys.stderr)\n"
    "    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def timed(env: dict, *args: str) -> tuple[float, float, int, str]:
    """Wall seconds, the command's own seconds, peak RSS (KiB) and output of one manage.py process."""
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "-c", MEASURED, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    stamps = {
        line.split()[0]: line.split()[1] for line in result.stderr.splitlines() if line.startswith(("RAN", "MAXRSS"))
    }
    return seconds, float(stamps["RAN"]), int(stamps["MAXRSS"]), result.stdout.strip()


OURS, BASELINE = "RewardLab", "baseline: row triggers"
VARIANTS = {
    # name: environment. The baseline is the same import with its foreign keys checked by PostgreSQL's row triggers
    # (~20 trigger queries per pair, at the commit): what a database role without the right to skip them gets.
    OURS: {},
    BASELINE: {"REWARDLAB_IMPORT_BULK_CHECKS": "0"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=None, help="comma-separated sizes (default 10000,30000,100000)")
    parser.add_argument("--quick", action="store_true", help="sizes 2000,10000")
    parser.add_argument("--no-baseline", action="store_true", help="time the import alone")
    args = parser.parse_args()
    sizes = sorted(int(x) for x in (args.pairs or ("2000,10000" if args.quick else "10000,30000,100000")).split(","))
    variants = {k: v for k, v in VARIANTS.items() if not (args.no_baseline and v)}
    work = Path(tempfile.mkdtemp(prefix="rewardlab-import-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REWARDLAB_", "DATABASE_"))}
    base.update(
        {
            "DJANGO_SETTINGS_MODULE": "rewardlab.settings",
            "REWARDLAB_VAR_DIR": str(work),
            "REWARDLAB_MAX_IMPORT_ROWS": str(max(sizes) * 2),
            "REWARDLAB_LOG_FORMAT": "plain",
        }
    )
    # Each variant has a database of its own, which sees the same imports in the same order (the tables grow alike).
    envs = {
        name: {**base, **extra, "DATABASE_URL": f"{PG_SERVER}/rewardlab_bench_import_{os.getpid()}_{i}"}
        for i, (name, extra) in enumerate(variants.items())
    }
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; PostgreSQL on {PG_SERVER}")
    rows = []
    try:
        for env in envs.values():
            database = env["DATABASE_URL"].rsplit("/", 1)[1]
            admin_sql(f"DROP DATABASE IF EXISTS {database}")
            admin_sql(f"CREATE DATABASE {database}")
            manage(env, "migrate", "--noinput", "-v", "0")
        wall, ran, base_rss, _ = timed(envs[OURS], "check")  # Django's start-up alone, and its memory
        startup = wall - ran
        for size in sizes:
            path = work / f"pairs-{size}.jsonl"
            file_bytes = write_pairs(path, size)
            slug = f"bench{size}"
            for name, env in envs.items():
                code = f"from annotate import services; services.project_create(name={slug!r}, slug={slug!r})"
                manage(env, "shell", "-c", code)
                admin_sql("CHECKPOINT")  # the last import's dirty pages are written now, not during this one
                seconds, importing, peak, output = timed(env, "import_judgements", slug, str(path), "--format", "hh")
                rows.append((name, size, file_bytes, seconds, importing, size / importing, peak))
                print(f"  {name}, {size:,} pairs: {seconds:.1f} s, peak {peak / 1024:.0f} MiB — {output}", flush=True)
    finally:
        for env in envs.values():
            admin_sql(f"DROP DATABASE IF EXISTS {env['DATABASE_URL'].rsplit('/', 1)[1]}")
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nDjango start-up (manage.py check): {startup:.2f} s, peak {base_rss / 1024:.0f} MiB")
    rates = {(name, size): rate for name, size, _, _, _, rate, _ in rows}
    print(
        f"{'import':<24} {'pairs':>8} {'file MB':>8} {'wall s':>7} {'import s':>9} {'pairs/s':>8} "
        f"{'vs baseline':>12} {'peak RSS MiB':>13}"
    )
    for name, size, file_bytes, seconds, importing, rate, peak in rows:
        baseline = rates.get((BASELINE, size))
        ratio = f"{rate / baseline:.2f}x" if baseline and name == OURS else "—"
        print(
            f"{name:<24} {size:>8,} {file_bytes / 1e6:>8.1f} {seconds:>7.1f} {importing:>9.1f} {rate:>8,.0f} "
            f"{ratio:>12} {peak / 1024:>13.0f}"
        )
    ours = [row for row in rows if row[0] == OURS]
    largest = ours[-1]
    print(
        f"target: at least {TARGET:,.0f} pairs/s at {largest[1]:,} pairs: {largest[5]:,.0f} "
        f"{'met' if largest[5] >= TARGET else 'NOT met'}; peak memory {ours[0][6] / 1024:.0f} MiB at {ours[0][1]:,} "
        f"pairs, {largest[6] / 1024:.0f} MiB at {largest[1]:,}"
    )


if __name__ == "__main__":
    main()
