"""Cashless checkout: a hold is paid by card, and one locked function settles it.

Confirmation arrives by the webhook, by the resident's browser, and by the
expiry job. All three call `settle`, which locks our payment row, asks the
provider for the intent's real state, and acts on that alone, so a second call
is a no-op and a failure never overwrites a success.

Cards are authorised when the resident pays and captured when the booking is
confirmed (capture_method=manual). The decision is committed first, under the
room lock; the capture is asked of the provider after that commit, never while
the room is locked. A crash in between leaves a confirmed booking whose payment
is authorised, which the job `capture_confirmed_authorisations` captures.

A payment that arrives after its hold ran out confirms the booking if the
slot is still free; otherwise the authorisation is released (or a captured
charge refunded), the resident is told, and staff get an attention case. A
payment that arrives after a booking's payment deadline (pay_mode "deadline")
is always returned so, free slot or not.
"""
from datetime import datetime, timedelta
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from sqlalchemy import and_, select

from ..aftercommit import after_commit
from ..extensions import db
from ..i18n import gettext as _
from ..mail import send_mail
from ..models import (
    AttentionCase,
    Booking,
    BookingState,
    Payment,
    PaymentState,
    ProviderObject,
    record,
)
from ..payments import CardDeclined, GatewayError, IntentView, get_gateway
from ..timeutil import now_utc
from . import ledger
from .attention import open_case
from .booking import active_clause, lock_room, overlapping, retire_lapsed_holds
from .deadline import TOLD as DEADLINE_TOLD
from .errors import BookingError
from .exemptions import is_pending
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


def _lock_payment_id(payment_id: int) -> Payment:
    payment = db.session.get(Payment, payment_id, with_for_update=True, populate_existing=True)
    db.session.get(Booking, payment.booking_id, populate_existing=True)
    return payment


def start_checkout(booking: Booking) -> Payment:
    """Open a payment for a held booking (nothing is asked of the provider yet).

    Never while its exemption waits for staff: the amount due is not known until they decide."""
    if is_pending(booking):
        raise BookingError("exemption_pending")
    payment = Payment(booking_id=booking.id, amount=booking.price)
    db.session.add(payment)
    # Written with the next flush, and its entry with it: the id is None until then, and AuditEntry.new_payment
    # gives the entry the payment's id as both are written (a NOT NULL column: never an entry without it).
    record("payment", payment.id, "created", amount=payment.amount, booking_id=booking.id).new_payment = payment
    return payment


PAYABLE = frozenset({PaymentState.NEW, PaymentState.PENDING, PaymentState.FAILED})  # FAILED: try another card


def open_for_payment(payment: Payment, *, now: datetime | None = None) -> IntentView:
    """The intent the payment page shows, once the payment, read under its lock, can still be paid.

    The page read the hold before it took the lock: the expiry job, a booking
    over the lapsed slot or a webhook may have settled it since. Raises
    BookingError("hold_expired") for a payment no longer payable (the hold ran
    out or was released), and "payment_unavailable" as ensure_intent does.
    """
    now = now or now_utc()
    payment = lock_payment(payment)
    if payment.state not in PAYABLE or not payment.booking.hold_is_live(now):
        raise BookingError("hold_expired")
    return ensure_intent(payment, now=now)


def ensure_intent(payment: Payment, *, now: datetime | None = None) -> IntentView:
    """The payment's provider intent, created on first use, and only for a live hold.

    Raises BookingError("payment_unavailable") when the provider cannot be
    reached: the hold stays, nothing is charged, and the page can try again.
    Raises BookingError("hold_expired") when there is no intent yet and, read
    under the lock, the hold has run out or its payment was cancelled meanwhile.
    """
    now = now or now_utc()
    payment = lock_payment(payment)  # two tabs must not open two intents for one payment
    if not payment.intent_id and not (payment.state == PaymentState.NEW and payment.booking.hold_is_live(now)):
        raise BookingError("hold_expired")  # e.g. the expiry job released it since the caller read it
    gateway = get_gateway()
    try:
        if payment.intent_id:
            return gateway.retrieve_intent(payment.intent_id)
        booking = payment.booking
        intent = gateway.create_intent(amount=payment.amount, booking_id=booking.id, payment_id=payment.id,
                                       payment_key=payment.idempotency_key,
                                       description=f"{booking.room.building.name} {booking.room.name}")
    except GatewayError as exc:
        raise BookingError("payment_unavailable") from exc
    payment.intent_id = intent.id
    map_provider_id(intent.id, "intent", payment)
    payment.transition(PaymentState.PENDING, reason="intent created")
    return intent


def pay(payment: Payment, *, token: str, now: datetime | None = None) -> tuple[str, IntentView | None]:
    """Pay a held booking with a card token (from Stripe.js).

    Returns ("confirmed", intent) or ("requires_action", intent) for a 3-D
    Secure challenge the page must run. Raises BookingError when the hold has
    run out (nothing is charged), the card is declined (the hold is released,
    or kept when the provider could not be asked to release it), or the
    provider is unreachable (nothing is lost; try again).
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
    intent = ensure_intent(payment, now=now)
    if intent.status in PAID or intent.status == "processing":
        return settle(payment, now=now), intent
    if intent.status == "requires_action":
        return "requires_action", intent
    if not booking.hold_is_live(now):
        raise BookingError("hold_expired")
    gateway = get_gateway()
    try:
        intent = gateway.confirm_with_token(intent.id, token, payment_key=payment.idempotency_key)
    except CardDeclined as exc:
        payment.failure_message = exc.message
        reason = f"card declined: {exc.code}"
        if booking.pay_mode == "deadline":
            # Reserved until its deadline: a declined card costs the resident nothing, the slot included.
            # The intent stays open for another card; the deadline job releases it if none comes.
            payment.transition(PaymentState.FAILED, reason=reason)
            raise BookingError("card_declined_deadline_kept") from exc
        try:
            release(payment, booking, reason=reason, state=PaymentState.FAILED, now=now)
        except GatewayError as unreachable:
            # The provider could not be asked to cancel the intent: the hold stays until it
            # answers (the expiry job asks again), and meanwhile another card may be tried.
            payment.transition(PaymentState.FAILED, reason=reason)
            raise BookingError("card_declined_hold_kept") from unreachable
        raise BookingError("card_declined") from exc
    except GatewayError as exc:
        raise BookingError("payment_unavailable") from exc
    if intent.status == "requires_action":
        return "requires_action", intent
    return settle(payment, now=now, intent=intent), intent


def settle(payment: Payment, *, now: datetime | None = None, intent: IntentView | None = None) -> str:
    """The one confirm function: bring our records in line with the provider's intent.

    Returns "confirmed", "refunded" (paid after the slot was taken), "released"
    (failed, abandoned or expired: nothing charged), "failed_kept" (the card failed on a
    booking reserved until its payment deadline, which stays reserved), "cancelled" (paid,
    then cancelled by the resident) or "waiting". Safe to call any number of times,
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
    if payment.state == PaymentState.AUTHORIZED and booking.state == BookingState.CONFIRMED:
        # Confirmed with the capture to follow, and the provider no longer holds the
        # authorisation (it lapsed, or was cancelled at the provider): a person decides.
        return _capture_refused(payment, intent)
    if payment.state in (PaymentState.FAILED, PaymentState.CANCELLED) and booking.state != BookingState.HELD:
        return "released"  # released before; a late failure event has nothing left to do
    if intent.status == "processing":
        return "waiting"
    failed = intent.status == "canceled" or (intent.status == "requires_payment_method" and intent.error_code)
    if failed and not expired and booking.pay_mode == "deadline" and intent.status != "canceled":
        # A failed card check on a booking reserved until its deadline: the booking stays, and so does the
        # intent, for another card (as after a declined card in `pay`).
        if payment.state != PaymentState.FAILED:
            payment.transition(PaymentState.FAILED, reason=intent.error_message or "authentication failed")
        return "failed_kept"
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
    others = and_(overlapping(booking.room_id, booking.start_at, booking.end_at), Booking.id != booking.id)
    if db.session.scalar(select(Booking.id).where(others, active_clause(now)).limit(1)) is not None:
        return False
    # Locked as place_hold locks them: the expiry job may be releasing one of them right now.
    retire_lapsed_holds(others, now, reason="retired by a late payment for the slot")
    db.session.flush()  # retired before our booking is confirmed over them, or the overlap rule refuses it
    return True


def _settle_paid(payment: Payment, booking: Booking, intent: IntentView, now: datetime) -> str:
    # place_hold retires lapsed holds under the room lock, possibly while we
    # asked the provider: take that lock and read the booking again, so a hold
    # retired meanwhile is seen as late, and one we confirm is never retired.
    lock_room(booking.room_id)
    db.session.get(Booking, booking.id, populate_existing=True)
    ours = booking.state == BookingState.CONFIRMED or booking.hold_is_live(now)
    late = not ours
    # A booking to be paid by a deadline was the resident's for days: a payment after the deadline is
    # always returned, even to a free slot (the deadline is the rule, and its slot was open to all).
    if late and (booking.pay_mode == "deadline" or booking.state not in (BookingState.HELD, BookingState.EXPIRED)
                 or not _slot_free_for(booking, now)):
        return _return_late_payment(payment, booking, intent, now)
    if booking.state != BookingState.CONFIRMED:
        booking.transition(BookingState.CONFIRMED, reason="paid after the hold ran out" if late else "paid")
    if intent.status == "succeeded":
        # Captured already: by us before a crash, or at the provider. Nothing to ask.
        record_capture(payment, intent, now=now)
        issue_receipt(booking, now=now, amount=payment.amount)
        return "confirmed"
    # The slot is ours: commit that decision, and let go of the room lock, before the
    # provider is asked to capture. Other residents' holds on the room never wait on it.
    payment.transition(PaymentState.AUTHORIZED, reason="authorised; booking confirmed, capture to follow")
    # Read before the commit: touching the expired row after it would begin a transaction (on
    # SQLite, one that takes the write lock) and hold it while the provider answers.
    ref = payment.id, payment.intent_id, payment.idempotency_key
    db.session.commit()
    return _capture(*ref, now=now)


def capture_authorised(payment: Payment, *, now: datetime | None = None) -> str:
    """Capture the authorisation of a confirmed booking, and record it once; returns what happened.

    Called after the confirmation was committed, without any lock held while the
    provider answers: the capture carries the payment's idempotency key, and the
    result is recorded under the payment's lock only if nobody recorded it meanwhile.
    A provider that cannot be reached leaves the payment authorised for
    `capture_confirmed_authorisations`: the booking stays confirmed.
    """
    return _capture(payment.id, payment.intent_id, payment.idempotency_key, now=now or now_utc())


def _capture(payment_id: int, intent_id: str, key: str, *, now: datetime, postponed: str = "confirmed") -> str:
    gateway = get_gateway()
    try:
        intent = gateway.capture(intent_id, payment_key=key)
    except GatewayError as exc:
        if exc.transient:
            current_app.logger.warning("capture of payment %s postponed: %s", payment_id, exc.code)
            return postponed
        intent = gateway.retrieve_intent(intent_id)  # e.g. captured already, or the authorisation lapsed
        if intent.status != "succeeded":
            payment = _lock_payment_id(payment_id)
            return _capture_refused(payment, intent, error=exc.code) if payment.state == PaymentState.AUTHORIZED \
                else "confirmed"
    payment = _lock_payment_id(payment_id)
    if payment.state == PaymentState.AUTHORIZED:
        record_capture(payment, intent, now=now)
        issue_receipt(payment.booking, now=now, amount=payment.amount)
    return "confirmed"


def _capture_refused(payment: Payment, intent: IntentView, *, error: str = "") -> str:
    """A confirmed booking whose money the provider will not let us take: staff decide (once)."""
    if intent.status == "canceled":
        payment.transition(PaymentState.CANCELLED, reason=f"capture refused: the authorisation is {intent.status}")
    already = db.session.scalar(select(AttentionCase.id).where(
        AttentionCase.payment_id == payment.id, AttentionCase.reason == "capture_failed",
        AttentionCase.resolved_at.is_(None)))
    if already is None:
        open_case(payment, "capture_failed", f"intent {intent.id}: {intent.status} {error}".strip())
    return "capture_failed"


def capture_confirmed_authorisations(*, now: datetime | None = None, older_than: timedelta = timedelta(minutes=1),
                                     batch: int = 100) -> dict[str, int]:
    """The job that finishes captures: confirmed bookings whose payment is still only authorised.

    That is a crash, or a provider that could not be reached, between committing
    the confirmation and the capture. Those decided less than `older_than` ago are
    left alone: their own request may still be capturing. Rows are claimed with
    SKIP LOCKED, each payment once per run.

    A claim is judged on the rows as they are once locked (see _claim_capture),
    and then stamped (updated_at) and committed before the provider is asked, so
    that no lock is held while it answers and another run, which passes by
    payments touched less than `older_than` ago, leaves this one alone: a
    capture is asked for, and counted, by one run only.
    """
    now = now or now_utc()
    counts: dict[str, int] = {}
    tried: set[int] = set()
    for _i in range(batch):
        claimed = _claim_capture(now, older_than, tried)
        if claimed is None:
            break
        try:
            outcome = _finish_capture(*claimed, now=now)
            db.session.commit()
        except GatewayError:  # e.g. asking how a refused capture stands: the next run tries again
            db.session.rollback()
            outcome = "provider_unreachable"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _finish_capture(payment_id: int, intent_id: str, key: str, *, now: datetime) -> str:
    """Capture a claimed authorisation, as the provider's intent allows; no lock is held while it answers."""
    intent = get_gateway().retrieve_intent(intent_id)
    if intent.status == "requires_capture":
        return _capture(payment_id, intent_id, key, now=now, postponed="provider_unreachable")
    payment = _lock_payment_id(payment_id)
    if payment.state != PaymentState.AUTHORIZED:
        return "confirmed"  # recorded meanwhile (a webhook)
    if intent.status == "succeeded":  # captured before a crash, or at the provider
        record_capture(payment, intent, now=now)
        issue_receipt(payment.booking, now=now, amount=payment.amount)
        return "confirmed"
    return _capture_refused(payment, intent)  # the authorisation lapsed or was cancelled: a person decides


def _claim_capture(now: datetime, older_than: timedelta, tried: set[int]) -> tuple[int, str, str] | None:
    """Lock the next payment still to capture that no other run holds; stamp it, commit, and return its reference.

    PostgreSQL re-checks a row it had to wait for or found changed, but only the
    locked row (the payment), not the booking it was joined to, which is read as
    of the statement's start. So both are read again now that the payment is
    ours, and one that no longer needs a capture (captured, released, its
    booking cancelled meanwhile) is let go without a count.
    """
    while True:
        query = (
            select(Payment).join(Booking, Payment.booking_id == Booking.id)
            .where(Payment.state == PaymentState.AUTHORIZED, Booking.state == BookingState.CONFIRMED,
                   Payment.updated_at <= now - older_than)
            .order_by(Payment.id).limit(1).with_for_update(skip_locked=True, of=Payment)
        )
        payment = db.session.scalar(query.where(Payment.id.not_in(tried)) if tried else query)
        if payment is None:
            db.session.rollback()
            return None
        tried.add(payment.id)
        payment = _lock_payment_id(payment.id)
        if (payment.state == PaymentState.AUTHORIZED and payment.booking.state == BookingState.CONFIRMED
                and payment.updated_at <= now - older_than):
            payment.updated_at = now  # claimed: another run's query now passes it by
            ref = payment.id, payment.intent_id, payment.idempotency_key
            db.session.commit()
            return ref
        db.session.rollback()  # settled by someone else meanwhile: theirs to count


def record_capture(payment: Payment, intent: IntentView, *, now: datetime) -> None:
    """The money is ours: what the provider says it received, which a partial capture makes less than the price."""
    if payment.state == PaymentState.CAPTURED:
        return
    payment.captured_amount = intent.amount_received
    payment.transition(PaymentState.CAPTURED, reason="captured")
    map_provider_id(intent.charge_id, "charge", payment)
    ledger.post(payment, "capture", intent.amount_received, intent.charge_id or intent.id, at=now,
                charge_id=intent.charge_id, balance_transaction_id=intent.balance_transaction_id)


def _return_late_payment(payment: Payment, booking: Booking, intent: IntentView, now: datetime) -> str:
    """The money came after the slot went to someone else, or after the booking's payment deadline: give it all back.

    A deadline booking still held is cancelled, as the expiry job cancels one left
    unpaid at its deadline ("paid_after_deadline" case; the resident counts as told).
    """
    from .refunds import refund  # refunds builds on this module; imported here to avoid the cycle

    by_deadline = booking.pay_mode == "deadline"
    captured = intent.status != "requires_capture"
    if captured:
        record_capture(payment, intent, now=now)
    else:
        get_gateway().cancel(intent.id, payment_key=payment.idempotency_key)  # releasing an authorisation is free
        payment.transition(PaymentState.CANCELLED, reason="authorised after the payment deadline; released"
                           if by_deadline else "authorised after the slot was taken; released")
    if booking.state == BookingState.HELD:
        if by_deadline:
            booking.transition(BookingState.CANCELLED, reason="paid after the payment deadline")
        else:
            booking.transition(BookingState.EXPIRED, reason="paid after the hold ran out; slot taken")
    if by_deadline:
        open_case(payment, "paid_after_deadline", f"intent {intent.id}: {intent.amount} yen returned to the resident")
        record("booking", booking.id, DEADLINE_TOLD, reason="paid after the payment deadline; returned")
    else:
        open_case(payment, "paid_after_slot_taken",
                  f"intent {intent.id}: {intent.amount} yen returned to the resident")
    # Last, because refund() commits before it asks the provider: the capture,
    # the expired booking and the staff case become durable with the pending
    # refund, never a captured payment on a booking still held.
    if captured and payment.refundable:
        refund(payment, payment.refundable, reason="slot_taken")
    after_commit(_late_payment_mail(booking))
    return "refunded"


def release(payment: Payment, booking: Booking, *, reason: str, state: PaymentState, now: datetime) -> None:
    """No money moves: cancel the intent if it can still be charged, and free the slot.

    Raises a transient GatewayError when the provider cannot answer: the hold then
    stays until it does, since an intent we could not cancel might still be paid.
    A permanent refusal (already cancelled, or no longer cancellable) is fine: if
    money did arrive, settle finds it from the provider's intent and returns it.
    """
    if payment.intent_id:
        try:
            get_gateway().cancel(payment.intent_id, payment_key=payment.idempotency_key)
        except GatewayError as exc:
            if exc.transient:
                raise
            current_app.logger.info("intent %s not cancellable: %s", payment.intent_id, exc.code)
    if payment.can_become(state):
        payment.transition(state, reason=reason)
    # Read again under the booking's lock (after the payment's, the order used everywhere): while we
    # asked the provider, place_hold or a late payment for the slot may have retired this hold.
    booking = db.session.get(Booking, booking.id, with_for_update=True, populate_existing=True)
    if booking.state == BookingState.HELD:
        target = BookingState.EXPIRED if booking.hold_expires_at <= now else BookingState.CANCELLED
        booking.transition(target, reason=reason)


def _late_payment_mail(booking: Booking):
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        if booking.pay_mode == "deadline":
            subject = _("Your payment was returned: it arrived after the payment deadline")
            body = render_template("bookings/late_deadline_payment_mail.txt", booking=booking)
        else:
            subject = _("Your payment was returned: the slot had been taken")
            body = render_template("bookings/late_payment_mail.txt", booking=booking)
    return partial(send_mail, booking.user.email, subject, body)


def payment_for_provider_id(provider_id: str) -> Payment | None:
    """Our payment that a provider id (pi_, ch_, re_) belongs to, if we know it (see map_provider_id)."""
    mapped = db.session.get(ProviderObject, provider_id)
    return db.session.get(Payment, mapped.payment_id) if mapped else None


def payment_of(*provider_ids: str | None) -> Payment | None:
    """The payment of the first of these provider ids that we know (an event names several: dispute, charge, intent)."""
    return next((p for i in provider_ids if i and (p := payment_for_provider_id(i)) is not None), None)
