"""The model leaderboard: Chatbot Arena's Bradley–Terry ratings with bootstrap intervals, the battles read from a
project, the SVG plot and the partial."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from annotate import services
from annotate.models import Comparison, ImportSource, Message, Role, Task, TaskKind
from tests.conftest import jsonl
from training import arena
from training.charts import interval_plot
from training.leaderboard import (
    Leaderboard,
    aggregate,
    bootstrap,
    bootstrap_ratings,
    fit_bradley_terry,
    leaderboard,
)
from training.models import ModelVersion

ELO_3_TO_1 = 400 * math.log10(3)  # 190.85


def ratings_of(battles) -> dict:
    counts = aggregate(battles)
    return dict(zip(counts.models, fit_bradley_terry(counts), strict=True))


# --- the fit by hand ------------------------------------------------------------------------------------------


def test_three_wins_to_one_is_400_log10_3_apart_around_1000():
    r = ratings_of([("A", "B", "a")] * 3 + [("A", "B", "b")])
    assert r["A"] - r["B"] == pytest.approx(ELO_3_TO_1, abs=0.5)
    assert (r["A"] + r["B"]) / 2 == pytest.approx(1000)


def test_a_tie_is_half_a_win_for_each_side_and_sides_do_not_matter():
    # A: 2 wins + 2 ties = 3 points of 4, as above; shown as B on the left half the time.
    r = ratings_of([("A", "B", "a"), ("B", "A", "b"), ("A", "B", "tie"), ("B", "A", "tie")])
    assert r["A"] - r["B"] == pytest.approx(ELO_3_TO_1, abs=0.5)


def test_three_models_whose_odds_multiply():
    # A beats B 2:1, B beats C 2:1, A beats C 4:1: the saturated fit has odds exactly 2, 2 and 4.
    battles = (
        ([("A", "B", "a")] * 2 + [("A", "B", "b")] + [("B", "C", "a")] * 2 + [("C", "B", "a")])
        + [("C", "A", "b")] * 4
        + [("A", "C", "b")]
    )
    r = ratings_of(battles)
    step = 400 * math.log10(2)  # 120.41
    assert r["A"] == pytest.approx(1000 + step, abs=0.5)
    assert r["B"] == pytest.approx(1000, abs=0.5)
    assert r["C"] == pytest.approx(1000 - step, abs=0.5)


def test_an_undefeated_model_gets_a_finite_rating_above_the_others():
    battles = [("A", "B", "a")] * 5 + [("C", "A", "b")] * 3 + [("B", "C", "a")] * 4 + [("B", "C", "b")] * 2
    r = ratings_of(battles)
    assert all(math.isfinite(v) for v in r.values())
    assert r["A"] > r["B"] > r["C"]
    board = leaderboard(battles, rounds=200, seed=1)
    top = board.rows[0]
    assert top.label == "A" and (top.wins, top.losses, top.ties) == (8, 0, 0) and top.rank == 1
    assert all(math.isfinite(v) for row in board.rows for v in (row.rating, row.low, row.high))


def test_bad_battles_are_refused():
    with pytest.raises(ValueError, match="outcome"):
        aggregate([("A", "B", "draw")])
    with pytest.raises(ValueError, match="itself"):
        aggregate([("A", "A", "a")])


def test_no_battles_no_rows():
    board = leaderboard([])
    assert not board and board.rows == () and board.battles == 0


# --- known strengths ------------------------------------------------------------------------------------------

TRUE = {"m1": 1150.0, "m2": 1075.0, "m3": 1000.0, "m4": 950.0, "m5": 825.0}


def simulate(votes: int, seed: int, tie_rate: float = 0.15) -> list[tuple[str, str, str]]:
    """Random pairs voted on under Bradley–Terry with ties: a tie with probability `tie_rate`, otherwise a win
    with the probability that makes the expected score (win + half a tie) the model's σ(Δ)."""
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    battles = []
    for _ in range(votes):
        a, b = rng.choice(names, size=2, replace=False)
        p = 1 / (1 + 10 ** ((TRUE[b] - TRUE[a]) / 400))
        if rng.random() < tie_rate:
            battles.append((a, b, "tie"))
        else:
            a_wins = rng.random() < (p - tie_rate / 2) / (1 - tie_rate)
            battles.append((a, b, "a" if a_wins else "b"))
    return battles


def centred(ratings: dict) -> dict:
    shift = 1000 - sum(ratings.values()) / len(ratings)
    return {k: v + shift for k, v in ratings.items()}


def test_known_strengths_are_recovered_within_their_intervals():
    board = leaderboard(simulate(4000, seed=7), rounds=500, seed=0)
    truth = centred(TRUE)
    assert [row.label for row in board.rows] == list(TRUE)  # the true order
    assert board.battles == 4000 and sum(row.battles for row in board.rows) == 8000
    for row in board.rows:
        assert row.low < row.rating < row.high
        slack = (row.high - row.low) / 4  # a 95% interval misses now and then: allow a little
        assert row.low - slack <= truth[row.label] <= row.high + slack, row
        assert row.wins + row.losses + row.ties == row.battles
    assert [row.rank for row in board.rows] == sorted(row.rank for row in board.rows)
    assert board.rows[0].rank == 1 and board.rows[-1].rank == 5  # m5 is clearly below everyone


def test_intervals_narrow_with_more_votes():
    few = leaderboard(simulate(500, seed=3), rounds=300, seed=0)
    many = leaderboard(simulate(4000, seed=3), rounds=300, seed=0)
    width = {board: np.mean([row.high - row.low for row in board.rows]) for board in (few, many)}
    assert width[many] < 0.6 * width[few]  # about 1/sqrt(8) in theory


def test_the_bootstrap_is_seeded_and_leaves_out_models_missing_from_a_resample():
    counts = aggregate(simulate(300, seed=1))
    assert np.array_equal(bootstrap_ratings(counts, rounds=50, seed=5), bootstrap_ratings(counts, rounds=50, seed=5))
    rare = aggregate([("A", "B", "a"), ("B", "A", "a")] * 20 + [("A", "C", "a")])  # C plays once in 41
    ratings = bootstrap_ratings(rare, rounds=200, seed=0)
    assert np.isnan(ratings[:, 2]).any() and not np.isnan(ratings[:, :2]).any()
    assert bootstrap(rare, rounds=0).rows[0].low == bootstrap(rare, rounds=0).rows[0].rating


# --- the project's battles ------------------------------------------------------------------------------------


@pytest.fixture
def versions(project):
    return [
        ModelVersion.objects.create(project=project, kind="policy", version=n, base_model="embedded:tiny")
        for n in (1, 2, 3)
    ]


def make_comparisons(project, versions):
    """One prompt, two replies of each version; comparisons (imported, so no lease is needed) between them."""
    services.prompts_import(project=project, data=jsonl({"prompt": "Say hi", "completions": []}), filename="p.jsonl")
    source = ImportSource.objects.get(project=project)
    anchor = Message.objects.get(project=project, role=Role.USER)
    replies = {}
    for version in versions:
        for n in (1, 2):
            replies[version.version, n] = Message.objects.create(
                project=project,
                parent=anchor,
                role=Role.ASSISTANT,
                text=f"hi from v{version.version} #{n}",
                depth=anchor.depth + 1,
                path_hash=f"v{version.version}-{n}",
                author_model=version,
            )
    imported = Message.objects.create(
        project=project, parent=anchor, role=Role.ASSISTANT, text="hello", depth=1, path_hash="imp",
        author_import=source,
    )  # fmt: skip
    task = Task.objects.create(project=project, kind=TaskKind.COMPARE, anchor=anchor, candidates_key="k")
    counter = iter(range(1000))

    def compare(a, b, choice, *, both_bad=False, discarded=False):
        Comparison.objects.create(
            task=task,
            import_source=source,
            client_token=f"t{next(counter)}",
            candidate_a=a,
            candidate_b=b,
            choice=choice,
            both_bad=both_bad,
            discarded_at=timezone.now() if discarded else None,
        )

    return replies, imported, compare


def test_only_judgements_between_two_versions_count(project, versions):
    v1, v2, _ = versions
    replies, imported, compare = make_comparisons(project, versions)
    compare(replies[1, 1], replies[2, 1], -4)  # v1 much better
    compare(replies[2, 2], replies[1, 2], 3)  # v1 better (shown on the right)
    compare(replies[1, 1], replies[2, 2], 2)  # v2 slightly better
    compare(replies[1, 2], replies[2, 1], -1)  # about the same: a tie
    compare(replies[2, 1], replies[1, 1], 1)  # about the same: a tie
    compare(replies[1, 1], replies[2, 1], -4, both_bad=True)  # both bad: a tie whatever the choice
    compare(replies[1, 1], replies[2, 1], 4, discarded=True)  # discarded: does not count
    compare(replies[1, 1], replies[1, 2], 4)  # one version against itself: no battle
    compare(imported, replies[2, 1], -4)  # an imported reply: no battle
    assert arena.version_battles(project) == [
        (v1.pk, v2.pk, "a"),
        (v2.pk, v1.pk, "b"),
        (v1.pk, v2.pk, "b"),
        (v1.pk, v2.pk, "tie"),
        (v2.pk, v1.pk, "tie"),
        (v1.pk, v2.pk, "tie"),
    ]
    board = arena.project_leaderboard(project, rounds=100)
    assert board.battles == 6 and [row.key for row in board.rows] == [v1.pk, v2.pk]  # v3 never fought
    first, second = board.rows
    assert first.label == "policy-v1" and (first.wins, first.losses, first.ties, first.battles) == (2, 1, 3, 6)
    assert (second.wins, second.losses, second.ties) == (1, 2, 3)
    assert first.rating - second.rating == pytest.approx(400 * math.log10(3.5 / 2.5), abs=0.5)


def test_a_project_without_battles_has_an_empty_leaderboard(project, versions):
    replies, imported, compare = make_comparisons(project, versions)
    compare(replies[1, 1], replies[1, 2], 4)
    compare(imported, replies[2, 1], -4)
    compare(replies[1, 1], replies[2, 1], -4, discarded=True)
    assert Comparison.objects.count() == 3
    assert arena.version_battles(project) == [] and not arena.project_leaderboard(project)


def test_gold_tasks_are_no_battles(project, versions):
    replies, _, compare = make_comparisons(project, versions)
    Task.objects.update(is_gold=True, gold_answer={"choice": -4})
    compare(replies[1, 1], replies[2, 1], -4)
    assert arena.version_battles(project) == []


# --- the plot and the partial ---------------------------------------------------------------------------------


def test_the_plot_has_one_bar_per_row_on_a_shared_axis():
    board = leaderboard(simulate(600, seed=2), rounds=100, seed=0)
    plot = interval_plot(board.rows)
    assert len(plot.bars) == len(board.rows) == 5
    assert [bar.label for bar in plot.bars] == [row.label for row in board.rows]
    assert plot.low <= min(row.low for row in board.rows) and plot.high >= max(row.high for row in board.rows)
    for bar in plot.bars:
        assert plot.x0 <= bar.x_low <= bar.x <= bar.x_high <= plot.x1 and 0 < bar.y < plot.axis_y
    xs = [tick.x for tick in plot.ticks]
    assert len(xs) >= 3 and xs == sorted(xs) and xs[0] == plot.x0 and xs[-1] == plot.x1
    assert interval_plot([]).bars == ()


def test_the_partial_renders_the_table_and_the_plot():
    board = leaderboard(simulate(600, seed=2), rounds=100, seed=0)
    html = render_to_string("training/_leaderboard.html", {"leaderboard": board})
    assert html.count("<circle") == 5 and html.count('class="leaderboard__ci"') == 5
    assert html.count("<tr data-version=") == 5 and "95% CI" in html and "600 battles" in html
    assert "<script" not in html and not re.search(r"\son[a-z]+=", html)
    for row in board.rows:
        assert f"<td>{row.label}</td>" in html


def test_the_partial_explains_an_empty_leaderboard():
    html = render_to_string("training/_leaderboard.html", {"leaderboard": Leaderboard()})
    assert "No A/B judgements between replies of two model versions yet" in html and "<svg" not in html
