"""What must never happen is refused by the database itself, not only by Python checks."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate import services
from annotate.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ImportSource,
    Message,
    Project,
    Ranking,
    Rating,
    Task,
)
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def rank_task(project) -> Task:
    services.prompts_import(
        project=project, data=jsonl({"prompt": "Q", "completions": ["a", "b", "c", "d"]}), filename="q.jsonl"
    )
    return Task.objects.get(project=project, kind="rank")


def lease(task, labeler) -> Assignment:
    now = timezone.now()
    return Assignment.objects.create(task=task, labeler=labeler, leased_at=now, expires_at=now + timedelta(minutes=30))


def by_labeler(task, labeler, token: str = "t") -> dict:
    """The provenance fields of a labeler's judgement made through a fresh lease."""
    return dict(task=task, labeler=labeler, assignment=lease(task, labeler), client_token=token)


def refused(fn) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        fn()


def test_second_lease_of_the_same_task_by_the_same_labeler_fails_at_the_database(rank_task, labeler):
    first = lease(rank_task, labeler)
    first.status = AssignmentStatus.EXPIRED
    first.save(update_fields=["status"])
    refused(lambda: lease(rank_task, labeler))
    assert Assignment.objects.filter(task=rank_task, labeler=labeler).count() == 1


def test_two_labelers_may_lease_the_same_task(rank_task, make_user):
    lease(rank_task, make_user("labeler"))
    lease(rank_task, make_user("labeler"))
    assert rank_task.assignments.count() == 2


def test_a_lease_must_expire_after_it_starts(rank_task, labeler):
    now = timezone.now()
    refused(lambda: Assignment.objects.create(task=rank_task, labeler=labeler, leased_at=now, expires_at=now))


def test_one_judgement_per_assignment_and_client_tokens_are_unique_per_labeler(rank_task, labeler):
    assignment = lease(rank_task, labeler)
    a, b = rank_task.candidates.all()[:2]

    def rank(token, assignment=assignment):
        Ranking.objects.create(
            task=rank_task, labeler=labeler, assignment=assignment, client_token=token, tiers=[[a.id], [b.id]]
        )

    rank("tok-1")
    refused(lambda: rank("tok-2"))  # a second judgement on the same lease
    other = services.prompts_import(
        project=rank_task.project, data=jsonl({"prompt": "Q2", "completions": ["x", "y"]}), filename="q2.jsonl"
    )
    second_task = Task.objects.get(anchor__text="Q2", kind="rank")
    assert other.rows == 1
    refused(
        lambda: Ranking.objects.create(
            task=second_task, labeler=labeler, assignment=lease(second_task, labeler), client_token="tok-1", tiers=[]
        )
    )


def test_a_judgement_has_a_labeler_or_an_import_source_never_both_or_neither(rank_task, labeler):
    assignment = lease(rank_task, labeler)
    source = ImportSource.objects.get()
    a, b = rank_task.candidates.all()[:2]
    refused(lambda: Comparison.objects.create(task=rank_task, client_token="t", candidate_a=a, candidate_b=b, choice=1))
    refused(
        lambda: Comparison.objects.create(
            task=rank_task,
            labeler=labeler,
            assignment=assignment,
            import_source=source,
            client_token="t",
            candidate_a=a,
            candidate_b=b,
            choice=1,
        )
    )
    Comparison.objects.create(
        task=rank_task, import_source=source, client_token="t", candidate_a=a, candidate_b=b, choice=1
    )


@pytest.mark.parametrize("choice", [-5, 5])
def test_comparison_choice_stays_on_the_scale(rank_task, labeler, choice):
    a, b = rank_task.candidates.all()[:2]
    refused(
        lambda: Comparison.objects.create(**by_labeler(rank_task, labeler), candidate_a=a, candidate_b=b, choice=choice)
    )


def test_a_comparison_needs_two_different_candidates(rank_task, labeler):
    a = rank_task.candidates.first()
    refused(lambda: Comparison.objects.create(**by_labeler(rank_task, labeler), candidate_a=a, candidate_b=a, choice=0))


@pytest.mark.parametrize("score", [0, 8])
def test_rating_is_between_one_and_seven(rank_task, labeler, score):
    refused(
        lambda: Rating.objects.create(
            **by_labeler(rank_task, labeler), candidate=rank_task.candidates.first(), score=score
        )
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("ranking_k", 1), ("ranking_k", 10), ("overlap_compare", 0), ("lease_minutes", 0)],
)
def test_project_settings_outside_their_range_are_refused(field, value):
    refused(lambda: Project.objects.create(name="P", slug="p", **{field: value}))


def test_an_assistant_message_needs_a_parent(project):
    source = ImportSource.objects.create(project=project, name="x", sha256="0" * 64)
    refused(
        lambda: Message.objects.create(
            project=project, role="assistant", text="hi", path_hash="h", author_import=source
        )
    )


def test_a_message_has_exactly_one_author(project, labeler):
    source = ImportSource.objects.create(project=project, name="x", sha256="0" * 64)
    refused(lambda: Message.objects.create(project=project, role="user", text="hi", path_hash="h"))
    refused(
        lambda: Message.objects.create(
            project=project, role="user", text="hi", path_hash="h", author_import=source, author_user=labeler
        )
    )


def test_unknown_roles_and_empty_text_are_refused(project):
    source = ImportSource.objects.create(project=project, name="x", sha256="0" * 64)
    refused(
        lambda: Message.objects.create(project=project, role="robot", text="hi", path_hash="h", author_import=source)
    )
    refused(lambda: Message.objects.create(project=project, role="user", text="", path_hash="h", author_import=source))


def test_imported_paths_are_unique_but_two_people_may_write_the_same_reply(project, make_user):
    source = ImportSource.objects.create(project=project, name="x", sha256="0" * 64)
    Message.objects.create(project=project, role="user", text="hi", path_hash="h", author_import=source)
    refused(
        lambda: Message.objects.create(project=project, role="user", text="hi", path_hash="h", author_import=source)
    )
    for _ in range(2):
        Message.objects.create(project=project, role="user", text="hi", path_hash="h", author_user=make_user("labeler"))


def test_the_same_task_is_never_created_twice(rank_task):
    refused(
        lambda: Task.objects.create(
            project=rank_task.project,
            kind=rank_task.kind,
            anchor=rank_task.anchor,
            candidates_key=rank_task.candidates_key,
        )
    )


def test_leases_past_expiry_return_to_the_pool(rank_task, labeler, make_user):
    stale = lease(rank_task, labeler)
    past = timezone.now() - timedelta(hours=1)
    Assignment.objects.filter(pk=stale.pk).update(leased_at=past, expires_at=past + timedelta(minutes=30))
    live = lease(rank_task, make_user("labeler"))
    assert services.leases_release_expired() == 1
    stale.refresh_from_db()
    live.refresh_from_db()
    assert (stale.status, live.status) == (AssignmentStatus.EXPIRED, AssignmentStatus.ACTIVE)
    assert stale.finished_at is not None
