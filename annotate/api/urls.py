"""The REST API under /api/. Names are `api:<name>`; every route has a row in the permission matrix test
(tests/annotate/api/test_permissions.py), which fails for a route without one."""

from django.urls import path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotate.api import exports, lineage, loop, runs, views


class IdConverter:
    """A database id: at most 18 digits, so it always fits a 64-bit column (a longer one is a 404, not an
    overflow in the database driver)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

app_name = "api"

urlpatterns = [
    path("auth/token/", views.TokenObtainView.as_view(), name="token"),
    path("me/", views.MeView.as_view(), name="me"),
    # Projects and their data.
    path("projects/", views.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:slug>/", views.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<slug:slug>/prompts/import/", views.PromptImportView.as_view(), name="prompt-import"),
    path("projects/<slug:slug>/judgements/import/", views.JudgementImportView.as_view(), name="judgement-import"),
    path("projects/<slug:slug>/tasks/", views.TaskListView.as_view(), name="task-list"),
    path("projects/<slug:slug>/tasks/priority/", views.TaskPriorityBulkView.as_view(), name="task-priority-bulk"),
    path("projects/<slug:slug>/annotations/", views.AnnotationListView.as_view(), name="annotation-list"),
    # Datasets: streamed exports and frozen snapshots (researchers only).
    path("projects/<slug:slug>/export/", exports.ExportView.as_view(), name="export"),
    path("projects/<slug:slug>/snapshots/", exports.SnapshotListView.as_view(), name="snapshot-list"),
    path(
        "projects/<slug:slug>/snapshots/<id:snapshot_id>/", exports.SnapshotDetailView.as_view(), name="snapshot-detail"
    ),
    path(
        "projects/<slug:slug>/snapshots/<id:snapshot_id>/download/",
        exports.SnapshotDownloadView.as_view(),
        name="snapshot-download",
    ),
    path("tasks/<id:task_id>/", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<id:task_id>/priority/", views.TaskPriorityView.as_view(), name="task-priority"),
    # Labeling.
    path("projects/<slug:slug>/lease/", views.LeaseView.as_view(), name="lease"),
    path("assignments/<id:assignment_id>/submit/", views.SubmitView.as_view(), name="assignment-submit"),
    path("assignments/<id:assignment_id>/skip/", views.SkipView.as_view(), name="assignment-skip"),
    # Users and roles.
    path("users/", views.UserListView.as_view(), name="user-list"),
    path("users/<id:user_id>/roles/", views.UserRolesView.as_view(), name="user-roles"),
    path("users/<id:user_id>/deactivate/", views.UserDeactivateView.as_view(), name="user-deactivate"),
    # Lineage: what an object came from and what came from it (researchers only).
    path("lineage/<str:kind>/<id:object_id>/", lineage.LineageView.as_view(), name="lineage"),
    path("projects/<slug:slug>/cycles/", loop.CycleListView.as_view(), name="cycle-list"),
    path("projects/<slug:slug>/leaderboard/", loop.LeaderboardView.as_view(), name="leaderboard"),
    path("projects/<slug:slug>/runs/", runs.ProjectRunListView.as_view(), name="run-list"),
    path("runs/<id:run_id>/", runs.RunDetailView.as_view(), name="run-detail"),
    path("runs/<id:run_id>/cancel/", runs.RunCancelView.as_view(), name="run-cancel"),
    # The OpenAPI 3 document and Swagger UI (its files come from drf-spectacular-sidecar, served as our own static
    # files; the split view loads its start-up script from a URL, so no inline script is needed).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    # Last: any other address under /api/ is a JSON 404.
    re_path(r"^.*$", views.NotFoundView.as_view(), name="not-found"),
]
