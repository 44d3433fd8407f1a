"""Leases and submissions for every task kind: valid, invalid, duplicate, expired, someone else's lease."""

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from annotate import services
from annotate.models import (
    Assignment,
    AssignmentStatus,
    CandidateReport,
    Comparison,
    Demonstration,
    Message,
    Ranking,
    Rating,
    Task,
)
from annotate.selectors import candidate_order_for, labeler_progress, labeling_task
from annotate.services import LabelingError, LeaseError
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db

ROW = {
    "prompt": "Name a primary colour.",
    "completions": ["Red.", "Blue.", "Banana.", "Colours are a social construct."],
}


@pytest.fixture
def imported(project):
    services.prompts_import(project=project, data=jsonl(ROW), filename="p.jsonl")
    return project


def lease(labeler, project, kind):
    assignment = services.task_lease_next(labeler=labeler, project=project, kinds=[kind])
    assert assignment is not None and assignment.task.kind == kind
    return assignment


def candidates(assignment) -> list[int]:
    return list(assignment.task.task_candidates.order_by("position").values_list("message_id", flat=True))


def expire(assignment):
    past = timezone.now() - timedelta(hours=2)
    Assignment.objects.filter(pk=assignment.pk).update(leased_at=past, expires_at=past + timedelta(minutes=30))


# --- leasing ------------------------------------------------------------------------------------------------


def test_lease_next_returns_the_live_lease_the_labeler_already_holds(labeler, imported):
    first = services.task_lease_next(labeler=labeler, project=imported)
    again = services.task_lease_next(labeler=labeler, project=imported, kinds=[first.task.kind])
    assert again == first
    assert services.task_lease_next(labeler=labeler, project=imported) == first
    assert Assignment.objects.filter(labeler=labeler).count() == 1


def test_switching_to_another_kind_releases_the_live_lease(labeler, imported):
    rating = lease(labeler, imported, "rate")
    ranking = services.task_lease_next(labeler=labeler, project=imported, kinds=["rank"])
    rating.refresh_from_db()
    assert ranking.task.kind == "rank"
    assert rating.status == AssignmentStatus.RELEASED


def test_lease_next_serves_by_priority_then_age(labeler, imported):
    urgent = Task.objects.filter(project=imported, kind="rate").order_by("-id").first()
    Task.objects.filter(pk=urgent.pk).update(priority=5)
    assert services.task_lease_next(labeler=labeler, project=imported).task == urgent


def test_lease_next_never_serves_a_task_twice_to_one_labeler_or_past_its_overlap(make_user, imported):
    imported.import_task_kinds = ["demonstrate"]
    task = Task.objects.get(project=imported, kind="demonstrate")
    Task.objects.exclude(pk=task.pk).update(is_active=False)
    Task.objects.filter(pk=task.pk).update(required_labelers=2)
    first, second, third = make_user("labeler"), make_user("labeler"), make_user("labeler")
    a1 = services.task_lease_next(labeler=first, project=imported)
    services.task_skip(labeler=first, assignment_id=a1.pk, reason="unclear")
    assert services.task_lease_next(labeler=first, project=imported) is None  # skipped: never again for them
    assert services.task_lease_next(labeler=second, project=imported).task == task
    assert services.task_lease_next(labeler=third, project=imported).task == task  # the skip freed a place
    assert services.task_lease_next(labeler=make_user("labeler"), project=imported) is None  # 2 live leases


def test_an_expired_lease_frees_its_place(make_user, imported):
    task = Task.objects.get(project=imported, kind="demonstrate")
    Task.objects.exclude(pk=task.pk).update(is_active=False)
    stale = services.task_lease_next(labeler=make_user("labeler"), project=imported)
    expire(stale)
    assert services.task_lease_next(labeler=make_user("labeler"), project=imported).task == task


def test_a_labeler_is_never_served_a_task_with_their_own_reply(labeler, imported):
    demo = lease(labeler, imported, "demonstrate")
    services.demonstration_submit(labeler=labeler, assignment_id=demo.pk, text="Yellow.", client_token="t1")
    mine = Message.objects.get(author_user=labeler)
    task = Task.objects.create(project=imported, kind="rate", anchor=demo.task.anchor, candidates_key="x")
    task.task_candidates.create(message=mine, position=0)
    Task.objects.exclude(pk=task.pk).update(is_active=False)
    assert services.task_lease_next(labeler=labeler, project=imported) is None


# --- demonstrations -----------------------------------------------------------------------------------------


def test_a_demonstration_becomes_a_human_written_reply_under_the_prompt(labeler, imported):
    a = lease(labeler, imported, "demonstrate")
    result = services.demonstration_submit(
        labeler=labeler, assignment_id=a.pk, text="  Red, blue or yellow.  ", client_token="tok", time_spent_ms=4200
    )
    demo = result.annotation
    assert result.created
    assert (demo.message.text, demo.message.role, demo.message.parent, demo.message.author_user) == (
        "Red, blue or yellow.",
        "assistant",
        a.task.anchor,
        labeler,
    )
    assert 0 <= demo.time_spent_ms <= 4200
    a.refresh_from_db()
    assert (a.status, a.finished_at is not None) == (AssignmentStatus.SUBMITTED, True)


@pytest.mark.parametrize(
    ("text", "error"), [("", "Write the assistant's reply"), ("   \n ", "Write the assistant's reply")]
)
def test_an_empty_demonstration_is_refused(labeler, imported, text, error):
    a = lease(labeler, imported, "demonstrate")
    with pytest.raises(LabelingError, match=error) as info:
        services.demonstration_submit(labeler=labeler, assignment_id=a.pk, text=text, client_token="tok")
    assert info.value.field == "text"
    assert not Demonstration.objects.exists()


def test_an_oversized_demonstration_is_refused(labeler, imported, settings):
    settings.REWARDLAB_MAX_TEXT_CHARS = 10
    a = lease(labeler, imported, "demonstrate")
    with pytest.raises(LabelingError, match="the limit is 10"):
        services.demonstration_submit(labeler=labeler, assignment_id=a.pk, text="x" * 11, client_token="tok")


def test_a_double_submit_records_one_annotation(labeler, imported):
    a = lease(labeler, imported, "demonstrate")
    first = services.demonstration_submit(labeler=labeler, assignment_id=a.pk, text="Red.", client_token="same")
    second = services.demonstration_submit(labeler=labeler, assignment_id=a.pk, text="Red.", client_token="same")
    assert (first.created, second.created) == (True, False)
    assert second.annotation == first.annotation
    assert Demonstration.objects.count() == 1
    assert Message.objects.filter(author_user=labeler).count() == 1


def test_a_second_submit_with_a_new_token_is_refused(labeler, imported):
    a = lease(labeler, imported, "demonstrate")
    services.demonstration_submit(labeler=labeler, assignment_id=a.pk, text="Red.", client_token="one")
    with pytest.raises(LeaseError, match="already submitted"):
        services.demonstration_submit(labeler=labeler, assignment_id=a.pk, text="Blue.", client_token="two")


def test_someone_elses_lease_cannot_be_submitted(make_user, imported):
    owner, intruder = make_user("labeler"), make_user("labeler")
    a = lease(owner, imported, "demonstrate")
    with pytest.raises(LeaseError, match="leased to someone else"):
        services.demonstration_submit(labeler=intruder, assignment_id=a.pk, text="Red.", client_token="t")
    a.refresh_from_db()
    assert a.status == AssignmentStatus.ACTIVE


def test_an_expired_lease_gives_a_clear_message(labeler, imported):
    a = lease(labeler, imported, "demonstrate")
    expire(a)
    with pytest.raises(LeaseError, match=r"expired at \d\d:\d\d and it went back to the pool"):
        services.demonstration_submit(labeler=labeler, assignment_id=a.pk, text="Red.", client_token="t")
    assert not Demonstration.objects.exists()


def test_a_submission_of_the_wrong_kind_is_refused(labeler, imported):
    a = lease(labeler, imported, "demonstrate")
    with pytest.raises(LabelingError, match="is a Demonstration task"):
        services.rating_submit(labeler=labeler, assignment_id=a.pk, score=3, client_token="t")


# --- rankings -----------------------------------------------------------------------------------------------


def test_a_ranking_is_stored_as_ordered_tiers_with_ties_flags_and_the_shown_order(labeler, imported):
    a = lease(labeler, imported, "rank")
    c = candidates(a)
    result = services.ranking_submit(
        labeler=labeler,
        assignment_id=a.pk,
        tiers=[[c[1]], [c[0]], [c[2], c[3]]],
        candidate_flags={str(c[2]): ["hallucination", "fails_instruction"], str(c[3]): []},
        client_token="t",
    )
    ranking = Ranking.objects.get()
    assert result.annotation == ranking
    assert ranking.tiers == [[c[1]], [c[0]], [c[2], c[3]]]
    # flags are kept in the project's order; empty lists are not stored
    assert ranking.candidate_flags == {str(c[2]): ["fails_instruction", "hallucination"]}
    assert ranking.shown_order == candidate_order_for(task=a.task, labeler=labeler, candidate_ids=c)
    assert sorted(ranking.shown_order) == sorted(c)


@pytest.mark.parametrize(
    ("make_tiers", "error"),
    [
        (lambda c: [[c[0]], [c[1]], [c[2]]], "1 of 4 are not ranked"),
        (lambda c: [[c[0]], [c[1]], [c[2]], [c[3]], [c[3]]], "twice"),
        (lambda c: [[c[0], c[1], c[2], c[3], 999999]], "not part of this task"),
        (lambda c: [[c[0], c[1]], [], [c[2], c[3]]], "non-empty tiers"),
        (lambda c: [[str(c[0])], [c[1], c[2], c[3]]], "candidate ids"),
        (lambda c: "best", "non-empty tiers"),
    ],
)
def test_a_ranking_must_be_a_permutation_of_exactly_the_tasks_candidates(labeler, imported, make_tiers, error):
    a = lease(labeler, imported, "rank")
    with pytest.raises(LabelingError, match=error) as info:
        services.ranking_submit(labeler=labeler, assignment_id=a.pk, tiers=make_tiers(candidates(a)), client_token="t")
    assert info.value.field == "tiers"
    assert not Ranking.objects.exists()


def test_ranking_flags_must_be_the_projects_and_for_its_candidates(labeler, imported):
    a = lease(labeler, imported, "rank")
    c = candidates(a)
    tiers = [[x] for x in c]
    with pytest.raises(LabelingError, match="Unknown flag 'spicy'"):
        services.ranking_submit(
            labeler=labeler, assignment_id=a.pk, tiers=tiers, candidate_flags={str(c[0]): ["spicy"]}, client_token="t"
        )
    with pytest.raises(LabelingError, match="not part of this task"):
        services.ranking_submit(
            labeler=labeler, assignment_id=a.pk, tiers=tiers, candidate_flags={"1": ["hallucination"]}, client_token="t"
        )


def test_none_acceptable_is_kept_with_the_ranking(labeler, imported):
    a = lease(labeler, imported, "rank")
    services.ranking_submit(
        labeler=labeler, assignment_id=a.pk, tiers=[candidates(a)], none_acceptable=True, client_token="t"
    )
    assert Ranking.objects.get().none_acceptable is True


# --- comparisons --------------------------------------------------------------------------------------------


def test_a_comparison_stores_sides_as_shown_to_this_labeler(make_user, imported):
    for _ in range(3):
        labeler = make_user("labeler")
        a = lease(labeler, imported, "compare")
        services.comparison_submit(labeler=labeler, assignment_id=a.pk, choice=-3, both_bad=True, client_token="t")
        comparison = Comparison.objects.get(labeler=labeler)
        shown = candidate_order_for(task=a.task, labeler=labeler, candidate_ids=candidates(a))
        assert [comparison.candidate_a_id, comparison.candidate_b_id] == shown == comparison.shown_order
        assert (comparison.choice, comparison.both_bad) == (-3, True)


def test_which_reply_is_on_the_left_is_randomised_per_labeler_and_stable():
    from types import SimpleNamespace

    task = SimpleNamespace(pk=42)
    lefts = [candidate_order_for(task=task, labeler=SimpleNamespace(pk=i), candidate_ids=[7, 9])[0] for i in range(200)]
    assert 70 < lefts.count(7) < 130
    again = [candidate_order_for(task=task, labeler=SimpleNamespace(pk=i), candidate_ids=[7, 9])[0] for i in range(200)]
    assert again == lefts


@pytest.mark.parametrize("choice", [0, 5, -5, True, "3"])
def test_a_comparison_choice_must_be_on_the_scale(labeler, imported, choice):
    a = lease(labeler, imported, "compare")
    with pytest.raises(LabelingError, match="Choose a point on the scale") as info:
        services.comparison_submit(labeler=labeler, assignment_id=a.pk, choice=choice, client_token="t")
    assert info.value.field == "choice"


# --- ratings, skips and reports -----------------------------------------------------------------------------


def test_a_rating_keeps_score_flags_and_comment(labeler, imported):
    a = lease(labeler, imported, "rate")
    services.rating_submit(
        labeler=labeler, assignment_id=a.pk, score=2, flags=["hallucination"], comment=" wrong ", client_token="t"
    )
    rating = Rating.objects.get()
    assert (rating.score, rating.flags, rating.comment, rating.candidate_id) == (
        2,
        ["hallucination"],
        "wrong",
        candidates(a)[0],
    )


@pytest.mark.parametrize(("score", "flags", "field"), [(0, [], "score"), (8, [], "score"), (3, ["nope"], "flags")])
def test_invalid_ratings_are_refused(labeler, imported, score, flags, field):
    a = lease(labeler, imported, "rate")
    with pytest.raises(LabelingError) as info:
        services.rating_submit(labeler=labeler, assignment_id=a.pk, score=score, flags=flags, client_token="t")
    assert info.value.field == field


def test_skipping_needs_a_reason(labeler, imported):
    a = lease(labeler, imported, "rate")
    with pytest.raises(LabelingError, match="Choose why"):
        services.task_skip(labeler=labeler, assignment_id=a.pk, reason="bored")
    with pytest.raises(LabelingError, match="Say briefly why"):
        services.task_skip(labeler=labeler, assignment_id=a.pk, reason="other", note=" ")
    skipped = services.task_skip(labeler=labeler, assignment_id=a.pk, reason="other", note="I know the author")
    assert (skipped.status, skipped.skip_reason) == (AssignmentStatus.SKIPPED, "Other: I know the author")


def test_reporting_a_reply_twice_keeps_one_report(labeler, imported):
    a = lease(labeler, imported, "rank")
    c = candidates(a)
    services.candidate_report(labeler=labeler, assignment_id=a.pk, message_id=c[3], reason="dangerous")
    services.candidate_report(labeler=labeler, assignment_id=a.pk, message_id=c[3])
    assert CandidateReport.objects.count() == 1
    with pytest.raises(LabelingError, match="not part of this task"):
        services.candidate_report(labeler=labeler, assignment_id=a.pk, message_id=123456789)


def test_labeling_task_shows_the_whole_conversation_and_candidates_in_shown_order(labeler, project):
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "A joke?"},
        ],
        "completions": ["Knock knock.", "No."],
    }
    services.prompts_import(project=project, data=jsonl(row), filename="c.jsonl")
    a = lease(labeler, project, "compare")
    view = labeling_task(assignment=a)
    assert [(m.role, m.text) for m in view.conversation] == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "A joke?"),
    ]
    assert [c.side for c in view.candidates] == ["A", "B"]
    assert [c.message.pk for c in view.candidates] == candidate_order_for(
        task=a.task, labeler=labeler, candidate_ids=candidates(a)
    )


def test_progress_counts_today_and_the_median_time(labeler, imported):
    for token, ms in (("a", 1000), ("b", 3000), ("c", 8000)):
        a = lease(labeler, imported, "rate")
        services.rating_submit(labeler=labeler, assignment_id=a.pk, score=4, client_token=token, time_spent_ms=ms)
    Rating.objects.filter(client_token="c").update(time_spent_ms=8000)
    progress = labeler_progress(labeler=labeler, project=imported)
    assert (progress.done_today, progress.done_total) == (3, 3)
    assert progress.open_in_queue == 1 + 1 + 2 + 1  # demonstrate, rank, compare pairs, the last rating
    assert progress.median_seconds_today is not None


def test_when_no_head_is_still_open_the_queues_are_read_in_turn(monkeypatch, make_user, imported):
    """The lease takes the best of the queues' heads in one statement; if none of them is still open by then (other
    labelers filled or hold them), it reads the queues one by one, under the same lock."""
    ratings = list(Task.objects.filter(project=imported, kind="rate").order_by("created_at", "id"))
    full, next_best = ratings[0], ratings[1]
    Task.objects.filter(pk=full.pk).update(taken=full.required_labelers)  # filled since the heads were read
    real_pick = services._heads_pick

    def stale_pick(kinds, wrote):
        key, _build = real_pick(kinds, wrote)

        def build(*, labeler_id, project_id):  # the filled task, as its head was a moment before
            tasks = Task.objects.filter(pk=full.pk, project_id=project_id, taken__lt=F("required_labelers"))
            return services._locked(tasks.exclude(assignments__labeler_id=labeler_id).values("pk")[:1])

        return ("stale", *key), build

    monkeypatch.setattr(services, "_heads_pick", stale_pick)
    imported.kind_mix = {"rate": 1, "compare": 1}
    served = services.task_lease_next(labeler=make_user("labeler"), project=imported, kinds=["rate", "compare"])
    assert served.task != full
    assert served.task == next_best or served.task.kind == "compare"
    full.refresh_from_db()
    assert full.taken == full.required_labelers  # not overfilled


def test_the_best_head_of_the_kinds_below_their_share_is_served(make_user, imported):
    best = Task.objects.filter(project=imported, kind="compare").order_by("-id").first()
    Task.objects.filter(pk=best.pk).update(priority=5.0)
    served = services.task_lease_next(labeler=make_user("labeler"), project=imported)
    assert served.task == best and served.task.project is imported


def test_what_a_lease_decides_on_is_one_query(labeler, imported, django_assert_num_queries):
    kinds = ["demonstrate", "rank", "compare", "rate"]
    with django_assert_num_queries(1):
        state = services._lease_state(labeler=labeler, project=imported, kinds=None, now=timezone.now())
    assert (state.live, state.wrote, state.recent) == (None, False, dict.fromkeys(kinds, 0))
    leased = lease(labeler, imported, "rank")
    with django_assert_num_queries(1):
        state = services._lease_state(labeler=labeler, project=imported, kinds=None, now=timezone.now())
    assert (state.live.pk, state.live.task.pk, state.live.task.kind) == (leased.pk, leased.task_id, "rank")
    assert state.live.task.project is imported and state.recent == {**dict.fromkeys(kinds, 0), "rank": 1}
    with django_assert_num_queries(1):  # one kind: nothing to balance
        state = services._lease_state(labeler=labeler, project=imported, kinds=["rank"], now=timezone.now())
    assert state.live.pk == leased.pk and state.recent == {}
