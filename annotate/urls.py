from django.urls import path

from annotate import chat_views, views

app_name = "annotate"

urlpatterns = [
    path("projects/<slug:slug>/", views.project_overview, name="project_overview"),
    path("projects/<slug:slug>/import/", views.project_import, name="project_import"),
    path("projects/<slug:slug>/quality/", views.project_quality, name="project_quality"),
    path("projects/<slug:slug>/export/", views.project_export, name="project_export"),
    path(
        "projects/<slug:slug>/quality/labelers/<int:user_id>/deactivate/",
        views.labeler_deactivate,
        name="labeler_deactivate",
    ),
    path("projects/<slug:slug>/guidelines/", views.project_guidelines, name="project_guidelines"),
    path("projects/<slug:slug>/label/", views.label_start, name="label_start"),
    path("projects/<slug:slug>/label/<int:task_id>/", views.label_task, name="label_task"),
    path("projects/<slug:slug>/label/<int:task_id>/submit/", views.label_submit, name="label_submit"),
    path("projects/<slug:slug>/label/<int:task_id>/skip/", views.label_skip, name="label_skip"),
    path(
        "projects/<slug:slug>/label/<int:task_id>/report/<int:message_id>/",
        views.label_report,
        name="label_report",
    ),
    path("projects/<slug:slug>/chat/", chat_views.chat_home, name="chat_home"),
    path("projects/<slug:slug>/chat/<int:chat_id>/", chat_views.chat_page, name="chat_page"),
    path("projects/<slug:slug>/chat/<int:chat_id>/send/", chat_views.chat_send, name="chat_send"),
    path("projects/<slug:slug>/chat/<int:chat_id>/end/", chat_views.chat_end, name="chat_end"),
    path("projects/<slug:slug>/chat/<int:chat_id>/turns/<int:turn_id>/vote/", chat_views.chat_vote, name="chat_vote"),
    path(
        "projects/<slug:slug>/chat/<int:chat_id>/turns/<int:turn_id>/retry/",
        chat_views.chat_retry,
        name="chat_retry",
    ),
]
