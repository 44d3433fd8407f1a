"""Reads for quality control: who labeled what, how fast, how accurately, how much labelers agree, and the
preferences aggregated from their raw judgements (majority vote and a Bradley–Terry fit with ties).

Raw judgements are never changed here. Discarded ones (sent back for re-labeling) do not count. The statistics
themselves are pure functions in `annotate.agreement`; this module only turns rows into their inputs.

Conventions: a pair of candidates is keyed (x, y) with x < y (message ids), and a relation is -1 when x is
preferred, +1 when y is preferred, 0 for a tie. A comparison's two middle points ("about the same") count as a
tie for relations; Krippendorff's alpha sees the full ordinal scale.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import combinations

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotate import agreement
from annotate.models import Comparison, Demonstration, ImportSource, Project, Ranking, Rating, TaskCandidate, TaskKind

User = get_user_model()

ANNOTATION_MODELS = {
    TaskKind.DEMONSTRATE: Demonstration,
    TaskKind.RANK: Ranking,
    TaskKind.COMPARE: Comparison,
    TaskKind.RATE: Rating,
}

Pair = tuple[int, int]


def counted(model, project: Project) -> QuerySet:
    """The judgements of one kind in `project` that count: not discarded."""
    return model.objects.filter(task__project=project, discarded_at__isnull=True)


def comparison_value(choice: int, candidate_a: int, candidate_b: int) -> tuple[Pair, int]:
    """A comparison as (pair, signed choice) oriented to the pair: negative when the lower id is preferred."""
    if candidate_a < candidate_b:
        return (candidate_a, candidate_b), choice
    return (candidate_b, candidate_a), -choice


def choice_relation(choice: int) -> int:
    """-1, 0 or +1: the scale's two middle points say "about the same"."""
    return 0 if abs(choice) <= 1 else (1 if choice > 0 else -1)


# --- loading the raw judgements -----------------------------------------------------------------------------


@dataclass
class Judgements:
    """The judgements of a project that count, in plain form."""

    rankings: list[tuple[int, int, int, list[list[int]]]] = field(default_factory=list)  # task, anchor, who, tiers
    comparisons: list[tuple[int, int, int, Pair, int]] = field(default_factory=list)  # task, anchor, who, pair, choice
    ratings: list[tuple[int, int, int]] = field(default_factory=list)  # task, who, score

    @classmethod
    def load(cls, project: Project, *, restrict=None) -> Judgements:
        """`restrict(model, queryset) -> queryset` narrows what is read (an export's filters, a snapshot)."""
        judgements = cls()

        def rows(model):
            queryset = counted(model, project)
            return queryset if restrict is None else restrict(model, queryset)

        # A judgement imported from a file has no labeler; it stands as its own coder.
        for task, anchor, labeler, source, tiers in rows(Ranking).values_list(
            "task_id", "task__anchor_id", "labeler_id", "import_source_id", "tiers"
        ):
            judgements.rankings.append((task, anchor, _coder(labeler, source), tiers))
        for task, anchor, labeler, source, a, b, choice in rows(Comparison).values_list(
            "task_id", "task__anchor_id", "labeler_id", "import_source_id", "candidate_a_id", "candidate_b_id", "choice"
        ):
            pair, value = comparison_value(choice, a, b)
            judgements.comparisons.append((task, anchor, _coder(labeler, source), pair, value))
        for task, labeler, source, score in rows(Rating).values_list(
            "task_id", "labeler_id", "import_source_id", "score"
        ):
            judgements.ratings.append((task, _coder(labeler, source), score))
        return judgements

    def pair_votes(self) -> dict[int, dict[Pair, list[tuple[int, int]]]]:
        """Per prompt (anchor message), per candidate pair: (coder, relation) from rankings and comparisons."""
        votes: dict[int, dict[Pair, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for _task, anchor, coder, tiers in self.rankings:
            for pair, relation in agreement.pair_relations(tiers).items():
                votes[anchor][pair].append((coder, relation))
        for _task, anchor, coder, pair, choice in self.comparisons:
            votes[anchor][pair].append((coder, choice_relation(choice)))
        return votes


def _coder(labeler_id: int | None, import_source_id: int | None) -> int:
    return labeler_id if labeler_id is not None else -int(import_source_id or 0)


# --- project agreement --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectAgreement:
    comparison_alpha: float | None  # Krippendorff's alpha, ordinal, over comparison tasks
    comparison_units: int  # comparison tasks with two or more judgements
    ranking_pair_agreement: float | None  # share of labeler pairs that order a candidate pair the same way
    ranking_pairs: int  # labeler pairs over candidate pairs
    kendall_tau: float | None  # mean Kendall tau-b between two labelers' rankings of the same task
    kendall_pairs: int
    rating_alpha: float | None  # Krippendorff's alpha, interval, over rating tasks
    rating_units: int


def project_agreement(*, project: Project, judgements: Judgements | None = None) -> ProjectAgreement:
    judgements = judgements or Judgements.load(project)
    by_compare_task: dict[int, list[int]] = defaultdict(list)
    for task, _anchor, _coder, _pair, choice in judgements.comparisons:
        by_compare_task[task].append(choice)
    comparison_units = [values for values in by_compare_task.values() if len(values) > 1]

    by_rank_task: dict[int, list[list[list[int]]]] = defaultdict(list)
    for task, _anchor, _coder, tiers in judgements.rankings:
        by_rank_task[task].append(tiers)
    pair_units: list[list[int]] = []
    taus: list[float] = []
    for rankings in by_rank_task.values():
        if len(rankings) < 2:
            continue
        relations = [agreement.pair_relations(tiers) for tiers in rankings]
        for pair in relations[0]:
            pair_units.append([r[pair] for r in relations if pair in r])
        positions = [agreement.tier_positions(tiers) for tiers in rankings]
        items = sorted(positions[0])
        for first, second in combinations(positions, 2):
            tau = agreement.kendall_tau_b([first[i] for i in items], [second.get(i, 0) for i in items])
            if tau is not None:
                taus.append(tau)
    agreeing, pairs = agreement.pairwise_agreement(pair_units)

    by_rate_task: dict[int, list[int]] = defaultdict(list)
    for task, _coder, score in judgements.ratings:
        by_rate_task[task].append(score)
    rating_units = [values for values in by_rate_task.values() if len(values) > 1]

    return ProjectAgreement(
        comparison_alpha=agreement.krippendorff_alpha(comparison_units, level="ordinal"),
        comparison_units=len(comparison_units),
        ranking_pair_agreement=agreeing / pairs if pairs else None,
        ranking_pairs=pairs,
        kendall_tau=statistics.fmean(taus) if taus else None,
        kendall_pairs=len(taus),
        rating_alpha=agreement.krippendorff_alpha(rating_units, level="interval"),
        rating_units=len(rating_units),
    )


# --- gold accuracy ------------------------------------------------------------------------------------------


def gold_credit(kind: str, answer: dict, judgement: dict, first_candidate: int | None = None) -> float:
    """How right one judgement of a gold task is, from 0 to 1.

    A ranking earns the share of candidate pairs it orders as the gold ranking does; a comparison earns 1 when
    it leans the same way as the gold answer (or both say about the same); a rating earns 1 within the gold
    tolerance. `first_candidate` is the task's first candidate (the A of a gold comparison)."""
    if kind == TaskKind.RANK:
        gold, given = agreement.pair_relations(answer["tiers"]), agreement.pair_relations(judgement["tiers"])
        return sum(given.get(pair) == relation for pair, relation in gold.items()) / len(gold) if gold else 0.0
    if kind == TaskKind.COMPARE:
        gold_choice = answer["choice"] if judgement["candidate_a"] == first_candidate else -answer["choice"]
        return float(choice_relation(gold_choice) == choice_relation(judgement["choice"]))
    if kind == TaskKind.RATE:
        return float(abs(judgement["score"] - answer["score"]) <= answer.get("tolerance", 1))
    raise ValueError(f"a {kind} task cannot be gold")


def gold_results(*, project: Project) -> list[tuple[int, float]]:
    """(coder, credit) for every judgement that counts on a gold task of the project."""
    first: dict[int, int] = dict(
        TaskCandidate.objects.filter(task__project=project, task__is_gold=True, position=0).values_list(
            "task_id", "message_id"
        )
    )
    results: list[tuple[int, float]] = []
    gold = {"task__is_gold": True}
    for labeler, source, answer, tiers in (
        counted(Ranking, project)
        .filter(**gold)
        .values_list("labeler_id", "import_source_id", "task__gold_answer", "tiers")
    ):
        results.append((_coder(labeler, source), gold_credit(TaskKind.RANK, answer, {"tiers": tiers})))
    for labeler, source, answer, task, a, choice in (
        counted(Comparison, project)
        .filter(**gold)
        .values_list("labeler_id", "import_source_id", "task__gold_answer", "task_id", "candidate_a_id", "choice")
    ):
        credit = gold_credit(TaskKind.COMPARE, answer, {"candidate_a": a, "choice": choice}, first.get(task))
        results.append((_coder(labeler, source), credit))
    for labeler, source, answer, score in (
        counted(Rating, project)
        .filter(**gold)
        .values_list("labeler_id", "import_source_id", "task__gold_answer", "score")
    ):
        results.append((_coder(labeler, source), gold_credit(TaskKind.RATE, answer, {"score": score})))
    return results


# --- agreement with the majority ----------------------------------------------------------------------------


def majority_agreement(judgements: Judgements) -> dict[int, tuple[int, int]]:
    """Per coder: (agreeing, judged) over candidate pairs where the *other* coders have a majority relation."""
    result: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for pairs in judgements.pair_votes().values():
        for votes in pairs.values():
            if len(votes) < 3:
                continue
            for index, (coder, relation) in enumerate(votes):
                others = agreement.majority([r for i, (_, r) in enumerate(votes) if i != index])
                if others is None:
                    continue
                result[coder][1] += 1
                result[coder][0] += int(relation == others)
    return {coder: (agree, total) for coder, (agree, total) in result.items()}


# --- aggregated preferences ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairConsensus:
    pair: Pair
    relation: int | None  # the majority relation, or None when the votes split evenly
    votes: Counter  # relation -> number of votes


@dataclass(frozen=True)
class PromptConsensus:
    anchor_id: int
    scores: dict[int, float]  # candidate message id -> Bradley–Terry log-strength (mean 0)
    tie_strength: float
    pairs: list[PairConsensus]

    @property
    def split_pairs(self) -> int:
        return sum(p.relation is None for p in self.pairs)

    @property
    def agreement(self) -> float:
        """Share of votes that side with their pair's majority (1.0: unanimous)."""
        votes = sum(sum(p.votes.values()) for p in self.pairs)
        agreeing = sum(p.votes[p.relation] for p in self.pairs if p.relation is not None)
        return agreeing / votes if votes else 1.0


def aggregated_preferences(*, project: Project, judgements: Judgements | None = None) -> list[PromptConsensus]:
    """Per prompt, the preferences of all its labelers combined: a majority vote per candidate pair and a
    Bradley–Terry fit with ties (Davidson) over all the prompt's candidates, from rankings and comparisons."""
    judgements = judgements or Judgements.load(project)
    consensus = []
    for anchor, pairs in sorted(judgements.pair_votes().items()):
        items = sorted({item for pair in pairs for item in pair})
        outcomes = [(x, y, relation, 1.0) for (x, y), votes in pairs.items() for _, relation in votes]
        fit = agreement.bradley_terry_ties(items, outcomes)
        consensus.append(
            PromptConsensus(
                anchor_id=anchor,
                scores=fit.scores,
                tie_strength=fit.tie_strength,
                pairs=[
                    PairConsensus(
                        pair=pair,
                        relation=agreement.majority([r for _, r in votes]),
                        votes=Counter(r for _, r in votes),
                    )
                    for pair, votes in sorted(pairs.items())
                ],
            )
        )
    return consensus


# --- the quality page ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelerQuality:
    labeler: object
    counts: dict[str, int]
    median_seconds: float | None
    gold_judgements: int
    gold_accuracy: float | None
    majority_judged: int
    majority_agreement: float | None
    last_active: datetime | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class DayCount:
    day: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class DatasetAgreement:
    """How the team's judgements agree with one imported dataset's, on the pairs both judged."""

    source: ImportSource
    judgements: int  # the dataset's judgements in the project
    pairs_shared: int  # candidate pairs both the dataset and at least one labeler judged
    team_votes: int  # the labelers' votes on those pairs
    agreeing: int  # of them, the ones with the dataset's relation (better, worse, about the same)

    @property
    def share(self) -> float | None:
        return self.agreeing / self.team_votes if self.team_votes else None


def dataset_agreement(*, project: Project, judgements: Judgements) -> list[DatasetAgreement]:
    """Per import source with judgements in the project: its agreement with the team (labelers), pair by pair."""
    sources = {-s.pk: s for s in ImportSource.objects.filter(project=project).exclude(format="prompts")}
    if not sources:
        return []
    counts = Counter(coder for _t, _a, coder, _tiers in judgements.rankings if coder < 0)
    counts.update(coder for _t, _a, coder, _p, _c in judgements.comparisons if coder < 0)
    shared: Counter = Counter()
    votes: Counter = Counter()
    agreeing: Counter = Counter()
    for pairs in judgements.pair_votes().values():
        for pair_votes in pairs.values():
            team = [relation for coder, relation in pair_votes if coder > 0]
            if not team:
                continue
            for source in {coder for coder, _ in pair_votes if coder < 0}:
                mine = agreement.majority([relation for coder, relation in pair_votes if coder == source])
                if mine is None:
                    continue
                shared[source] += 1
                votes[source] += len(team)
                agreeing[source] += sum(relation == mine for relation in team)
    return [
        DatasetAgreement(sources[coder], counts[coder], shared[coder], votes[coder], agreeing[coder])
        for coder in sorted(sources, reverse=True)
        if counts[coder]
    ]


@dataclass(frozen=True)
class QualityReport:
    project: Project
    days: list[DayCount]
    labelers: list[LabelerQuality]
    agreement: ProjectAgreement
    gold_judgements: int
    gold_accuracy: float | None
    median_seconds: float | None
    contested: list[PromptConsensus]
    prompts_aggregated: int
    datasets: list[DatasetAgreement] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(labeler.total for labeler in self.labelers)

    @property
    def busiest_day(self) -> int:
        return max((day.total for day in self.days), default=0)


def annotations_per_day(*, project: Project, days: int = 30, now: datetime | None = None) -> list[DayCount]:
    """Judgements per day and kind over the last `days` days (today included), oldest first; empty days too."""
    today = timezone.localdate(now or timezone.now())
    first = today - timedelta(days=days - 1)
    counts: dict[date, dict[str, int]] = {first + timedelta(d): dict.fromkeys(TaskKind.values, 0) for d in range(days)}
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    for kind, model in ANNOTATION_MODELS.items():
        rows = (
            counted(model, project)
            .filter(created_at__gte=start)
            .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
            .values("day")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            if row["day"] in counts:
                counts[row["day"]][kind] = row["n"]
    return [DayCount(day=day, counts=kinds) for day, kinds in sorted(counts.items())]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def quality_report(
    *, project: Project, days: int = 30, contested: int = 10, now: datetime | None = None
) -> QualityReport:
    everything = Judgements.load(project)
    # Labeler agreement and quality figures are the team's: imported judgements are reported apart (datasets).
    judgements = Judgements.load(project, restrict=lambda model, rows: rows.filter(import_source__isnull=True))
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TaskKind.values, 0))
    times: dict[int, list[int]] = defaultdict(list)
    last: dict[int, datetime] = {}
    for kind, model in ANNOTATION_MODELS.items():
        for labeler, spent, created in (
            counted(model, project)
            .filter(labeler__isnull=False)
            .values_list("labeler_id", "time_spent_ms", "created_at")
        ):
            counts[labeler][kind] += 1
            times[labeler].append(spent)
            last[labeler] = max(last.get(labeler, created), created)

    gold = gold_results(project=project)
    gold_by: dict[int, list[float]] = defaultdict(list)
    for coder, credit in gold:
        gold_by[coder].append(credit)
    majority = majority_agreement(judgements)

    users = User.objects.in_bulk(list(counts))
    labelers = [
        LabelerQuality(
            labeler=users[labeler],
            counts=counts[labeler],
            median_seconds=None if (m := _median(times[labeler])) is None else m / 1000,
            gold_judgements=len(gold_by[labeler]),
            gold_accuracy=statistics.fmean(gold_by[labeler]) if gold_by[labeler] else None,
            majority_judged=majority.get(labeler, (0, 0))[1],
            majority_agreement=_share(*majority.get(labeler, (0, 0))),
            last_active=last.get(labeler),
        )
        for labeler in sorted(counts, key=lambda pk: (-sum(counts[pk].values()), users[pk].username))
    ]
    prompts = aggregated_preferences(project=project, judgements=judgements)
    all_times = [t for spent in times.values() for t in spent]
    return QualityReport(
        project=project,
        days=annotations_per_day(project=project, days=days, now=now),
        labelers=labelers,
        agreement=project_agreement(project=project, judgements=judgements),
        gold_judgements=len(gold),
        gold_accuracy=statistics.fmean(c for _, c in gold) if gold else None,
        median_seconds=None if (m := _median(all_times)) is None else m / 1000,
        contested=sorted(
            (p for p in prompts if p.split_pairs or p.agreement < 1.0), key=lambda p: (p.agreement, p.anchor_id)
        )[:contested],
        prompts_aggregated=len(prompts),
        datasets=dataset_agreement(project=project, judgements=everything),
    )


def consensus_answer(*, task) -> dict | None:
    """The labelers' consensus on one task as a gold answer (see services.task_set_gold), or None when fewer
    than two judgements count or they do not agree clearly. A ranking's tiers follow the Bradley–Terry order,
    with candidates the majority calls tied in one tier; a comparison takes the median strength of the winning
    side; a rating the median score."""
    project = task.project
    if task.kind == TaskKind.RANK:
        rankings = list(counted(Ranking, project).filter(task=task).values_list("tiers", flat=True))
        if len(rankings) < 2:
            return None
        votes: dict[Pair, list[int]] = defaultdict(list)
        for tiers in rankings:
            for pair, relation in agreement.pair_relations(tiers).items():
                votes[pair].append(relation)
        majorities = {pair: agreement.majority(relations) for pair, relations in votes.items()}
        if any(relation is None for relation in majorities.values()):
            return None
        items = sorted({item for pair in votes for item in pair})
        outcomes = [(x, y, r, 1.0) for (x, y), relations in votes.items() for r in relations]
        scores = agreement.bradley_terry_ties(items, outcomes).scores
        tiers: list[list[int]] = []
        for item in sorted(items, key=lambda i: -scores[i]):
            if tiers and majorities[tuple(sorted((tiers[-1][0], item)))] == 0:
                tiers[-1].append(item)
            else:
                tiers.append([item])
        return {"tiers": tiers}
    if task.kind == TaskKind.COMPARE:
        first = TaskCandidate.objects.filter(task=task, position=0).values_list("message_id", flat=True).first()
        choices = [
            choice if a == first else -choice
            for a, choice in counted(Comparison, project).filter(task=task).values_list("candidate_a_id", "choice")
        ]
        winner = agreement.majority([choice_relation(c) for c in choices]) if len(choices) > 1 else None
        if winner is None:
            return None
        side = [c for c in choices if choice_relation(c) == winner]
        if winner == 0:
            return {"choice": int(statistics.median_low(side))}
        return {"choice": winner * int(statistics.median_low(abs(c) for c in side))}  # the lower middle strength
    if task.kind == TaskKind.RATE:
        scores = list(counted(Rating, project).filter(task=task).values_list("score", flat=True))
        if len(scores) < 2:
            return None
        return {"score": int(statistics.median_low(scores)), "tolerance": 1}
    return None
