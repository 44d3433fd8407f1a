from annotate.roles import RoleName, user_has_role


def roles(request) -> dict:
    """`is_labeler`, `is_researcher`, `is_admin` for navigation; every view still checks for itself."""
    user = getattr(request, "user", None)
    return {f"is_{role.value}": user_has_role(user, role) for role in RoleName}
