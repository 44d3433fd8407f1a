"""The export page: roles, streamed downloads, previews, snapshots frozen and downloaded byte for byte."""

import json

import pytest
from django.urls import reverse

from annotate import services
from annotate.roles import RoleName
from tests.conftest import jsonl
from training.models import DatasetSnapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def compared(make_user, settings, tmp_path):
    settings.REWARDLAB_ARTIFACTS_DIR = tmp_path
    project = services.project_create(name="Exp", slug="exp", import_task_kinds=["compare"], overlap_compare=1)
    rows = [{"prompt": f"<script>alert({i})</script>?", "completions": [f"good {i}", f"bad {i}"]} for i in range(3)]
    services.prompts_import(project=project, data=jsonl(*rows), filename="p.jsonl")
    labeler = make_user(RoleName.LABELER)
    for n in range(3):
        assignment = services.task_lease_next(labeler=labeler, project=project)
        services.comparison_submit(labeler=labeler, assignment_id=assignment.pk, choice=-3, client_token=f"t{n}")
    return project


def url(project, **params):
    from urllib.parse import urlencode

    return reverse("annotate:project_export", args=[project.slug]) + ("?" + urlencode(params) if params else "")


BASE = {"dataset": "preferences", "style": "standard", "aggregation": "raw", "ties": "drop", "margin": "on"}


def test_a_researcher_downloads_a_streamed_jsonl_export(client, researcher, compared):
    client.force_login(researcher)
    response = client.get(url(compared, **BASE, format="jsonl", download="1"))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert 'attachment; filename="exp-preferences-' in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["margin"] == 2.0


def test_the_preview_shows_rows_escaped(client, researcher, compared):
    client.force_login(researcher)
    html = client.get(url(compared, **BASE, format="jsonl", preview="1")).content.decode()
    assert html.count("data-preview") == 3
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_bad_options_are_named(client, researcher, compared):
    client.force_login(researcher)
    response = client.get(url(compared, **{**BASE, "dataset": "sft", "aggregation": "majority"}, format="jsonl"))
    assert response.status_code == 400 and "preference data only" in response.content.decode()
    response = client.get(url(compared, **BASE, format="xml"))
    assert response.status_code == 400 and 'data-error="format"' in response.content.decode()


def test_labelers_cannot_export(client, make_user, compared):
    client.force_login(make_user(RoleName.LABELER))
    assert client.get(url(compared, **BASE, format="jsonl", download="1")).status_code == 403
    response = client.post(reverse("rewardlab:snapshot_create", args=[compared.slug]), {**BASE, "format": "jsonl"})
    assert response.status_code == 403


def test_a_snapshot_is_frozen_and_downloaded_byte_for_byte(client, researcher, compared):
    client.force_login(researcher)
    response = client.post(
        reverse("rewardlab:snapshot_create", args=[compared.slug]),
        {**BASE, "format": "parquet", "name": "v1"},
        follow=True,
    )
    assert "Snapshot" in response.content.decode() and "3 rows" in response.content.decode()
    snapshot = DatasetSnapshot.objects.get()
    download = client.get(reverse("rewardlab:snapshot_download", args=[compared.slug, snapshot.pk]))
    assert b"".join(download.streaming_content) == open(snapshot.export_path, "rb").read()
    again = client.post(
        reverse("rewardlab:snapshot_create", args=[compared.slug]), {**BASE, "format": "parquet"}, follow=True
    )
    assert "Nothing changed since snapshot" in again.content.decode() and DatasetSnapshot.objects.count() == 1


def test_snapshot_creation_needs_csrf(researcher, compared):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(researcher)
    response = strict.post(reverse("rewardlab:snapshot_create", args=[compared.slug]), {**BASE, "format": "jsonl"})
    assert response.status_code == 403 and not DatasetSnapshot.objects.exists()
