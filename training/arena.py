"""The model leaderboard of a project: its A/B judgements between replies of two model versions, read from the
database and handed to `training.leaderboard` (Chatbot Arena's Bradley–Terry ratings with bootstrap intervals,
Chiang et al. 2024)."""

from __future__ import annotations

from django.db.models import F

from annotate.models import Comparison, Project
from training import leaderboard as board
from training.models import ModelVersion


def battle_outcome(choice: int, both_bad: bool) -> board.Outcome:
    """A comparison's outcome as a battle: "a" or "b" for the side the choice leans to, "tie" for the scale's two
    middle points ("about the same", |choice| ≤ 1) and for "both bad" (Arena's "tie (bothbad)")."""
    if both_bad or abs(choice) <= 1:
        return board.TIE
    return board.A_WINS if choice < 0 else board.B_WINS


def version_battles(project: Project) -> list[tuple[int, int, board.Outcome]]:
    """The project's battles as `(version A id, version B id, outcome)`, A and B as the labeler saw them: every
    counted A/B judgement (not discarded) whose two replies were written by two different model versions. Replies
    written or imported by people are no battle, and neither is a pair from one version (it says nothing about
    ratings). Gold tasks are left out: every labeler is served them, so one prompt would weigh as many votes as
    there are labelers."""
    rows = (
        Comparison.objects.filter(
            task__project=project,
            task__is_gold=False,
            discarded_at__isnull=True,
            candidate_a__author_model__isnull=False,
            candidate_b__author_model__isnull=False,
        )
        .exclude(candidate_a__author_model=F("candidate_b__author_model"))
        .order_by("id")
        .values_list("candidate_a__author_model_id", "candidate_b__author_model_id", "choice", "both_bad")
    )
    return [(a, b, battle_outcome(choice, both_bad)) for a, b, choice, both_bad in rows.iterator()]


def project_leaderboard(project: Project, *, rounds: int = board.ROUNDS, seed: int | None = 0) -> board.Leaderboard:
    """The project's model versions rated from their battles, best first, with `rounds` bootstrap resamples for
    the 95% intervals (seeded, so a page shows the same intervals on every load). Each row's `key` is the
    ModelVersion id and its `label` the version's label ("policy-v2"). No battles: an empty leaderboard (false)."""
    battles = version_battles(project)
    if not battles:
        return board.Leaderboard(rounds=rounds)
    ids = {version for a, b, _ in battles for version in (a, b)}
    labels = {version.pk: version.label for version in ModelVersion.objects.filter(pk__in=ids)}
    return board.leaderboard(battles, rounds=rounds, seed=seed, labels=labels)
