"""Runs in a real browser: an admin starts a reward-model run, watches it train on a real worker, promotes it."""

import pytest
from celery.contrib.testing.worker import start_worker

from annotate.roles import RoleName
from rewardlab.celery import app
from tests.conftest import PASSWORD
from tests.e2e.conftest import screenshot
from tests.tiny_models import tiny_reward_backbone
from training.models import ModelVersion

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def test_an_admin_trains_watches_and_promotes_a_reward_model(page_for, make_user, labeled, tmp_path):
    backbone = tiny_reward_backbone(tmp_path / "tiny-bert")
    page = page_for(make_user(RoleName.ADMIN, "ada"), password=PASSWORD)
    page.goto("/")
    page.click("nav >> text=Runs")
    page.click("[data-project=demo] >> a:has-text('Reward model')")
    assert int(page.locator("[data-stat=pairs]").inner_text().replace(",", "")) > 0
    page.fill("#id_base_model", str(backbone))
    page.fill("#id_max_length", "64")
    page.fill("#id_epochs", "6")
    page.fill("#id_batch_size", "8")
    page.fill("#id_learning_rate", "0.0005")
    page.click("button:has-text('Start run')")
    page.wait_for_selector("[data-run-status=queued]")
    with start_worker(app, pool="solo", queues=["training"], perform_ping_check=False, shutdown_timeout=60):
        # The console polls itself: no reload until the run ends and the polling stops.
        page.wait_for_selector("[data-run-status=succeeded]", timeout=120_000)
    assert page.locator("[data-curve=loss] polyline").count() == 1
    assert page.locator("[data-curve=eval_accuracy]").count() == 1
    assert "Registered reward-v1" in page.locator("[data-log]").inner_text()
    assert page.locator("progress").get_attribute("value") == page.locator("progress").get_attribute("max")
    screenshot(page, "run-detail")

    page.click("[data-metrics] >> text=reward-v1")
    page.click("button:has-text('Promote')")
    page.wait_for_selector("[data-version=reward-v1] [data-status=serving]")
    assert ModelVersion.objects.get().status == "serving"
    screenshot(page, "models")
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet
    screenshot(page, "models-tablet")


def test_the_run_page_in_dark_mode_on_a_tablet(page_for, make_user, labeled, tmp_path):
    from training.models import RunStatus, TrainingRun

    run = TrainingRun.objects.create(
        project=labeled, kind="reward", status=RunStatus.RUNNING, progress_step=40, progress_total=120,
        metrics_history=[{"step": s, "loss": 0.7 / (1 + s / 30)} for s in range(1, 41)],
        log_tail="10:00:01 412 preference pairs\n10:00:05 step 12/120 loss 0.6901",
    )  # fmt: skip
    page = page_for(make_user(RoleName.RESEARCHER, "rafa"), password=PASSWORD, width=820, height=1180, dark=True)
    page.goto(f"/runs/{run.pk}/")
    assert "step 40 / 120" in page.locator("[data-progress]").inner_text()
    assert page.locator("button:has-text('Cancel run')").count() == 0  # researchers cannot cancel
    screenshot(page, "run-detail-dark-tablet")


def test_an_admin_fine_tunes_then_optimises_a_policy_by_ppo(page_for, make_user, labeled, tmp_path, settings):
    """SFT then PPO from the browser on a real worker; the PPO console draws its curves; the models page shows
    the lineage."""
    from tests.training.conftest import tiny_config
    from training import runner, services

    settings.REWARDLAB_RUN_HEARTBEAT_SECONDS = 600
    backbone = tiny_reward_backbone(tmp_path / "tiny-bert")
    reward = services.run_start(kind="reward", project=labeled, config=tiny_config(backbone))
    assert runner.run_execute(run_id=reward.pk, worker="setup") == "succeeded"
    reward.refresh_from_db()
    services.model_version_promote(version=reward.output_version)

    page = page_for(make_user(RoleName.ADMIN, "ada"), password=PASSWORD)
    page.goto("/runs/")
    page.click("[data-project=demo] >> a:has-text('SFT')")
    assert int(page.locator("[data-stat=demonstrations]").inner_text().replace(",", "")) > 0
    page.fill("#id_max_length", "128")
    page.fill("#id_epochs", "2")
    page.fill("#id_learning_rate", "0.001")
    page.click("button:has-text('Start run')")
    page.wait_for_selector("[data-run-status=queued]")
    with start_worker(app, pool="solo", queues=["training"], perform_ping_check=False, shutdown_timeout=60):
        page.wait_for_selector("[data-run-status=succeeded]", timeout=120_000)
        assert "Registered policy-v1" in page.locator("[data-log]").inner_text()

        page.goto("/runs/")
        page.click("[data-project=demo] >> a:has-text('PPO')")
        assert page.locator("#id_base_version option:checked").inner_text() == "policy-v1"
        page.fill("#id_steps", "16")
        page.fill("#id_batch_size", "8")
        page.fill("#id_mini_batch_size", "4")
        page.fill("#id_max_new_tokens", "16")
        page.fill("#id_learning_rate", "0.0005")
        page.click("button:has-text('Start run')")
        page.wait_for_selector("[data-run-status=succeeded]", timeout=120_000)
    for key in ("reward_mean", "kl", "entropy", "clip_fraction", "value_loss"):
        assert page.locator(f"[data-curve={key}] polyline").count() == 1, key
    assert "Registered policy-v2" in page.locator("[data-log]").inner_text()
    screenshot(page, "ppo-run")

    page.goto("/projects/demo/models/")
    row = page.locator("[data-version=policy-v2]")
    assert "PPO" in row.inner_text() and "policy-v1" in row.inner_text() and "reward-v1" in row.inner_text()
    screenshot(page, "policies")


def test_the_runs_page_shows_which_workers_are_alive(page_for, make_user, labeled):
    from datetime import timedelta

    from django.utils import timezone

    from training import health

    now = timezone.now()
    health.worker_beat(hostname="default@web1", queues=["default"], pid=101, started_at=now - timedelta(days=2))
    health.worker_beat(hostname="training@gpu1", queues=["training"], pid=202, started_at=now - timedelta(hours=5))
    health.worker_beat(hostname="training@gpu2", queues=["training"], pid=303, started_at=now - timedelta(hours=9))
    from training.models import WorkerHeartbeat

    WorkerHeartbeat.objects.filter(hostname="training@gpu2").update(last_seen_at=now - timedelta(minutes=7))
    page = page_for(make_user(RoleName.RESEARCHER, "rui"), password=PASSWORD)
    page.goto("/runs/")
    assert page.locator("[data-worker='training@gpu1'][data-alive=yes]").count() == 1
    assert page.locator("[data-worker='training@gpu2'][data-alive=no]").count() == 1
    assert page.locator("[data-queues-down]").count() == 0  # gpu1 still serves the training queue
    screenshot(page, "runs-workers")
