"""Back-office accounts: admin create staff, finance and admin accounts and set each one's role and buildings.

A new account gets no password anyone knows: its owner sets one through a reset
link mailed to the address (which proves the address, so it counts as confirmed).
Every change is audited with the state before and after, in the same transaction,
and a change of role or buildings ends the account's sessions, so a narrowed scope
takes effect at once rather than at the next log-in.
"""
import secrets

from sqlalchemy import select

from ..extensions import db
from ..i18n import lazy_gettext as _l
from ..models import Building, Role, User, record
from ..timeutil import now_utc
from .accounts import AccountError, PasswordReset, find_user_by_email, normalise_email, request_password_reset

BACK_OFFICE_ROLES = (Role.STAFF, Role.FINANCE, Role.ADMIN)
ROLE_LABELS = {
    Role.RESIDENT: _l("Resident"),
    Role.STAFF: _l("Facility staff"),
    Role.FINANCE: _l("Finance"),
    Role.ADMIN: _l("Administrator"),
}
MESSAGES = {
    "email_taken": _l("An account with this email address exists already: edit it instead."),
    "own_role": _l("You cannot take away your own administrator role."),
    "no_buildings": _l("Choose at least one building for a member of facility staff."),
    "unknown_building": _l("Choose buildings from the list."),
}


class StaffAccountError(AccountError):
    @property
    def message(self) -> str:
        return str(MESSAGES.get(self.code, self.code))


def back_office_accounts() -> list[User]:
    return list(db.session.scalars(
        select(User).where(User.role != Role.RESIDENT).order_by(User.role, User.email)))


def _snapshot(user: User) -> dict:
    return {"role": user.role, "buildings": sorted(b.id for b in user.buildings)}


def _buildings(role: str, building_ids: list[int]) -> list[Building]:
    if role != Role.STAFF:
        return []  # admin and finance are not scoped
    if not building_ids:
        raise StaffAccountError("no_buildings", field="buildings")
    found = list(db.session.scalars(select(Building).where(Building.id.in_(building_ids)).order_by(Building.id)))
    if len(found) != len(set(building_ids)):
        raise StaffAccountError("unknown_building", field="buildings")
    return found


def create_account(admin: User, *, email: str, name: str, role: str, building_ids: list[int]) -> PasswordReset:
    """A new back-office account; returns the reset token to mail its owner once the caller has committed."""
    if role not in BACK_OFFICE_ROLES:
        raise ValueError(f"not a back-office role: {role!r}")
    email = normalise_email(email)
    if find_user_by_email(email) is not None:
        raise StaffAccountError("email_taken", field="email")
    user = User(email=email, name=name.strip(), role=role, email_verified_at=now_utc())
    user.set_password(secrets.token_urlsafe(32))  # known to nobody: the owner sets theirs by the mailed link
    user.buildings = _buildings(role, building_ids)
    db.session.add(user)
    db.session.flush()
    record("user", user.id, "account_created", actor_id=admin.id, before=None, after=_snapshot(user))
    return request_password_reset(email)


def update_account(admin: User, user: User, *, role: str, building_ids: list[int]) -> bool:
    """Set a user's role and buildings; returns whether anything changed."""
    if role not in ROLE_LABELS:
        raise ValueError(f"unknown role {role!r}")
    if user.id == admin.id and role != Role.ADMIN:
        raise StaffAccountError("own_role", field="role")
    before = _snapshot(user)
    buildings = _buildings(role, building_ids)
    user.role = role
    user.buildings = buildings
    after = _snapshot(user)
    if after == before:
        return False
    user.session_version += 1  # every session of the account ends: the new scope holds at once
    record("user", user.id, "access_changed", actor_id=admin.id, before=before, after=after)
    return True
