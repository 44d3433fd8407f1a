"""The authentication backend: Django's ModelBackend with role checks that cost one query per request.

Every API request and page checks roles (`roles.user_has_role`, a permission check), pages several (the navigation
shows what each role may do). ModelBackend answers `has_perm` by loading every permission the user has, through
their own permissions and through their groups: two queries with joins, per request. Here the first check of a
request asks, in one query, which of the role permissions (and the one asked for) the user holds, through a group
or directly; the answer is kept on the user object for the rest of the request, as ModelBackend keeps its own, so
a role change takes effect on the next request, with no cache to invalidate.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from annotate.roles import ROLE_PERMISSION

UserGroups = get_user_model().groups.through
UserPermissions = get_user_model().user_permissions.through
GroupPermissions = Group.permissions.through


class RoleBackend(ModelBackend):
    def has_perm(self, user_obj, perm: str, obj=None) -> bool:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return False
        if user_obj.is_superuser:
            return True
        if hasattr(user_obj, "_perm_cache"):  # every permission already loaded this request (by a template, say)
            return perm in user_obj._perm_cache
        held = user_obj.__dict__.get("_role_perm_cache")
        if held is None or perm not in held:
            asked = {*ROLE_PERMISSION.values(), perm} if held is None else {perm}
            held = {**(held or {}), **_held(user_obj, asked)}
            user_obj._role_perm_cache = held
        return held[perm]


def _held(user, perms: set[str]) -> dict[str, bool]:
    """Which of `perms` ("app_label.codename") `user` holds, through a group or directly: one query (written out,
    as it runs on every request and the ORM's Exists pair costs more to build than the database takes to run)."""
    pairs = [tuple(perm.split(".", 1)) for perm in perms]
    named = " OR ".join(["(ct.app_label = %s AND p.codename = %s)"] * len(pairs))
    sql = f"""
        SELECT ct.app_label, p.codename
        FROM {Permission._meta.db_table} p JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id
        WHERE ({named}) AND (
            EXISTS (SELECT 1 FROM {UserGroups._meta.db_table} ug
                    JOIN {GroupPermissions._meta.db_table} gp ON gp.group_id = ug.group_id
                    WHERE ug.user_id = %s AND gp.permission_id = p.id)
            OR EXISTS (SELECT 1 FROM {UserPermissions._meta.db_table} up
                       WHERE up.user_id = %s AND up.permission_id = p.id)
        )
    """  # noqa: S608 - table names are Django's own; every value is a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for pair in pairs for value in pair] + [user.pk, user.pk])
        found = set(cursor.fetchall())
    return {perm: pair in found for perm, pair in zip(perms, pairs, strict=True)}
