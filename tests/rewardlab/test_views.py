"""Runs and models pages: roles, starting a run, the console's polling, cancel, promote and roll back."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from rewardlab.models import ModelVersion, RunStatus, TrainingRun
from tests.rewardlab.conftest import tiny_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr("rewardlab.tasks.run_execute.apply_async", lambda args, task_id: sent.append(args))
    monkeypatch.setattr("rewardlab.tasks.candidate_scores_compute.delay", lambda *args: None)
    return sent


def finished_run(project, tmp_path, *, status=RunStatus.SUCCEEDED, version=1) -> TrainingRun:
    checkpoint = tmp_path / f"v{version}"
    checkpoint.mkdir()
    output = None
    if status == RunStatus.SUCCEEDED:
        output = ModelVersion.objects.create(
            project=project,
            kind="reward",
            version=version,
            base_model="tiny",
            artifact_path=str(checkpoint),
            metrics={"eval_accuracy": 0.75, "eval_loss": 0.5, "accuracy_by_kind": {"ranking": 0.7}},
        )
    return TrainingRun.objects.create(
        project=project,
        kind="reward",
        status=status,
        finished_at=timezone.now(),
        output_version=output,
        progress_step=10,
        progress_total=10,
        metrics_history=[{"step": s, "loss": 1 / s} for s in range(1, 11)] + [{"step": 10, "eval_accuracy": 0.75}],
        log_tail="12:00:00 <script>alert(1)</script> sampled reply",
        metrics=output.metrics if output else {},
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "method"),
    [
        ("run_list", {}, "get"),
        ("run_reward_new", {"slug": "judged"}, "get"),
        ("run_reward_new", {"slug": "judged"}, "post"),
        ("run_cancel", {"run_id": 1}, "post"),
        ("model_list", {"slug": "judged"}, "get"),
        ("model_promote", {"slug": "judged", "version_id": 1}, "post"),
        ("model_rollback", {"slug": "judged", "kind": "reward"}, "post"),
    ],
)
def test_labelers_see_no_training_page(client, labeler, judged, name, kwargs, method):
    client.force_login(labeler)
    response = getattr(client, method)(reverse(f"rewardlab:{name}", kwargs=kwargs))
    assert response.status_code == 403


def test_researchers_read_but_cannot_start_cancel_or_promote(client, researcher, judged, tmp_path):
    run = finished_run(judged, tmp_path)
    client.force_login(researcher)
    assert client.get(reverse("rewardlab:run_list")).status_code == 200
    assert client.get(reverse("rewardlab:run_detail", args=[run.pk])).status_code == 200
    assert client.get(reverse("rewardlab:model_list", args=[judged.slug])).status_code == 200
    assert client.get(reverse("rewardlab:run_reward_new", args=[judged.slug])).status_code == 403
    assert client.post(reverse("rewardlab:run_cancel", args=[run.pk])).status_code == 403
    promote = reverse("rewardlab:model_promote", args=[judged.slug, run.output_version.pk])
    assert client.post(promote).status_code == 403


def test_the_new_run_page_shows_the_dataset_and_starts_a_run(
    client, admin_user, judged, tiny_backbone, no_broker, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    url = reverse("rewardlab:run_reward_new", args=[judged.slug])
    page = client.get(url)
    assert page.status_code == 200
    summary = page.context["summary"]
    assert summary.pairs > 0 and summary.labelers == 2 and summary.prompts == 12
    assert f'data-stat="pairs">{summary.pairs}<' in page.content.decode()
    data = {**tiny_config(tiny_backbone), "learning_rate": 1e-4, "use_margin": "on"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("rewardlab:run_detail", args=[run.pk])
    assert no_broker == [(run.pk,)] and run.config["use_margin"] is True and run.config["learning_rate"] == 1e-4


def test_a_bad_config_is_shown_on_its_field_and_starts_nothing(client, admin_user, judged, no_broker):
    client.force_login(admin_user)
    url = reverse("rewardlab:run_reward_new", args=[judged.slug])
    data = {**tiny_config("tiny"), "learning_rate": 1e-4, "eval_share": 0.9}
    page = client.post(url, data)
    assert page.status_code == 200 and 'data-error="eval_share"' in page.content.decode()
    assert not TrainingRun.objects.exists() and no_broker == []


def test_the_console_polls_until_the_run_ends(client, admin_user, judged, tmp_path):
    client.force_login(admin_user)
    running = TrainingRun.objects.create(
        project=judged, kind="reward", status=RunStatus.RUNNING, started_at=timezone.now(), progress_step=3,
        progress_total=12, metrics_history=[{"step": s, "loss": 2.0 / s} for s in (1, 2, 3)],
    )  # fmt: skip
    url = reverse("rewardlab:run_detail", args=[running.pk])
    partial = client.get(url, headers={"HX-Request": "true"})
    html = partial.content.decode()
    assert partial.status_code == 200 and 'hx-trigger="every 2s"' in html and "<html" not in html
    assert "step 3 / 12 · 25%" in html and "left" in html and 'data-curve="loss"' in html
    done = finished_run(judged, tmp_path)
    partial = client.get(reverse("rewardlab:run_detail", args=[done.pk]), headers={"HX-Request": "true"})
    assert partial.status_code == 286 and "hx-trigger" not in partial.content.decode()


def test_model_output_in_the_log_is_escaped(client, admin_user, judged, tmp_path):
    client.force_login(admin_user)
    html = client.get(reverse("rewardlab:run_detail", args=[finished_run(judged, tmp_path).pk])).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_an_admin_cancels_a_run_from_the_console(client, admin_user, judged):
    client.force_login(admin_user)
    queued = TrainingRun.objects.create(project=judged, kind="reward")
    response = client.post(reverse("rewardlab:run_cancel", args=[queued.pk]), headers={"HX-Request": "true"})
    queued.refresh_from_db()
    assert response.status_code == 200 and queued.status == RunStatus.CANCELLED
    assert 'data-run-status="cancelled"' in response.content.decode()


def test_promote_and_roll_back_from_the_models_page(client, admin_user, judged, tmp_path, no_broker):
    client.force_login(admin_user)
    v1 = finished_run(judged, tmp_path, version=1).output_version
    v2 = finished_run(judged, tmp_path, version=2).output_version
    for version in (v1, v2):
        response = client.post(reverse("rewardlab:model_promote", args=[judged.slug, version.pk]))
        assert response.status_code == 302
    page = client.get(reverse("rewardlab:model_list", args=[judged.slug])).content.decode()
    assert 'data-version="reward-v2"' in page and page.count('data-status="serving"') == 1
    client.post(reverse("rewardlab:model_rollback", args=[judged.slug, "reward"]))
    assert ModelVersion.objects.get(status="serving") == v1
