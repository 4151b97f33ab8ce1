"""Cancelling a booking: a resident's own, refunded by the room's policy; or by staff, for a reason
the resident is not responsible for, refunded in full."""
from datetime import datetime
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..aftercommit import after_commit
from ..backoffice import in_scope
from ..extensions import db
from ..links import external_url
from ..mail import send_mail
from ..models import Booking, BookingState, PaymentState, Refund, User, record
from ..payments import GatewayError
from ..timeutil import now_utc
from .checkout import lock_payment, release
from .errors import BookingError
from .refund_policy import percent_at, refund_if_cancelled, refund_schedule
from .refunds import refund

# Reasons the resident is not responsible for: ordinances refund the whole fee for these (還付).
WARD_REASONS = {
    "ward": _l("the ward needs the room"),
    "closure": _l("the facility is closed"),
    "disaster": _l("there is a disaster or an emergency"),
}


def _lock(booking: Booking):
    # Lock, then judge the booking as it is now, not as the caller read it: a
    # webhook may have confirmed it meanwhile, and a paid booking cancelled as
    # a mere hold would keep the money without any refund.
    payment = lock_payment(booking.payment) if booking.payment else None
    db.session.get(Booking, booking.id, with_for_update=True, populate_existing=True)
    return payment


def cancel_booking(booking: Booking, user: User, *, now: datetime | None = None) -> Refund | None:
    """A resident cancels their own booking; the refund follows the room's policy."""
    now = now or now_utc()
    payment = _lock(booking)
    if booking.user_id != user.id or booking.state not in (BookingState.HELD, BookingState.CONFIRMED):
        raise BookingError("not_cancellable")
    if now >= booking.start_at:
        raise BookingError("cancel_deadline")
    if booking.state == BookingState.HELD:
        if payment:
            try:
                release(payment, booking, reason="cancelled by the resident before paying",
                        state=PaymentState.CANCELLED, now=now)
            except GatewayError as exc:  # the hold stays until the provider can cancel the intent
                raise BookingError("payment_unavailable") from exc
        else:
            booking.transition(BookingState.CANCELLED, actor_id=user.id, reason="cancelled by the resident")
        return None
    schedule = refund_schedule(booking.room, booking.start_at)
    percent, amount = refund_if_cancelled(booking, now, schedule) or (percent_at(schedule, booking.start_at, now), 0)
    booking.transition(BookingState.CANCELLED, actor_id=user.id, reason=f"cancelled by the resident ({percent}%)")
    if amount:
        return refund(payment, amount, reason="policy", actor_id=user.id)
    return None


def cancel_for_ward_reason(booking: Booking, staff: User, reason: str, *, note: str = "",
                           now: datetime | None = None) -> Refund | None:
    """Staff cancel a booking for a reason the resident is not responsible for (WARD_REASONS):
    the whole amount still refundable goes back, whatever the date, and the resident is mailed.

    Allowed until the booking ends (a closure or a disaster can strike on the day). Returns the
    refund, or None when nothing had been paid. Flushes; the refund itself commits (see refunds).
    """
    now = now or now_utc()
    if not staff.is_staff or not in_scope(staff, booking.room.building_id):
        raise BookingError("staff_only")  # staff of another building may not either
    if reason not in WARD_REASONS:
        raise ValueError(f"unknown ward reason {reason!r}; one of {', '.join(WARD_REASONS)}")
    payment = _lock(booking)
    if booking.state not in (BookingState.HELD, BookingState.CONFIRMED) or now >= booking.end_at:
        raise BookingError("not_cancellable")
    why = f"cancelled by staff for a ward reason: {reason}" + (f" ({note})" if note else "")
    amount = 0
    if booking.state == BookingState.HELD or (payment and payment.state != PaymentState.CAPTURED):
        if payment:
            try:
                release(payment, booking, reason=why, state=PaymentState.CANCELLED, now=now)
            except GatewayError as exc:  # nothing changes until the provider can cancel the intent
                raise BookingError("payment_unavailable") from exc
        if booking.state in (BookingState.HELD, BookingState.CONFIRMED):
            booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=why)
    else:
        amount = payment.refundable if payment else 0
        booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=why)
    record("booking", booking.id, "cancelled for a ward reason", actor_id=staff.id, reason=reason, note=note,
           refund=amount)
    after_commit(_ward_cancellation_mail(booking, reason, amount))
    db.session.flush()
    if amount:
        return refund(payment, amount, reason="ward", actor_id=staff.id)
    return None


def _ward_cancellation_mail(booking: Booking, reason: str, amount: int):
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Your booking has been cancelled by the facility")
        body = render_template("bookings/ward_cancellation_mail.txt", booking=booking,
                               reason=str(WARD_REASONS[reason]), amount=amount,
                               link=external_url("bookings.detail", booking_id=booking.id))
    return partial(send_mail, booking.user.email, subject, body)
