"""Judgements over the API: one list over the four kinds, filtered; a labeler sees only their own."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate import services
from annotate.models import Comparison, Demonstration, Ranking, Rating
from annotate.roles import RoleName
from tests.annotate.api.conftest import token_client
from tests.simulate import simulate

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(imported, make_user):
    """Two labelers, each with one judgement of every kind."""
    lena, olga = make_user(RoleName.LABELER, "lena"), make_user(RoleName.LABELER, "olga")
    for labeler in (lena, olga):
        for kind in ("demonstrate", "rank", "compare", "rate"):
            imported.kind_mix = {kind: 1}
            simulate(imported, {labeler: 0.1}, tasks_each=1)
    return imported, lena, olga


def annotations(client, project, **params):
    url = reverse("api:annotation-list", args=[project.slug])
    response = client.get(url, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_researcher_sees_every_judgement_with_its_kinds_fields(as_researcher, judged):
    project, lena, olga = judged
    page = annotations(as_researcher, project)
    assert page["count"] == 8
    rows = page["results"]
    assert sorted(row["kind"] for row in rows) == sorted(["demonstrate", "rank", "compare", "rate"] * 2)
    assert {row["labeler"] for row in rows} == {lena.pk, olga.pk}
    assert [row["created_at"] for row in rows] == sorted(row["created_at"] for row in rows)  # oldest first
    by_kind = {row["kind"]: row for row in rows if row["labeler"] == lena.pk}
    assert by_kind["demonstrate"]["text"] == Demonstration.objects.get(labeler=lena).message.text
    assert by_kind["rank"]["tiers"] == Ranking.objects.get(labeler=lena).tiers
    comparison = Comparison.objects.get(labeler=lena)
    assert (by_kind["compare"]["candidate_a"], by_kind["compare"]["choice"]) == (
        comparison.candidate_a_id,
        comparison.choice,
    )
    assert by_kind["rate"]["score"] == Rating.objects.get(labeler=lena).score
    for row in rows:
        assert {"shown_order", "time_spent_ms", "created_at", "discarded_at", "task", "assignment"} <= set(row)


def test_a_labeler_sees_only_their_own_judgements(judged):
    project, lena, olga = judged
    client = token_client(lena)
    rows = annotations(client, project)["results"]
    assert len(rows) == 4 and {row["labeler"] for row in rows} == {lena.pk}
    # Asking for someone else's changes nothing.
    rows = annotations(client, project, labeler=olga.pk)["results"]
    assert {row["labeler"] for row in rows} == {lena.pk}


def test_judgements_filter_by_kind_labeler_and_date(as_researcher, judged):
    project, _lena, olga = judged
    assert [r["kind"] for r in annotations(as_researcher, project, kind="compare")["results"]] == ["compare"] * 2
    assert {r["labeler"] for r in annotations(as_researcher, project, labeler=olga.pk)["results"]} == {olga.pk}
    Rating.objects.filter(labeler=olga).update(created_at=timezone.now() - timedelta(days=10))
    week_ago = (timezone.now() - timedelta(days=7)).isoformat()
    recent = annotations(as_researcher, project, created_after=week_ago)["results"]
    assert len(recent) == 7
    old = annotations(as_researcher, project, created_before=week_ago)["results"]
    assert [(r["kind"], r["labeler"]) for r in old] == [("rate", olga.pk)]


def test_discarded_judgements_are_left_out_unless_asked_for(as_researcher, judged):
    project, _lena, olga = judged
    services.labeler_deactivate(labeler=olga, requeue=True, project=project)
    assert annotations(as_researcher, project)["count"] == 4
    everything = annotations(as_researcher, project, include_discarded="true")
    assert everything["count"] == 8
    discarded = [r for r in everything["results"] if r["discarded_at"]]
    assert len(discarded) == 4 and {r["labeler"] for r in discarded} == {olga.pk}


def test_judgements_paginate_across_kinds(as_researcher, judged):
    project, *_ = judged
    pages = [annotations(as_researcher, project, page_size=3, page=n) for n in (1, 2, 3)]
    assert [len(p["results"]) for p in pages] == [3, 3, 2]
    keys = [(r["kind"], r["id"]) for p in pages for r in p["results"]]
    assert len(set(keys)) == 8


def test_a_page_of_judgements_costs_one_query_per_kind_on_it(as_researcher, judged, django_assert_num_queries):
    project, *_ = judged
    # token, user and the roles they hold (1), project (1), count (1), page (1), one per kind (4)
    with django_assert_num_queries(8):
        assert len(annotations(as_researcher, project)["results"]) == 8
    with django_assert_num_queries(5):
        assert len(annotations(as_researcher, project, kind="rate")["results"]) == 2
