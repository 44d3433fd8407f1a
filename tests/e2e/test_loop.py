"""The loop in a real browser: an admin switches retraining on with small run configs and runs a cycle on a real
worker; the project page shows the cycle's four runs, and, once labelers have judged the new policy against the
old one head-to-head, the model leaderboard."""

import json

import pytest
from celery.contrib.testing.worker import start_worker

from annotate.models import Task
from annotate.roles import RoleName
from rewardlab.celery import app
from tests.conftest import PASSWORD
from tests.e2e.conftest import screenshot
from tests.simulate import simulate
from tests.tiny_models import tiny_reward_backbone
from training.models import RetrainCycle

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def test_an_admin_runs_the_loop_and_reads_the_leaderboard(page_for, make_user, labeled, tmp_path, settings):
    from tests.training.conftest import PPO_TINY, SAMPLE_TINY, SFT_TINY, tiny_config

    settings.REWARDLAB_RUN_HEARTBEAT_SECONDS = 600
    configs = {
        "reward": tiny_config(tiny_reward_backbone(tmp_path / "tiny-bert")),
        "sft": SFT_TINY,
        "ppo": PPO_TINY,
        "sample": {**SAMPLE_TINY, "prompts": 40},
    }
    page = page_for(make_user(RoleName.ADMIN, "ada"), password=PASSWORD)
    page.goto("/projects/demo/")
    assert page.locator("[data-retrain=off]").count() == 1
    page.click("summary:has-text('Retraining settings')")
    page.check("#id_retrain_enabled")
    page.fill("#id_retrain_min_reward_accuracy", "0")  # simulated preferences follow no text
    page.fill("#id_retrain_run_configs", json.dumps({"ppo": {"cliprange": 0}}))
    page.click("button:has-text('Save settings')")
    assert "cliprange must be &gt; 0" in page.content() or "cliprange must be > 0" in page.inner_text("body")
    page.fill("#id_retrain_run_configs", json.dumps(configs))
    page.click("button:has-text('Save settings')")
    page.wait_for_selector("[data-retrain=on]")

    page.click("button:has-text('Run a cycle now')")
    page.wait_for_selector("[data-cycle-status=running]")
    assert [s.get_attribute("data-step") for s in page.locator("[data-step]").all()] == [
        "reward",
        "sft",
        "ppo",
        "sample",
    ]
    with start_worker(app, pool="solo", queues=["default", "training"], perform_ping_check=False, shutdown_timeout=60):
        for _ in range(120):
            page.wait_for_timeout(1000)
            if RetrainCycle.objects.filter(status="running").count() == 0:
                break
    cycle = RetrainCycle.objects.get()
    assert cycle.status == "succeeded", cycle.error
    sample = cycle.runs.get(kind="sample")
    head_to_head = Task.objects.filter(origin_run=sample, kind="compare").count()
    assert head_to_head > 0

    # Labelers judge the new tasks, head-to-head ones included: the leaderboard ranks the two policies.
    labelers = {make_user(RoleName.LABELER, name): 0.1 for name in ("ines", "omar", "lee")}
    project = cycle.project
    project.kind_mix = {"compare": 1}
    project.save()
    simulate(project, labelers, tasks_each=60, seed=3)
    page.goto("/projects/demo/")
    assert page.locator("[data-cycle-status=succeeded]").count() == 1
    assert page.locator("[data-step] [data-status=succeeded]").count() == 4
    rows = page.locator("[data-leaderboard] tbody tr")
    assert rows.count() == 2
    assert page.locator("[data-leaderboard] svg .leaderboard__bar").count() == 2
    screenshot(page, "project-loop")

    reader = page_for(make_user(RoleName.RESEARCHER, "rui"), password=PASSWORD, width=820, dark=True)
    reader.goto("/projects/demo/")
    assert reader.locator("[data-leaderboard] tbody tr").count() == 2
    assert reader.locator("button:has-text('Run a cycle now')").count() == 0  # researchers read only
    width = reader.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, f"the page scrolls sideways ({width} px)"
    screenshot(reader, "project-loop-dark-tablet")

    page.click(f"#cycle-{cycle.pk} >> a:has-text('lineage')")
    assert page.locator("text=policy-v2").count() >= 1
    screenshot(page, "lineage-cycle")
