from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project itself, installed so the Celery app is loaded once Django is set up (every web process and
    management command can then enqueue tasks), never by a bare import."""

    name = "rewardlab"
    label = "rewardlab_project"  # "rewardlab" is the training app's label (its tables keep their names)
    verbose_name = "RewardLab"

    def ready(self) -> None:
        import rewardlab.celery  # noqa: F401 - creates the app and makes it current
