"""The human side of the REST API (projects, imports, tasks, labeling, exports, users). The project composes it with
the training app's routes under /api/ (rewardlab/api_urls.py); names are `api:<name>`, and every route has a row in
the permission matrix test (tests/annotate/api/test_permissions.py), which fails for a route without one."""

from django.urls import path, register_converter

from annotate.api import exports, views


class IdConverter:
    """A database id: at most 18 digits, so it always fits a 64-bit column (a longer one is a 404, not an
    overflow in the database driver)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

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
    # Datasets: streamed exports (researchers only).
    path("projects/<slug:slug>/export/", exports.ExportView.as_view(), name="export"),
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
]
