"""The quality page and deactivating a labeler from it: roles, CSRF, escaping, what the page shows."""

import pytest
from django.test import Client
from django.urls import reverse

from annotate import services
from annotate.models import Rating, Task
from annotate.roles import RoleName
from annotate.selectors import candidate_order_for
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def rated(db, make_user):
    """Two labelers rated both replies of a prompt whose text is hostile HTML."""
    project = services.project_create(
        name="Rated", slug="rated", import_task_kinds=["rate", "compare"], overlap_rate=2, overlap_compare=2
    )
    row = {"prompt": "<script>alert('p')</script> Which is kinder?", "completions": ["<img src=x onerror=1>", "Hi."]}
    services.prompts_import(project=project, data=jsonl(row), filename="p.jsonl")
    labelers = [make_user(RoleName.LABELER, name) for name in ("ana", "ben")]
    for index, labeler in enumerate(labelers):
        for n in range(3):
            assignment = services.task_lease_next(labeler=labeler, project=project)
            if assignment.task.kind == "rate":
                services.rating_submit(
                    labeler=labeler, assignment_id=assignment.pk, score=3 + index, client_token=f"r{n}"
                )
            else:  # they disagree: each prefers a different reply, so the prompt is contested
                ids = list(assignment.task.task_candidates.order_by("position").values_list("message_id", flat=True))
                shown_a, _ = candidate_order_for(task=assignment.task, labeler=labeler, candidate_ids=ids)
                choice = -3 if shown_a == ids[index] else 3
                services.comparison_submit(
                    labeler=labeler, assignment_id=assignment.pk, choice=choice, client_token=f"c{n}"
                )
    return project, labelers


def page(client, project):
    return client.get(reverse("annotate:project_quality", args=[project.slug]))


def test_a_researcher_sees_agreement_labelers_and_the_chart(client, researcher, rated):
    project, labelers = rated
    client.force_login(researcher)
    response = page(client, project)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-stat="judgements">6<' in html
    for labeler in labelers:
        assert f'data-labeler="{labeler.username}"' in html
    assert "<svg" in html and "chart__seg--rate" in html
    assert "Deactivate" not in html  # an admin action
    assert "Least agreed prompts" in html and "1 split pair" in html


def test_model_and_prompt_text_is_escaped_on_the_quality_page(client, researcher, rated):
    project, _ = rated
    client.force_login(researcher)
    html = page(client, project).content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html


def test_a_labeler_cannot_open_the_quality_page(client, rated):
    project, labelers = rated
    client.force_login(labelers[0])
    assert page(client, project).status_code == 403


def test_an_admin_deactivates_a_labeler_and_requeues_their_work(client, admin_user, rated):
    project, labelers = rated
    client.force_login(admin_user)
    url = reverse("annotate:labeler_deactivate", args=[project.slug, labelers[0].pk])
    assert url in page(client, project).content.decode()
    confirm = client.get(url).content.decode()
    assert "Deactivate ana?" in confirm and "Send their 3 judgements in this project back" in confirm
    assert labelers[0].is_active  # nothing happens on GET
    response = client.post(url, {"requeue": "on"}, follow=True)
    html = response.content.decode()
    assert "ana is deactivated" in html and "3 judgement(s) sent back" in html
    assert not Rating.objects.filter(labeler=labelers[0], discarded_at__isnull=True).exists()
    assert Task.objects.filter(project=project, taken__lt=2).count() == 3  # reopened for another labeler


def test_deactivating_needs_the_admin_role_and_a_csrf_token(client, researcher, admin_user, rated):
    project, labelers = rated
    url = reverse("annotate:labeler_deactivate", args=[project.slug, labelers[0].pk])
    client.force_login(researcher)
    assert client.get(url).status_code == 403
    assert client.post(url, {"requeue": "on"}).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(url, {"requeue": "on"}).status_code == 403
    labelers[0].refresh_from_db()
    assert labelers[0].is_active


def test_an_admin_cannot_deactivate_themselves(client, admin_user, rated):
    project, _ = rated
    client.force_login(admin_user)
    response = client.post(reverse("annotate:labeler_deactivate", args=[project.slug, admin_user.pk]), follow=True)
    assert "cannot deactivate your own account" in response.content.decode()
    admin_user.refresh_from_db()
    assert admin_user.is_active
