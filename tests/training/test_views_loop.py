"""The loop's pages: the project page's retraining section (cycles, settings, start and stop) and leaderboard,
and the sampling run page."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.training.conftest import SAMPLE_TINY
from training.models import CycleStatus, ModelKind, ModelStatus, ModelVersion, RetrainCycle, RunKind, TrainingRun

pytestmark = pytest.mark.django_db


def policy(project, tmp_path, version=1, **fields) -> ModelVersion:
    checkpoint = tmp_path / f"policy-v{version}"
    checkpoint.mkdir()
    return ModelVersion.objects.create(
        project=project, kind=ModelKind.POLICY, version=version, base_model="embedded:tiny-gpt2",
        artifact_path=str(checkpoint), **fields,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "kwargs", "method"),
    [
        ("retrain_settings", {"slug": "taught"}, "post"),
        ("cycle_start", {"slug": "taught"}, "post"),
        ("cycle_stop", {"slug": "taught", "cycle_id": 1}, "post"),
        ("run_sample_new", {"slug": "taught"}, "get"),
        ("run_sample_new", {"slug": "taught"}, "post"),
    ],
)
def test_only_admins_change_retraining_or_start_sampling(client, labeler, researcher, taught, name, kwargs, method):
    for user in (labeler, researcher):
        client.force_login(user)
        assert getattr(client, method)(reverse(f"rewardlab:{name}", kwargs=kwargs)).status_code == 403
    assert not RetrainCycle.objects.exists() and not TrainingRun.objects.exists()


def test_researchers_see_cycles_and_the_leaderboard_but_no_admin_buttons(client, researcher, taught):
    RetrainCycle.objects.create(
        project=taught, stages=["reward", "ppo", "sample"], status=CycleStatus.FAILED, finished_at=timezone.now(),
        error="<script>alert(1)</script> reward-v2 did not pass its checks", reason="Thresholds crossed",
    )  # fmt: skip
    client.force_login(researcher)
    page = client.get(reverse("annotate:project_overview", args=[taught.slug])).content.decode()
    assert 'data-cycle-status="failed"' in page and 'data-step="ppo"' in page and "data-leaderboard" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; reward-v2 did not pass" in page and "<script>alert" not in page
    assert 'data-stat="new-preferences">24' in page
    assert "Run a cycle now" not in page and "Retraining settings" not in page


def test_an_admin_switches_retraining_on_with_checked_run_configs(client, admin_user, taught):
    client.force_login(admin_user)
    url = reverse("rewardlab:retrain_settings", args=[taught.slug])
    form = {
        "retrain_enabled": "on", "retrain_min_comparisons": 50, "retrain_min_demonstrations": 20,
        "retrain_policy_method": "dpo", "retrain_min_reward_accuracy": 0.6, "retrain_max_kl": 20,
        "active_selection": "mean_pair",
    }  # fmt: skip
    bad = client.post(url, {**form, "retrain_run_configs": json.dumps({"ppo": {"cliprange": 0}})})
    assert bad.status_code == 400 and "ppo: cliprange must be &gt; 0" in bad.content.decode()
    bad = client.post(url, {**form, "retrain_run_configs": '{"sft": {'})
    assert bad.status_code == 400 and "Not JSON" in bad.content.decode() and "line 1" in bad.content.decode()
    taught.refresh_from_db()
    assert not taught.retrain_enabled
    response = client.post(url, {**form, "retrain_run_configs": json.dumps({"sample": SAMPLE_TINY})})
    assert response.status_code == 302
    taught.refresh_from_db()
    assert taught.retrain_enabled and taught.retrain_policy_method == "dpo" and taught.active_selection == "mean_pair"
    assert taught.retrain_run_configs == {"sample": SAMPLE_TINY}


def test_an_admin_starts_and_stops_a_cycle(client, admin_user, taught, no_broker, django_capture_on_commit_callbacks):
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("rewardlab:cycle_start", args=[taught.slug]))
    assert response.status_code == 302
    cycle = RetrainCycle.objects.get()
    assert cycle.stages == ["reward", "sft", "ppo", "sample"] and cycle.started_by == admin_user
    run = cycle.runs.get()
    assert run.kind == RunKind.REWARD and no_broker == [(run.pk,)]
    page = client.get(reverse("annotate:project_overview", args=[taught.slug])).content.decode()
    assert "Stop cycle" in page and f'href="{reverse("rewardlab:run_detail", args=[run.pk])}"' in page
    assert client.post(reverse("rewardlab:cycle_start", args=[taught.slug]), follow=True).status_code == 200
    assert RetrainCycle.objects.count() == 1  # "already running"
    client.post(reverse("rewardlab:cycle_stop", args=[taught.slug, cycle.pk]))
    cycle.refresh_from_db()
    assert cycle.status == CycleStatus.FAILED and cycle.runs.get().status == "cancelled"


def test_the_sampling_page_shows_what_it_would_do_and_starts_a_run(
    client, admin_user, taught, tmp_path, no_broker, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    url = reverse("rewardlab:run_sample_new", args=[taught.slug])
    page = client.get(url)
    assert page.status_code == 200 and page.context["ready"] is False  # no policy yet
    older = policy(taught, tmp_path, 1, promoted_at=timezone.now())
    serving = policy(taught, tmp_path, 2, status=ModelStatus.SERVING, promoted_at=timezone.now())
    page = client.get(url)
    assert page.context["ready"] and page.context["form"].initial["base_version"] == serving
    assert 'data-stat="prompts-needing">' in page.content.decode()
    data = {**SAMPLE_TINY, "temperature": 0.8, "top_p": 0.9, "rank": "on", "compare_previous": "on"}
    data.pop("device"), data.pop("seed")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.kind == RunKind.SAMPLE
    assert run.base_version == serving and run.opponent_version == older
    assert run.config["compare"] is False and run.config["rank"] is True and no_broker == [(run.pk,)]


def test_the_cycles_poll_while_one_runs(client, researcher, taught):
    client.force_login(researcher)
    url = reverse("rewardlab:project_cycles", args=[taught.slug])
    running = RetrainCycle.objects.create(project=taught, stages=["reward"])
    partial = client.get(url, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and 'hx-trigger="every 3s"' in partial.content.decode()
    assert "<html" not in partial.content.decode() and f'data-cycle="{running.pk}"' in partial.content.decode()
    running.status, running.finished_at = CycleStatus.SUCCEEDED, timezone.now()
    running.save()
    done = client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286 and "hx-trigger" not in done.content.decode()  # 286: htmx stops polling
