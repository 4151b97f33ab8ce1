"""Who may open a back-office page, and which buildings they see.

Every route under /staff/, /admin/ and /finance/ is wrapped in `role_required`;
tests/test_authorization.py walks every such rule under every role and scope, so a route
added without it fails the suite.

- staff run the buildings they are assigned to (users.buildings) and see nothing of the others:
  an object of another building is "not found" (404), the same answer as one that does not exist;
- admin see and change everything, and manage the staff accounts;
- finance reconcile money for the whole ward (the finance pages), not the calendars.
"""
from functools import wraps

from flask import abort
from flask_login import current_user, login_required

from .models import Role, User

STAFF_ROLES = (Role.STAFF, Role.ADMIN)


def role_required(*roles: str):
    def decorate(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


staff_required = role_required(*STAFF_ROLES)
admin_required = role_required(Role.ADMIN)


def building_scope(user: User) -> set[int] | None:
    """The building ids the user may see, or None for all of them (admin, finance)."""
    if user.role == Role.STAFF:
        return {b.id for b in user.buildings}
    return None


def in_scope(user: User, building_id: int | None) -> bool:
    scope = building_scope(user)
    return scope is None or building_id in scope


def require_building(building_id: int | None) -> None:
    """404 unless the signed-in user's scope holds the building: out of scope looks like absent."""
    if not in_scope(current_user, building_id):
        abort(404)


def scoped(statement, building_column, user: User):
    """`statement` limited to the user's buildings (unchanged for an unscoped role)."""
    scope = building_scope(user)
    return statement if scope is None else statement.where(building_column.in_(scope))
