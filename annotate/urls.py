from django.urls import path

from annotate import views

app_name = "annotate"

urlpatterns = [
    path("projects/<slug:slug>/", views.project_overview, name="project_overview"),
    path("projects/<slug:slug>/import/", views.project_import, name="project_import"),
]
