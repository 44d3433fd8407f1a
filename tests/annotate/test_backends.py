"""The authentication backend's role checks: ModelBackend's answers, in one query per request."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotate import services
from annotate.roles import RoleName, user_has_role, user_roles

pytestmark = pytest.mark.django_db


def fresh(user):
    """The user as the next request loads them."""
    return get_user_model().objects.get(pk=user.pk)


def test_each_role_is_held_through_its_group(make_user):
    assert user_roles(fresh(make_user(RoleName.LABELER))) == [RoleName.LABELER]
    assert user_roles(fresh(make_user(RoleName.RESEARCHER))) == [RoleName.RESEARCHER]
    assert user_roles(fresh(make_user(RoleName.ADMIN))) == list(RoleName)  # admins hold every permission


def test_every_role_check_of_a_request_costs_one_query(make_user, django_assert_num_queries):
    user = fresh(make_user(RoleName.RESEARCHER))
    with django_assert_num_queries(1):
        assert [user_has_role(user, role) for role in RoleName] == [False, True, False]
        assert user.has_perm("annotate.view_data") and not user.has_perm("annotate.label")


def test_a_permission_given_directly_counts_as_through_a_group(make_user):
    user = make_user(RoleName.LABELER)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="annotate", codename="view_data"))
    assert user_roles(fresh(user)) == [RoleName.LABELER, RoleName.RESEARCHER]
    # A permission that is not a role's is looked up on demand, the same way.
    assert not fresh(user).has_perm("annotate.manage_project")
    assert fresh(user).has_perm("annotate.view_data")


def test_a_role_change_counts_from_the_next_request(make_user):
    user = make_user(RoleName.LABELER)
    assert user_has_role(fresh(user), RoleName.LABELER)
    services.user_set_roles(user=user, roles=[RoleName.RESEARCHER])
    assert not user_has_role(fresh(user), RoleName.LABELER)
    assert user_has_role(fresh(user), RoleName.RESEARCHER)


def test_superusers_pass_and_inactive_users_and_object_checks_fail(make_user):
    root = get_user_model().objects.create_superuser("root", password="x-long-enough-1")
    assert user_roles(fresh(root)) == list(RoleName)
    user = make_user(RoleName.ADMIN)
    assert not user.has_perm("annotate.manage_project", obj=object())
    user.is_active = False
    user.save()
    assert not fresh(user).has_perm("annotate.manage_project")


def test_a_template_that_loaded_every_permission_is_answered_from_them(make_user, django_assert_num_queries):
    user = fresh(make_user(RoleName.LABELER))
    assert "annotate.label" in user.get_all_permissions()  # ModelBackend's own cache, as `perms` in a template
    with django_assert_num_queries(0):
        assert user.has_perm("annotate.label") and not user.has_perm("annotate.view_data")
