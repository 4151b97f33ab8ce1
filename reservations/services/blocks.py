"""Blocks: staff keep a room for maintenance or official use (Booking.kind "block").

A block is a booking row like any other, so it occupies the room under the same rule: the database's
overlap guard (an exclusion constraint on PostgreSQL, a trigger on SQLite) refuses it over an active
booking, and every availability query (active_clause) shows its time as taken. It is confirmed at once,
free, made at the counter, and its user is the member of staff who placed it (it never shows in their
own My bookings: that list is of kind "booking" only).

A block over active bookings is refused, naming them, unless staff cancel them in the same action:
each is then cancelled for the ward's reason "ward" (a 100 % refund and the notice mailed).

The order of that action, and why. A card refund commits (services.refunds: it is recorded and
committed before the provider is asked), and a commit also lets go of the room's lock. So nothing is
refunded until everything else is flushed: first every hit is cancelled (no refund yet,
cancellation.ward_cancellation), then the block is inserted and flushed (the overlap guard has its
say here), and only then are the refunds made, one by one. If anything fails before the refunds (a
hit that can no longer be cancelled, the provider unable to release a hold's intent, the guard), the
caller rolls back and no hit is cancelled without the block; the first refund's commit carries the
cancellations and the block together. A refund that then cannot reach the provider stays pending and
the retry job sends it (services.refunds), so money owed is never lost from view.
"""
from datetime import date, datetime, time, timedelta

from sqlalchemy import select

from ..backoffice import in_scope
from ..extensions import db
from ..i18n import lazy_gettext as _l
from ..models import Booking, BookingKind, BookingState, Letting, Room, User, record
from ..timeutil import at_tokyo, business_date, now_utc
from . import cancellation
from .booking import active_clause, lock_room, lost_race_is_slot_taken, overlapping, retire_lapsed_holds
from .errors import MESSAGES, BookingError
from .rules import Slot, division_slot

MESSAGES.update({
    "block_over_bookings": _l(
        "Bookings overlap this time. Cancel them with the block (each is refunded in full and told), "
        "or choose another time."
    ),
    "block_over_block": _l("This time is already blocked."),
    "block_note_required": _l("Say what the block is for."),
})


def block_slot(room: Room, day: date, *, codes: list[str] | None = None, start: time | None = None,
               minutes: int | None = None) -> Slot:
    """The span a block takes: consecutive divisions, or (a room let by the hour) a start and a length.

    Unlike a booking, a block may be as long as the day allows (no minimum nor maximum length): it
    must only lie within the opening hours, on the room's step.
    """
    if room.letting == Letting.DIVISION:
        return division_slot(room, day, list(codes or []))
    if room.open_time is None or room.close_time is None:
        raise BookingError("not_bookable")
    if start is None or not minutes or minutes <= 0 or minutes % room.step_minutes:
        raise BookingError("invalid_duration")
    start_at = at_tokyo(day, start)
    end_at = start_at + timedelta(minutes=minutes)
    if start_at < at_tokyo(day, room.open_time) or end_at > at_tokyo(day, room.close_time):
        raise BookingError("outside_hours")
    offset = (start.hour * 60 + start.minute) - (room.open_time.hour * 60 + room.open_time.minute)
    if offset % room.step_minutes:
        raise BookingError("outside_hours")
    return Slot(day=day, start_at=start_at, end_at=end_at)


def place_block(staff: User, room: Room, slot: Slot | None = None, *, start_at: datetime | None = None,
                end_at: datetime | None = None, note: str, cancel_hits: bool = False,
                now: datetime | None = None) -> Booking:
    """Block `slot` (or start_at..end_at) of `room`; returns the block.

    Raises BookingError("block_over_bookings", bookings=[...]) when active bookings overlap and
    `cancel_hits` is false, leaving everything as it was; with `cancel_hits`, cancels each for the
    ward's reason and then blocks, in the order the module docstring explains. Another block in the
    way is never cancelled this way ("block_over_block"). Flushes, and commits when a card is refunded;
    the caller commits, or rolls back on BookingError.
    """
    now = now or now_utc()
    if not staff.is_staff or not in_scope(staff, room.building_id):
        raise BookingError("staff_only")
    note = (note or "").strip()
    if not note:
        raise BookingError("block_note_required")
    if slot is not None:
        start_at, end_at, codes = slot.start_at, slot.end_at, ",".join(slot.division_codes) or None
    else:
        codes = None
    if start_at is None or end_at is None or end_at <= start_at:
        raise BookingError("invalid_duration")
    if end_at <= now:
        raise BookingError("past")
    span = overlapping(room.id, start_at, end_at)
    with lost_race_is_slot_taken():
        lock_room(room.id)
        retire_lapsed_holds(span, now, reason="retired by a block")
        hits = db.session.scalars(select(Booking).where(span, active_clause(now))
                                  .order_by(Booking.start_at, Booking.id)).all()
        if any(b.is_block for b in hits):
            raise BookingError("block_over_block", bookings=[b.id for b in hits if b.is_block])
        if hits and not cancel_hits:
            raise BookingError("block_over_bookings", bookings=[b.id for b in hits])
        why = f"blocked: {note}"
        cancelled = [cancellation.ward_cancellation(b, staff, "ward", note=why, now=now) for b in hits]
        db.session.flush()  # the hits are cancelled in the database before the block goes over them
        block = Booking(
            user_id=staff.id, room_id=room.id, start_at=start_at, end_at=end_at, kind=BookingKind.BLOCK,
            state=BookingState.CONFIRMED, hold_expires_at=None, price=0, price_detail={},
            residency=staff.residency, division_codes=codes, channel="counter", note=note, created_at=now,
        )
        db.session.add(block)
        db.session.flush()
    record("booking", block.id, "blocked", actor_id=staff.id, note=note, start=start_at.isoformat(),
           end=end_at.isoformat(), day=business_date(start_at).isoformat(), cancelled=[b.id for b in hits])
    db.session.flush()
    # Last: a card refund commits (see the module docstring).
    for item in cancelled:
        item.refund(staff)
    return block
