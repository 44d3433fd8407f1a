from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils.html import format_html

from annotate import quality, services
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
                    "ranking_k",
                    "flags",
                ]
            },
        ),
        (
            "Distribution and quality control",
            {
                "description": "Overlap is how many distinct labelers each task of a kind needs; a change applies "
                "to the project's existing tasks too (raising it reopens done tasks for more labelers).",
                "fields": [
                    ("overlap_demonstrate", "overlap_rank", "overlap_compare", "overlap_rate"),
                    "lease_minutes",
                    "kind_mix",
                    "gold_share",
                ],
            },
        ),
        ("Retraining", {"fields": ["retrain_enabled", "retrain_min_comparisons", "retrain_min_demonstrations"]}),
        (
            "Live chat",
            {
                "description": "Labelers talk to the serving policy and pick the better of two replies at each turn.",
                "fields": [
                    "chat_enabled",
                    "chat_opponent",
                    ("chat_max_turns", "chat_max_tokens", "chat_max_concurrent"),
                ],
            },
        ),
    ]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        overlap = {"overlap_demonstrate", "overlap_rank", "overlap_compare", "overlap_rate"}
        if change and overlap & set(form.changed_data):
            changed = services.project_overlap_apply(project=obj)
            self.message_user(request, f"The new overlap applies to {changed} existing task(s).", messages.INFO)

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


class TaskAdminForm(forms.ModelForm):
    class Meta:
        model = Task
        fields = [
            "project",
            "kind",
            "anchor",
            "required_labelers",
            "priority",
            "gold_answer",
            "is_active",
            "origin_run",
            "origin_import",
        ]
        help_texts = {
            "gold_answer": 'Makes this a gold task. Ranking: {"tiers": [[best id], [next id, tied id], ...]}; '
            'comparison: {"choice": -4..4} (negative: the first candidate is better; -1 and 1: about the same); '
            'rating: {"score": 1..7, "tolerance": 1}. Empty: an ordinary task.',
        }

    def clean(self):
        cleaned = super().clean()
        answer = cleaned.get("gold_answer")
        if answer is not None and self.instance.pk:
            try:
                cleaned["gold_answer"] = services.gold_answer_clean(task=self.instance, answer=answer)
            except services.LabelingError as error:
                raise forms.ValidationError({"gold_answer": error.message}) from None
        return cleaned


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    form = TaskAdminForm
    list_display = ["id", "project", "kind", "required_labelers", "taken", "priority", "is_gold", "is_active"]
    list_filter = ["project", "kind", "is_active", "is_gold"]
    raw_id_fields = ["anchor", "origin_run", "origin_import"]
    readonly_fields = ["candidates_key", "taken", "is_gold"]
    inlines = [TaskCandidateInline]
    actions = ["use_consensus_as_gold", "clear_gold"]

    def save_model(self, request, obj, form, change) -> None:
        # The gold answer is set through the service once the candidates are saved (save_related).
        current = Task.objects.filter(pk=obj.pk).values_list("gold_answer", "is_gold").first() if change else None
        obj.gold_answer, obj.is_gold = current or (None, False)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        if "gold_answer" in form.changed_data:
            try:
                services.task_set_gold(task=form.instance, answer=form.cleaned_data["gold_answer"])
            except services.LabelingError as error:
                self.message_user(request, f"The task is not gold: {error.message}", messages.ERROR)

    @admin.action(description="Make gold: use the labelers' consensus as the known answer")
    def use_consensus_as_gold(self, request, queryset):
        made, skipped = 0, 0
        for task in queryset:
            answer = quality.consensus_answer(task=task)
            if answer is None:
                skipped += 1
                continue
            services.task_set_gold(task=task, answer=answer)
            made += 1
        self.message_user(
            request,
            f"{made} task(s) are now gold; {skipped} had no clear consensus (or are demonstrations).",
            messages.SUCCESS if made else messages.WARNING,
        )

    @admin.action(description="Make ordinary again (clear the gold answer)")
    def clear_gold(self, request, queryset):
        for task in queryset.filter(is_gold=True):
            services.task_set_gold(task=task, answer=None)
        self.message_user(request, "Gold answers cleared.", messages.SUCCESS)


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
    actions = [*(_role_action(role) for role in RoleName), "deactivate_and_requeue"]

    @admin.action(description="Deactivate, and send their judgements back for re-labeling")
    def deactivate_and_requeue(self, request, queryset):
        requeued = 0
        for user in queryset.exclude(pk=request.user.pk):
            requeued += services.labeler_deactivate(labeler=user, requeue=True).annotations_requeued
        self.message_user(request, f"Deactivated; {requeued} judgement(s) sent back for re-labeling.", messages.SUCCESS)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="Roles")
    def roles(self, obj) -> str:
        names = {group.name for group in obj.groups.all()}
        return ", ".join(role.value for role in RoleName if role.value in names) or "—"
