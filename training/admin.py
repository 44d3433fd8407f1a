from django.contrib import admin

from training.models import DatasetSnapshot, ModelVersion, RetrainCycle, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "project", "base_model", "status", "created_at", "promoted_at"]
    list_filter = ["project", "kind", "status"]
    raw_id_fields = ["parent"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "progress_step", "progress_total", "created_at"]
    list_filter = ["project", "kind", "status"]
    raw_id_fields = ["snapshot", "base_version", "reward_version", "opponent_version", "output_version", "cycle"]


@admin.register(RetrainCycle)
class RetrainCycleAdmin(admin.ModelAdmin):
    """Read-only: cycles are started and advanced by the services (the project page and beat)."""

    list_display = ["id", "project", "status", "stages", "stage", "created_at", "finished_at"]
    list_filter = ["project", "status"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "content_hash", "created_at"]
    list_filter = ["project"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False
