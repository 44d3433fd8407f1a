"""Quality reads: agreement over real judgements, gold accuracy, majority agreement, aggregated preferences."""

import pytest

from annotate import quality, services
from annotate.models import Comparison, Task
from annotate.quality import Judgements
from annotate.roles import RoleName
from annotate.selectors import candidate_order_for
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db

A, B, C = 1, 2, 3  # candidate ids in hand-built judgements


def judged(rankings=(), comparisons=(), ratings=()) -> Judgements:
    return Judgements(rankings=list(rankings), comparisons=list(comparisons), ratings=list(ratings))


# --- hand-computed cases on plain judgements ----------------------------------------------------------------


def test_two_agree_one_reverses_hand_computed():
    # Labelers 10 and 11 rank A > B > C; labeler 12 ranks C > B > A, all on task 1 of prompt 100.
    j = judged(rankings=[(1, 100, 10, [[A], [B], [C]]), (1, 100, 11, [[A], [B], [C]]), (1, 100, 12, [[C], [B], [A]])])
    result = quality.project_agreement(project=None, judgements=j)
    # Each of the 3 candidate pairs: 3 labeler pairs, of which only (10, 11) agree: 3 of 9.
    assert (result.ranking_pairs, result.ranking_pair_agreement) == (9, pytest.approx(1 / 3))
    # tau(10, 11) = 1, tau(10, 12) = tau(11, 12) = -1: mean -1/3.
    assert (result.kendall_pairs, result.kendall_tau) == (3, pytest.approx(-1 / 3))
    # Leave-one-out: for 10 the others (11 and 12) split on every pair, so nothing is judged; the same for 11.
    # For 12 the others agree on all 3 pairs, and 12 disagrees every time.
    assert quality.majority_agreement(j) == {12: (0, 3)}


def test_majority_agreement_leaves_the_labeler_out():
    # Four labelers on one pair (A, B): three say A, one says B.
    j = judged(
        comparisons=[(1, 100, coder, (A, B), choice) for coder, choice in [(10, -3), (11, -2), (12, -4), (13, 3)]]
    )
    assert quality.majority_agreement(j) == {10: (1, 1), 11: (1, 1), 12: (1, 1), 13: (0, 1)}


def test_comparison_alpha_is_one_when_labelers_agree_exactly():
    j = judged(comparisons=[(t, t, c, (A, B), v) for t, v in [(1, -3), (2, 2), (3, 4)] for c in (10, 11)])
    assert quality.project_agreement(project=None, judgements=j).comparison_alpha == pytest.approx(1.0)


def test_the_middle_of_the_scale_counts_as_a_tie():
    assert [quality.choice_relation(c) for c in (-4, -2, -1, 1, 2, 4)] == [-1, -1, 0, 0, 1, 1]


def test_aggregated_preferences_rank_by_bradley_terry_and_vote_by_majority():
    j = judged(
        rankings=[(1, 100, 10, [[A], [B], [C]]), (1, 100, 11, [[A], [B, C]])],
        comparisons=[(2, 100, 12, (A, B), -3), (3, 100, 12, (B, C), 1)],  # A over B; B about the same as C
    )
    [prompt] = quality.aggregated_preferences(project=None, judgements=j)
    assert prompt.anchor_id == 100
    assert prompt.scores[A] > prompt.scores[B] > prompt.scores[C]
    relations = {p.pair: p.relation for p in prompt.pairs}
    assert relations[(A, B)] == -1 and relations[(A, C)] == -1
    assert relations[(B, C)] == 0  # votes: B better, tie, tie
    assert prompt.split_pairs == 0 and prompt.agreement == pytest.approx(7 / 8)


def test_gold_credit_per_kind():
    assert quality.gold_credit("rank", {"tiers": [[A], [B], [C]]}, {"tiers": [[A], [C], [B]]}) == pytest.approx(2 / 3)
    gold = {"choice": -3}  # the task's first candidate (A) is better
    assert quality.gold_credit("compare", gold, {"candidate_a": A, "choice": -2}, first_candidate=A) == 1
    assert (
        quality.gold_credit("compare", gold, {"candidate_a": B, "choice": 2}, first_candidate=A) == 1
    )  # shown swapped
    assert quality.gold_credit("compare", gold, {"candidate_a": B, "choice": -2}, first_candidate=A) == 0
    assert quality.gold_credit("rate", {"score": 5, "tolerance": 1}, {"score": 6}) == 1
    assert quality.gold_credit("rate", {"score": 5, "tolerance": 1}, {"score": 3}) == 0


# --- over the database, through the services ----------------------------------------------------------------


@pytest.fixture
def team(make_user):
    return [make_user(RoleName.LABELER) for _ in range(3)]


@pytest.fixture
def compare_project(db):
    project = services.project_create(
        name="Pairs", slug="pairs", import_task_kinds=["compare"], overlap_compare=3, kind_mix={"compare": 1}
    )
    services.prompts_import(
        project=project, data=jsonl({"prompt": "2+2?", "completions": ["4", "5"]}), filename="p.jsonl"
    )
    return project


class Always:
    def random(self) -> float:
        return 0.0  # every gold draw succeeds


def prefer(labeler, project, message_id: int, strength: int = 3, token: str = ""):
    """Submit a comparison that prefers `message_id`, whichever side this labeler was shown it on."""
    assignment = services.task_lease_next(labeler=labeler, project=project, rng=Always())
    ids = list(assignment.task.task_candidates.order_by("position").values_list("message_id", flat=True))
    a, _b = candidate_order_for(task=assignment.task, labeler=labeler, candidate_ids=ids)
    choice = -strength if a == message_id else strength
    services.comparison_submit(
        labeler=labeler, assignment_id=assignment.pk, choice=choice, client_token=token or f"c{labeler.pk}"
    )
    return assignment.task


def test_comparisons_are_compared_whatever_side_each_labeler_saw(team, compare_project):
    task = Task.objects.get(project=compare_project)
    right = task.task_candidates.get(position=0).message_id
    for labeler in team:
        prefer(labeler, compare_project, right)
    shown_sides = {c.candidate_a_id for c in Comparison.objects.all()}
    judgements = Judgements.load(compare_project)
    assert len({value for *_, value in judgements.comparisons}) == 1  # the same judgement, however it was shown
    report = quality.quality_report(project=compare_project)
    assert report.agreement.comparison_alpha is None or report.agreement.comparison_alpha == pytest.approx(1.0)
    assert all(row.majority_agreement == 1.0 for row in report.labelers)
    assert report.total == 3 and report.days[-1].counts["compare"] == 3
    assert len(shown_sides) in (1, 2)


def test_gold_accuracy_and_consensus(team, compare_project):
    task = Task.objects.get(project=compare_project)
    right, wrong = task.task_candidates.order_by("position").values_list("message_id", flat=True)
    prefer(team[0], compare_project, right)
    prefer(team[1], compare_project, right, strength=4)
    assert quality.consensus_answer(task=task) == {"choice": -3}  # the median strength of the winning side
    services.task_set_gold(task=task, answer={"choice": -3})
    compare_project.gold_share = 0.5
    compare_project.save()
    prefer(team[2], compare_project, wrong)
    report = quality.quality_report(project=compare_project)
    accuracy = {row.labeler.username: row.gold_accuracy for row in report.labelers}
    assert accuracy == {team[0].username: 1.0, team[1].username: 1.0, team[2].username: 0.0}
    assert report.gold_accuracy == pytest.approx(2 / 3) and report.gold_judgements == 3


def test_discarded_judgements_do_not_count(team, compare_project):
    task = Task.objects.get(project=compare_project)
    right = task.task_candidates.get(position=0).message_id
    for labeler in team:
        prefer(labeler, compare_project, right)
    services.labeler_deactivate(labeler=team[0], requeue=True)
    report = quality.quality_report(project=compare_project)
    assert report.total == 2 and {row.labeler for row in report.labelers} == set(team[1:])


def test_the_report_takes_a_fixed_number_of_queries(team, compare_project, django_assert_max_num_queries):
    task = Task.objects.get(project=compare_project)
    for labeler in team:
        prefer(labeler, compare_project, task.task_candidates.get(position=0).message_id)
    with django_assert_max_num_queries(20):
        quality.quality_report(project=compare_project)
