"""Reads on the training side: runs, the model registry, reward scores and the reward model's live accuracy."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet

from annotate import exports, extensions
from annotate.models import Comparison, Message, Project, Ranking, Task, TaskKind
from training.models import CandidateScore, ModelKind, ModelStatus, ModelVersion, RetrainCycle, TrainingRun


def run_list(*, project: Project | None = None) -> QuerySet[TrainingRun]:
    runs = TrainingRun.objects.select_related("project", "output_version", "created_by", "snapshot")
    return runs.filter(project=project) if project is not None else runs


def run_detail(*, run_id: int) -> TrainingRun | None:
    return run_list().filter(pk=run_id).first()


def serving_version(*, project: Project, kind: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, kind=kind, status=ModelStatus.SERVING).first()


def version_list(*, project: Project, kind: str | None = None) -> QuerySet[ModelVersion]:
    versions = ModelVersion.objects.filter(project=project).select_related(
        "training_run", "training_run__reward_version", "training_run__snapshot", "parent"
    )
    return versions.filter(kind=kind) if kind else versions


def candidate_scores(*, version: ModelVersion | None, message_ids) -> dict[int, float]:
    """The reward model's cached scores for these replies (missing: not scored yet)."""
    if version is None:
        return {}
    rows = CandidateScore.objects.filter(model_version=version, message_id__in=list(message_ids))
    return dict(rows.values_list("message_id", "score"))


def serving_candidate_scores(*, project: Project, message_ids) -> extensions.CandidateScores:
    """The serving reward model's cached scores for these replies (annotate shows them beside the labelers')."""
    version = serving_version(project=project, kind="reward")
    if version is None:
        return extensions.CandidateScores()
    scores = candidate_scores(version=version, message_ids=message_ids)
    return extensions.CandidateScores(model=str(version), model_id=version.pk, scores=scores)


@dataclass(frozen=True)
class LiveAccuracy:
    """How often the reward model prefers the reply humans preferred, on judgements made after it was trained
    (data it never saw). Pairs are weighted as in training: a ranking counts once however many pairs it gives."""

    accuracy: float | None
    pairs: int  # pairs judged since the model was trained (ties dropped)
    scored: int  # of which both replies are scored


def live_accuracy(*, version: ModelVersion) -> LiveAccuracy:
    if version.kind != ModelKind.REWARD:
        raise ValueError(f"{version} is not a reward model.")
    after = {"task__project_id": version.project_id, "discarded_at__isnull": True, "created_at__gt": version.created_at}
    pairs: list[exports.Pair] = []
    for tiers in Ranking.objects.filter(**after).values_list("tiers", flat=True).iterator():
        pairs += exports.ranking_pairs(tiers, ties="drop")
    for a, b, choice in Comparison.objects.filter(**after).values_list("candidate_a_id", "candidate_b_id", "choice"):
        pair = exports.comparison_pair(a, b, choice, ties="drop")
        if pair is not None:
            pairs.append(pair)
    scores = candidate_scores(version=version, message_ids={m for p in pairs for m in (p.chosen, p.rejected)})
    right = total = 0.0
    scored = 0
    for pair in pairs:
        if pair.chosen in scores and pair.rejected in scores:
            scored += 1
            total += pair.weight
            right += pair.weight * (scores[pair.chosen] > scores[pair.rejected])
    return LiveAccuracy(accuracy=right / total if total else None, pairs=len(pairs), scored=scored)


def open_preference_tasks(*, project: Project) -> QuerySet[Task]:
    """The project's ranking and A/B tasks that still wait for labelers (active, not gold, places left)."""
    return Task.objects.filter(
        project=project,
        kind__in=[TaskKind.RANK, TaskKind.COMPARE],
        is_active=True,
        is_gold=False,
        taken__lt=F("required_labelers"),
    )


def prompts_needing_candidates(*, project: Project, limit: int, version: ModelVersion | None = None) -> list[int]:
    """The prompts (anchor message ids) a sampling run from policy `version` writes candidates for: those it has not
    written a reply to yet; first those with no ranking or A/B task still open (nothing of theirs waits for people),
    then those with the fewest model-written replies, then the oldest. Gold tasks' prompts are left out."""
    open_preference = open_preference_tasks(project=project).filter(anchor_id=OuterRef("pk"))
    anchors = Task.objects.filter(project=project, is_gold=False).values("anchor_id")
    prompts = Message.objects.filter(pk__in=anchors)
    if version is not None:
        prompts = prompts.exclude(children__author_model=version)
    prompts = prompts.annotate(
        waiting=Exists(open_preference),
        model_replies=Count("children", filter=Q(children__author_model__isnull=False)),
    ).order_by("waiting", "model_replies", "id")
    return list(prompts.values_list("pk", flat=True)[:limit])


def recent_cycles(*, project: Project, shown: int = 5) -> list:
    """The project's newest retraining cycles, each with `steps`: (stage kind, its run or None, index)."""
    recent = list(
        RetrainCycle.objects.filter(project=project).select_related("started_by").prefetch_related("runs")[:shown]
    )
    for cycle in recent:
        by_kind = {run.kind: run for run in sorted(cycle.runs.all(), key=lambda run: run.pk)}
        cycle.steps = [(kind, by_kind.get(kind), index) for index, kind in enumerate(cycle.stages)]
    return recent


def running_cycle_in(cycles: list):
    return next((c for c in cycles if c.status == "running"), None)
