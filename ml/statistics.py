"""Bradley–Terry: the one fit behind the labelers' aggregate (quality page, exports) and the model leaderboard.

NumPy only (no torch, no Django), so the web side can use it.

Items i have strengths θ_i; a comparison of i (first) with j (second) ends in one of three outcomes, first won,
tie or second won, and each outcome's probability is a softmax of a linear score:

* first won: θ_i,   tie: η + (θ_i + θ_j)/2,   second won: θ_j.

Two ways of reading ties share the fit:

* ``ties="davidson"`` (Davidson 1970): η = log ν is fitted with the strengths; P(i beats j) =
  p_i / (p_i + p_j + ν√(p_i p_j)), p = exp θ. The labelers' aggregate uses it: a tie is evidence that two replies
  are close, not half a win. Regularised by a proper prior: every item plays a virtual reference item (θ = 0) once
  for each outcome, each game of weight ``prior``, which keeps every θ and ν finite.
* ``ties="half"`` (Chatbot Arena): no tie outcome; a tie counts as half a win for each side, and
  P(i beats j) = σ(θ_i − θ_j). Regularised by a ridge (ridge/2)·Σθ², which fixes the common offset and keeps an
  undefeated item finite.

The penalised log-likelihood is strictly concave in (θ, η) either way; Newton's method with step halving maximises it,
for a whole batch of weightings at once (the leaderboard's bootstrap refits a thousand resamples in one call).
Strengths come back centred: they average 0.

>>> fit = bradley_terry([("a", "b", -1, 3.0), ("a", "b", 1, 1.0)], items=["a", "b"], ties="half", ridge=1e-9)
>>> round(fit.scores["a"] - fit.scores["b"], 4) == round(math.log(3), 4)  # 3 wins to 1: odds 3
True
>>> fit = bradley_terry_ties(["x", "y"], [("x", "y", 0, 1.0)] * 5)
>>> abs(fit.scores["x"] - fit.scores["y"]) < 1e-12 and fit.tie_strength > 1  # only ties: equal, ties likely
True
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Ties = Literal["davidson", "half"]
FIRST, TIE, SECOND = 0, 1, 2  # outcome columns of the weights


@dataclass(frozen=True)
class Fit:
    """Strengths (batch, items), centred; η (batch,) for Davidson's ties (-inf for half wins); Newton steps taken;
    whether each row converged."""

    strengths: np.ndarray
    eta: np.ndarray
    steps: int
    converged: np.ndarray


def fit_counts(
    n_items: int,
    first: np.ndarray,
    second: np.ndarray,
    weights: np.ndarray,
    *,
    ties: Ties,
    ridge: float = 0.0,
    prior: float = 0.0,
    start: np.ndarray | None = None,
    tol: float = 1e-10,
    max_steps: int = 200,
) -> Fit:
    """Fit strengths for comparisons aggregated by kind: kind k compares item ``first[k]`` with ``second[k]``, and
    ``weights[b, k]`` holds (first won, tie, second won) weights for batch row b, shape (batch, kinds, 3).
    ``start`` (batch, items) starts the strengths (default 0). Davidson's ties need ``prior`` > 0, half wins
    ``ridge`` > 0 (see the module docstring)."""
    if ties not in ("davidson", "half"):
        raise ValueError(f"ties is 'davidson' or 'half', not {ties!r}")
    if ties == "davidson" and not (prior > 0 and math.isfinite(prior)):
        raise ValueError(f"prior must be a positive finite number, not {prior!r}")
    if ties == "half" and not ridge > 0:
        raise ValueError("The ridge must be positive: it keeps the fit unique and finite.")
    weights = np.asarray(weights, dtype=float)
    if weights.ndim == 2:
        weights = weights[None]
    batch = weights.shape[0]
    if n_items == 0:  # nothing to fit: ν at its prior's optimum, 1
        return Fit(np.zeros((batch, 0)), np.zeros(batch) if ties == "davidson" else np.full(batch, -np.inf), 0,
                   np.ones(batch, dtype=bool))  # fmt: skip
    first, second = np.asarray(first, dtype=np.intp), np.asarray(second, dtype=np.intp)
    davidson = ties == "davidson"
    dim = n_items + davidson  # θ, then η for Davidson
    # Virtual games against the reference item (Davidson's prior): one kind per item, with no second strength.
    if davidson:
        first = np.concatenate([first, np.arange(n_items)])
        second_of = np.concatenate([second, np.full(n_items, -1)])
        weights = np.concatenate([weights, np.full((batch, n_items, 3), float(prior))], axis=1)
    else:
        second_of = second
        weights = weights.copy()
        weights[..., FIRST] += weights[..., TIE] / 2
        weights[..., SECOND] += weights[..., TIE] / 2
        weights[..., TIE] = 0.0
    total_kinds = len(first)
    features = np.zeros((total_kinds, 3, dim))  # the outcome scores are features @ params
    rows = np.arange(total_kinds)
    features[rows, FIRST, first] = 1.0
    features[rows, TIE, first] = 0.5
    real = second_of >= 0
    features[rows[real], SECOND, second_of[real]] = 1.0
    features[rows[real], TIE, second_of[real]] += 0.5
    if davidson:
        features[:, TIE, n_items] = 1.0
    else:  # half wins: no tie outcome at all
        features, weights = features[:, [FIRST, SECOND]], weights[..., [FIRST, SECOND]]
    outcomes = features.shape[1]
    totals = weights.sum(axis=2)  # (batch, kinds)
    penalty = np.zeros(dim)
    penalty[:n_items] = ridge

    flat = features.reshape(total_kinds * outcomes, dim)

    def log_softmax(params: np.ndarray) -> np.ndarray:
        """log P(outcome) per (batch, kind, outcome)."""
        scores = (params @ flat.T).reshape(len(params), total_kinds, outcomes)
        norm = np.logaddexp(scores[..., 0], scores[..., 1])
        if outcomes == 3:
            norm = np.logaddexp(norm, scores[..., 2])
        return scores - norm[..., None]

    def objective(params: np.ndarray, w: np.ndarray) -> np.ndarray:
        log_p = log_softmax(params)
        return (w * np.where(w > 0, log_p, 0.0)).sum(axis=(1, 2)) - 0.5 * (penalty * params**2).sum(axis=1)

    params = np.zeros((batch, dim))
    if start is not None:
        params[:, :n_items] = start
    value = objective(params, weights)
    active = np.arange(batch)
    converged = np.zeros(batch, dtype=bool)
    steps = 0
    eye = np.diag(penalty)
    while len(active) and steps < max_steps:
        steps += 1
        p_, w, n = params[active], weights[active], totals[active]
        prob = np.exp(log_softmax(p_))
        mean = sum(prob[..., o, None] * features[:, o] for o in range(outcomes))  # (batch, kinds, dim)
        gradient = (w - n[..., None] * prob).reshape(len(p_), -1) @ flat - penalty * p_
        # Σ_k n_k (Σ_o p_ko x_ko x_koᵀ − m_k m_kᵀ), as matrix products (batch, dim, kinds) @ (kinds, dim).
        weighted = n[..., None] * prob  # (batch, kinds, outcomes)
        information = sum((weighted[:, None, :, o] * features[:, o].T) @ features[:, o] for o in range(outcomes))
        information = information - (n[:, None, :] * mean.transpose(0, 2, 1)) @ mean + eye
        step = np.linalg.solve(information, gradient[..., None])[..., 0]
        moving = np.max(np.abs(step), axis=1, initial=0.0) >= tol
        size = np.ones(len(p_))
        current = value[active]
        for _ in range(60):
            trial = p_ + size[:, None] * step
            trial_value = objective(trial, w)
            worse = moving & (trial_value < current - 1e-12 * np.abs(current))
            if not worse.any():
                break
            size[worse] /= 2
        done = ~moving | worse  # a step below the tolerance, or one that cannot improve any more (as far as floats go)
        converged[active[done]] = True
        keep = ~worse
        params[active[keep]] = trial[keep]
        value[active[keep]] = trial_value[keep]
        active = active[~done]
    strengths = params[:, :n_items]
    strengths = strengths - strengths.mean(axis=1, keepdims=True) if n_items else strengths
    eta = params[:, n_items] if davidson else np.full(batch, -np.inf)
    return Fit(strengths=strengths, eta=eta, steps=steps, converged=converged)


# --- outcomes as (x, y, relation, weight): the labelers' judgements ---------------------------------------------


def _davidson(theta_x: float, theta_y: float, eta: float) -> tuple[float, float, float]:
    """(P(x wins), P(tie), P(y wins)) for log-strengths theta and log tie strength eta, overflow-safe."""
    exponents = (theta_x, eta + (theta_x + theta_y) / 2, theta_y)
    top = max(exponents)
    weights = [math.exp(e - top) for e in exponents]
    total = sum(weights)
    return weights[0] / total, weights[1] / total, weights[2] / total


@dataclass(frozen=True)
class BradleyTerryFit:
    """Result of :func:`bradley_terry_ties` (and :func:`bradley_terry`).

    ``scores`` are log-strengths centred to mean 0 (higher is better); ``tie_strength`` is Davidson's ν (0 when ties
    count as half wins).
    """

    scores: dict[Hashable, float]
    tie_strength: float
    iterations: int
    converged: bool

    def probability(self, x: Hashable, y: Hashable) -> tuple[float, float, float]:
        """``(P(x wins), P(tie), P(y wins))`` under the Davidson model. Unknown items raise ``KeyError``."""
        eta = math.log(self.tie_strength) if self.tie_strength > 0 else -math.inf
        return _davidson(self.scores[x], self.scores[y], eta)


def _tally(items: Sequence[Hashable], outcomes: Iterable[tuple[Hashable, Hashable, int, float]]):
    index: dict[Hashable, int] = {}
    for item in items:
        if item in index:
            raise ValueError(f"item {item!r} is listed twice")
        index[item] = len(index)
    tallies: dict[tuple[int, int], list[float]] = {}
    for outcome in outcomes:
        x, y, relation, weight = outcome
        for item in (x, y):
            if item not in index:
                raise ValueError(f"outcome {outcome!r} names unknown item {item!r}")
        if x == y:
            raise ValueError(f"outcome {outcome!r} compares item {x!r} with itself")
        if relation not in (-1, 0, 1):
            raise ValueError(f"outcome {outcome!r} has relation {relation!r}; expected -1, 0 or 1")
        if not (isinstance(weight, int | float) and weight > 0 and math.isfinite(weight)):
            raise ValueError(f"outcome {outcome!r} has weight {weight!r}; expected a positive finite number")
        i, j = index[x], index[y]
        if i > j:
            i, j, relation = j, i, -relation
        tallies.setdefault((i, j), [0.0, 0.0, 0.0])[relation + 1] += weight
    return index, tallies


def bradley_terry(
    outcomes: Iterable[tuple[Hashable, Hashable, int, float]],
    *,
    items: Sequence[Hashable],
    ties: Ties = "davidson",
    prior: float = 0.1,
    ridge: float = 1e-3,
    max_iterations: int = 200,
    tolerance: float = 1e-8,
) -> BradleyTerryFit:
    """Fit weighted outcomes ``(x, y, relation, weight)``: relation ``-1`` means x was preferred, ``+1`` y, ``0`` a
    tie; ``weight > 0`` scales its log-likelihood term (a ranking of K items can give each of its pairs weight
    1 / C(K, 2) so that every ranking counts once). ``ties`` says how a tie is read (module docstring); ``prior``
    regularises Davidson's fit, ``ridge`` the half-win one.

    Raises ``ValueError`` for duplicate items, an outcome naming an unknown item or the same item twice, a relation
    outside {-1, 0, 1}, a weight that is not a positive finite number, or a non-positive prior (ridge)."""
    index, tallies = _tally(items, outcomes)
    keys = sorted(tallies)
    weights = np.array([tallies[k] for k in keys], dtype=float).reshape(1, len(keys), 3)
    fit = fit_counts(
        len(index),
        np.array([i for i, _ in keys], dtype=np.intp),
        np.array([j for _, j in keys], dtype=np.intp),
        weights,
        ties=ties,
        prior=prior if ties == "davidson" else 0.0,
        ridge=ridge if ties == "half" else 0.0,
        tol=tolerance,
        max_steps=max_iterations,
    )
    strengths = fit.strengths[0]
    return BradleyTerryFit(
        scores={item: float(strengths[i]) for item, i in index.items()},
        tie_strength=float(math.exp(fit.eta[0])) if ties == "davidson" else 0.0,
        iterations=fit.steps,
        converged=bool(fit.converged[0]),
    )


def bradley_terry_ties(
    items: Sequence[Hashable],
    outcomes: Iterable[tuple[Hashable, Hashable, int, float]],
    *,
    prior: float = 0.1,
    max_iterations: int = 200,
    tolerance: float = 1e-8,
) -> BradleyTerryFit:
    """Bradley–Terry with ties of Davidson (1970) by penalised maximum likelihood (:func:`bradley_terry` with
    ``ties="davidson"``).

    With strengths p_i = exp(θ_i) and tie parameter ν,
    ``P(i > j) = p_i / (p_i + p_j + ν sqrt(p_i p_j))`` and ``P(i = j) = ν sqrt(p_i p_j) / (same denominator)``.

    Prior (pseudo-counts): every item plays a virtual reference item of strength 1 (θ = 0) and gets one win, one
    loss and one tie against it, each of weight ``prior``. This is a proper log-concave prior on (θ_i, log ν): it
    keeps every score finite even for perfectly separated data, gives items that appear in no outcome θ = 0 (the
    reference, before centring), and keeps ν strictly between 0 and infinity. The virtual outcomes alone are best
    fitted by ν = 1. ``prior`` must be > 0; smaller values shrink less. ``converged`` is True once the largest
    Newton step is below ``tolerance``.
    """
    return bradley_terry(
        outcomes, items=items, ties="davidson", prior=prior, max_iterations=max_iterations, tolerance=tolerance
    )
