"""A model leaderboard from pairwise human votes, the way Chatbot Arena computes it (Chiang et al. 2024,
"Chatbot Arena: An Open Platform for Evaluating LLMs by Human Preference", arXiv:2403.04132, section 4).

Pure: numpy and the standard library only, no Django (`training.arena` reads the battles from the database).

The method
----------
A *battle* is one vote between replies of two different models: model A won, model B won, or a tie.

* Bradley–Terry. Each model i has a strength β_i and P(i beats j) = σ(β_i − β_j), σ the logistic function. The
  strengths are fitted by maximum likelihood. A tie counts as half a win for each side (Arena's pivot tables give a
  win weight 2 and a tie weight 1 in each direction, the same thing).
* The Elo scale. Ratings are R_i = 1000 + 400·β_i / ln 10, so R_i − R_j = 400·log10(odds that i beats j): 400
  points apart means 10:1 odds, as in Elo. They average 1000 (see the ridge below).
* Fitting. Battles are first aggregated into counts per (pair of models, outcome); the log-likelihood depends on
  the data only through these counts. Newton's method with a backtracking line search maximises it on a few
  dozen numbers however many votes there are.
* The ridge. Strengths are fixed only up to a common constant, and a model that won every battle has an infinite
  maximum-likelihood rating. A tiny L2 penalty (ridge/2)·Σβ² fixes both: the objective becomes strictly concave,
  so the fit is unique and finite. At the optimum the gradient of the likelihood, which sums to zero over every
  connected group of models, equals ridge·β, so the strengths of each connected group sum to zero: the ratings
  average exactly 1000 (and models never compared with each other, even indirectly, are not comparable). The
  default ridge moves ratings fitted from a handful of votes by a fraction of a point, but an undefeated model's
  rating is then set by the ridge alone: finite and above everyone it beat, yet large and not meaningful as a
  number (its bootstrap interval says how little is known).
* Confidence intervals. The battles are resampled with replacement `rounds` times (a multinomial draw over the
  aggregated battle kinds, which is the same as resampling the individual battles), each resample is refitted,
  and the 2.5th and 97.5th percentiles of a model's ratings bound its 95% interval. A model that drew no battle
  in a resample is left out of that round's percentiles, as in Arena's notebook.
* Rank. As on Arena's leaderboard: 1 + the number of models that are better beyond doubt, i.e. whose interval's
  lower end lies above this model's upper end. Models whose intervals overlap share a rank.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from ml import statistics

if TYPE_CHECKING:
    from training.charts import IntervalPlot

Outcome = Literal["a", "b", "tie"]
A_WINS: Outcome = "a"
B_WINS: Outcome = "b"
TIE: Outcome = "tie"
OUTCOMES: tuple[Outcome, ...] = (A_WINS, B_WINS, TIE)

SCALE = 400.0  # Elo points per factor BASE in the odds
BASE = 10.0
INIT_RATING = 1000.0  # the ratings' average
RIDGE = 1e-3  # L2 penalty on the strengths in natural log-odds units; see the module docstring
ROUNDS = 1000
LEVEL = 0.95

_OUTCOME_INDEX = {A_WINS: 0, B_WINS: 1, TIE: 2}
# The fit's outcome column (first won, tie, second won) of each outcome index (first won, second won, tie).
_OUTCOME_COLUMN = np.array([statistics.FIRST, statistics.SECOND, statistics.TIE])


@dataclass(frozen=True)
class BattleCounts:
    """Battles aggregated per (pair, outcome): battle kind t is a battle between `models[first[t]]` and
    `models[second[t]]` (first < second) that ended in `outcome[t]` (0: first won, 1: second won, 2: tie), and
    happened `count[t]` times. Which side a model was shown on does not matter to Bradley–Terry."""

    models: tuple[Hashable, ...]
    first: np.ndarray
    second: np.ndarray
    outcome: np.ndarray
    count: np.ndarray

    @property
    def total(self) -> int:
        return int(self.count.sum())

    def per_model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Wins, losses and ties of each model (in `models` order)."""
        n = len(self.models)
        wins, losses, ties = np.zeros(n, dtype=int), np.zeros(n, dtype=int), np.zeros(n, dtype=int)
        for outcome, (winner, loser) in enumerate([(self.first, self.second), (self.second, self.first)]):
            kind = self.outcome == outcome
            np.add.at(wins, winner[kind], self.count[kind])
            np.add.at(losses, loser[kind], self.count[kind])
        kind = self.outcome == 2
        np.add.at(ties, self.first[kind], self.count[kind])
        np.add.at(ties, self.second[kind], self.count[kind])
        return wins, losses, ties


@dataclass(frozen=True)
class Row:
    """One model's line on the leaderboard. `key` is the caller's id for the model (a ModelVersion id in
    `training.arena`); `low`–`high` is the 95% bootstrap interval of `rating`."""

    key: Hashable
    label: str
    rating: float
    low: float
    high: float
    rank: int
    battles: int
    wins: int
    losses: int
    ties: int

    @property
    def minus(self) -> float:
        """How far the interval reaches below the rating (Arena shows intervals as +high/−low)."""
        return self.rating - self.low

    @property
    def plus(self) -> float:
        return self.high - self.rating


@dataclass(frozen=True)
class Leaderboard:
    """Rows best first (by rating); `battles` is the number of battles fitted, `rounds` the bootstrap resamples."""

    rows: tuple[Row, ...] = ()
    battles: int = 0
    rounds: int = 0
    level: float = LEVEL

    def __bool__(self) -> bool:
        return bool(self.rows)

    @property
    def plot(self) -> IntervalPlot:
        """The ratings and intervals as an SVG plot's geometry (`training.charts`, pure as well)."""
        from training.charts import interval_plot

        return interval_plot(self.rows)


def aggregate(battles: Iterable[tuple[Hashable, Hashable, Outcome]]) -> BattleCounts:
    """Count battles `(model_a, model_b, outcome)` per pair and outcome ("a", "b" or "tie"). Models are numbered in
    sorted order of their keys when they sort (else in order of first appearance)."""
    tally: dict[tuple[Hashable, Hashable, int], int] = {}
    seen: dict[Hashable, None] = {}
    for a, b, outcome in battles:
        if outcome not in _OUTCOME_INDEX:
            raise ValueError(f"A battle's outcome is one of {OUTCOMES}, not {outcome!r}.")
        if a == b:
            raise ValueError(f"A battle is between two different models, not {a!r} against itself.")
        seen.setdefault(a)
        seen.setdefault(b)
        key = (a, b, _OUTCOME_INDEX[outcome])
        tally[key] = tally.get(key, 0) + 1
    try:
        models = tuple(sorted(seen))  # type: ignore[type-var]
    except TypeError:
        models = tuple(seen)
    index = {model: i for i, model in enumerate(models)}
    merged: dict[tuple[int, int, int], int] = {}
    for (a, b, outcome), n in tally.items():
        i, j = index[a], index[b]
        if i > j:  # put the lower index first; A winning becomes the second model winning
            i, j, outcome = j, i, (1 - outcome if outcome < 2 else 2)
        merged[(i, j, outcome)] = merged.get((i, j, outcome), 0) + n
    keys = sorted(merged)
    column = [np.array([k[c] for k in keys], dtype=np.intp) for c in range(3)]
    count = np.array([merged[k] for k in keys], dtype=np.int64)
    return BattleCounts(models, column[0], column[1], column[2], count)


def fit_bradley_terry(
    counts: BattleCounts,
    *,
    ridge: float = RIDGE,
    scale: float = SCALE,
    base: float = BASE,
    init_rating: float = INIT_RATING,
) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry ratings on the Elo scale, one per model in `counts.models` order: rating
    differences are `scale`·log_base of the odds, the ratings average `init_rating`, and a tie is half a win for
    each side. The `ridge` keeps every rating finite, an undefeated model's too (see the module docstring)."""
    strengths = _fit(counts, counts.count.astype(float)[None, :], ridge=ridge)[0]
    return init_rating + scale / math.log(base) * strengths


def bootstrap_ratings(
    counts: BattleCounts,
    *,
    rounds: int = ROUNDS,
    seed: int | None = 0,
    ridge: float = RIDGE,
    scale: float = SCALE,
    base: float = BASE,
    init_rating: float = INIT_RATING,
) -> np.ndarray:
    """Ratings refitted on `rounds` resamples of the battles with replacement, shape (rounds, models). A model
    that drew no battle in a round has NaN there. All rounds are fitted at once (batched Newton steps), each
    starting from the fit on all the battles."""
    n_models, total = len(counts.models), counts.total
    if rounds <= 0 or total == 0:
        return np.empty((0, n_models))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(total, counts.count / total, size=rounds).astype(float)
    full = _fit(counts, counts.count.astype(float)[None, :], ridge=ridge)
    strengths = _fit(counts, draws, ridge=ridge, start=np.repeat(full, rounds, axis=0))
    ratings = init_rating + scale / math.log(base) * strengths
    played = np.zeros((rounds, n_models))
    np.add.at(played.T, counts.first, draws.T)
    np.add.at(played.T, counts.second, draws.T)
    ratings[played == 0] = np.nan
    return ratings


def bootstrap(
    counts: BattleCounts,
    *,
    rounds: int = ROUNDS,
    seed: int | None = 0,
    labels: Mapping[Hashable, str] | None = None,
    level: float = LEVEL,
    ridge: float = RIDGE,
) -> Leaderboard:
    """The leaderboard: each model's rating fitted on all battles, its `level` (95%) bootstrap interval from
    `rounds` resamples (seedable; 0 rounds gives no interval: low = high = rating), its rank (1 + the models whose
    interval lies wholly above its own), battles, wins, losses and ties. `labels` names the models (default: the
    key as text). Rows are sorted best first."""
    if not counts.models or counts.total == 0:
        return Leaderboard(rounds=rounds, level=level)
    ratings = fit_bradley_terry(counts, ridge=ridge)
    resampled = bootstrap_ratings(counts, rounds=rounds, seed=seed, ridge=ridge)
    low, high = ratings.copy(), ratings.copy()
    if len(resampled):
        tail = (1 - level) / 2 * 100
        for m in range(len(counts.models)):
            column = resampled[:, m]
            column = column[~np.isnan(column)]
            if len(column):
                low[m], high[m] = np.percentile(column, [tail, 100 - tail])
    wins, losses, ties = counts.per_model()
    names = labels or {}
    rows = [
        Row(
            key=model,
            label=names.get(model, str(model)),
            rating=float(ratings[m]),
            low=float(low[m]),
            high=float(high[m]),
            rank=1 + int(np.sum(low > high[m])),
            battles=int(wins[m] + losses[m] + ties[m]),
            wins=int(wins[m]),
            losses=int(losses[m]),
            ties=int(ties[m]),
        )
        for m, model in enumerate(counts.models)
    ]
    rows.sort(key=lambda row: (-row.rating, row.label))
    return Leaderboard(rows=tuple(rows), battles=counts.total, rounds=rounds, level=level)


def leaderboard(
    battles: Iterable[tuple[Hashable, Hashable, Outcome]],
    *,
    rounds: int = ROUNDS,
    seed: int | None = 0,
    labels: Mapping[Hashable, str] | None = None,
    level: float = LEVEL,
    ridge: float = RIDGE,
) -> Leaderboard:
    """`aggregate` then `bootstrap`: the leaderboard of a list of battles `(model_a, model_b, outcome)`."""
    return bootstrap(aggregate(battles), rounds=rounds, seed=seed, labels=labels, level=level, ridge=ridge)


# --- the fit --------------------------------------------------------------------------------------------------


def _fit(counts: BattleCounts, weights: np.ndarray, *, ridge: float, start: np.ndarray | None = None) -> np.ndarray:
    """Strengths (natural log-odds, centred) for a batch of weightings of the battle kinds, `weights` (batch, kinds):
    the project's one Bradley–Terry fit (`ml.statistics`), a tie as half a win for each side."""
    by_outcome = np.zeros((len(weights), len(counts.count), 3))
    by_outcome[:, np.arange(len(counts.count)), _OUTCOME_COLUMN[counts.outcome]] = weights
    return statistics.fit_counts(
        len(counts.models), counts.first, counts.second, by_outcome, ties="half", ridge=ridge, start=start
    ).strengths
