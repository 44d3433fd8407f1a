"""Users over the API: the list with roles, setting roles, deactivating a labeler."""

import pytest
from django.urls import reverse

from annotate import services
from annotate.models import Assignment, AssignmentStatus, Rating
from annotate.roles import RoleName, user_roles
from tests.annotate.api.conftest import error_of, token_client

pytestmark = pytest.mark.django_db


def test_an_admin_lists_users_with_their_roles(as_admin, labeler, researcher, admin_user):
    page = as_admin.get(reverse("api:user-list")).json()
    assert page["count"] == 3
    assert page["results"] == [
        {"id": admin_user.pk, "username": "ada", "roles": ["admin"], "is_active": True},
        {"id": labeler.pk, "username": "lena", "roles": ["labeler"], "is_active": True},
        {"id": researcher.pk, "username": "rafa", "roles": ["researcher"], "is_active": True},
    ]


def test_the_user_list_costs_the_same_queries_for_many_users(as_admin, make_user, django_assert_num_queries):
    for _ in range(10):
        make_user(RoleName.LABELER)
    # token, user and the roles they hold (1), count (1), page (1), groups (1)
    with django_assert_num_queries(4):
        assert len(as_admin.get(reverse("api:user-list")).json()["results"]) == 11


def test_an_admin_changes_a_users_roles(as_admin, labeler):
    url = reverse("api:user-roles", args=[labeler.pk])
    response = as_admin.put(url, {"roles": ["labeler", "researcher"]}, format="json")
    assert response.status_code == 200
    assert response.json()["roles"] == ["labeler", "researcher"]
    labeler.refresh_from_db()
    assert user_roles(labeler) == [RoleName.LABELER, RoleName.RESEARCHER]
    # The new role works at once, on the same token.
    assert token_client(labeler).get(reverse("api:user-list")).status_code == 403
    assert token_client(labeler).get(reverse("api:project-detail", args=["nope"])).status_code == 404

    response = as_admin.put(url, {"roles": ["admin"]}, format="json")
    labeler.refresh_from_db()
    assert response.json()["roles"] == ["admin"] and labeler.is_staff


def test_an_unknown_role_is_a_400(as_admin, labeler):
    response = as_admin.put(reverse("api:user-roles", args=[labeler.pk]), {"roles": ["owner"]}, format="json")
    assert response.status_code == 400
    assert "roles" in error_of(response)["fields"]


def test_an_admin_cannot_take_away_their_own_admin_role(as_admin, admin_user):
    response = as_admin.put(reverse("api:user-roles", args=[admin_user.pk]), {"roles": ["labeler"]}, format="json")
    assert response.status_code == 400
    assert error_of(response)["message"] == "roles: You cannot take away your own admin role."
    assert RoleName.ADMIN in user_roles(admin_user)


def test_deactivating_a_labeler_releases_leases_and_requeues_their_judgements(as_admin, imported, labeler):
    done = services.task_lease_next(labeler=labeler, project=imported, kinds=["rate"])
    services.rating_submit(labeler=labeler, assignment_id=done.pk, score=5, client_token="t-1")
    live = services.task_lease_next(labeler=labeler, project=imported, kinds=["rate"])
    url = reverse("api:user-deactivate", args=[labeler.pk])

    response = as_admin.post(url, {"requeue": True, "project": imported.slug}, format="json")
    assert response.status_code == 200
    assert response.json() == {"leases_released": 1, "annotations_requeued": 1, "tasks_reopened": 1}
    labeler.refresh_from_db()
    assert not labeler.is_active
    assert Assignment.objects.get(pk=live.pk).status == AssignmentStatus.RELEASED
    assert Rating.objects.get().discarded_at is not None
    listed = {u["username"]: u for u in as_admin.get(reverse("api:user-list")).json()["results"]}
    assert listed["lena"]["is_active"] is False


def test_deactivating_without_requeue_keeps_the_judgements(as_admin, imported, labeler):
    done = services.task_lease_next(labeler=labeler, project=imported, kinds=["rate"])
    services.rating_submit(labeler=labeler, assignment_id=done.pk, score=5, client_token="t-1")
    response = as_admin.post(reverse("api:user-deactivate", args=[labeler.pk]), {}, format="json")
    assert response.json() == {"leases_released": 0, "annotations_requeued": 0, "tasks_reopened": 0}
    assert Rating.objects.get().discarded_at is None


def test_deactivation_refuses_an_unknown_project_and_the_admin_themself(as_admin, admin_user, labeler):
    url = reverse("api:user-deactivate", args=[labeler.pk])
    response = as_admin.post(url, {"requeue": True, "project": "no-such-project"}, format="json")
    assert response.status_code == 400
    assert "project" in error_of(response)["fields"]
    labeler.refresh_from_db()
    assert labeler.is_active

    response = as_admin.post(reverse("api:user-deactivate", args=[admin_user.pk]), {}, format="json")
    assert response.status_code == 400
    assert error_of(response)["message"] == "You cannot deactivate your own account."


def test_an_unknown_user_is_a_404(as_admin, db):
    assert as_admin.post(reverse("api:user-deactivate", args=[999999]), {}, format="json").status_code == 404
    assert as_admin.put(reverse("api:user-roles", args=[999999]), {"roles": []}, format="json").status_code == 404
