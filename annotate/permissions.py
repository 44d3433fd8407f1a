"""Role checks for views and API endpoints. Every view names the role it needs."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from annotate.roles import RoleName, user_has_role


def role_required(role: RoleName):
    """Anonymous users go to the login page; signed-in users without the role get 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role.value} role.")
            return view(request, *args, **kwargs)

        wrapped.required_role = role
        return wrapped

    return decorator


class HasRole(BasePermission):
    """DRF permission: `permission_classes = [HasRole.of(RoleName.RESEARCHER)]`."""

    role: RoleName = RoleName.ADMIN

    @classmethod
    def of(cls, role: RoleName) -> type[HasRole]:
        return type(f"Has{role.value.title()}Role", (cls,), {"role": role})

    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, self.role)
