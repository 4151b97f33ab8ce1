"""No-shows and the suspension of online booking they lead to (the policy is in config.py: NO_SHOW_*).

After each no-show (services/attendance.py) `apply_policy` counts the resident's no-shows whose slot
began within the last NO_SHOW_WINDOW_MONTHS months. At NO_SHOW_LIMIT it suspends their online booking
for NO_SHOW_SUSPENSION_MONTHS months, unless a suspension is already in force. A no-show counts towards
one suspension only: those listed by an earlier suspension (served, or lifted by staff) are not counted
again, so after a suspension a resident needs NO_SHOW_LIMIT new no-shows to be suspended again.

During the suspension place_hold refuses the resident's online bookings (BookingError "suspended",
with its end); staff at the counter still book for them. Staff can lift it early with a reason.
Walk-ins (User.walk_in) cannot book online anyway and are never suspended.
"""
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..backoffice import building_scope
from ..extensions import db
from ..models import Booking, BookingKind, BookingState, Room, Suspension, User, record
from ..timeutil import local, now_utc, shift_months
from .errors import BookingError

MAX_IDS_LENGTH = 200  # Suspension.booking_ids


def suspension_in_force(user: User, now: datetime) -> Suspension | None:
    """The suspension that stops `user` booking online at `now`, if any (the latest ending one)."""
    return db.session.scalar(_in_force(select(Suspension), user.id, now))


def suspended_until(user_id: int, now: datetime):
    """When the suspension in force ends, as a scalar subquery (NULL when none): place_hold asks it beside
    the rest of the resident's standing, in one statement."""
    return _in_force(select(Suspension.ends_at), user_id, now).scalar_subquery()


def _in_force(query, user_id: int, now: datetime):
    return (query.where(Suspension.user_id == user_id, Suspension.lifted_at.is_(None),
                        Suspension.starts_at <= now, Suspension.ends_at > now)
            .order_by(Suspension.ends_at.desc()).limit(1))


def shift_moment(moment: datetime, months: int) -> datetime:
    """The same Tokyo wall-clock time `months` later (earlier if negative), clamped to a shorter month's end."""
    there = local(moment)
    day = shift_months(there.date(), months)
    return there.replace(year=day.year, month=day.month, day=day.day).astimezone(UTC)


def booking_ids(suspension: Suspension) -> list[int]:
    return [int(i) for i in suspension.booking_ids.split(",") if i.strip().isdigit()]


def no_show_bookings(suspension: Suspension) -> list[Booking]:
    """The no-shows that caused the suspension, earliest first (for the resident's notice and staff)."""
    ids = booking_ids(suspension)
    if not ids:
        return []
    return list(db.session.scalars(select(Booking).where(Booking.id.in_(ids)).order_by(Booking.start_at)))


def _already_counted(user: User) -> set[int]:
    listed = db.session.scalars(select(Suspension.booking_ids).where(Suspension.user_id == user.id)).all()
    return {int(i) for ids in listed for i in ids.split(",") if i.strip().isdigit()}


def apply_policy(user: User, now: datetime | None = None, *, actor_id: int | None = None) -> Suspension | None:
    """Suspend `user`'s online booking if their no-shows reach the limit; returns the new suspension, if any.

    Called after each no-show, in its transaction (flushes; the caller commits).
    """
    now = now or now_utc()
    if user.walk_in:
        return None
    if suspension_in_force(user, now) is not None:
        return None
    config = current_app.config
    since = shift_moment(now, -config["NO_SHOW_WINDOW_MONTHS"])
    counted = _already_counted(user)
    no_shows = [b for b in db.session.scalars(
        select(Booking).where(Booking.user_id == user.id, Booking.kind == BookingKind.BOOKING,
                              Booking.state == BookingState.NO_SHOW, Booking.start_at >= since,
                              Booking.start_at <= now)
        .order_by(Booking.start_at.desc(), Booking.id.desc())) if b.id not in counted]
    if len(no_shows) < config["NO_SHOW_LIMIT"]:
        return None
    ids: list[str] = []
    for booking in no_shows:  # the latest first, as many as the column holds (at least the limit's worth)
        if len(",".join([*ids, str(booking.id)])) > MAX_IDS_LENGTH:
            break
        ids.append(str(booking.id))
    suspension = Suspension(user_id=user.id, starts_at=now,
                            ends_at=shift_moment(now, config["NO_SHOW_SUSPENSION_MONTHS"]),
                            booking_ids=",".join(sorted(ids, key=int)), created_at=now)
    db.session.add(suspension)
    db.session.flush()
    record("suspension", suspension.id, "suspended", actor_id=actor_id, user_id=user.id,
           booking_ids=suspension.booking_ids, starts_at=suspension.starts_at.isoformat(),
           ends_at=suspension.ends_at.isoformat(), reason=f"{len(no_shows)} no-shows since {since.date()}")
    return suspension


def lift(suspension: Suspension, staff: User, reason: str, *, now: datetime | None = None) -> None:
    """Staff lift a suspension early; the reason is required and kept with it (flushes; the caller commits)."""
    now = now or now_utc()
    reason = (reason or "").strip()
    if not reason:
        raise BookingError("reason_required")
    suspension = db.session.get(Suspension, suspension.id, with_for_update=True, populate_existing=True)
    if not suspension.in_force(now):
        raise BookingError("not_suspended")
    suspension.lifted_at, suspension.lifted_by_id, suspension.lift_reason = now, staff.id, reason
    record("suspension", suspension.id, "lifted", actor_id=staff.id, user_id=suspension.user_id, reason=reason,
           before={"lifted_at": None, "ends_at": suspension.ends_at.isoformat()},
           after={"lifted_at": now.isoformat()})
    db.session.flush()


# -- the staff list ------------------------------------------------------------------------------

def suspension_buildings(suspension: Suspension) -> set[int]:
    """The buildings of the no-shows that caused a suspension: the staff who run them see it."""
    ids = booking_ids(suspension)
    if not ids:
        return set()
    return set(db.session.scalars(select(Room.building_id).join(Booking, Booking.room_id == Room.id)
                                  .where(Booking.id.in_(ids))))


def suspensions_in_force(viewer: User, now: datetime | None = None) -> list[tuple[Suspension, list[Booking]]]:
    """The suspensions in force that `viewer` may see, with their no-shows, the soonest to end first.

    Staff see the residents who missed a booking in one of their buildings; admin see them all.
    """
    now = now or now_utc()
    scope = building_scope(viewer)
    suspensions = db.session.scalars(
        select(Suspension).where(Suspension.lifted_at.is_(None), Suspension.starts_at <= now,
                                 Suspension.ends_at > now)
        .order_by(Suspension.ends_at, Suspension.id).options(joinedload(Suspension.user))).all()
    wanted = {i for s in suspensions for i in booking_ids(s)}
    bookings = {b.id: b for b in db.session.scalars(
        select(Booking).where(Booking.id.in_(wanted)).options(joinedload(Booking.room).joinedload(Room.building)))
    } if wanted else {}
    listed = []
    for suspension in suspensions:
        caused = sorted((bookings[i] for i in booking_ids(suspension) if i in bookings), key=lambda b: b.start_at)
        if scope is None or any(b.room.building_id in scope for b in caused):
            listed.append((suspension, caused))
    return listed
