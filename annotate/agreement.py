"""Agreement statistics and aggregation of labelers' raw judgements.

Pure Python (standard library only, no Django, no NumPy) so that it can be used from services, selectors, management
commands and offline scripts alike, and tested without a database.

* Rankings as tiers: :func:`tier_positions`, :func:`pair_relations`.
* Inter-annotator agreement: :func:`krippendorff_alpha`, :func:`pairwise_agreement`, :func:`kendall_tau_b`.
* Aggregation: :func:`majority` (plain vote) and :func:`bradley_terry_ties` (Bradley–Terry with ties, Davidson 1970),
  which turns weighted pairwise outcomes from many labelers into one score per item.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BradleyTerryFit",
    "bradley_terry_ties",
    "kendall_tau_b",
    "krippendorff_alpha",
    "majority",
    "pair_relations",
    "pairwise_agreement",
    "tier_positions",
]

LEVELS = ("nominal", "ordinal", "interval", "ratio")


# --------------------------------------------------------------------------------------------------------------------
# Rankings with ties
# --------------------------------------------------------------------------------------------------------------------


def tier_positions(tiers: Sequence[Sequence[Hashable]]) -> dict[Hashable, int]:
    """Map each item to the index of its tier, 0 being the best.

    ``[[d], [c], [a, b]]`` means D > C > A = B and gives ``{d: 0, c: 1, a: 2, b: 2}``. An item listed twice raises
    ``ValueError``.
    """
    positions: dict[Hashable, int] = {}
    for index, tier in enumerate(tiers):
        for item in tier:
            if item in positions:
                raise ValueError(f"item {item!r} appears in more than one place of the ranking")
            positions[item] = index
    return positions


def pair_relations(tiers: Sequence[Sequence[Hashable]]) -> dict[tuple[Hashable, Hashable], int]:
    """Every unordered pair of ranked items and how the ranking orders it.

    Keys are ``(x, y)`` with ``x < y`` (items are sorted, so they must be mutually comparable; they are ints in
    practice). Values: ``-1`` when x is preferred, ``+1`` when y is preferred, ``0`` for a tie.
    """
    positions = tier_positions(tiers)
    items: list[Any] = sorted(positions)  # type: ignore[type-var]
    relations: dict[tuple[Hashable, Hashable], int] = {}
    for i, x in enumerate(items):
        for y in items[i + 1 :]:
            px, py = positions[x], positions[y]
            relations[(x, y)] = -1 if px < py else (1 if px > py else 0)
    return relations


# --------------------------------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def krippendorff_alpha(units: Iterable[Sequence[float]], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha reliability coefficient.

    Each unit is the list of values that the coders gave it, missing values omitted (``None`` and NaN are dropped as
    missing too), in any order. Units with fewer than two values are not pairable and are ignored.

    Follows the coincidence-matrix formulation of Krippendorff (2011), "Computing Krippendorff's alpha-reliability":
    each unit u with m_u values adds 1/(m_u - 1) to o_ck for every ordered pair of its values (c, k) taken from
    different coders; n_c are the marginals of o and n their total, and

        alpha = 1 - (n - 1) * sum_{c,k} o_ck d_ck / sum_{c,k} n_c n_k d_ck

    with d the squared difference function of the level of measurement: nominal (0 if equal, else 1), ordinal
    (``(sum_{g=c..k} n_g - (n_c + n_k) / 2) ** 2`` over the sorted observed values), interval (``(c - k) ** 2``),
    ratio (``((c - k) / (c + k)) ** 2``).

    Returns ``None`` when nothing is pairable or when the expected disagreement is 0 (every value equal): alpha is
    undefined there. Raises ``ValueError`` for an unknown ``level``.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level of measurement {level!r}; expected one of {', '.join(LEVELS)}")

    coincidences: dict[tuple[Any, Any], float] = defaultdict(float)
    for unit in units:
        values = [value for value in unit if not _is_missing(value)]
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                pairs = n_c * (n_c - 1) if c == k else n_c * n_k
                if pairs:
                    coincidences[(c, k)] += pairs / (m - 1)
    if not coincidences:
        return None

    marginals: dict[Any, float] = defaultdict(float)
    for (c, _k), o_ck in coincidences.items():
        marginals[c] += o_ck
    n = sum(marginals.values())
    values_seen = list(marginals)

    if level == "nominal":

        def delta(c: Any, k: Any) -> float:
            return 0.0 if c == k else 1.0

    elif level == "ordinal":
        ordered = sorted(values_seen)
        rank = {value: index for index, value in enumerate(ordered)}
        cumulative = [0.0]
        for value in ordered:
            cumulative.append(cumulative[-1] + marginals[value])

        def delta(c: Any, k: Any) -> float:
            i, j = sorted((rank[c], rank[k]))
            if i == j:
                return 0.0
            between = cumulative[j + 1] - cumulative[i]
            return (between - (marginals[c] + marginals[k]) / 2) ** 2

    elif level == "interval":

        def delta(c: Any, k: Any) -> float:
            return float(c - k) ** 2

    else:  # ratio

        def delta(c: Any, k: Any) -> float:
            total = c + k
            return 0.0 if total == 0 else float((c - k) / total) ** 2

    observed = sum(o_ck * delta(c, k) for (c, k), o_ck in coincidences.items())
    expected = sum(marginals[c] * marginals[k] * delta(c, k) for c in values_seen for k in values_seen)
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def pairwise_agreement(units: Iterable[Sequence[Hashable]]) -> tuple[int, int]:
    """Count coder pairs within units: ``(pairs whose two values are equal, all pairs)``.

    A unit with n values holds n * (n - 1) / 2 pairs; units with fewer than two values hold none. Percent agreement is
    the ratio of the two (undefined when the second is 0).
    """
    agreeing = total = 0
    for unit in units:
        n = len(unit)
        total += n * (n - 1) // 2
        agreeing += sum(count * (count - 1) // 2 for count in Counter(unit).values())
    return agreeing, total


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b between two paired sequences, with the tie correction.

    ``(concordant - discordant) / sqrt((n0 - ties_x) * (n0 - ties_y))`` with n0 = n (n - 1) / 2 and ties_x, ties_y the
    pairs tied in x, in y (a pair tied in both counts in both). O(n^2), meant for short rankings. ``None`` when
    undefined: fewer than two elements, or either sequence entirely tied. Raises ``ValueError`` when lengths differ.
    """
    if len(x) != len(y):
        raise ValueError(f"sequences differ in length: {len(x)} and {len(y)}")
    n = len(x)
    if n < 2:
        return None
    balance = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            if dx == 0:
                tied_x += 1
            if dy == 0:
                tied_y += 1
            balance += dx * dy
    pairs = n * (n - 1) // 2
    denominator = (pairs - tied_x) * (pairs - tied_y)
    if denominator == 0:
        return None
    return balance / math.sqrt(denominator)


def majority(values: Sequence[int]) -> int | None:
    """The most frequent value when it has strictly more votes than any other; ``None`` on a split or no votes."""
    ranked = Counter(values).most_common(2)
    if not ranked:
        return None
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


# --------------------------------------------------------------------------------------------------------------------
# Bradley–Terry with ties (Davidson 1970)
# --------------------------------------------------------------------------------------------------------------------


def _davidson(theta_x: float, theta_y: float, eta: float) -> tuple[float, float, float]:
    """(P(x wins), P(tie), P(y wins)) for log-strengths theta and log tie strength eta, overflow-safe."""
    exponents = (theta_x, eta + (theta_x + theta_y) / 2, theta_y)
    top = max(exponents)
    weights = [math.exp(e - top) for e in exponents]
    total = sum(weights)
    return weights[0] / total, weights[1] / total, weights[2] / total


@dataclass(frozen=True)
class BradleyTerryFit:
    """Result of :func:`bradley_terry_ties`.

    ``scores`` are log-strengths centred to mean 0 (higher is better); ``tie_strength`` is Davidson's nu.
    """

    scores: dict[Hashable, float]
    tie_strength: float
    iterations: int
    converged: bool

    def probability(self, x: Hashable, y: Hashable) -> tuple[float, float, float]:
        """``(P(x wins), P(tie), P(y wins))`` under the Davidson model. Unknown items raise ``KeyError``."""
        eta = math.log(self.tie_strength) if self.tie_strength > 0 else -math.inf
        return _davidson(self.scores[x], self.scores[y], eta)


# Feature vectors (d/d theta_x, d/d theta_y, d/d eta) of the log-numerator of each outcome: x wins, tie, y wins.
_FEATURES = ((1.0, 0.0, 0.0), (0.5, 0.5, 1.0), (0.0, 1.0, 0.0))


def _cholesky_solve(matrix: list[list[float]], rhs: list[float]) -> list[float] | None:
    """Solve ``matrix @ x = rhs`` for a symmetric positive definite matrix; ``None`` if it is not."""
    size = len(rhs)
    lower = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1):
            s = matrix[i][j] - sum(lower[i][k] * lower[j][k] for k in range(j))
            if i == j:
                if s <= 0 or not math.isfinite(s):
                    return None
                lower[i][i] = math.sqrt(s)
            else:
                lower[i][j] = s / lower[j][j]
    forward = [0.0] * size
    for i in range(size):
        forward[i] = (rhs[i] - sum(lower[i][k] * forward[k] for k in range(i))) / lower[i][i]
    solution = [0.0] * size
    for i in reversed(range(size)):
        solution[i] = (forward[i] - sum(lower[k][i] * solution[k] for k in range(i + 1, size))) / lower[i][i]
    return solution


def bradley_terry_ties(
    items: Sequence[Hashable],
    outcomes: Iterable[tuple[Hashable, Hashable, int, float]],
    *,
    prior: float = 0.1,
    max_iterations: int = 200,
    tolerance: float = 1e-8,
) -> BradleyTerryFit:
    """Fit the Bradley–Terry model with ties of Davidson (1970) by penalised maximum likelihood.

    With strengths p_i = exp(theta_i) and tie parameter nu,
    ``P(i > j) = p_i / (p_i + p_j + nu sqrt(p_i p_j))`` and ``P(i = j) = nu sqrt(p_i p_j) / (same denominator)``.

    Each outcome is ``(x, y, relation, weight)``: relation ``-1`` means x was preferred, ``+1`` y was preferred, ``0``
    a tie; ``weight > 0`` scales its log-likelihood term (a ranking of K items can give each of its pairs weight
    1 / C(K, 2) so that every ranking counts once).

    Prior (pseudo-counts): every item plays a virtual reference item of strength 1 (theta = 0) and gets one win, one
    loss and one tie against it, each of weight ``prior``. This is a proper log-concave prior on (theta_i, log nu):
    it keeps every score finite even for perfectly separated data, gives items that appear in no outcome theta = 0
    (the reference, before centring), and keeps nu strictly between 0 and infinity (data without ties drives nu
    small but positive, data with only ties drives it large but finite). The virtual outcomes alone are
    best fitted by nu = 1. ``prior`` must be > 0; smaller values shrink less.

    The penalised log-likelihood is jointly concave in (theta, log nu) and, thanks to the prior, strictly so; it is
    maximised by Newton's method with backtracking line search, starting from theta = 0, nu = 1. ``converged`` is
    True once the largest Newton step is below ``tolerance``. Cost: O(pairs + items^3) per iteration, fine for the
    rankings of a few responses this is meant for.

    Raises ``ValueError`` for duplicate items, an outcome naming an unknown item or the same item twice, a relation
    outside {-1, 0, 1}, a weight that is not a positive finite number, or a non-positive prior.
    """
    if not (prior > 0 and math.isfinite(prior)):
        raise ValueError(f"prior must be a positive finite number, not {prior!r}")
    index: dict[Hashable, int] = {}
    for item in items:
        if item in index:
            raise ValueError(f"item {item!r} is listed twice")
        index[item] = len(index)
    size = len(index)

    # Aggregate weights per unordered pair (i < j): [i wins, tie, j wins].
    tallies: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
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
        tallies[(i, j)][relation + 1] += weight

    # Parameters: theta_0 .. theta_{size-1}, then eta = log nu at position `size`. The reference item has no slot.
    pseudo = [prior, prior, prior]
    terms: list[tuple[int, int | None, list[float]]] = [(i, None, pseudo) for i in range(size)]
    terms += [(i, j, counts) for (i, j), counts in tallies.items()]
    eta_at = size

    def objective(params: list[float]) -> float:
        eta = params[eta_at]
        total = 0.0
        for i, j, counts in terms:
            probabilities = _davidson(params[i], 0.0 if j is None else params[j], eta)
            total += sum(w * math.log(p) for w, p in zip(counts, probabilities, strict=True) if w)
        return total

    def derivatives(params: list[float]) -> tuple[list[float], list[list[float]]]:
        """Gradient and negated Hessian (the observed information) of the objective."""
        dim = size + 1
        gradient = [0.0] * dim
        information = [[0.0] * dim for _ in range(dim)]
        eta = params[eta_at]
        for i, j, counts in terms:
            # (parameter slot, feature coordinate) pairs; the reference item (j is None) has no parameter.
            active = [(i, 0), (eta_at, 2)] if j is None else [(i, 0), (j, 1), (eta_at, 2)]
            probabilities = _davidson(params[i], 0.0 if j is None else params[j], eta)
            weight = sum(counts)
            mean = [sum(p * f[a] for p, f in zip(probabilities, _FEATURES, strict=True)) for a in range(3)]
            for slot_a, a in active:
                observed = sum(w * f[a] for w, f in zip(counts, _FEATURES, strict=True))
                gradient[slot_a] += observed - weight * mean[a]
                for slot_b, b in active:
                    second = sum(p * f[a] * f[b] for p, f in zip(probabilities, _FEATURES, strict=True))
                    information[slot_a][slot_b] += weight * (second - mean[a] * mean[b])
        return gradient, information

    params = [0.0] * (size + 1)
    current = objective(params)
    iterations = 0
    converged = False
    while iterations < max_iterations:
        iterations += 1
        gradient, information = derivatives(params)
        step = _cholesky_solve(information, gradient)
        if step is None:  # cannot happen with prior > 0 short of overflow; fall back to gradient ascent
            step = gradient
        slope = sum(g * s for g, s in zip(gradient, step, strict=True))
        scale = 1.0
        while True:
            candidate = [p + scale * s for p, s in zip(params, step, strict=True)]
            value = objective(candidate)
            if value >= current + 1e-4 * scale * slope or scale < 1e-10:
                break
            scale /= 2
        largest = max(abs(scale * s) for s in step)
        if value >= current:
            params, current = candidate, value
        if largest <= tolerance:
            converged = True
            break

    thetas = params[:size]
    centre = sum(thetas) / size if size else 0.0
    scores = {item: thetas[i] - centre for item, i in index.items()}
    return BradleyTerryFit(
        scores=scores,
        tie_strength=math.exp(params[eta_at]),
        iterations=iterations,
        converged=converged,
    )
