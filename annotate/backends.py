"""Authentication with the roles in the same query: a request's user (from its session or its API token) is loaded
together with the role permissions they hold, so that role checks cost no query of their own.

Every API request and page checks roles (`roles.user_has_role`, a permission check), pages several (the navigation
shows what each role may do). ModelBackend answers `has_perm` by loading every permission the user has, through
their own permissions and through their groups: two queries with joins, per request. Here:

- `RoleBackend.get_user` (the session's user, once per request) and `RoleTokenAuthentication` (the API token's, in
  the one query DRF's TokenAuthentication makes for the token and its user) add one column to that query: which of
  the role permissions the user holds, through a group or directly (a bit each);
- `RoleBackend.has_perm` answers from those bits. A user loaded any other way (`User.objects.get`) asks, at its first
  check, in one query, which of the role permissions (and the one asked for) it holds.

Either way the answer is kept on the user object for the rest of the request, as ModelBackend keeps its own, so a
role change takes effect on the next request, with no cache to invalidate.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from drf_spectacular.drainage import set_override
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from annotate.roles import ROLE_PERMISSION
from annotate.selectors import compiled, fields_of, loaded

User = get_user_model()
UserGroups = User.groups.through
UserPermissions = User.user_permissions.through
GroupPermissions = Group.permissions.through

# The role permissions, each with its bit in `role_bits`.
_ROLE_PERMS = list(ROLE_PERMISSION.values())


class RoleBackend(ModelBackend):
    def get_user(self, user_id):
        """The session's user, with the role permissions they hold: one query."""
        try:
            pk = User._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        rows = compiled(("session_user",), _user_with_roles, user_id=pk).rows(user_id=pk)
        user = loaded(User, rows[0]) if rows else None
        if user is None or not self.user_can_authenticate(user):
            return None
        keep_roles(user, rows[0]["role_bits"])
        return user

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


class RoleTokenAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication (the same answers and messages), whose one query for the token and its user also
    reads the user's role permissions."""

    def authenticate_credentials(self, key):
        rows = compiled(("token_user",), _token_with_roles, key=key).rows(key=key) if isinstance(key, str) else []
        if not rows:
            raise AuthenticationFailed("Invalid token.")
        token, user = loaded(Token, rows[0]), loaded(User, rows[0], "user__")
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        token.user = user
        keep_roles(user, rows[0]["role_bits"])
        return (user, token)


# In the API schema it is DRF's token scheme ("Authorization: Token <key>"), as TokenAuthentication's.
set_override(RoleTokenAuthentication, "suppress_collision_warning", True)


def _user_with_roles(*, user_id) -> QuerySet:
    return (
        User._default_manager.filter(pk=user_id)
        .annotate(role_bits=role_bits(user_id=user_id))
        .values(*fields_of(User), "role_bits")
    )


def _token_with_roles(*, key: str) -> QuerySet:
    user_column = (Token._meta.db_table, Token._meta.get_field("user").column)
    return (
        Token.objects.filter(key=key)
        .annotate(role_bits=role_bits(user_column=user_column))
        .values(*fields_of(Token), *fields_of(User, "user__"), "role_bits")
    )


def keep_roles(user, bits: int | None) -> None:
    """Keep on `user` which role permissions they hold (`bits`: see `role_bits`), for `has_perm`."""
    user._role_perm_cache = {perm: bool((bits or 0) & (1 << i)) for i, perm in enumerate(_ROLE_PERMS)}


_PERMISSIONS = f"""
    FROM {Permission._meta.db_table} p JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id
    WHERE ({{named}}) AND (
        EXISTS (SELECT 1 FROM {UserGroups._meta.db_table} ug
                JOIN {GroupPermissions._meta.db_table} gp ON gp.group_id = ug.group_id
                WHERE ug.user_id = {{user}} AND gp.permission_id = p.id)
        OR EXISTS (SELECT 1 FROM {UserPermissions._meta.db_table} up
                   WHERE up.user_id = {{user}} AND up.permission_id = p.id)
    )
"""  # noqa: S608 - table names are Django's own; every value is a parameter
_NAMED = "(ct.app_label = %s AND p.codename = %s)"


def _pairs(perms) -> list[tuple[str, str]]:
    return [tuple(perm.split(".", 1)) for perm in perms]


def role_bits(*, user_id=None, user_column: tuple[str, str] | None = None) -> RawSQL:
    """A column: the role permissions a user holds, through a group or directly, as bits (the i-th of
    ROLE_PERMISSION's values: bit i). The user is `user_id`, or the one in `user_column` (table, column) of the
    query's own table. Written out, as it runs on every request and the ORM's Exists pairs cost more to build than
    the database takes to run them."""
    pairs = _pairs(_ROLE_PERMS)
    flat = [value for pair in pairs for value in pair]
    bits = " ".join(f"WHEN ct.app_label = %s AND p.codename = %s THEN {1 << i}" for i in range(len(pairs)))
    if user_column is None:
        user, user_params = "%s", [user_id, user_id]
    else:
        user, user_params = ".".join(connection.ops.quote_name(name) for name in user_column), []
    where = _PERMISSIONS.format(named=" OR ".join([_NAMED] * len(pairs)), user=user)
    sql = f"(SELECT COALESCE(SUM(CASE {bits} ELSE 0 END), 0) {where})"
    return RawSQL(sql, [*flat, *flat, *user_params])  # noqa: S611 - values are parameters; names are Django's


def _held(user, perms: set[str]) -> dict[str, bool]:
    """Which of `perms` ("app_label.codename") `user` holds, through a group or directly: one query."""
    pairs = _pairs(perms)
    sql = "SELECT ct.app_label, p.codename " + _PERMISSIONS.format(named=" OR ".join([_NAMED] * len(pairs)), user="%s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for pair in pairs for value in pair] + [user.pk, user.pk])
        found = set(cursor.fetchall())
    return {perm: pair in found for perm, pair in zip(perms, pairs, strict=True)}
