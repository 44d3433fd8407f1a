"""The three roles, as Django groups with permissions.

- labeler: works through labeling queues (`annotate.label`).
- researcher: browses data, metrics and exports (`annotate.view_data`, read-only model access).
- admin: manages projects, imports, users, models and retraining (`annotate.manage_project` and full model
  access); admins are staff, so they also see the Django admin site.

A role check is a permission check, so superusers pass every one and a custom group can grant a single power.
"""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import Group, Permission


class RoleName(StrEnum):
    LABELER = "labeler"
    RESEARCHER = "researcher"
    ADMIN = "admin"


# The permission that *is* the role, for views and API permission classes.
ROLE_PERMISSION: dict[RoleName, str] = {
    RoleName.LABELER: "annotate.label",
    RoleName.RESEARCHER: "annotate.view_data",
    RoleName.ADMIN: "annotate.manage_project",
}

_MANAGED_APPS = ("annotate", "rewardlab")


def _role_permissions(role: RoleName) -> list[Permission]:
    perms = Permission.objects.select_related("content_type")
    if role is RoleName.LABELER:
        return list(perms.filter(content_type__app_label="annotate", codename="label"))
    if role is RoleName.RESEARCHER:
        return list(perms.filter(content_type__app_label__in=_MANAGED_APPS, codename__startswith="view_"))
    # Admins: everything on the project's own models, plus managing users and their tokens.
    own = perms.filter(content_type__app_label__in=_MANAGED_APPS)
    users = perms.filter(content_type__app_label="auth", content_type__model__in=["user", "group"])
    tokens = perms.filter(content_type__app_label="authtoken")
    return list(own) + list(users) + list(tokens)


def roles_sync(**_kwargs) -> None:
    """Create the role groups and set their permissions (run after every migrate; idempotent)."""
    for role in RoleName:
        group, _ = Group.objects.get_or_create(name=role.value)
        group.permissions.set(_role_permissions(role))


def user_has_role(user, role: RoleName | str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.has_perm(ROLE_PERMISSION[RoleName(role)])


def user_roles(user) -> list[RoleName]:
    return [role for role in RoleName if user_has_role(user, role)]
