"""Exports and snapshots over the API: streamed files, options as query parameters, snapshots frozen once and
downloaded byte for byte, and errors that name the option."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from annotate import services
from annotate.models import Comparison
from annotate.roles import RoleName
from tests.annotate.api.conftest import error_of, token_client
from tests.conftest import jsonl
from training.models import DatasetSnapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def compared(make_user):
    """Three A/B comparisons ("A is better", strength 3) by one labeler and a ranking D > C > A = B by another."""
    project = services.project_create(
        name="Api export", slug="api-exp", import_task_kinds=["compare"], overlap_compare=1, overlap_rank=1
    )
    rows = [{"prompt": f"Q{i}?", "completions": [f"good {i}", f"bad {i}"]} for i in range(3)]
    services.prompts_import(project=project, data=jsonl(*rows), filename="p.jsonl")
    project.import_task_kinds = ["rank"]
    project.save(update_fields=["import_task_kinds"])
    ranked = {"prompt": "Rank these?", "completions": ["A", "B", "C", "D"]}
    services.prompts_import(project=project, data=jsonl(ranked), filename="r.jsonl")
    alice = make_user(RoleName.LABELER, "alice")
    for n in range(3):
        assignment = services.task_lease_next(labeler=alice, project=project, kinds=["compare"])
        services.comparison_submit(labeler=alice, assignment_id=assignment.pk, choice=-3, client_token=f"c{n}")
    bob = make_user(RoleName.LABELER, "bob")
    assignment = services.task_lease_next(labeler=bob, project=project, kinds=["rank"])
    by_text = {message.text: message.pk for message in assignment.task.candidates.all()}
    tiers = [[by_text["D"]], [by_text["C"]], [by_text["A"], by_text["B"]]]
    services.ranking_submit(labeler=bob, assignment_id=assignment.pk, tiers=tiers, client_token="r1")
    return project, alice, bob


def export_url(project, **params) -> str:
    from urllib.parse import urlencode

    return reverse("api:export", args=[project.slug]) + ("?" + urlencode(params) if params else "")


def lines_of(response) -> list[dict]:
    assert response.streaming
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def test_a_researcher_streams_trl_preference_pairs(compared, researcher):
    project, *_ = compared
    response = token_client(researcher).get(export_url(project))
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    assert f'filename="{project.slug}-preferences-' in response["Content-Disposition"]
    rows = lines_of(response)
    comparisons = [r for r in rows if r["prompt"].startswith("Q")]
    ranking = [r for r in rows if r["prompt"].startswith("Rank")]
    assert len(comparisons) == 3 and {r["margin"] for r in comparisons} == {2.0}
    # Every choice was "A is better" (strength 3): A is chosen, margin 3 - 1.
    expected = {
        (c.candidate_a.text, c.candidate_b.text)
        for c in Comparison.objects.select_related("candidate_a", "candidate_b")
    }
    assert {(r["chosen"], r["rejected"]) for r in comparisons} == expected
    # D > C > A = B, ties dropped: D>C, D>A, D>B, C>A, C>B, each weighing 1/5.
    assert sorted((r["chosen"], r["rejected"]) for r in ranking) == [
        ("C", "A"), ("C", "B"), ("D", "A"), ("D", "B"), ("D", "C")
    ]  # fmt: skip
    assert [r["weight"] for r in ranking] == [pytest.approx(1 / 5)] * 5


def test_options_come_as_query_parameters(compared, researcher):
    project, _, bob = compared
    client = token_client(researcher)
    rows = lines_of(client.get(export_url(project, style="conversational", kinds="compare", margin="false")))
    assert len(rows) == 3 and "margin" not in rows[0]
    assert rows[0]["prompt"] == [{"role": "user", "content": rows[0]["prompt"][0]["content"]}]
    assert rows[0]["chosen"][0]["role"] == "assistant"
    tied = lines_of(client.get(export_url(project, kinds="rank", ties="label")))
    assert len(tied) == 6 and sum(1 for r in tied if r.get("tie")) == 1
    only_bob = lines_of(client.get(export_url(project, labelers=str(bob.pk))))
    assert len(only_bob) == 5 and all(r["prompt"] == "Rank these?" for r in only_bob)
    assert lines_of(client.get(export_url(project, date_to="2000-01-01"))) == []


def test_parquet_is_chosen_by_the_format_option_not_by_accept(compared, researcher):
    project, *_ = compared
    response = token_client(researcher).get(export_url(project, format="parquet"), HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and response["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content)))
    assert table.num_rows == 8 and {"prompt", "chosen", "rejected", "margin", "weight"} <= set(table.column_names)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"dataset": "sft", "aggregation": "majority"}, "aggregation"),
        ({"kinds": "rate"}, "kinds"),
        ({"labelers": "1,x"}, "labelers"),
        ({"min_agreement": "1.5"}, "min_agreement"),
        ({"date_from": "2026-02-01", "date_to": "2026-01-01"}, "date_from"),
    ],
)
def test_bad_options_get_an_error_naming_the_option(compared, researcher, params, field):
    project, *_ = compared
    response = token_client(researcher).get(export_url(project, **params))
    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_a_labeler_exports_nothing(compared):
    project, alice, _ = compared
    response = token_client(alice).get(export_url(project))
    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    response = token_client(alice).post(reverse("api:snapshot-list", args=[project.slug]), {}, format="json")
    assert response.status_code == 403 and not DatasetSnapshot.objects.exists()


def test_a_snapshot_is_frozen_once_and_downloads_byte_for_byte(compared, researcher, make_user):
    project, *_ = compared
    client = token_client(researcher)
    list_url = reverse("api:snapshot-list", args=[project.slug])
    created = client.post(list_url, {"name": "v1", "kinds": ["compare"]}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["row_counts"] == {"comparison": 3, "rows": 3} and body["filter"]["kinds"] == ["compare"]
    assert body["created_by"] == researcher.username and len(body["content_hash"]) == 64
    again = client.post(list_url, {"name": "same data", "kinds": ["compare"]}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"]

    frozen = b"".join(client.get(body["download"]).streaming_content)
    streamed = b"".join(client.get(export_url(project, kinds="compare")).streaming_content)
    assert frozen == streamed
    # New judgements change the live export, never the snapshot's file.
    project.overlap_compare = 2
    project.save(update_fields=["overlap_compare"])
    services.project_overlap_apply(project=project)
    carol = make_user(RoleName.LABELER, "carol")
    assignment = services.task_lease_next(labeler=carol, project=project, kinds=["compare"])
    services.comparison_submit(labeler=carol, assignment_id=assignment.pk, choice=2, client_token="late")
    assert b"".join(client.get(body["download"]).streaming_content) == frozen
    assert len(b"".join(client.get(export_url(project, kinds="compare")).streaming_content).splitlines()) == 4

    listed = client.get(list_url).json()
    assert listed["count"] == 1 and [s["id"] for s in listed["results"]] == [body["id"]]
    detail = client.get(reverse("api:snapshot-detail", args=[project.slug, body["id"]]))
    assert detail.status_code == 200 and detail.json()["content_hash"] == body["content_hash"]


def test_a_snapshot_of_another_project_is_not_found(compared, researcher):
    project, *_ = compared
    client = token_client(researcher)
    snapshot = client.post(reverse("api:snapshot-list", args=[project.slug]), {}, format="json").json()
    other = services.project_create(name="Other", slug="other")
    response = client.get(reverse("api:snapshot-download", args=[other.slug, snapshot["id"]]))
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_bad_snapshot_options_are_named_and_nothing_is_written(compared, researcher, artifacts):
    project, *_ = compared
    response = token_client(researcher).post(
        reverse("api:snapshot-list", args=[project.slug]), {"ties": "keep", "name": "x"}, format="json"
    )
    assert response.status_code == 400 and "ties" in error_of(response)["fields"]
    assert not DatasetSnapshot.objects.exists() and not any(artifacts.rglob("*.*"))
