"""Labeling pages: roles, htmx partial vs full page, plain-form fallbacks, errors, query counts."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, AssignmentStatus, CandidateReport, Comparison, Demonstration, Ranking, Rating
from annotate.selectors import candidate_order_for
from tests.conftest import jsonl

pytestmark = pytest.mark.django_db

ROWS = [
    {"prompt": f"Question {i}?", "completions": [f"Answer {i}a", f"Answer {i}b", f"Answer {i}c", f"Answer {i}d"]}
    for i in range(3)
]
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def imported(project):
    services.prompts_import(project=project, data=jsonl(*ROWS), filename="p.jsonl")
    return project


@pytest.fixture
def lab(client, labeler):
    client.force_login(labeler)
    return client


def start(client, project, kind):
    response = client.get(reverse("annotate:label_start", args=[project.slug]) + f"?mode={kind}")
    assert response.status_code == 302, response.content[:500]
    return Assignment.objects.filter(status=AssignmentStatus.ACTIVE).latest("leased_at")


def submit_url(project, assignment):
    return reverse("annotate:label_submit", args=[project.slug, assignment.task_id])


def shown(assignment):
    ids = list(assignment.task.task_candidates.order_by("position").values_list("message_id", flat=True))
    return candidate_order_for(task=assignment.task, labeler=assignment.labeler, candidate_ids=ids)


def test_researchers_cannot_label_and_anonymous_users_must_sign_in(client, researcher, imported):
    url = reverse("annotate:label_start", args=[imported.slug])
    assert client.get(url).status_code == 302
    client.force_login(researcher)
    assert client.get(url).status_code == 403
    assert client.post(reverse("annotate:label_submit", args=[imported.slug, 1])).status_code == 403


def test_start_labeling_leases_a_task_and_redirects_to_its_shareable_url(lab, imported):
    assignment = start(lab, imported, "compare")
    page = lab.get(reverse("annotate:label_task", args=[imported.slug, assignment.task_id]) + "?mode=compare")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<html" in html and 'id="workspace"' in html
    assert "Which reply is better?" in html
    # the same URL again shows the same task (a reload does not lose it)
    assert start(lab, imported, "compare") == assignment


def test_htmx_requests_get_only_the_workspace_partial(lab, imported):
    assignment = start(lab, imported, "rate")
    html = lab.get(reverse("annotate:label_task", args=[imported.slug, assignment.task_id]), **HTMX).content.decode()
    assert html.lstrip().startswith('<section id="workspace"')
    assert "<html" not in html


def test_an_htmx_submit_swaps_in_the_next_task_and_pushes_its_url(lab, labeler, imported):
    assignment = start(lab, imported, "rate")
    response = lab.post(
        submit_url(imported, assignment),
        {"client_token": "tok-1", "score": "6", "flags": ["hallucination"], "mode": "rate", "time_spent_ms": "1500"},
        **HTMX,
    )
    assert response.status_code == 200
    rating = Rating.objects.get()
    assert (rating.score, rating.flags, rating.labeler) == (6, ["hallucination"], labeler)
    following = Assignment.objects.get(labeler=labeler, status=AssignmentStatus.ACTIVE)
    assert following.task.kind == "rate"
    assert (
        response["HX-Push-Url"]
        == reverse("annotate:label_task", args=[imported.slug, following.task_id]) + "?mode=rate"
    )
    assert response.content.decode().lstrip().startswith('<section id="workspace"')


def test_a_plain_form_submit_redirects_to_the_next_task(lab, imported):
    assignment = start(lab, imported, "demonstrate")
    response = lab.post(
        submit_url(imported, assignment), {"client_token": "t", "text": "Forty-two.", "mode": "demonstrate"}
    )
    assert response.status_code == 302
    assert "/label/" in response.url and "mode=demonstrate" in response.url
    assert Demonstration.objects.get().message.text == "Forty-two."


def test_a_ranking_posted_as_plain_form_fields_keeps_ties(lab, imported):
    assignment = start(lab, imported, "rank")
    a, b, c, d = shown(assignment)
    form = {
        "client_token": "t",
        f"rank_{a}": "2",
        f"rank_{b}": "1",
        f"rank_{c}": "2",
        f"rank_{d}": "4",
        f"flags_{d}": ["harmful_advice"],
        "none_acceptable": "on",
    }
    assert lab.post(submit_url(imported, assignment), form).status_code == 302
    ranking = Ranking.objects.get()
    assert ranking.tiers == [[b], [a, c], [d]]
    assert ranking.candidate_flags == {str(d): ["harmful_advice"]}
    assert ranking.none_acceptable


def test_an_incomplete_ranking_is_shown_again_with_the_problem(lab, imported):
    assignment = start(lab, imported, "rank")
    a, b, *_ = shown(assignment)
    response = lab.post(
        submit_url(imported, assignment), {"client_token": "t", f"rank_{a}": "1", f"rank_{b}": "2"}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "Place every reply: 2 of 4 are not ranked yet." in html
    assert f'name="rank_{a}" form="task-form" data-place-for="1">' in html or "selected" in html
    assert not Ranking.objects.exists()


def test_a_comparison_without_a_choice_says_which_keys_to_press(lab, imported):
    assignment = start(lab, imported, "compare")
    response = lab.post(submit_url(imported, assignment), {"client_token": "t", "both_bad": "on"}, **HTMX)
    assert response.status_code == 422
    assert "Choose a point on the scale (keys 1–8)." in response.content.decode()


def test_a_double_submit_records_one_comparison(lab, imported):
    assignment = start(lab, imported, "compare")
    form = {"client_token": "same", "choice": "-4"}
    assert lab.post(submit_url(imported, assignment), form).status_code == 302
    assert lab.post(submit_url(imported, assignment), form).status_code == 302
    assert Comparison.objects.count() == 1


def test_an_expired_lease_gives_a_clear_message_not_an_error_page(lab, imported):
    assignment = start(lab, imported, "rate")
    past = timezone.now() - timedelta(hours=3)
    Assignment.objects.filter(pk=assignment.pk).update(leased_at=past, expires_at=past + timedelta(minutes=30))
    response = lab.post(submit_url(imported, assignment), {"client_token": "t", "score": "3"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 409
    assert "expired at" in html and "Take the next task" in html
    assert not Rating.objects.exists()


def test_someone_elses_task_cannot_be_submitted_or_viewed(client, make_user, imported):
    owner, other = make_user("labeler"), make_user("labeler")
    client.force_login(owner)
    assignment = start(client, imported, "rate")
    client.force_login(other)
    response = client.post(submit_url(imported, assignment), {"client_token": "t", "score": "3"})
    assert response.status_code == 409
    assert "not leased to you" in response.content.decode()
    page = client.get(reverse("annotate:label_task", args=[imported.slug, assignment.task_id]))
    assert page.status_code == 302  # sent to their own next task instead
    assert not Rating.objects.exists()


def test_skip_with_a_reason_serves_the_next_task(lab, labeler, imported):
    assignment = start(lab, imported, "rate")
    url = reverse("annotate:label_skip", args=[imported.slug, assignment.task_id])
    assert lab.post(url, {"reason": ""}, **HTMX).status_code == 422
    response = lab.post(url, {"reason": "expertise", "mode": "rate"}, **HTMX)
    assert response.status_code == 200 and "HX-Push-Url" in response
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.SKIPPED


def test_report_unsafe_swaps_the_button_for_a_badge(lab, imported):
    assignment = start(lab, imported, "rank")
    message_id = shown(assignment)[0]
    url = reverse("annotate:label_report", args=[imported.slug, assignment.task_id, message_id])
    response = lab.post(url, {"reason": ""}, **HTMX)
    assert response.status_code == 200
    assert "Reported as unsafe" in response.content.decode()
    assert CandidateReport.objects.get().message_id == message_id


def test_the_last_task_leads_to_an_empty_queue_page(lab, imported):
    for _ in range(3):
        assignment = start(lab, imported, "demonstrate")
        lab.post(submit_url(imported, assignment), {"client_token": f"t{assignment.pk}", "text": "Done."})
    response = lab.get(reverse("annotate:label_start", args=[imported.slug]) + "?mode=demonstrate")
    assert response.status_code == 200
    assert "Nothing left for you here" in response.content.decode()


def test_model_text_is_escaped_and_markdown_sanitised(lab, project):
    row = {
        "prompt": "Say <b>hi</b> <script>alert('prompt')</script>",
        "completions": [
            "<img src=x onerror=alert(1)> **bold** [x](javascript:alert(2))",
            "```html\n<script>alert(3)</script>\n```",
        ],
    }
    services.prompts_import(project=project, data=jsonl(row), filename="x.jsonl")
    assignment = start(lab, project, "compare")
    html = lab.get(reverse("annotate:label_task", args=[project.slug, assignment.task_id])).content.decode()
    assert "<script>alert" not in html
    assert "<img" not in html
    assert 'href="javascript:' not in html  # the link is left as inert text
    assert "Say &lt;b&gt;hi&lt;/b&gt; &lt;script&gt;alert('prompt')&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt; <strong>bold</strong>" in html
    assert "<pre><code>&lt;script&gt;alert(3)&lt;/script&gt;" in html


def test_the_task_page_and_a_submit_take_a_bounded_number_of_queries(lab, imported, django_assert_max_num_queries):
    assignment = start(lab, imported, "rank")
    url = reverse("annotate:label_task", args=[imported.slug, assignment.task_id])
    with django_assert_max_num_queries(20):
        lab.get(url)
    ids = shown(assignment)
    form = {"client_token": "t", **{f"rank_{m}": str(i + 1) for i, m in enumerate(ids)}}
    with django_assert_max_num_queries(50):  # the submit, the next lease (one head per kind) and its page
        lab.post(submit_url(imported, assignment), form, **HTMX)


def test_home_offers_start_or_continue_labeling(lab, imported):
    html = lab.get(reverse("home")).content.decode()
    assert "Start labeling" in html
    start(lab, imported, "rate")
    assert "Continue labeling" in lab.get(reverse("home")).content.decode()


# Queries of the labeling pages, exactly, for each kind. Every request pays 2 before the view: the session, and the
# user with their roles (one query: annotate.backends.RoleBackend). A lease is then: the project; on PostgreSQL the
# labeler's row locked (SQLite serialises writers instead); one read of what the choice depends on (the live lease,
# the kind mix, the queues' heads); one statement that takes the task's place and writes the lease (two on SQLite:
# the place, then the lease). A submit: one read of the assignment with its task, project, candidates and any
# judgement under the token; the lease ended; the judgement written (a demonstration's message first). The task page:
# the live lease with its task and project; the conversation with the candidates; the progress counts (with every
# kind's queue) and today's times.
KINDS = ["demonstrate", "rank", "compare", "rate"]
PAGE_QUERIES = 2 + 1 + 1 + 2


def form_for(assignment, kind: str, token: str) -> dict:
    return {
        "demonstrate": {"text": "A careful reply."},
        "rank": {f"rank_{m}": str(i + 1) for i, m in enumerate(shown(assignment))},
        "compare": {"choice": "-2"},
        "rate": {"score": "5"},
    }[kind] | {"client_token": token, "mode": kind}


@pytest.mark.parametrize("kind", KINDS)
def test_the_lease_the_task_page_and_the_submits_take_an_exact_number_of_queries(
    lab, labeler, imported, kind, django_assert_num_queries
):
    from django.db import connection

    lock = 1 if connection.vendor == "postgresql" else 0
    take = 1 if connection.vendor == "postgresql" else 2
    lease = 2 + 1 + lock + 1 + take
    submit = 2 + 1 + 1 + 1 + (1 if kind == "demonstrate" else 0)
    start_url = reverse("annotate:label_start", args=[imported.slug]) + f"?mode={kind}"

    with django_assert_num_queries(lease):
        assert lab.get(start_url).status_code == 302
    assignment = Assignment.objects.get(labeler=labeler, status=AssignmentStatus.ACTIVE)
    with django_assert_num_queries(2 + 1 + lock + 1):  # the live lease, found and returned
        assert lab.get(start_url).status_code == 302

    page = reverse("annotate:label_task", args=[imported.slug, assignment.task_id]) + f"?mode={kind}"
    with django_assert_num_queries(PAGE_QUERIES):
        assert lab.get(page).status_code == 200

    # htmx: the submit, then the next lease and its workspace, in one request.
    form = form_for(assignment, kind, "t1")
    with django_assert_num_queries(submit + (lease - 2 - 1) + (PAGE_QUERIES - 2 - 1)):
        response = lab.post(submit_url(imported, assignment), form, **HTMX)
    assert response.status_code == 200 and "HX-Push-Url" in response

    following = Assignment.objects.get(labeler=labeler, status=AssignmentStatus.ACTIVE)
    form = form_for(following, kind, "t2")
    with django_assert_num_queries(submit):  # a plain form: the submit, then off to "take the next task"
        response = lab.post(submit_url(imported, following), form)
    assert response.status_code == 302 and response.url == start_url
    with django_assert_num_queries(2 + 1 + 1):  # the same again: the judgement read back, nothing written
        assert lab.post(submit_url(imported, following), form).status_code == 302
    assert Assignment.objects.filter(labeler=labeler, status=AssignmentStatus.SUBMITTED).count() == 2
