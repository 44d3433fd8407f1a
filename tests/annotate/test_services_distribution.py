"""Task distribution: overlap, the kind mix, gold tasks, priority, expiry, deactivation and re-labeling."""

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, AssignmentStatus, Comparison, Rating, Task
from annotate.roles import RoleName
from annotate.services import LabelingError
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db

User = get_user_model()


def import_rows(project, n: int, completions: int = 2):
    rows = [{"prompt": f"Q{i}?", "completions": [f"A{i}-{c}." for c in range(completions)]} for i in range(n)]
    services.prompts_import(project=project, data=jsonl(*rows), filename=f"{n}.jsonl")


@pytest.fixture
def rating_project(db):
    project = services.project_create(name="Ratings", slug="ratings", import_task_kinds=["rate"], overlap_rate=2)
    import_rows(project, 3)  # 6 rating tasks
    return project


def rate(labeler, project, score=4, **kwargs):
    assignment = services.task_lease_next(labeler=labeler, project=project, **kwargs)
    if assignment is None:
        return None
    services.rating_submit(labeler=labeler, assignment_id=assignment.pk, score=score, client_token=f"t{assignment.pk}")
    return assignment


def places_are_consistent(project) -> bool:
    return services.task_places_recount(project=project) == 0


# --- overlap ------------------------------------------------------------------------------------------------


def test_each_task_gets_exactly_its_overlap_of_distinct_labelers(make_user, rating_project):
    labelers = [make_user(RoleName.LABELER) for _ in range(3)]
    for labeler in labelers:
        while rate(labeler, rating_project):
            pass
    per_task = Counter(Rating.objects.values_list("task_id", flat=True))
    assert sorted(per_task.values()) == [2] * 6
    assert Rating.objects.values("task_id", "labeler_id").distinct().count() == 12
    assert places_are_consistent(rating_project)


def test_a_live_lease_holds_a_place_and_an_expired_one_returns_it(make_user, rating_project):
    Task.objects.filter(project=rating_project).exclude(pk=Task.objects.order_by("id").first().pk).delete()
    first, second, third = (make_user(RoleName.LABELER) for _ in range(3))
    a = services.task_lease_next(labeler=first, project=rating_project)
    b = services.task_lease_next(labeler=second, project=rating_project)
    assert a.task == b.task
    assert services.task_lease_next(labeler=third, project=rating_project) is None  # two places, both held
    later = timezone.now() + timedelta(minutes=rating_project.lease_minutes + 1)
    c = services.task_lease_next(labeler=third, project=rating_project, now=later)
    assert c is not None and c.task == a.task
    assert set(Assignment.objects.filter(pk__in=[a.pk, b.pk]).values_list("status", flat=True)) == {"expired"}
    assert places_are_consistent(rating_project)


def test_skipping_gives_the_place_back_for_someone_else(make_user, rating_project):
    labeler = make_user(RoleName.LABELER)
    assignment = services.task_lease_next(labeler=labeler, project=rating_project)
    task = Task.objects.get(pk=assignment.task_id)
    assert task.taken == 1
    services.task_skip(labeler=labeler, assignment_id=assignment.pk, reason="unclear")
    task.refresh_from_db()
    assert task.taken == 0


def test_changing_the_overlap_applies_to_existing_tasks(make_user, rating_project):
    labeler = make_user(RoleName.LABELER)
    while rate(labeler, rating_project):
        pass
    rating_project.overlap_rate = 1
    rating_project.save()
    assert services.project_overlap_apply(project=rating_project) == 6
    assert not Task.objects.filter(project=rating_project, taken__lt=1).exists()
    assert rate(make_user(RoleName.LABELER), rating_project) is None  # every task is done at overlap 1
    rating_project.overlap_rate = 3
    rating_project.save()
    services.project_overlap_apply(project=rating_project)
    assert rate(make_user(RoleName.LABELER), rating_project) is not None  # raising it reopens them


# --- priority and the kind mix ------------------------------------------------------------------------------


def test_higher_priority_first_then_oldest(make_user, rating_project):
    tasks = list(Task.objects.filter(project=rating_project).order_by("id"))
    Task.objects.filter(pk=tasks[4].pk).update(priority=2.5)
    Task.objects.filter(pk=tasks[2].pk).update(priority=2.5)
    labeler = make_user(RoleName.LABELER)
    served = [rate(labeler, rating_project).task_id for _ in range(3)]
    assert served == [tasks[2].pk, tasks[4].pk, tasks[0].pk]


def test_priorities_are_set_in_bulk_and_must_be_finite(make_user, rating_project):
    last = Task.objects.filter(project=rating_project).order_by("id").last()
    assert services.tasks_set_priority(priorities={last.pk: 9.5, 10**9: 1.0}) == 1
    assert services.task_lease_next(labeler=make_user(RoleName.LABELER), project=rating_project).task == last
    with pytest.raises(ValueError, match=f"task {last.pk}: the priority must be a finite number"):
        services.tasks_set_priority(priorities={last.pk: float("nan")})


def test_the_kind_mix_sets_the_share_of_each_kind_a_labeler_is_served(make_user, project):
    project.import_task_kinds = ["compare", "rate"]
    project.kind_mix = {"compare": 3, "rate": 1, "rank": 0, "demonstrate": 0}
    project.overlap_compare = project.overlap_rate = 1
    project.save()
    import_rows(project, 30, completions=2)  # 30 comparison tasks, 60 rating tasks
    labeler = make_user(RoleName.LABELER)
    served = []
    for i in range(20):
        assignment = services.task_lease_next(labeler=labeler, project=project)
        served.append(assignment.task.kind)
        if assignment.task.kind == "compare":
            services.comparison_submit(labeler=labeler, assignment_id=assignment.pk, choice=2, client_token=f"c{i}")
        else:
            services.rating_submit(labeler=labeler, assignment_id=assignment.pk, score=3, client_token=f"r{i}")
    assert Counter(served) == {"compare": 15, "rate": 5}


def test_a_kind_with_weight_zero_is_never_served(make_user, project):
    project.import_task_kinds = ["demonstrate", "rate"]
    project.kind_mix = {"rate": 1}
    project.save()
    import_rows(project, 2)
    labeler = make_user(RoleName.LABELER)
    assert services.task_lease_next(labeler=labeler, project=project, kinds=["demonstrate"]) is None
    assert services.task_lease_next(labeler=labeler, project=project).task.kind == "rate"


def test_a_bad_kind_mix_is_refused_with_a_clear_message(project):
    from django.core.exceptions import ValidationError

    for mix, message in [
        ({"vote": 1}, "maps task kinds"),
        ({"rank": -1}, "0 or more"),
        ({"rank": 0}, "At least one task kind"),
    ]:
        project.kind_mix = mix
        with pytest.raises(ValidationError, match=message):
            project.full_clean()


# --- gold tasks ---------------------------------------------------------------------------------------------


def test_gold_answers_are_checked_against_the_task(project):
    import_rows(project, 1, completions=4)
    rank = Task.objects.get(project=project, kind="rank")
    ids = list(rank.task_candidates.order_by("position").values_list("message_id", flat=True))
    with pytest.raises(LabelingError, match="every candidate"):
        services.task_set_gold(task=rank, answer={"tiers": [[ids[0]], [ids[1]]]})
    gold = services.task_set_gold(task=rank, answer={"tiers": [[ids[2]], [ids[0], ids[1]], [ids[3]]]})
    assert gold.is_gold and gold.gold_answer == {"tiers": [[ids[2]], [ids[0], ids[1]], [ids[3]]]}
    demo = Task.objects.get(project=project, kind="demonstrate")
    with pytest.raises(LabelingError, match="cannot be a gold task"):
        services.task_set_gold(task=demo, answer={"text": "x"})
    compare = Task.objects.filter(project=project, kind="compare").first()
    with pytest.raises(LabelingError, match="point on the scale"):
        services.task_set_gold(task=compare, answer={"choice": 0})
    rate_task = Task.objects.filter(project=project, kind="rate").first()
    with pytest.raises(LabelingError, match="score from 1 to 7"):
        services.task_set_gold(task=rate_task, answer={"score": 9})
    assert not services.task_set_gold(task=gold, answer=None).is_gold


class Always:
    """A random source whose draw is always `value` (0.0: every gold draw succeeds)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_gold_tasks_have_no_overlap_every_labeler_gets_each_once(make_user, rating_project):
    gold_tasks = list(Task.objects.filter(project=rating_project).order_by("id")[:2])
    for task in gold_tasks:
        services.task_set_gold(task=task, answer={"score": 5})
    rating_project.gold_share = 0.5
    rating_project.save()
    for _ in range(4):
        labeler = make_user(RoleName.LABELER)
        served = [rate(labeler, rating_project, rng=Always(0.0)).task for _ in range(3)]
        assert [task.is_gold for task in served] == [True, True, False]
    gold_ratings = Counter(Rating.objects.filter(task__is_gold=True).values_list("task_id", flat=True))
    assert gold_ratings == {task.pk: 4 for task in gold_tasks}  # overlap 2 does not apply to gold


def test_gold_tasks_come_at_about_the_gold_share(make_user, project):
    project.import_task_kinds = ["rate"]
    project.overlap_rate = 1
    project.gold_share = 0.2
    project.save()
    import_rows(project, 150)  # 300 rating tasks
    for task in Task.objects.filter(project=project).order_by("?")[:60]:
        services.task_set_gold(task=task, answer={"score": 4})
    labeler = make_user(RoleName.LABELER)
    rng = random.Random(7)
    served = [rate(labeler, project, rng=rng).task.is_gold for _ in range(200)]
    assert 25 <= sum(served) <= 55  # 40 expected; far outside means the share is not applied


def test_gold_tasks_look_like_any_other_task_to_the_labeler(client, make_user, rating_project):
    from django.urls import reverse

    from tests.conftest import PASSWORD

    gold = Task.objects.filter(project=rating_project).order_by("id").first()
    services.task_set_gold(task=gold, answer={"score": 6, "tolerance": 0})
    rating_project.gold_share = 0.5
    rating_project.save()
    labeler = make_user(RoleName.LABELER)
    assignment = services.task_lease_next(labeler=labeler, project=rating_project, rng=Always(0.0))
    assert assignment.task_id == gold.pk
    client.post(reverse("login"), {"username": labeler.username, "password": PASSWORD})
    html = client.get(reverse("annotate:label_task", args=[rating_project.slug, gold.pk])).content.decode().lower()
    assert "gold" not in html and "tolerance" not in html


def test_with_no_gold_share_gold_tasks_are_not_served(make_user, rating_project):
    services.task_set_gold(task=Task.objects.filter(project=rating_project).first(), answer={"score": 5})
    labeler = make_user(RoleName.LABELER)
    while rate(labeler, rating_project):
        pass
    assert not Rating.objects.filter(task__is_gold=True).exists()


# --- deactivation and re-labeling ---------------------------------------------------------------------------


def test_deactivating_a_labeler_requeues_their_judgements_and_keeps_them(make_user, rating_project):
    bad, good, fresh = (make_user(RoleName.LABELER) for _ in range(3))
    while rate(bad, rating_project, score=1):
        pass
    rate(good, rating_project)
    live = services.task_lease_next(labeler=bad, project=rating_project)
    assert live is None  # done everything
    result = services.labeler_deactivate(labeler=bad, requeue=True, project=rating_project)
    assert result.annotations_requeued == 6 and result.tasks_reopened == 6
    bad.refresh_from_db()
    assert not bad.is_active
    assert Rating.objects.filter(labeler=bad).count() == 6  # raw judgements are kept...
    assert Rating.objects.filter(labeler=bad, discarded_at__isnull=True).count() == 0  # ...but no longer count
    assert set(Assignment.objects.filter(labeler=bad).values_list("status", flat=True)) == {"revoked"}
    assert places_are_consistent(rating_project)
    done = 0
    while rate(fresh, rating_project):
        done += 1
    assert done == 6  # every task reopened for another labeler


def test_deactivating_without_requeue_releases_live_leases_only(make_user, rating_project):
    labeler = make_user(RoleName.LABELER)
    rate(labeler, rating_project)
    lease = services.task_lease_next(labeler=labeler, project=rating_project)
    result = services.labeler_deactivate(labeler=labeler, requeue=False)
    assert (result.leases_released, result.annotations_requeued) == (1, 0)
    lease.refresh_from_db()
    assert lease.status == AssignmentStatus.RELEASED
    assert Rating.objects.filter(labeler=labeler, discarded_at__isnull=True).count() == 1
    assert places_are_consistent(rating_project)


def test_a_deactivated_labeler_cannot_sign_in(client, make_user):
    from django.urls import reverse

    from tests.conftest import PASSWORD

    labeler = make_user(RoleName.LABELER)
    client.post(reverse("login"), {"username": labeler.username, "password": PASSWORD})
    assert client.get(reverse("home")).status_code == 200
    services.labeler_deactivate(labeler=labeler, requeue=False)
    assert client.get(reverse("home")).status_code == 302  # the open session ends
    response = client.post(reverse("login"), {"username": labeler.username, "password": PASSWORD})
    assert response.status_code == 200  # the form again, not a redirect into the app
    assert client.get(reverse("home")).status_code == 302


def test_a_requeued_comparison_drops_out_of_the_counts(make_user, project):
    project.import_task_kinds = ["compare"]
    project.overlap_compare = 1
    project.save()
    import_rows(project, 1)
    labeler = make_user(RoleName.LABELER)
    assignment = services.task_lease_next(labeler=labeler, project=project)
    services.comparison_submit(labeler=labeler, assignment_id=assignment.pk, choice=-3, client_token="x")
    services.labeler_deactivate(labeler=labeler, requeue=True)
    assert Comparison.objects.filter(discarded_at__isnull=False).count() == 1
    assert Task.objects.get(pk=assignment.task_id).is_open
