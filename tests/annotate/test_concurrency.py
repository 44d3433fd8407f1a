"""Many labelers at once on PostgreSQL: the overlap is filled exactly, never overfilled, nothing is lost.

16 threads, each its own database connection and its own labeler, lease and submit (with some skips and some
double submits) until 500 rating tasks with an overlap of 3 are done.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter

import pytest
from django.db import connection

from annotate import services
from annotate.models import Assignment, AssignmentStatus, Rating, SkipReason, Task
from annotate.roles import RoleName
from tests.conftest import jsonl

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks with SKIP LOCKED need PostgreSQL"),
]

LABELERS = 16
TASKS = 500
OVERLAP = 3


def test_sixteen_labelers_fill_every_overlap_exactly(make_user):
    project = services.project_create(
        name="Concurrent", slug="concurrent", import_task_kinds=["rate"], overlap_rate=OVERLAP, lease_minutes=5
    )
    rows = [{"prompt": f"Question {i}?", "completions": [f"Answer {i}a.", f"Answer {i}b."]} for i in range(TASKS // 2)]
    services.prompts_import(project=project, data=jsonl(*rows), filename="load.jsonl")
    assert Task.objects.filter(project=project).count() == TASKS
    labelers = [make_user(RoleName.LABELER, f"worker{i}") for i in range(LABELERS)]

    stored: list[tuple[int, int, int]] = []  # (labeler, task, rating) for every submit that returned success
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(LABELERS)

    def work(labeler, seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            while True:
                assignment = services.task_lease_next(labeler=labeler, project=project)
                if assignment is None:
                    return
                if rng.random() < 0.05:
                    services.task_skip(labeler=labeler, assignment_id=assignment.pk, reason=SkipReason.UNCLEAR)
                    continue
                token = uuid.uuid4().hex
                for _ in range(2 if rng.random() < 0.1 else 1):  # some double submits (a double click)
                    submission = services.rating_submit(
                        labeler=labeler, assignment_id=assignment.pk, score=rng.randint(1, 7), client_token=token
                    )
                    if submission.created:
                        with lock:
                            stored.append((labeler.pk, assignment.task_id, submission.annotation.pk))
        except BaseException as error:  # reported in the main thread
            with lock:
                errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(labeler, i)) for i, labeler in enumerate(labelers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "a labeler thread hung"
    assert errors == []

    ratings = list(Rating.objects.filter(task__project=project).values_list("labeler_id", "task_id", "id"))
    assert sorted(ratings) == sorted(stored)  # every submission that returned success is stored, no more
    per_task = Counter(task_id for _, task_id, _ in ratings)
    assert len(per_task) == TASKS and set(per_task.values()) == {OVERLAP}
    pairs = Counter((labeler_id, task_id) for labeler_id, task_id, _ in ratings)
    assert max(pairs.values()) == 1  # no labeler annotated a task twice
    assert set(Task.objects.filter(project=project).values_list("taken", flat=True)) == {OVERLAP}
    assert not Assignment.objects.filter(task__project=project, status=AssignmentStatus.ACTIVE).exists()
    assert services.task_places_recount(project=project) == 0


def test_a_lease_commits_without_waiting_for_the_disk_and_a_judgement_waits(make_user):
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    project = services.project_create(name="Durable", slug="durable", import_task_kinds=["rate"])
    services.prompts_import(
        project=project, data=jsonl({"prompt": "Q?", "completions": ["A.", "B."]}), filename="q.jsonl"
    )
    labeler = make_user(RoleName.LABELER, "durable")

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    with CaptureQueriesContext(connection) as lease_sql:
        assignment = services.task_lease_next(labeler=labeler, project=project)
    with CaptureQueriesContext(connection) as submit_sql:
        services.rating_submit(labeler=labeler, assignment_id=assignment.pk, score=4, client_token="t1")
    assert any("synchronous_commit TO OFF" in q["sql"] for q in lease_sql.captured_queries)
    assert not any("synchronous_commit" in q["sql"] for q in submit_sql.captured_queries)
    assert setting() == "on"  # SET LOCAL: only that transaction
    with transaction.atomic():  # a lease inside a caller's transaction leaves the caller's durability alone
        with transaction.atomic():
            services._lease_commits_without_waiting_for_disk()
        assert setting() == "on"
