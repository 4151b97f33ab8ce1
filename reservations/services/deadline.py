"""Reserve now, pay by a deadline: when a booking of a room must be paid, and until when it is held.

A room's payment mode (Room.payment_mode) is "now" (the short hold of checkout, HOLD_MINUTES or the
room's own hold time) or "deadline": the booking is made at once and held until 23:59 (deadline_time)
`deadline_days_before` days before the day of use, payable online from My bookings until then.

Both are the same held booking: hold_expires_at is the end of the hold or the deadline, so everything
that already knows holds (active_clause, the overlap rule, settle's late payments, the expiry job)
knows deadlines too. An unpaid booking past its deadline occupies nothing, whether or not a job ran.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from ..models import PaymentMode, Room
from ..timeutil import at_tokyo, business_date


@dataclass(frozen=True)
class Hold:
    pay_mode: str  # "now" | "deadline" (Booking.pay_mode)
    expires_at: datetime


def hold_minutes(room: Room) -> int:
    return room.hold_minutes or current_app.config["HOLD_MINUTES"]


def payment_deadline(room: Room, start_at: datetime) -> datetime:
    """The last moment to pay: deadline_time (Tokyo) on the day `deadline_days_before` days before the day of use."""
    day = business_date(start_at) - timedelta(days=room.deadline_days_before)
    return at_tokyo(day, room.deadline_time)


def hold_for(room: Room, start_at: datetime, now: datetime, *, deadline: bool | None = None) -> Hold:
    """How a new booking of `room` at `start_at` is held: by the room's payment mode, unless `deadline`
    says otherwise (a counter booking paid online by the deadline, whatever the room's mode).

    A deadline that is no later than a pay-now hold would be (a booking made within the last days)
    leaves nothing to wait for: it is paid now, on the short hold.
    """
    short = now + timedelta(minutes=hold_minutes(room))
    wants_deadline = room.payment_mode == PaymentMode.DEADLINE if deadline is None else deadline
    if wants_deadline:
        due = min(payment_deadline(room, start_at), start_at)
        if due > short:
            return Hold("deadline", due)
    return Hold("now", short)
