"""Agreement statistics and aggregation of labelers' raw judgements.

Pure Python (no Django; NumPy only for the Bradley–Terry fit) so that it can be used from services, selectors,
management commands and offline scripts alike, and tested without a database.

* Rankings as tiers: :func:`tier_positions`, :func:`pair_relations`.
* Inter-annotator agreement: :func:`krippendorff_alpha`, :func:`pairwise_agreement`, :func:`kendall_tau_b`.
* Aggregation: :func:`majority` (plain vote) and :func:`bradley_terry_ties` (Bradley–Terry with ties, Davidson 1970),
  which turns weighted pairwise outcomes from many labelers into one score per item. The fit is the project's one
  Bradley–Terry fit, `ml.statistics` (the model leaderboard uses it too), re-exported here.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from ml.statistics import BradleyTerryFit, bradley_terry_ties

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
