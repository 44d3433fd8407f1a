"""annotate.agreement: hand-worked cases, Krippendorff (2011)'s example, and comparisons with reference packages."""

from __future__ import annotations

import ast
import itertools
import math
import random
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from scipy import optimize, stats

from annotate import agreement
from annotate.agreement import (
    BradleyTerryFit,
    bradley_terry_ties,
    kendall_tau_b,
    krippendorff_alpha,
    majority,
    pair_relations,
    pairwise_agreement,
    tier_positions,
)

NAN = math.nan


def test_module_imports_only_the_standard_library_and_the_shared_fit():
    tree = ast.parse(Path(agreement.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots <= {"__future__", "math", "collections", "dataclasses", "typing", "ml"}, roots  # ml.statistics


# ---------------------------------------------------------------------------------------------------------------------
# tier_positions / pair_relations
# ---------------------------------------------------------------------------------------------------------------------


def test_tier_positions():
    # D > C > A = B
    assert tier_positions([["d"], ["c"], ["a", "b"]]) == {"d": 0, "c": 1, "a": 2, "b": 2}
    assert tier_positions([]) == {}


def test_tier_positions_rejects_an_item_listed_twice():
    with pytest.raises(ValueError, match="3"):
        tier_positions([[1, 3], [3]])


def test_pair_relations_by_hand():
    # [[4], [2, 3], [1]]: positions 4 -> 0, 2 -> 1, 3 -> 1, 1 -> 2.
    # (1, 2): 2 better -> +1; (1, 3): +1; (1, 4): +1; (2, 3): same tier -> 0; (2, 4): 4 better -> +1; (3, 4): +1.
    assert pair_relations([[4], [2, 3], [1]]) == {
        (1, 2): 1,
        (1, 3): 1,
        (1, 4): 1,
        (2, 3): 0,
        (2, 4): 1,
        (3, 4): 1,
    }
    # [[1], [3, 2], [4]]: the smaller item of each pair now wins except for the tie (2, 3).
    assert pair_relations([[1], [3, 2], [4]]) == {
        (1, 2): -1,
        (1, 3): -1,
        (1, 4): -1,
        (2, 3): 0,
        (2, 4): -1,
        (3, 4): -1,
    }
    assert pair_relations([[7]]) == {}


# ---------------------------------------------------------------------------------------------------------------------
# Krippendorff's alpha
# ---------------------------------------------------------------------------------------------------------------------


def test_alpha_nominal_by_hand():
    # Two coders, three units: (a, a), (a, b), (b, b).
    # Coincidences (each unit has m = 2, so every ordered pair adds 1 / (m - 1) = 1):
    #   o_aa = 2, o_ab = o_ba = 1, o_bb = 2  ->  n_a = 3, n_b = 3, n = 6.
    # alpha = 1 - (n - 1) * sum o_ck d_ck / sum n_c n_k d_ck = 1 - 5 * (1 + 1) / (3*3 + 3*3) = 1 - 10/18 = 4/9.
    units = [["a", "a"], ["a", "b"], ["b", "b"]]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(4 / 9, abs=1e-12)


def test_alpha_ordinal_and_interval_by_hand():
    # Units (1, 2), (2, 3), (1, 1).  o_12 = o_21 = 1, o_23 = o_32 = 1, o_11 = 2.  n_1 = 3, n_2 = 2, n_3 = 1, n = 6.
    # Ordinal d_ck = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2:
    #   d_12 = (5 - 2.5)^2 = 6.25, d_23 = (3 - 1.5)^2 = 2.25, d_13 = (6 - 2)^2 = 16.
    #   sum o d = 2*6.25 + 2*2.25 = 17;  sum n n d = 2*(3*2*6.25 + 2*1*2.25 + 3*1*16) = 180.
    #   alpha = 1 - 5 * 17 / 180 = 19/36.
    # Interval d = (c - k)^2: d_12 = d_23 = 1, d_13 = 4.
    #   sum o d = 4;  sum n n d = 2*(6 + 2 + 12) = 40;  alpha = 1 - 5 * 4 / 40 = 1/2.
    units = [[1, 2], [3, 2], [1, 1]]
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(19 / 36, abs=1e-12)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.5, abs=1e-12)
    assert krippendorff_alpha(units) == krippendorff_alpha(units, "ordinal")  # ordinal is the default


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers x 12 units, '.' = missing.
PAPER = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def _units(matrix: list[list[float]]) -> list[list[float]]:
    """Coders x units matrix with NaN for missing -> list of units, missing values dropped."""
    return [[v for v in column if not math.isnan(v)] for column in zip(*matrix, strict=True)]


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_alpha_reproduces_krippendorff_2011(level, published):
    ours = krippendorff_alpha(_units(PAPER), level)
    reference = krippendorff.alpha(reliability_data=PAPER, level_of_measurement=level)
    assert round(ours, 3) == published
    assert ours == pytest.approx(reference, abs=1e-12)


def test_alpha_ignores_order_within_units_and_unpairable_units():
    units = _units(PAPER)
    shuffled = [list(reversed(unit)) for unit in units] + [[3], [], [NAN, 2]]
    for level in agreement.LEVELS:
        assert krippendorff_alpha(shuffled, level) == pytest.approx(krippendorff_alpha(units, level), abs=1e-12)


def _random_matrix(rng: random.Random, values: list[float]) -> list[list[float]]:
    coders, units = rng.randint(2, 6), rng.randint(2, 15)
    missing = rng.choice([0.0, 0.2, 0.5])
    return [[NAN if rng.random() < missing else rng.choice(values) for _ in range(units)] for _ in range(coders)]


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_matches_reference_package_on_random_data(level):
    rng = random.Random(f"alpha-{level}")
    compared = 0
    for trial in range(150):
        domain = [1, 2, 3, 4, 5] if trial % 2 else [0.5, 1.0, 2.25, 7.0, 7.5, 10.0]
        values = rng.sample(domain, rng.randint(2, len(domain)))
        matrix = _random_matrix(rng, values)
        ours = krippendorff_alpha(_units(matrix), level)
        data = np.array(matrix, dtype=float)
        pairable = (~np.isnan(data)).sum(axis=0) >= 2
        observed = np.unique(data[:, pairable][~np.isnan(data[:, pairable])])
        if not pairable.any() or len(observed) < 2:
            assert ours is None  # nothing pairable, or every pairable value equal: alpha undefined
            continue
        reference = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert ours == pytest.approx(float(reference), abs=1e-9), matrix
        compared += 1
    assert compared > 100


def test_alpha_undefined_cases():
    assert krippendorff_alpha([]) is None
    assert krippendorff_alpha([[1], [2], []]) is None  # nothing pairable
    assert krippendorff_alpha([[2, 2], [2, 2, 2]], "interval") is None  # no expected disagreement
    assert krippendorff_alpha([[1, 1], [2, 2]], "nominal") == 1.0  # perfect agreement


def test_alpha_rejects_unknown_level():
    with pytest.raises(ValueError, match="cardinal"):
        krippendorff_alpha([[1, 2]], "cardinal")


# ---------------------------------------------------------------------------------------------------------------------
# pairwise_agreement / majority
# ---------------------------------------------------------------------------------------------------------------------


def test_pairwise_agreement_by_hand():
    # (1, 1, 2): 3 pairs, one equal.  (1, 2): 1 pair, none equal.  (3,): no pair.  (4, 4, 4, 4): 6 pairs, 6 equal.
    assert pairwise_agreement([[1, 1, 2], [1, 2], [3]]) == (1, 4)
    assert pairwise_agreement([[1, 1, 2], [1, 2], [3], [4, 4, 4, 4]]) == (7, 10)
    assert pairwise_agreement([]) == (0, 0)


def test_majority():
    assert majority([1, 1, 2]) == 1
    assert majority([-1, 0, 0, 1, 0]) == 0
    assert majority([3]) == 3
    assert majority([1, 2]) is None
    assert majority([1, 1, 2, 2, 3]) is None
    assert majority([]) is None


# ---------------------------------------------------------------------------------------------------------------------
# Kendall's tau-b
# ---------------------------------------------------------------------------------------------------------------------


def test_kendall_tau_b_by_hand():
    # x = 1 2 2 3, y = 1 3 2 2. The six pairs:
    #   (0,1) C, (0,2) C, (0,3) C, (1,2) tied in x, (1,3) x up / y down: D, (2,3) tied in y.
    #   C - D = 2, n0 = 6, ties_x = 1, ties_y = 1  ->  tau_b = 2 / sqrt(5 * 5) = 0.4.
    assert kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4, abs=1e-12)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau_b([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)


def test_kendall_tau_b_undefined_and_invalid():
    assert kendall_tau_b([], []) is None
    assert kendall_tau_b([1], [2]) is None
    assert kendall_tau_b([2, 2, 2], [1, 2, 3]) is None
    with pytest.raises(ValueError, match="length"):
        kendall_tau_b([1, 2], [1, 2, 3])


def test_kendall_tau_b_matches_scipy_on_random_tied_rankings():
    rng = random.Random("tau")
    for _ in range(300):
        n = rng.randint(2, 9)
        x = [rng.randint(0, rng.randint(1, 5)) for _ in range(n)]
        y = [rng.randint(0, rng.randint(1, 5)) for _ in range(n)]
        ours = kendall_tau_b(x, y)
        reference = stats.kendalltau(x, y).statistic  # variant="b" is scipy's default
        if math.isnan(reference):
            assert ours is None
        else:
            assert ours == pytest.approx(reference, abs=1e-12), (x, y)


# ---------------------------------------------------------------------------------------------------------------------
# Bradley–Terry with ties
# ---------------------------------------------------------------------------------------------------------------------


def _penalised_log_likelihood(items, outcomes, prior, thetas, eta):
    """Independent restatement of the objective: Davidson log-likelihood plus one virtual win, loss and tie (weight
    `prior` each) of every item against a reference of theta = 0."""

    def probabilities(a, b):
        pa, pb, pt = math.exp(a), math.exp(b), math.exp(eta) * math.sqrt(math.exp(a) * math.exp(b))
        total = pa + pb + pt
        return pa / total, pt / total, pb / total  # x wins, tie, y wins

    position = {item: k for k, item in enumerate(items)}
    total = 0.0
    for x, y, relation, weight in outcomes:
        total += weight * math.log(probabilities(thetas[position[x]], thetas[position[y]])[relation + 1])
    for theta in thetas:
        total += prior * sum(math.log(p) for p in probabilities(theta, 0.0))
    return total


def _raw_parameters(fit: BradleyTerryFit, items, outcomes, prior):
    """The fit reports centred scores; recover the offset to the reference by maximising over it (concave in it)."""
    centred = [fit.scores[item] for item in items]
    eta = math.log(fit.tie_strength)
    result = optimize.minimize_scalar(
        lambda c: -_penalised_log_likelihood(items, outcomes, prior, [s + c for s in centred], eta),
        bounds=(-20, 20),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return [s + result.x for s in centred], eta


CLEAR_ITEMS = ["a", "b", "c", "d"]
# a > b > c > d mostly, with a few upsets and ties; one ranking of 4 gives weight 1/6 to each of its pairs.
CLEAR_OUTCOMES = [
    ("a", "b", -1, 1.0),
    ("a", "b", -1, 1.0),
    ("a", "b", 1, 1.0),
    ("b", "c", -1, 1.0),
    ("b", "c", 0, 1.0),
    ("b", "c", -1, 1.0),
    ("c", "d", -1, 1.0),
    ("d", "c", 1, 1.0),
    ("c", "d", 0, 1.0),
    ("a", "d", -1, 2.0),
    ("d", "b", 1, 0.5),
    *[(x, y, -1, 1 / 6) for x, y in [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]],
]


def test_bt_recovers_the_obvious_order_and_probabilities_sum_to_one():
    fit = bradley_terry_ties(CLEAR_ITEMS, CLEAR_OUTCOMES)
    assert fit.converged
    assert fit.iterations < 50
    assert sorted(CLEAR_ITEMS, key=lambda item: -fit.scores[item]) == ["a", "b", "c", "d"]
    assert sum(fit.scores.values()) == pytest.approx(0.0, abs=1e-12)
    assert fit.tie_strength > 0
    for x in CLEAR_ITEMS:
        for y in CLEAR_ITEMS:
            if x != y:
                win, tie, loss = fit.probability(x, y)
                assert win + tie + loss == pytest.approx(1.0, abs=1e-12)
                assert min(win, tie, loss) > 0
                assert fit.probability(y, x) == pytest.approx((loss, tie, win), abs=1e-15)
    win, tie, loss = fit.probability("a", "d")
    assert win > 0.8 > loss


def test_bt_fit_is_the_maximum_of_the_penalised_likelihood():
    prior = 0.1
    fit = bradley_terry_ties(CLEAR_ITEMS, CLEAR_OUTCOMES, prior=prior)
    thetas, eta = _raw_parameters(fit, CLEAR_ITEMS, CLEAR_OUTCOMES, prior)
    best = _penalised_log_likelihood(CLEAR_ITEMS, CLEAR_OUTCOMES, prior, thetas, eta)
    # Gradient vanishes (central differences) ...
    point = [*thetas, eta]
    for k in range(len(point)):
        up = [v + (1e-5 if j == k else 0) for j, v in enumerate(point)]
        down = [v - (1e-5 if j == k else 0) for j, v in enumerate(point)]
        slope = (
            _penalised_log_likelihood(CLEAR_ITEMS, CLEAR_OUTCOMES, prior, up[:-1], up[-1])
            - _penalised_log_likelihood(CLEAR_ITEMS, CLEAR_OUTCOMES, prior, down[:-1], down[-1])
        ) / 2e-5
        assert abs(slope) < 1e-6, (k, slope)
    # ... no random nearby point does better ...
    rng = random.Random("bt-perturb")
    for _ in range(200):
        size = rng.choice([1e-3, 1e-2, 0.1, 0.5])
        moved = [v + rng.gauss(0, size) for v in point]
        assert _penalised_log_likelihood(CLEAR_ITEMS, CLEAR_OUTCOMES, prior, moved[:-1], moved[-1]) <= best + 1e-12
    # ... and an off-the-shelf optimiser on the restated objective lands on the same point.
    reference = optimize.minimize(
        lambda v: -_penalised_log_likelihood(CLEAR_ITEMS, CLEAR_OUTCOMES, prior, list(v[:-1]), v[-1]),
        x0=np.zeros(len(point)),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    assert reference.x == pytest.approx(point, abs=1e-5)


def test_bt_symmetric_data_gives_equal_scores():
    items = [1, 2, 3]
    outcomes = [(1, 2, -1, 1.0), (2, 3, -1, 1.0), (3, 1, -1, 1.0), (1, 2, 0, 0.5), (2, 3, 0, 0.5), (3, 1, 0, 0.5)]
    fit = bradley_terry_ties(items, outcomes)
    assert fit.converged
    assert fit.scores == pytest.approx({1: 0.0, 2: 0.0, 3: 0.0}, abs=1e-9)
    # Two items that beat each other equally often.
    fit = bradley_terry_ties(["x", "y"], [("x", "y", -1, 3.0), ("x", "y", 1, 3.0)])
    assert fit.scores["x"] == pytest.approx(fit.scores["y"], abs=1e-9)


def test_bt_more_ties_raise_nu():
    base = [("a", "b", -1, 1.0), ("b", "a", -1, 1.0), ("a", "c", -1, 1.0), ("b", "c", -1, 1.0)]
    strengths = [
        bradley_terry_ties(["a", "b", "c"], base + [("a", "b", 0, 1.0)] * ties).tie_strength for ties in range(6)
    ]
    assert all(lo < hi for lo, hi in itertools.pairwise(strengths)), strengths


def test_bt_without_ties_has_small_positive_nu():
    outcomes = [("a", "b", -1, 1.0)] * 20 + [("b", "a", -1, 1.0)] * 10 + [("b", "c", -1, 1.0)] * 20
    fit = bradley_terry_ties(["a", "b", "c"], outcomes)
    assert fit.converged
    assert 0 < fit.tie_strength < 0.1
    assert all(math.isfinite(s) for s in fit.scores.values())


def test_bt_only_ties_converges_to_equal_scores_and_large_nu():
    fit = bradley_terry_ties(["a", "b"], [("a", "b", 0, 1.0)] * 5)
    assert fit.converged
    assert fit.scores == pytest.approx({"a": 0.0, "b": 0.0}, abs=1e-9)
    # At equal strengths P(tie) = nu / (2 + nu); the tie weight is 5 + 2 * 0.1 against 2 * 0.1 wins and 2 * 0.1
    # losses, so the likelihood peaks at nu / (2 + nu) = 5.2 / 5.6, i.e. nu = 26.
    assert fit.tie_strength == pytest.approx(26.0, rel=1e-6)


def test_bt_perfect_separation_stays_finite_and_shrinks_with_the_prior():
    outcomes = [(1, 2, -1, 1.0), (2, 3, -1, 1.0), (1, 3, -1, 1.0)] * 10
    weak = bradley_terry_ties([1, 2, 3], outcomes, prior=0.01)
    strong = bradley_terry_ties([1, 2, 3], outcomes, prior=1.0)
    for fit in (weak, strong):
        assert fit.converged
        assert all(math.isfinite(s) for s in fit.scores.values())
        assert fit.scores[1] > fit.scores[2] > fit.scores[3]
        assert 0 < fit.tie_strength < 1
    assert weak.scores[1] - weak.scores[3] > strong.scores[1] - strong.scores[3]


def test_bt_absent_items_sit_at_the_reference():
    # 'a' beats 'b' three times; 'c' never plays. The problem is symmetric under theta -> -theta with a and b swapped,
    # so a and b sit symmetrically around the reference and c (alone with the prior) sits on it: centred score 0.
    fit = bradley_terry_ties(["a", "b", "c"], [("a", "b", -1, 1.0)] * 3)
    assert fit.scores["c"] == pytest.approx(0.0, abs=1e-9)
    assert fit.scores["a"] == pytest.approx(-fit.scores["b"], abs=1e-9)
    assert fit.scores["a"] > 0
    # Nothing observed at all: every score 0 and nu = 1 (one virtual win, loss and tie each).
    empty = bradley_terry_ties([1, 2, 3], [])
    assert empty.converged
    assert empty.scores == {1: 0.0, 2: 0.0, 3: 0.0}
    assert empty.tie_strength == pytest.approx(1.0)


def test_bt_single_item_and_no_items():
    single = bradley_terry_ties(["only"], [])
    assert single.converged
    assert single.scores == {"only": 0.0}
    assert single.probability("only", "only") == pytest.approx((1 / 3, 1 / 3, 1 / 3))  # nu = 1: each 1 / (1 + 1 + 1)
    none = bradley_terry_ties([], [])
    assert none.scores == {}
    assert none.converged


def test_bt_weights_act_as_counts():
    once = bradley_terry_ties([1, 2], [(1, 2, -1, 2.0), (1, 2, 0, 1.0)])
    twice = bradley_terry_ties([1, 2], [(1, 2, -1, 1.0), (2, 1, 1, 1.0), (1, 2, 0, 1.0)])
    assert once.scores == pytest.approx(twice.scores, abs=1e-9)
    assert once.tie_strength == pytest.approx(twice.tie_strength, rel=1e-9)


def test_bt_handles_many_random_small_problems():
    rng = random.Random("bt-random")
    for _ in range(40):
        items = list(range(rng.randint(1, 6)))
        outcomes = []
        if len(items) > 1:
            for _ in range(rng.randint(0, 12)):
                x, y = rng.sample(items, 2)
                outcomes.append((x, y, rng.choice([-1, 0, 1]), rng.choice([1.0, 0.5, 1 / 6])))
        fit = bradley_terry_ties(items, outcomes, prior=rng.choice([0.01, 0.1, 1.0]))
        assert fit.converged
        assert all(math.isfinite(s) for s in fit.scores.values())
        assert 0 < fit.tie_strength < math.inf


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (("a", "z", -1, 1.0), "'z'"),
        (("q", "a", -1, 1.0), "'q'"),
        (("a", "b", 2, 1.0), "relation"),
        (("a", "b", -2, 1.0), "relation"),
        (("a", "b", 0, 0.0), "weight"),
        (("a", "b", 0, -1.0), "weight"),
        (("a", "b", 0, NAN), "weight"),
        (("a", "a", 0, 1.0), "itself"),
    ],
)
def test_bt_validates_outcomes(outcome, message):
    with pytest.raises(ValueError, match=message):
        bradley_terry_ties(["a", "b"], [("a", "b", -1, 1.0), outcome])


def test_bt_validates_items_and_prior():
    with pytest.raises(ValueError, match="twice"):
        bradley_terry_ties(["a", "a"], [])
    with pytest.raises(ValueError, match="prior"):
        bradley_terry_ties(["a"], [], prior=0.0)
