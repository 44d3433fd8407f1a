from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AnnotateConfig(AppConfig):
    name = "annotate"
    verbose_name = "Labeling"

    def ready(self) -> None:
        from annotate.roles import roles_sync

        # Permissions exist only once migrate has created them (app by app, in post_migrate), so the role
        # groups are synced after each app's; the last sync sees every permission.
        post_migrate.connect(roles_sync, dispatch_uid="annotate.roles_sync")
