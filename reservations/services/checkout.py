"""Cashless checkout: a hold is paid by card, and one locked function settles it.

Confirmation arrives by the webhook, by the resident's browser, and by the
expiry job. All three call `settle`, which locks our payment row, asks the
provider for the intent's real state, and acts on that alone, so a second call
is a no-op and a failure never overwrites a success.

Cards are authorised when the resident pays and captured when the booking is
confirmed (capture_method=manual). A payment that arrives after its hold ran
out confirms the booking if the slot is still free; otherwise the
authorisation is released (or a captured charge refunded), the resident is
told, and staff get an attention case.
"""
from datetime import datetime
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from ..aftercommit import after_commit
from ..extensions import db
from ..mail import send_mail
from ..models import (
    AttentionCase,
    Booking,
    BookingState,
    LedgerEntry,
    Payment,
    PaymentState,
    ProviderObject,
    record,
)
from ..payments import CardDeclined, GatewayError, IntentView, get_gateway
from ..timeutil import now_utc
from .booking import active_clause, lapsed_hold_clause, lock_room, overlapping
from .errors import BookingError
from .receipts import issue_receipt

PAID = ("requires_capture", "succeeded")
FAILED_AUTH = "payment_intent_authentication_failure"


def map_provider_id(provider_id: str | None, kind: str, payment: Payment) -> None:
    """Remember which of our payments a provider id (pi_, ch_, re_) belongs to."""
    if provider_id and db.session.get(ProviderObject, provider_id) is None:
        db.session.add(ProviderObject(provider_id=provider_id, kind=kind, payment_id=payment.id))


def lock_payment(payment: Payment) -> Payment:
    """Lock our payment row, then read it and its booking afresh.

    The caller may have read them before another request (the webhook, the
    job, a second click) changed them and let go of the lock; deciding on that
    stale copy would confirm a booking already cancelled or expired.
    """
    payment = db.session.get(Payment, payment.id, with_for_update=True, populate_existing=True)
    db.session.get(Booking, payment.booking_id, populate_existing=True)
    return payment


def start_checkout(booking: Booking) -> Payment:
    """Open a payment for a held booking (nothing is asked of the provider yet)."""
    payment = Payment(booking_id=booking.id, amount=booking.price)
    db.session.add(payment)
    db.session.flush()
    record("payment", payment.id, "created", amount=payment.amount, booking_id=booking.id)
    return payment


def ensure_intent(payment: Payment) -> IntentView:
    """The payment's provider intent, created on first use.

    Raises BookingError("payment_unavailable") when the provider cannot be
    reached: the hold stays, nothing is charged, and the page can try again.
    """
    payment = lock_payment(payment)  # two tabs must not open two intents for one payment
    gateway = get_gateway()
    try:
        if payment.intent_id:
            return gateway.retrieve_intent(payment.intent_id)
        booking = payment.booking
        intent = gateway.create_intent(amount=payment.amount, booking_id=booking.id, payment_id=payment.id,
                                       description=f"{booking.room.building.name} {booking.room.name}")
    except GatewayError as exc:
        raise BookingError("payment_unavailable") from exc
    payment.intent_id = intent.id
    map_provider_id(intent.id, "intent", payment)
    payment.transition(PaymentState.PENDING, reason="intent created")
    return intent


def pay(payment: Payment, *, token: str | None = None, payment_method: str | None = None,
        now: datetime | None = None) -> tuple[str, IntentView | None]:
    """Pay a held booking with a card token (from Stripe.js) or a payment method id.

    Returns ("confirmed", intent) or ("requires_action", intent) for a 3-D
    Secure challenge the page must run. Raises BookingError when the hold has
    run out (nothing is charged), the card is declined (the hold is released),
    or the provider is unreachable (nothing is lost; try again).
    """
    now = now or now_utc()
    payment = lock_payment(payment)
    booking = payment.booking
    if payment.state == PaymentState.CAPTURED:
        # A double click: already paid, one charge. settle says how it ended
        # (confirmed, or returned after the slot was taken) without asking the provider.
        return settle(payment, now=now), None
    if not payment.intent_id and not booking.is_active(now):
        raise BookingError("hold_expired")  # don't open an intent for a hold that is gone
    intent = ensure_intent(payment)
    if intent.status in PAID or intent.status == "processing":
        return settle(payment, now=now), intent
    if intent.status == "requires_action":
        return "requires_action", intent
    if not booking.hold_is_live(now):
        raise BookingError("hold_expired")
    gateway = get_gateway()
    try:
        if token:
            intent = gateway.confirm_with_token(intent.id, token, payment_id=payment.id)
        else:
            intent = gateway.confirm_with_method(intent.id, payment_method, payment_id=payment.id)
    except CardDeclined as exc:
        payment.failure_message = exc.message
        release(payment, booking, reason=f"card declined: {exc.code}", state=PaymentState.FAILED, now=now)
        raise BookingError("card_declined") from exc
    except GatewayError as exc:
        raise BookingError("payment_unavailable") from exc
    if intent.status == "requires_action":
        return "requires_action", intent
    return settle(payment, now=now, intent=intent), intent


def settle(payment: Payment, *, now: datetime | None = None, intent: IntentView | None = None) -> str:
    """The one confirm function: bring our records in line with the provider's intent.

    Returns "confirmed", "refunded" (paid after the slot was taken), "released"
    (failed, abandoned or expired: nothing charged), "cancelled" (paid, then
    cancelled by the resident) or "waiting". Safe to call any number of times,
    from anywhere, in any order.
    """
    now = now or now_utc()
    payment = lock_payment(payment)
    booking = payment.booking
    if payment.state == PaymentState.CAPTURED and booking.state != BookingState.HELD:
        # Captured money was accounted for when it was captured: the booking was
        # confirmed, or a late payment was refunded, and any cancellation since
        # refunded by the policy. A webhook or a reloaded page arriving after
        # that must not refund the rest, nor confirm a booking whose money went back.
        return {BookingState.EXPIRED: "refunded", BookingState.CANCELLED: "cancelled"}.get(
            BookingState(booking.state), "confirmed")
    expired = not booking.hold_is_live(now)
    if not payment.intent_id:
        if expired and booking.state == BookingState.HELD:
            release(payment, booking, reason="hold expired before any payment", state=PaymentState.CANCELLED,
                     now=now)
            return "released"
        return "waiting"
    intent = get_gateway().retrieve_intent(payment.intent_id) if intent is None else intent
    if intent.status in PAID:
        return _settle_paid(payment, booking, intent, now)
    if payment.state == PaymentState.CAPTURED:
        return "confirmed"  # a stale failure never overwrites a success
    if payment.state in (PaymentState.FAILED, PaymentState.CANCELLED) and booking.state != BookingState.HELD:
        return "released"  # released before; a late failure event has nothing left to do
    if intent.status == "processing":
        return "waiting"
    failed = intent.status == "canceled" or (intent.status == "requires_payment_method" and intent.error_code)
    if failed or expired:
        reason = "authentication failed" if intent.error_code == FAILED_AUTH else (
            intent.error_message or ("hold expired" if expired else intent.status))
        release(payment, booking, reason=reason,
                state=PaymentState.FAILED if failed and not expired else PaymentState.CANCELLED, now=now)
        return "released"
    return "waiting"


def _slot_free_for(booking: Booking, now: datetime) -> bool:
    """Whether a late payment may still have its slot; if so, other holds that ran out are retired.

    The database's overlap rule still counts a held row past its expiry, so
    confirming over another resident's lapsed hold would be refused there.
    The caller holds the room lock.
    """
    others = overlapping(booking.room_id, booking.start_at, booking.end_at), Booking.id != booking.id
    if db.session.scalar(select(Booking.id).where(*others, active_clause(now)).limit(1)) is not None:
        return False
    lapsed = db.session.scalars(
        select(Booking).where(*others, lapsed_hold_clause(now))
    ).all()
    for other in lapsed:
        other.transition(BookingState.EXPIRED, reason="retired by a late payment for the slot")
    return True


def _settle_paid(payment: Payment, booking: Booking, intent: IntentView, now: datetime) -> str:
    gateway = get_gateway()
    # place_hold retires lapsed holds under the room lock, possibly while we
    # asked the provider: take that lock and read the booking again, so a hold
    # retired meanwhile is seen as late, and one we confirm is never retired.
    lock_room(booking.room_id)
    db.session.get(Booking, booking.id, populate_existing=True)
    ours = booking.state == BookingState.CONFIRMED or booking.hold_is_live(now)
    late = not ours
    if late and (booking.state not in (BookingState.HELD, BookingState.EXPIRED) or not _slot_free_for(booking, now)):
        return _return_late_payment(payment, booking, intent, now)
    if intent.status == "requires_capture":
        intent = gateway.capture(intent.id, payment_id=payment.id)
    _record_capture(payment, intent)
    if booking.state != BookingState.CONFIRMED:
        booking.transition(BookingState.CONFIRMED, reason="paid after the hold ran out" if late else "paid")
    issue_receipt(booking, now=now)
    return "confirmed"


def _record_capture(payment: Payment, intent: IntentView) -> None:
    if payment.state == PaymentState.CAPTURED:
        return
    payment.captured_amount = intent.amount
    payment.transition(PaymentState.CAPTURED, reason="captured")
    map_provider_id(intent.charge_id, "charge", payment)
    db.session.add(LedgerEntry(payment_id=payment.id, kind="capture", amount=intent.amount,
                               reference=intent.charge_id or intent.id))


def _return_late_payment(payment: Payment, booking: Booking, intent: IntentView, now: datetime) -> str:
    """The money came after the slot went to someone else: give it all back."""
    from .refunds import refund  # refunds builds on this module; imported here to avoid the cycle

    captured = intent.status != "requires_capture"
    if captured:
        _record_capture(payment, intent)
    else:
        get_gateway().cancel(intent.id, payment_id=payment.id)  # releasing an authorisation costs nothing
        payment.transition(PaymentState.CANCELLED, reason="authorised after the slot was taken; released")
    if booking.state == BookingState.HELD:
        booking.transition(BookingState.EXPIRED, reason="paid after the hold ran out; slot taken")
    db.session.add(AttentionCase(booking_id=booking.id, reason="paid_after_slot_taken",
                                 detail=f"intent {intent.id}: {intent.amount} yen returned to the resident"))
    # Last, because refund() commits before it asks the provider: the capture,
    # the expired booking and the staff case become durable with the pending
    # refund, never a captured payment on a booking still held.
    if captured and payment.refundable:
        refund(payment, payment.refundable, reason="slot_taken")
    after_commit(_late_payment_mail(booking))
    return "refunded"


def release(payment: Payment, booking: Booking, *, reason: str, state: PaymentState, now: datetime) -> None:
    """No money moves: cancel the intent if it can still be charged, and free the slot."""
    if payment.intent_id:
        try:
            get_gateway().cancel(payment.intent_id, payment_id=payment.id)
        except GatewayError:
            # Already canceled or failed at the provider; an uncaptured intent can't be charged by us.
            current_app.logger.info("intent %s not cancelable", payment.intent_id)
    if payment.can_become(state):
        payment.transition(state, reason=reason)
    if booking.state == BookingState.HELD:
        target = BookingState.EXPIRED if booking.hold_expires_at <= now else BookingState.CANCELLED
        booking.transition(target, reason=reason)


def _late_payment_mail(booking: Booking):
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Your payment was returned: the slot had been taken")
        body = render_template("bookings/late_payment_mail.txt", booking=booking)
    return partial(send_mail, booking.user.email, subject, body)


def payment_for_intent(intent_id: str) -> Payment | None:
    mapped = db.session.get(ProviderObject, intent_id)
    return db.session.get(Payment, mapped.payment_id) if mapped else None
