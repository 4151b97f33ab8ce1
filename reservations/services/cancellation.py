"""Cancelling a booking: a resident's own, refunded by the room's policy."""
from datetime import datetime

from ..extensions import db
from ..models import Booking, BookingState, PaymentState, Refund, User
from ..timeutil import now_utc
from .checkout import lock_payment, release
from .errors import BookingError
from .refund_policy import refund_if_cancelled, refund_percent
from .refunds import refund


def cancel_booking(booking: Booking, user: User, *, now: datetime | None = None) -> Refund | None:
    """A resident cancels their own booking; the refund follows the room's policy."""
    now = now or now_utc()
    # Lock, then judge the booking as it is now, not as the caller read it: a
    # webhook may have confirmed it meanwhile, and a paid booking cancelled as
    # a mere hold would keep the money without any refund.
    payment = lock_payment(booking.payment) if booking.payment else None
    db.session.get(Booking, booking.id, with_for_update=True, populate_existing=True)
    if booking.user_id != user.id or booking.state not in (BookingState.HELD, BookingState.CONFIRMED):
        raise BookingError("not_cancellable")
    if now >= booking.start_at:
        raise BookingError("cancel_deadline")
    if booking.state == BookingState.HELD:
        if payment:
            release(payment, booking, reason="cancelled by the resident before paying",
                     state=PaymentState.CANCELLED, now=now)
        else:
            booking.transition(BookingState.CANCELLED, actor_id=user.id, reason="cancelled by the resident")
        return None
    percent, amount = refund_if_cancelled(booking, now) or (refund_percent(booking, now), 0)
    booking.transition(BookingState.CANCELLED, actor_id=user.id, reason=f"cancelled by the resident ({percent}%)")
    if amount:
        return refund(payment, amount, reason="policy", actor_id=user.id)
    return None
