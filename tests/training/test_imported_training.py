"""A reward model from imported judgements: alone (a first model on day one), beside the labelers' or without
them; the run's metrics count the pairs by source, and the held-out split keeps each prompt on one side."""

from __future__ import annotations

import pytest

from annotate.judgement_import import judgements_import
from tests.conftest import jsonl
from tests.training.conftest import execute, tiny_config
from training import services as run_services
from training.models import DatasetSnapshot

pytestmark = pytest.mark.django_db


def import_pairs(project, count: int):
    rows = [
        {"prompt": f"Question {i}?", "chosen": f"A careful answer {i}.", "rejected": f"Whatever {i}."}
        for i in range(count)
    ]
    return judgements_import(
        project=project, lines=jsonl(*rows).splitlines(keepends=True), filename="seed-pairs.jsonl", format="trl"
    ).source


def test_a_first_reward_model_from_imported_data_alone(judged, tiny_backbone, no_broker):
    source = import_pairs(judged, 12)
    run = run_services.run_start(kind="reward", project=judged, config=tiny_config(tiny_backbone), imported="only")
    assert run.snapshot.row_counts["rows"] == 12
    run = execute(run)
    metrics = run.output_version.metrics
    assert metrics["pairs_by_source"] == {f"seed-pairs.jsonl (import {source.pk})": 12}
    assert metrics["train_groups"] + metrics["eval_groups"] == 12  # one group per prompt: split by prompt


def test_imported_pairs_are_counted_apart_beside_the_labelers_and_can_be_left_out(judged, tiny_backbone, no_broker):
    import_pairs(judged, 6)
    both = run_services.run_start(kind="reward", project=judged, config=tiny_config(tiny_backbone))
    without = run_services.run_start(
        kind="reward", project=judged, config=tiny_config(tiny_backbone), imported="exclude"
    )
    assert both.snapshot.row_counts["rows"] == without.snapshot.row_counts["rows"] + 6
    metrics = execute(both).output_version.metrics
    assert metrics["pairs_by_source"]["labelers"] == without.snapshot.row_counts["rows"]
    assert DatasetSnapshot.objects.get(pk=without.snapshot_id).filter["imported"] == "exclude"
    with pytest.raises(run_services.RunError, match="imported must be one of"):
        run_services.run_start(kind="reward", project=judged, config=tiny_config(tiny_backbone), imported="some")
