"""Cancelling a booking: a resident's own, refunded by the room's policy; or by staff, for a reason
the resident is not responsible for, refunded in full; or by staff at the resident's request, by the policy."""
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale

from ..aftercommit import after_commit
from ..backoffice import in_scope
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..links import external_url
from ..mail import send_mail
from ..models import Booking, BookingState, Payment, PaymentState, Refund, User, record
from ..payments import GatewayError
from ..timeutil import now_utc
from . import moves
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
        return _refund_carried_by_policy(booking, now, actor_id=user.id)
    schedule = refund_schedule(booking.room, booking.start_at)
    percent, amount = refund_if_cancelled(booking, now, schedule) or (percent_at(schedule, booking.start_at, now), 0)
    booking.transition(BookingState.CANCELLED, actor_id=user.id, reason=f"cancelled by the resident ({percent}%)")
    db.session.flush()
    own = refund(payment, amount, reason="policy", actor_id=user.id) if amount else None
    return _first(own, moves.refund_carried(booking, percent, reason="policy", actor_id=user.id, now=now))


def _first(own: Refund | None, others: list[Refund]) -> Refund | None:
    return own or (others[0] if others else None)


def _refund_carried_by_policy(booking: Booking, now: datetime, *, actor_id: int) -> Refund | None:
    """A held booking that a move made (its difference still to pay) was cancelled: the fee carried over
    to it goes back by the policy, as the fee of any cancelled booking would."""
    if not moves.carried_sources(booking):
        return None
    percent = percent_at(refund_schedule(booking.room, booking.start_at), booking.start_at, now)
    db.session.flush()
    refunds = moves.refund_carried(booking, percent, reason="policy", actor_id=actor_id, now=now)
    return refunds[0] if refunds else None


@dataclass
class WardCancellation:
    """A booking cancelled for a ward reason, its refund still to make (see ward_cancellation)."""

    booking: Booking
    payment: Payment | None
    amount: int  # what goes back: the whole amount still refundable, or 0

    def refund(self, staff: User) -> Refund | None:
        """Make the refund, and that of any fee a move carried over to the booking. For a card this
        commits, then asks the provider (services.refunds)."""
        own = None
        if self.amount and self.payment is not None:
            own = refund(self.payment, self.amount, reason="ward", actor_id=staff.id)
        return _first(own, moves.refund_carried(self.booking, 100, reason="ward", actor_id=staff.id))


def cancel_for_ward_reason(booking: Booking, staff: User, reason: str, *, note: str = "",
                           now: datetime | None = None) -> Refund | None:
    """Staff cancel a booking for a reason the resident is not responsible for (WARD_REASONS):
    the whole amount still refundable goes back, whatever the date, and the resident is mailed.

    Allowed until the booking ends (a closure or a disaster can strike on the day). Returns the
    refund, or None when nothing had been paid. Flushes; the refund itself commits (see refunds).
    """
    return ward_cancellation(booking, staff, reason, note=note, now=now).refund(staff)


def ward_cancellation(booking: Booking, staff: User, reason: str, *, note: str = "",
                      now: datetime | None = None) -> WardCancellation:
    """The first half of cancel_for_ward_reason: cancel, record and queue the mail, but refund nothing yet.

    For callers that must change more in the same transaction before anything is committed (a block over
    the booking, services/blocks.py): a card refund commits, and everything flushed before goes with it.
    The caller calls `.refund(staff)` last. Nothing is committed here.
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
           refund=amount + moves.carried_amount(booking))
    after_commit(_ward_cancellation_mail(booking, reason, amount + moves.carried_amount(booking)))
    db.session.flush()
    return WardCancellation(booking, payment, amount)


# What staff may give as the reason of a cancellation: the resident asked (the policy refunds), or a ward reason.
RESIDENT_REQUEST = "resident_request"
STAFF_REASONS = {RESIDENT_REQUEST: _l("the resident asked to cancel"), **WARD_REASONS}


def cancel_by_staff(booking: Booking, staff: User, kind: str, note: str = "", *,
                    now: datetime | None = None) -> Refund | None:
    """Staff cancel any booking of their buildings, with a reason (`kind`, a key of STAFF_REASONS, and a note).

    "resident_request": the resident asked (at the counter, by phone): refunded by the room's policy, as
    their own cancellation would be (cancel_booking), and like it only before the start. A ward reason:
    the whole fee (cancel_for_ward_reason). A card refund goes through the provider; a cash or terminal
    payment is paid out at the counter (services.refunds). The resident is mailed a notice either way; a
    walk-in has no address (send_mail drops it), so staff print the notice (the staff notice page).
    A block has no resident and no money: it is simply lifted.

    Returns the refund, or None. Flushes; a card refund commits (see refunds); the caller commits.
    """
    now = now or now_utc()
    if not staff.is_staff or not in_scope(staff, booking.room.building_id):
        raise BookingError("staff_only")
    if kind not in STAFF_REASONS:
        raise ValueError(f"unknown reason {kind!r}; one of {', '.join(STAFF_REASONS)}")
    note = (note or "").strip()
    if booking.is_block:
        return _lift_block(booking, staff, note, now)
    if kind != RESIDENT_REQUEST:
        return cancel_for_ward_reason(booking, staff, kind, note=note, now=now)
    payment = _lock(booking)
    if booking.state not in (BookingState.HELD, BookingState.CONFIRMED):
        raise BookingError("not_cancellable")
    if now >= booking.start_at:
        raise BookingError("cancel_deadline")
    why = "cancelled by staff at the resident's request" + (f" ({note})" if note else "")
    percent, amount = 0, 0
    if booking.state == BookingState.HELD:
        if payment:
            try:
                release(payment, booking, reason=why, state=PaymentState.CANCELLED, now=now)
            except GatewayError as exc:  # the hold stays until the provider can cancel the intent
                raise BookingError("payment_unavailable") from exc
        if booking.state == BookingState.HELD:
            booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=why)
        percent = percent_at(refund_schedule(booking.room, booking.start_at), booking.start_at, now)
    else:
        schedule = refund_schedule(booking.room, booking.start_at)
        percent, amount = (refund_if_cancelled(booking, now, schedule)
                           or (percent_at(schedule, booking.start_at, now), 0))
        booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=f"{why} ({percent}%)")
    carried = moves.carried_amount(booking, percent)
    record("booking", booking.id, "cancelled by staff", actor_id=staff.id, kind=kind, note=note, percent=percent,
           refund=amount + carried)
    after_commit(_staff_cancellation_mail(booking, None, amount + carried, payment))
    db.session.flush()
    own = refund(payment, amount, reason="policy", actor_id=staff.id) if amount else None
    return _first(own, moves.refund_carried(booking, percent, reason="policy", actor_id=staff.id, now=now))


def _lift_block(booking: Booking, staff: User, note: str, now: datetime) -> None:
    db.session.get(Booking, booking.id, with_for_update=True, populate_existing=True)
    if booking.state != BookingState.CONFIRMED or now >= booking.end_at:
        raise BookingError("not_cancellable")
    why = "block lifted" + (f" ({note})" if note else "")
    booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=why)
    record("booking", booking.id, "block lifted", actor_id=staff.id, note=note)
    db.session.flush()
    return None


def _ward_cancellation_mail(booking: Booking, reason: str, amount: int):
    payment = booking.payment
    if payment is not None and payment.provider != "stripe":
        # Paid at the counter: the refund is paid out there, not to a card.
        return _staff_cancellation_mail(booking, reason, amount, payment)
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Your booking has been cancelled by the facility")
        body = render_template("bookings/ward_cancellation_mail.txt", booking=booking,
                               reason=str(WARD_REASONS[reason]), amount=amount,
                               link=external_url("bookings.detail", booking_id=booking.id))
    return partial(send_mail, booking.user.email, subject, body)


def _staff_cancellation_mail(booking: Booking, reason: str | None, amount: int, payment: Payment | None):
    """The notice of a cancellation staff made: at the resident's request (`reason` None) or for a ward reason."""
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = (_("Your booking has been cancelled by the facility") if reason
                   else _("Your booking has been cancelled at your request"))
        body = render_template("staff/counter/cancellation_mail.txt", booking=booking,
                               reason=str(WARD_REASONS[reason]) if reason else None, amount=amount,
                               method=payment.provider if payment is not None else None,
                               link=external_url("bookings.detail", booking_id=booking.id))
    return partial(send_mail, booking.user.email, subject, body)
