"""Pages of the training side: runs and the model registry."""

from django.urls import path

from training import views

app_name = "rewardlab"

urlpatterns = [
    path("runs/", views.run_list, name="run_list"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("projects/<slug:slug>/runs/reward/new/", views.run_reward_new, name="run_reward_new"),
    path("projects/<slug:slug>/runs/sft/new/", views.run_policy_new, {"kind": "sft"}, name="run_sft_new"),
    path("projects/<slug:slug>/runs/dpo/new/", views.run_policy_new, {"kind": "dpo"}, name="run_dpo_new"),
    path("projects/<slug:slug>/runs/ppo/new/", views.run_policy_new, {"kind": "ppo"}, name="run_ppo_new"),
    path("projects/<slug:slug>/runs/sample/new/", views.run_policy_new, {"kind": "sample"}, name="run_sample_new"),
    path("projects/<slug:slug>/cycles/", views.project_cycles, name="project_cycles"),
    path("projects/<slug:slug>/snapshots/", views.snapshot_create, name="snapshot_create"),
    path(
        "projects/<slug:slug>/snapshots/<int:snapshot_id>/download/", views.snapshot_download, name="snapshot_download"
    ),
    path("projects/<slug:slug>/retraining/", views.retrain_settings, name="retrain_settings"),
    path("projects/<slug:slug>/cycles/start/", views.cycle_start, name="cycle_start"),
    path("projects/<slug:slug>/cycles/<int:cycle_id>/stop/", views.cycle_stop, name="cycle_stop"),
    path("projects/<slug:slug>/models/", views.model_list, name="model_list"),
    path("projects/<slug:slug>/models/<int:version_id>/promote/", views.model_promote, name="model_promote"),
    path("projects/<slug:slug>/models/rollback/<str:kind>/", views.model_rollback, name="model_rollback"),
    path("lineage/<str:kind>/<int:pk>/", views.lineage_detail, name="lineage"),
]
