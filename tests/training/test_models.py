"""Registry, runs and snapshots: the database refuses what must never happen."""

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from training.models import DatasetSnapshot, ModelStatus, ModelVersion, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


def refused(fn) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        fn()


def version(project, number, **kwargs) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project, kind="reward", version=number, base_model="embedded:x", **kwargs
    )


def test_at_most_one_serving_version_per_project_and_kind(project):
    version(project, 1, status=ModelStatus.SERVING)
    refused(lambda: version(project, 2, status=ModelStatus.SERVING))
    ModelVersion.objects.create(project=project, kind="policy", version=1, base_model="x", status=ModelStatus.SERVING)


def test_version_numbers_are_unique_per_project_and_kind(project):
    version(project, 1)
    refused(lambda: version(project, 1))


def test_a_run_is_finished_exactly_when_it_is_in_a_terminal_state(project):
    refused(lambda: TrainingRun.objects.create(project=project, kind="reward", status=RunStatus.SUCCEEDED))
    refused(
        lambda: TrainingRun.objects.create(
            project=project, kind="reward", status=RunStatus.RUNNING, finished_at=timezone.now()
        )
    )
    TrainingRun.objects.create(project=project, kind="reward", status=RunStatus.FAILED, finished_at=timezone.now())


def test_run_progress_cannot_pass_its_total(project):
    refused(lambda: TrainingRun.objects.create(project=project, kind="sft", progress_step=11, progress_total=10))


def test_unknown_run_kinds_are_refused(project):
    refused(lambda: TrainingRun.objects.create(project=project, kind="magic"))


def test_a_snapshot_is_immutable_and_unique_by_content(project):
    digest = "a" * 64
    snapshot = DatasetSnapshot.objects.create(
        project=project, name="s", annotation_ids={"comparisons": [1]}, content_hash=digest
    )
    snapshot.name = "renamed"
    with pytest.raises(ValueError, match="immutable"):
        snapshot.save()
    refused(lambda: DatasetSnapshot.objects.create(project=project, name="t", annotation_ids={}, content_hash=digest))
    refused(
        lambda: DatasetSnapshot.objects.create(project=project, name="u", annotation_ids={}, content_hash="not-a-hash")
    )
