"""The training side of the REST API: snapshots, runs, cycles, the leaderboard and lineage. The project composes it
with annotate's routes under /api/ (rewardlab/api_urls.py)."""

from django.urls import path

import annotate.api.urls  # noqa: F401 - registers the `id` path converter
from training.api import lineage, loop, runs, snapshots

urlpatterns = [
    # Snapshots: frozen exports a run records as its data (researchers only).
    path("projects/<slug:slug>/snapshots/", snapshots.SnapshotListView.as_view(), name="snapshot-list"),
    path(
        "projects/<slug:slug>/snapshots/<id:snapshot_id>/",
        snapshots.SnapshotDetailView.as_view(),
        name="snapshot-detail",
    ),
    path(
        "projects/<slug:slug>/snapshots/<id:snapshot_id>/download/",
        snapshots.SnapshotDownloadView.as_view(),
        name="snapshot-download",
    ),
    # Lineage: what an object came from and what came from it (researchers only).
    path("lineage/<str:kind>/<id:object_id>/", lineage.LineageView.as_view(), name="lineage"),
    path("projects/<slug:slug>/cycles/", loop.CycleListView.as_view(), name="cycle-list"),
    path("projects/<slug:slug>/leaderboard/", loop.LeaderboardView.as_view(), name="leaderboard"),
    path("projects/<slug:slug>/runs/", runs.ProjectRunListView.as_view(), name="run-list"),
    path("runs/<id:run_id>/", runs.RunDetailView.as_view(), name="run-detail"),
    path("runs/<id:run_id>/cancel/", runs.RunCancelView.as_view(), name="run-cancel"),
]
