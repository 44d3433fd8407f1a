"""Labeling over the API: lease, submit (every kind, idempotent), skip, and the errors a client must handle."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.models import Assignment, AssignmentStatus, Comparison, Demonstration, Ranking, Rating
from annotate.roles import RoleName
from tests.annotate.api.conftest import error_of, token_client

pytestmark = pytest.mark.django_db


def lease(client, project, *kinds):
    body = {"kinds": list(kinds)} if kinds else {}
    return client.post(reverse("api:lease", args=[project.slug]), body, format="json")


def submit(client, assignment_id, body):
    return client.post(reverse("api:assignment-submit", args=[assignment_id]), body, format="json")


def skip(client, assignment_id, body):
    return client.post(reverse("api:assignment-skip", args=[assignment_id]), body, format="json")


def test_a_lease_carries_everything_needed_to_judge_the_task(as_labeler, imported):
    response = lease(as_labeler, imported, "compare")
    assert response.status_code == 200
    data = response.json()
    assert data["kind"] == "compare" and data["project"] == imported.slug
    assert data["assignment"]["status"] == "active"
    assert [m["role"] for m in data["conversation"]] == ["user"]
    assert [c["side"] for c in data["candidates"]] == ["A", "B"]
    assert [c["number"] for c in data["candidates"]] == [1, 2]
    assert [point["choice"] for point in data["scale"]] == [-4, -3, -2, -1, 1, 2, 3, 4]
    # Leasing again returns the same live lease.
    assert lease(as_labeler, imported, "compare").json()["assignment"]["id"] == data["assignment"]["id"]


def test_lease_submit_round_trip_for_every_kind_with_idempotent_double_submits(as_labeler, labeler, imported):
    bodies = {
        "demonstrate": lambda lease: {"text": "  Tides come from the moon.  "},
        "rank": lambda lease: {"tiers": [[c["id"]] for c in lease["candidates"]], "candidate_flags": {}},
        "compare": lambda lease: {"choice": -3, "both_bad": False},
        "rate": lambda lease: {"score": 6, "flags": ["hallucination"], "comment": "Good."},
    }
    models = {"demonstrate": Demonstration, "rank": Ranking, "compare": Comparison, "rate": Rating}
    for kind, body in bodies.items():
        leased = lease(as_labeler, imported, kind).json()
        assignment_id = leased["assignment"]["id"]
        payload = {**body(leased), "client_token": f"tok-{kind}", "time_spent_ms": 1200}
        first = submit(as_labeler, assignment_id, payload)
        assert first.status_code == 201, first.content
        assert first.json()["created"] is True
        annotation = first.json()["annotation"]
        assert annotation["kind"] == kind and annotation["labeler"] == labeler.pk
        assert annotation["shown_order"] == [c["id"] for c in leased["candidates"]]

        again = submit(as_labeler, assignment_id, payload)  # a double click, or a retry after a timeout
        assert again.status_code == 200
        assert again.json() == {"created": False, "annotation": annotation}
        assert models[kind].objects.filter(labeler=labeler).count() == 1
        assert Assignment.objects.get(pk=assignment_id).status == AssignmentStatus.SUBMITTED

    comparison = Comparison.objects.get()
    assert comparison.choice == -3
    assert [comparison.candidate_a_id, comparison.candidate_b_id] == comparison.shown_order
    assert Demonstration.objects.get().message.text == "Tides come from the moon."


def test_a_skip_gives_the_task_back_and_the_next_lease_is_another_task(as_labeler, imported):
    first = lease(as_labeler, imported, "demonstrate").json()
    response = skip(as_labeler, first["assignment"]["id"], {"reason": "unclear"})
    assert response.status_code == 200
    assert response.json()["status"] == "skipped"
    second = lease(as_labeler, imported, "demonstrate").json()
    assert second["task"] != first["task"]


def test_nothing_left_to_label_is_a_204(as_labeler, imported):
    for _ in range(3):
        leased = lease(as_labeler, imported, "demonstrate").json()
        assert skip(as_labeler, leased["assignment"]["id"], {"reason": "expertise"}).status_code == 200
    response = lease(as_labeler, imported, "demonstrate")
    assert response.status_code == 204
    assert response.content == b""


def test_a_labeling_rule_broken_is_a_422_naming_the_field(as_labeler, imported):
    leased = lease(as_labeler, imported, "rank").json()
    partial = {"tiers": [[leased["candidates"][0]["id"]]], "client_token": "tok-1"}
    response = submit(as_labeler, leased["assignment"]["id"], partial)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "labeling_error"
    assert error["field"] == "tiers"
    assert error["message"] == "Place every reply: 3 of 4 are not ranked yet."
    assert error["fields"] == {"tiers": [error["message"]]}


def test_a_choice_off_the_scale_is_a_422(as_labeler, imported):
    leased = lease(as_labeler, imported, "compare").json()
    response = submit(as_labeler, leased["assignment"]["id"], {"choice": 0, "client_token": "tok-1"})
    assert response.status_code == 422
    assert error_of(response)["field"] == "choice"


def test_a_body_of_the_wrong_shape_is_a_400(as_labeler, imported):
    leased = lease(as_labeler, imported, "rate").json()
    response = submit(as_labeler, leased["assignment"]["id"], {"text": "a demonstration?"})
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"client_token", "score"}


def test_an_expired_lease_is_a_409(as_labeler, imported):
    leased = lease(as_labeler, imported, "rate").json()
    past = timezone.now() - timedelta(minutes=1)
    Assignment.objects.filter(pk=leased["assignment"]["id"]).update(
        leased_at=past - timedelta(hours=1), expires_at=past
    )
    response = submit(as_labeler, leased["assignment"]["id"], {"score": 4, "client_token": "tok-late"})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "lease_error" and "expired" in error["message"]


def test_another_labelers_lease_can_be_neither_submitted_nor_skipped(as_labeler, imported, make_user):
    other = token_client(make_user(RoleName.LABELER, "olga"))
    leased = lease(other, imported, "rate").json()
    assignment_id = leased["assignment"]["id"]
    response = submit(as_labeler, assignment_id, {"score": 4, "client_token": "tok-x"})
    assert response.status_code == 409
    assert error_of(response)["message"] == "This task is not leased to you."
    assert skip(as_labeler, assignment_id, {"reason": "unclear"}).status_code == 409
    assert Assignment.objects.get(pk=assignment_id).status == AssignmentStatus.ACTIVE


def test_skipping_with_other_needs_a_note(as_labeler, imported):
    leased = lease(as_labeler, imported).json()
    response = skip(as_labeler, leased["assignment"]["id"], {"reason": "other"})
    assert response.status_code == 422
    assert error_of(response)["field"] == "note"
    assert skip(as_labeler, leased["assignment"]["id"], {"reason": "bored"}).status_code == 400


def test_an_inactive_project_cannot_be_leased_from(as_labeler, imported):
    imported.is_active = False
    imported.save(update_fields=["is_active"])
    assert lease(as_labeler, imported).status_code == 404


def test_lease_and_submit_cost_a_bounded_number_of_queries(as_labeler, imported, django_assert_max_num_queries):
    # Both include auth (3 queries: token and user, the role's permissions); the rest is the services' own work.
    with django_assert_max_num_queries(20):
        leased = lease(as_labeler, imported, "rate").json()
    with django_assert_max_num_queries(12):
        response = submit(as_labeler, leased["assignment"]["id"], {"score": 3, "client_token": "tok-q"})
    assert response.status_code == 201


# Queries of the labeling API, exactly, for each kind. Every request pays 1 before the view: the token with its user
# and their roles (annotate.backends.RoleTokenAuthentication). A lease is then: the project; on PostgreSQL the
# labeler's row locked (SQLite serialises writers instead); one read of what the choice depends on (the live lease,
# the kind mix, the queues' heads); one statement that takes the task's place and writes the lease (two on SQLite);
# the conversation with the candidates. A submit: one read of the assignment with its task, project, candidates and
# any judgement under the token; the lease ended; the judgement written (a demonstration's message first).
SUBMIT_BODIES = {
    "demonstrate": lambda lease: {"text": "Tides come from the moon."},
    "rank": lambda lease: {"tiers": [[c["id"]] for c in lease["candidates"]]},
    "compare": lambda lease: {"choice": -3},
    "rate": lambda lease: {"score": 6},
}


@pytest.mark.parametrize("kind", list(SUBMIT_BODIES))
def test_a_lease_and_a_submit_take_an_exact_number_of_queries(as_labeler, imported, kind, django_assert_num_queries):
    from django.db import connection

    lock = 1 if connection.vendor == "postgresql" else 0
    take = 1 if connection.vendor == "postgresql" else 2
    with django_assert_num_queries(1 + 1 + lock + 1 + take + 1):
        leased = lease(as_labeler, imported, kind).json()
    with django_assert_num_queries(1 + 1 + lock + 1 + 1):  # the live lease, found and returned
        assert lease(as_labeler, imported, kind).json()["assignment"]["id"] == leased["assignment"]["id"]
    body = {**SUBMIT_BODIES[kind](leased), "client_token": f"tok-{kind}"}
    with django_assert_num_queries(1 + 1 + 1 + 1 + (1 if kind == "demonstrate" else 0)):
        assert submit(as_labeler, leased["assignment"]["id"], body).status_code == 201
    with django_assert_num_queries(1 + 1 + 1):  # the same again: the judgement read back, nothing written
        assert submit(as_labeler, leased["assignment"]["id"], body).status_code == 200


def test_a_lease_from_the_whole_kind_mix_takes_as_many_queries(as_labeler, imported, django_assert_num_queries):
    from django.db import connection

    lock, take = (1, 1) if connection.vendor == "postgresql" else (0, 2)
    for _ in range(3):  # the mix's kinds in turn, each read with the rest of the lease's state
        with django_assert_num_queries(1 + 1 + lock + 1 + take + 1):
            leased = lease(as_labeler, imported).json()
        body = {**SUBMIT_BODIES[leased["kind"]](leased), "client_token": f"tok-{leased['task']}"}
        assert submit(as_labeler, leased["assignment"]["id"], body).status_code == 201
