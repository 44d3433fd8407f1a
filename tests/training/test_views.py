"""Runs and models pages: roles, starting a run, the console's polling, cancel, promote and roll back."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.training.conftest import tiny_config
from training.models import ModelVersion, RunKind, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr("training.queue.run_send", lambda run_id, task_id: sent.append((run_id,)))
    monkeypatch.setattr("training.queue.scores_send", lambda *args: None)
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
        ("run_sft_new", {"slug": "judged"}, "get"),
        ("run_sft_new", {"slug": "judged"}, "post"),
        ("run_ppo_new", {"slug": "judged"}, "get"),
        ("run_ppo_new", {"slug": "judged"}, "post"),
        ("run_dpo_new", {"slug": "judged"}, "get"),
        ("run_dpo_new", {"slug": "judged"}, "post"),
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
    data = {**tiny_config("tiny"), "learning_rate": 1e-4, "eval_share": 1.0}  # the config takes < 1
    page = client.post(url, data)
    html = page.content.decode()
    assert page.status_code == 200 and 'data-error="eval_share"' in html and "less than 1.0" in html
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


@pytest.mark.parametrize("name", ["run_sft_new", "run_ppo_new", "run_dpo_new"])
def test_researchers_cannot_start_policy_runs(client, researcher, judged, name):
    client.force_login(researcher)
    assert client.get(reverse(f"rewardlab:{name}", args=[judged.slug])).status_code == 403
    assert client.post(reverse(f"rewardlab:{name}", args=[judged.slug]), {}).status_code == 403


def _policy_form(response) -> dict:
    """The form's initial values, as a browser would post them back."""
    form = response.context["form"]
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        data[name] = value.pk if hasattr(value, "pk") else value
    return data


def test_the_sft_page_shows_the_demonstrations_and_starts_a_run(
    client, admin_user, taught, no_broker, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    url = reverse("rewardlab:run_sft_new", args=[taught.slug])
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-stat="demonstrations"' in html and "Start run" in html
    demonstrations = response.context["summary"].demonstrations
    assert demonstrations > 0
    data = {**_policy_form(response), "epochs": 2, "lora_r": 0}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("rewardlab:run_detail", args=[run.pk])
    assert run.kind == "sft" and run.config["epochs"] == 2 and run.config["base_model"] == "embedded:tiny-gpt2"
    assert run.snapshot.row_counts["rows"] == demonstrations and no_broker == [(run.pk,)]


def test_ppo_without_a_fine_tuned_policy_or_reward_model_explains_why(client, admin_user, taught, no_broker):
    client.force_login(admin_user)
    url = reverse("rewardlab:run_ppo_new", args=[taught.slug])
    response = client.get(url)
    assert "PPO needs prompts and a reward model" in response.content.decode()
    response = client.post(url, _policy_form(response))
    assert response.status_code == 200 and not TrainingRun.objects.exists()
    assert "run SFT first" in response.content.decode()


def test_ppo_starts_from_the_chosen_versions(client, admin_user, taught, no_broker, tmp_path):
    sft = _version(taught, tmp_path, "policy", 1, RunKind.SFT)
    reward = _version(taught, tmp_path, "reward", 1, RunKind.REWARD)
    client.force_login(admin_user)
    url = reverse("rewardlab:run_ppo_new", args=[taught.slug])
    response = client.get(url)
    assert response.context["form"]["base_version"].value() == sft.pk  # the newest SFT policy by default
    data = {**_policy_form(response), "reward_version": reward.pk, "steps": 3, "init_kl_coef": 0.05}
    response = client.post(url, data)
    assert response.status_code == 302, response.context["form"].errors
    run = TrainingRun.objects.get(kind="ppo")
    assert run.base_version == sft and run.reward_version == reward and run.config["steps"] == 3


def test_a_bad_dpo_value_is_shown_on_its_field(client, admin_user, taught, no_broker):
    client.force_login(admin_user)
    url = reverse("rewardlab:run_dpo_new", args=[taught.slug])
    data = {**_policy_form(client.get(url)), "max_prompt_length": 600, "max_length": 512}
    response = client.post(url, data)
    assert response.status_code == 200 and not TrainingRun.objects.exists()
    assert 'data-error="max_prompt_length"' in response.content.decode()


def test_the_ppo_console_draws_reward_kl_entropy_clip_and_value_curves(client, admin_user, taught):
    history = [
        {"step": s, "reward_mean": s / 10, "kl": s / 5, "entropy": 3 - s / 10, "clip_fraction": 0.1,
         "value_loss": 1 / s, "kl_coef": 0.1}
        for s in range(1, 11)
    ]  # fmt: skip
    run = TrainingRun.objects.create(
        project=taught, kind=RunKind.PPO, status=RunStatus.RUNNING, progress_step=10, progress_total=20,
        metrics_history=history, started_at=timezone.now(),
    )  # fmt: skip
    client.force_login(admin_user)
    html = client.get(reverse("rewardlab:run_detail", args=[run.pk])).content.decode()
    for label in ("Mean reward", "KL to the reference", "Entropy", "Clip fraction", "Value loss"):
        assert label in html, label


def test_the_models_page_shows_each_policy_lineage(client, researcher, taught, tmp_path):
    sft = _version(taught, tmp_path, "policy", 1, RunKind.SFT)
    reward = _version(taught, tmp_path, "reward", 1, RunKind.REWARD)
    ppo = _version(taught, tmp_path, "policy", 2, RunKind.PPO, parent=sft, reward_version=reward)
    client.force_login(researcher)
    html = client.get(reverse("rewardlab:model_list", args=[taught.slug])).content.decode()
    row = html[html.index(f'data-version="{ppo.label}"') :].split("</tr>")[0]
    assert "PPO" in row and str(sft) in row and str(reward) in row


def _version(project, tmp_path, kind, number, run_kind, parent=None, reward_version=None):
    checkpoint = tmp_path / f"{kind}-{number}"
    checkpoint.mkdir()
    version = ModelVersion.objects.create(
        project=project, kind=kind, version=number, base_model="embedded:tiny-gpt2", parent=parent,
        artifact_path=str(checkpoint), metrics={"reward_mean_first": 0.1, "reward_mean_last": 0.5, "kl_last": 2.0},
    )  # fmt: skip
    TrainingRun.objects.create(
        project=project, kind=run_kind, status=RunStatus.SUCCEEDED, output_version=version,
        started_at=timezone.now(), finished_at=timezone.now(),
        base_version=parent, reward_version=reward_version,
    )  # fmt: skip
    return version
