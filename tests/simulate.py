"""Simulated labelers for tests that need a project with judgements: each reply has a hidden quality, and each
labeler judges it with their own amount of noise, through the real services (leases, submissions)."""

from __future__ import annotations

import random

from annotate import services
from annotate.models import TaskKind
from annotate.selectors import candidate_order_for


def hidden_quality(message_id: int) -> float:
    return (message_id * 7919 % 101) / 100


def simulate(project, labelers_noise: dict, *, tasks_each: int, seed: int = 0) -> int:
    """Each labeler (a key of `labelers_noise`, its value the noise) does up to `tasks_each` tasks. Returns how
    many judgements were submitted."""
    rng = random.Random(seed)
    done = 0
    for labeler, noise in labelers_noise.items():
        for n in range(tasks_each):
            assignment = services.task_lease_next(labeler=labeler, project=project, rng=rng)
            if assignment is None:
                break
            task = assignment.task
            ids = list(task.task_candidates.order_by("position").values_list("message_id", flat=True))
            seen = {m: hidden_quality(m) + rng.gauss(0, noise) for m in ids}
            token = f"sim-{labeler.pk}-{n}"
            if task.kind == TaskKind.DEMONSTRATE:
                services.demonstration_submit(
                    labeler=labeler, assignment_id=assignment.pk, text=f"A careful reply ({n}).", client_token=token
                )
            elif task.kind == TaskKind.RANK:
                tiers = [[m] for m in sorted(ids, key=lambda m: -seen[m])]
                services.ranking_submit(labeler=labeler, assignment_id=assignment.pk, tiers=tiers, client_token=token)
            elif task.kind == TaskKind.COMPARE:
                a, b = candidate_order_for(task=task, labeler=labeler, candidate_ids=ids)
                gap = seen[b] - seen[a]
                strength = min(4, 1 + int(abs(gap) * 8))
                services.comparison_submit(
                    labeler=labeler,
                    assignment_id=assignment.pk,
                    choice=strength if gap > 0 else -strength,
                    client_token=token,
                )
            else:
                score = max(1, min(7, round(1 + 6 * seen[ids[0]])))
                services.rating_submit(labeler=labeler, assignment_id=assignment.pk, score=score, client_token=token)
            done += 1
    return done
