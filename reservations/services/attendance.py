"""After the slot: was the room used, or was it a no-show?

Staff mark a confirmed booking used (BookingState.COMPLETED) or a no-show (BookingState.NO_SHOW) once it
has started: from its start, not its end, so that staff can say at once that nobody came, and the room
can be signed off as used while the group is still in it. A booking not yet started is refused
("not_started"), as is anything but a confirmed booking of a resident (a hold, a cancelled booking, a
staff block: "not_attendable").

The job `mark_finished_as_used` marks every confirmed booking that has ended as used, unless staff said
no-show first (a no-show is no longer confirmed, so the job passes it by). Once used, a booking cannot
become a no-show (models.booking.TRANSITIONS): a no-show is marked before the slot ends. Staff blocks
are left as they are (confirmed): they are neither used nor no-shows.

Each no-show is counted by the no-show policy (services/no_shows.py), which may suspend the resident's
online booking. Services flush; the caller (the request, the job runner) commits.
"""
from datetime import datetime

from sqlalchemy import select

from ..backoffice import in_scope
from ..extensions import db
from ..models import Booking, BookingKind, BookingState, Suspension, User
from ..timeutil import now_utc
from . import no_shows
from .errors import BookingError


def _lock_attendable(booking: Booking, staff: User, now: datetime) -> Booking:
    if not staff.is_staff or not in_scope(staff, booking.room.building_id):
        raise BookingError("staff_only")
    booking = db.session.get(Booking, booking.id, with_for_update=True, populate_existing=True)
    if booking.kind != BookingKind.BOOKING or booking.state != BookingState.CONFIRMED:
        raise BookingError("not_attendable")
    if now < booking.start_at:
        raise BookingError("not_started")
    return booking


def mark_used(booking: Booking, staff: User, *, now: datetime | None = None) -> None:
    """Staff saw the room used: a confirmed booking that has started becomes completed."""
    now = now or now_utc()
    booking = _lock_attendable(booking, staff, now)
    booking.transition(BookingState.COMPLETED, actor_id=staff.id, reason="marked used by staff")
    db.session.flush()


def mark_no_show(booking: Booking, staff: User, *, now: datetime | None = None) -> Suspension | None:
    """Nobody came: a confirmed booking that has started becomes a no-show, and the no-show policy is applied.

    Returns the suspension that this no-show brought about, if it did.
    """
    now = now or now_utc()
    booking = _lock_attendable(booking, staff, now)
    booking.transition(BookingState.NO_SHOW, actor_id=staff.id, reason="marked no-show by staff")
    db.session.flush()
    return no_shows.apply_policy(booking.user, now, actor_id=staff.id)


def mark_finished_as_used(now: datetime | None = None, *, batch: int = 500) -> dict[str, int]:
    """The job: confirmed bookings (not blocks) that have ended become completed, at most `batch` per run.

    Rows are claimed with SKIP LOCKED: a booking staff are marking a no-show right now is passed by,
    and is no longer confirmed when the next run looks. The runner commits.
    """
    now = now or now_utc()
    ended = db.session.scalars(
        select(Booking).where(Booking.state == BookingState.CONFIRMED, Booking.kind == BookingKind.BOOKING,
                              Booking.end_at <= now)
        .order_by(Booking.end_at, Booking.id).limit(batch)
        .with_for_update(skip_locked=True).execution_options(populate_existing=True)
    ).all()
    for booking in ended:
        booking.transition(BookingState.COMPLETED, reason="ended; marked used by the job")
    db.session.flush()
    return {"completed": len(ended)}
