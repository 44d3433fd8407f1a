"""The run forms in a real browser: fields built from the config dataclasses, with their help text and bounds, and a
config error shown on its field (the trainer's own check)."""

import pytest

from annotate.roles import RoleName
from ml.config import PPOConfig, RewardConfig, config_fields
from tests.conftest import PASSWORD
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_run_forms_show_the_configs_help_and_refuse_what_the_trainer_refuses(page_for, make_user, labeled):
    page = page_for(make_user(RoleName.ADMIN, "ada"), password=PASSWORD)
    page.goto(f"/projects/{labeled.slug}/runs/reward/new/")
    reward = config_fields(RewardConfig)
    assert reward["max_length"].help in page.locator("form.form-grid").inner_text()
    assert page.locator("#id_max_length").get_attribute("min") == str(reward["max_length"].bounds["min"])
    page.fill("#id_eval_share", "1")  # the config keeps eval_share below 1
    page.click("button:has-text('Start run')")
    error = page.locator("[data-error=eval_share]")
    assert error.count() == 1 and "less than 1" in error.inner_text()
    screenshot(page, "run-reward-form-error")

    page = page_for(make_user(RoleName.ADMIN, "ines"), password=PASSWORD, width=820, dark=True)
    page.goto(f"/projects/{labeled.slug}/runs/ppo/new/")
    assert config_fields(PPOConfig)["init_kl_coef"].help in page.locator("form.form-grid").inner_text()
    screenshot(page, "run-ppo-form-tablet-dark")
