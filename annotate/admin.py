from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils.html import format_html

from annotate import services
from annotate.models import (
    Assignment,
    CandidateReport,
    Comparison,
    Demonstration,
    ImportSource,
    Message,
    Project,
    Ranking,
    Rating,
    Task,
    TaskCandidate,
)
from annotate.roles import RoleName

User = get_user_model()


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_active", "ranking_k", "import_link", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "is_active", "guidelines"]}),
        (
            "Tasks",
            {
                "fields": [
                    "import_task_kinds",
                    ("overlap_demonstrate", "overlap_rank", "overlap_compare", "overlap_rate"),
                    "ranking_k",
                    "lease_minutes",
                    "flags",
                ]
            },
        ),
        ("Retraining", {"fields": ["retrain_enabled", "retrain_min_comparisons", "retrain_min_demonstrations"]}),
    ]

    @admin.display(description="Import")
    def import_link(self, obj: Project) -> str:
        return format_html('<a href="{}">Import prompts</a>', reverse("annotate:project_import", args=[obj.slug]))


@admin.register(ImportSource)
class ImportSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "row_count", "imported_by", "created_at"]
    list_filter = ["project"]
    readonly_fields = [f.name for f in ImportSource._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "role", "short_text", "depth", "author_label", "created_at"]
    list_filter = ["project", "role"]
    search_fields = ["text"]
    raw_id_fields = ["parent", "author_user", "author_model", "author_import"]
    readonly_fields = ["path_hash"]

    @admin.display(description="Text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]


class TaskCandidateInline(admin.TabularInline):
    model = TaskCandidate
    raw_id_fields = ["message"]
    extra = 0


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "required_labelers", "priority", "is_active", "created_at"]
    list_filter = ["project", "kind", "is_active"]
    raw_id_fields = ["anchor", "origin_run", "origin_import"]
    readonly_fields = ["candidates_key"]
    inlines = [TaskCandidateInline]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "labeler", "status", "leased_at", "expires_at"]
    list_filter = ["status", "task__project"]
    raw_id_fields = ["task", "labeler"]


class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "labeler", "import_source", "time_spent_ms", "created_at"]
    list_filter = ["task__project"]
    raw_id_fields = ["task", "labeler", "assignment", "import_source"]

    def get_readonly_fields(self, request, obj=None):
        # Raw judgements are never edited: re-labeling creates new ones.
        return [f.name for f in self.model._meta.fields] if obj else []


@admin.register(CandidateReport)
class CandidateReportAdmin(admin.ModelAdmin):
    list_display = ["id", "message", "reporter", "task", "reason", "created_at"]
    list_filter = ["task__project"]
    raw_id_fields = ["task", "message", "reporter"]


for annotation_model in (Demonstration, Ranking, Comparison, Rating):
    admin.site.register(annotation_model, AnnotationAdmin)


def _role_action(role: RoleName):
    def action(modeladmin, request, queryset):
        for user in queryset:
            services.user_set_roles(user=user, roles=[role])
        modeladmin.message_user(
            request, f"{queryset.count()} user(s) now have the {role.value} role.", messages.SUCCESS
        )

    action.__name__ = f"make_{role.value}"
    action.short_description = f"Set role: {role.value}"
    return action


admin.site.unregister(User)


@admin.register(User)
class RewardLabUserAdmin(UserAdmin):
    list_display = ["username", "email", "roles", "is_active", "last_login"]
    actions = [_role_action(role) for role in RoleName]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="Roles")
    def roles(self, obj) -> str:
        names = {group.name for group in obj.groups.all()}
        return ", ".join(role.value for role in RoleName if role.value in names) or "—"
