from django.apps import AppConfig


class TrainingConfig(AppConfig):
    """The training side: runs, the model registry, cycles, scoring, sampling, inference and their pages and API.
    Its label stays "rewardlab" (its tables, migrations and model references were made under that name)."""

    name = "training"
    label = "rewardlab"
    verbose_name = "Models and training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotate import extensions
        from training import selectors, views

        extensions.section_register("overview", views.overview_section)
        extensions.section_register("export_preview", views.snapshot_freeze_section)
        extensions.section_register("export", views.snapshots_section)
        extensions.scores_register(selectors.serving_candidate_scores)
