"""The one Bradley–Terry fit (ml.statistics): both readings of a tie, batches, and the optimum checked against a
general-purpose optimiser."""

import math
import random

import numpy as np
import pytest
from scipy import optimize

from ml import statistics


def test_half_wins_two_items_have_the_closed_form_odds():
    # 3 wins and a tie against 1 loss and the same tie: 3.5 points to 1.5, odds 7:3.
    outcomes = [("a", "b", -1, 3.0), ("a", "b", 1, 1.0), ("a", "b", 0, 1.0)]
    fit = statistics.bradley_terry(outcomes, items=["a", "b"], ties="half", ridge=1e-9)
    assert fit.scores["a"] - fit.scores["b"] == pytest.approx(math.log(3.5 / 1.5), abs=1e-6)
    assert fit.scores["a"] + fit.scores["b"] == pytest.approx(0.0, abs=1e-12) and fit.tie_strength == 0.0


def _davidson_objective(params, n, outcomes, prior):
    theta, eta = params[:n], params[n]

    def log_p(tx, ty, r):
        e = np.array([tx, eta + (tx + ty) / 2, ty])
        return e[r] - np.logaddexp.reduce(e)

    total = sum(w * log_p(theta[x], theta[y], r + 1) for x, y, r, w in outcomes)
    total += sum(prior * log_p(theta[i], 0.0, r) for i in range(n) for r in range(3))
    return -total


def test_davidson_fit_is_the_optimum_a_general_optimiser_finds():
    rng = random.Random(5)
    items = list(range(5))
    outcomes = [(*rng.sample(items, 2), rng.choice([-1, 0, 1]), rng.choice([1.0, 1 / 6])) for _ in range(15)]
    fit = statistics.bradley_terry_ties(items, outcomes, prior=0.1)
    found = optimize.minimize(_davidson_objective, np.zeros(6), args=(5, outcomes, 0.1), options={"gtol": 1e-10})
    theta = found.x[:5] - found.x[:5].mean()
    assert [fit.scores[i] for i in items] == pytest.approx(list(theta), abs=1e-5)
    assert fit.tie_strength == pytest.approx(math.exp(found.x[5]), rel=1e-5) and fit.converged


def test_a_batch_is_fitted_as_each_row_alone():
    first, second = np.array([0, 0, 1]), np.array([1, 2, 2])
    rng = np.random.default_rng(3)
    weights = rng.integers(0, 6, size=(4, 3, 3)).astype(float)
    for ties, regulariser in (("half", {"ridge": 1e-3}), ("davidson", {"prior": 0.1})):
        batch = statistics.fit_counts(3, first, second, weights, ties=ties, **regulariser)
        for row in range(4):
            alone = statistics.fit_counts(3, first, second, weights[row], ties=ties, **regulariser)
            assert batch.strengths[row] == pytest.approx(alone.strengths[0], abs=1e-8)
        assert batch.converged.all() and batch.strengths.sum(axis=1) == pytest.approx(np.zeros(4), abs=1e-9)


def test_each_reading_needs_its_regulariser():
    with pytest.raises(ValueError, match="prior"):
        statistics.fit_counts(2, [0], [1], np.ones((1, 3)), ties="davidson", prior=0.0)
    with pytest.raises(ValueError, match="ridge"):
        statistics.fit_counts(2, [0], [1], np.ones((1, 3)), ties="half", ridge=0.0)
    with pytest.raises(ValueError, match="ties"):
        statistics.fit_counts(2, [0], [1], np.ones((1, 3)), ties="elo")
