"""The booking core: hold, confirm, cancel, expire.

Services flush; the caller (a request or a job) commits. The one exception is
a lost race for a slot: the database aborted the transaction, so place_hold
rolls it back before raising BookingError("slot_taken").
"""
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..extensions import db
from ..models import Booking, BookingState, Room, User, record
from ..timeutil import now_utc
from .errors import BookingError
from .pricing import quote
from .rules import Slot, check_bookable

# Namespace of our advisory locks (pg_advisory_xact_lock(namespace, room_id)).
ROOM_LOCK_NAMESPACE = 4201

# SQLSTATEs that mean "someone else got the slot first", never a 500.
_LOST_RACE = {"23P01", "40P01", "40001"}
SQLITE_OVERLAP_MESSAGE = "booking_overlap"


def active_clause(now: datetime):
    """SQL for bookings that occupy a room at `now`; expired holds do not."""
    return or_(
        Booking.state == BookingState.CONFIRMED,
        and_(Booking.state == BookingState.HELD, Booking.hold_expires_at > now),
    )


def lapsed_hold_clause(now: datetime):
    """SQL for holds past their expiry that no job has retired yet."""
    return and_(Booking.state == BookingState.HELD, Booking.hold_expires_at <= now)


def overlapping(room_id: int, start_at: datetime, end_at: datetime):
    return and_(Booking.room_id == room_id, Booking.start_at < end_at, Booking.end_at > start_at)


def count_active(user: User, now: datetime) -> int:
    """Bookings of a user that still count against the cap: live holds and future confirmed ones."""
    return db.session.scalar(
        select(func.count(Booking.id)).where(
            Booking.user_id == user.id, active_clause(now), Booking.end_at > now
        )
    )


def lock_room(room_id: int) -> None:
    """Serialise writers of one room. On SQLite BEGIN IMMEDIATE already did it."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, :room)"), {"ns": ROOM_LOCK_NAMESPACE, "room": room_id}
        )


def _retire_expired_holds(room_id: int, slot: Slot, now: datetime) -> None:
    expired = db.session.scalars(
        select(Booking).where(
            overlapping(room_id, slot.start_at, slot.end_at), lapsed_hold_clause(now)
        )
    ).all()
    for booking in expired:
        booking.transition(BookingState.EXPIRED, reason="retired by an overlapping booking")


def _is_lost_race(exc: DBAPIError) -> bool:
    code = getattr(getattr(exc.orig, "diag", None), "sqlstate", None) or getattr(exc.orig, "sqlstate", None)
    return code in _LOST_RACE or SQLITE_OVERLAP_MESSAGE in str(exc.orig)


def place_hold(
    user: User,
    room: Room,
    slot: Slot,
    *,
    now: datetime | None = None,
    expected_price: int | None = None,
    actor: User | None = None,
    channel: str = "online",
) -> Booking:
    """Hold `slot` for `user` at the price the server computes.

    Raises BookingError when a rule forbids it, when `expected_price` (what the
    resident was shown) is no longer the price, or when the slot is taken,
    including when another transaction took it a moment ago.
    """
    now = now or now_utc()
    check_bookable(room, slot, now)
    price = quote(room, slot, user.residency)
    if expected_price is not None and expected_price != price.total:
        raise BookingError("price_changed", price=price.total)

    try:
        lock_room(room.id)
        _retire_expired_holds(room.id, slot, now)
        if count_active(user, now) >= current_app.config["MAX_ACTIVE_BOOKINGS"]:
            raise BookingError("too_many")
        taken = db.session.scalar(
            select(Booking.id).where(overlapping(room.id, slot.start_at, slot.end_at), active_clause(now)).limit(1)
        )
        if taken:
            raise BookingError("slot_taken")
        booking = Booking(
            user_id=user.id,
            room_id=room.id,
            start_at=slot.start_at,
            end_at=slot.end_at,
            state=BookingState.HELD,
            hold_expires_at=now + timedelta(minutes=current_app.config["HOLD_MINUTES"]),
            price=price.total,
            price_detail=price.as_detail(),
            residency=user.residency,
            division_codes=",".join(slot.division_codes) or None,
            channel=channel,
            created_at=now,
        )
        db.session.add(booking)
        db.session.flush()
    except (IntegrityError, DBAPIError) as exc:
        if not _is_lost_race(exc):
            raise
        db.session.rollback()
        raise BookingError("slot_taken") from exc
    record("booking", booking.id, "held", actor_id=(actor or user).id, price=price.total, channel=channel)
    return booking


def confirm(booking: Booking, *, actor_id: int | None = None, reason: str = "") -> None:
    if booking.state == BookingState.CONFIRMED:
        return
    booking.transition(BookingState.CONFIRMED, actor_id=actor_id, reason=reason)


def reserve(user: User, room: Room, slot: Slot, **kwargs) -> Booking:
    """Hold the slot; a free booking (or one where online payment is off) is confirmed at once,
    any other waits for its payment (services.checkout)."""
    booking = place_hold(user, room, slot, **kwargs)
    if booking.price == 0 or not current_app.config["PAYMENTS_ENABLED"]:
        confirm(booking, actor_id=user.id, reason="free" if booking.price == 0 else "no online payment")
    else:
        from .checkout import start_checkout  # checkout builds on this module

        start_checkout(booking)
    return booking

