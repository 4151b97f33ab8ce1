"""The refund policy: what a cancellation gives back, by the room's tiers."""
from datetime import datetime, timedelta

from ..models import Booking, PaymentState, Room


def refund_percent(booking: Booking, now: datetime) -> int:
    """The percentage the room's policy gives back if cancelled at `now`.

    Tiers are (days_before, percent): a tier applies until exactly
    start − days_before days, to the minute, in Tokyo (Japan has no DST, so a
    day is always 24 hours).
    """
    if now >= booking.start_at:
        return 0
    return max((percent for until, percent in refund_schedule(booking.room, booking.start_at) if now <= until),
               default=0)


def refund_schedule(room: Room, start_at: datetime) -> list[tuple[datetime, int]]:
    """The room's policy for a slot as (until, percent), earliest cut-off first."""
    tiers = sorted(room.refund_policy or [], key=lambda tier: -tier["days_before"])
    return [(start_at - timedelta(days=tier["days_before"]), tier["percent"]) for tier in tiers]


def refund_if_cancelled(booking: Booking, now: datetime) -> tuple[int, int] | None:
    """(percent, yen) that cancelling at `now` gives back; None when nothing was paid."""
    payment = booking.payment
    if payment is None or payment.state != PaymentState.CAPTURED:
        return None
    percent = refund_percent(booking, now)
    return percent, min(payment.captured_amount * percent // 100, payment.refundable)
