"""Refunds: recorded, then sent to the provider, then followed until the provider says how they ended.

(How much a cancellation refunds is services.refund_policy.)

A refund is recorded (pending, and counted against what may still be refunded)
and committed before the provider is asked. Its state then follows the
provider's: `pending` while in transit, `succeeded` when the money went back (the
ledger row is written then, not before), `failed` or `cancelled` when it did not
(the amount may then be refunded again, and staff get a case). A succeeded
refund may still fail later; the provider tells us and we follow.

Sending can fail in two ways (see reservations/payments): a permanent refusal
marks the refund failed at once; a transient one is tried again with backoff
(attempts, next_attempt_at and last_error on the row) by `retry_pending_refunds`,
up to REFUND_MAX_ATTEMPTS, then staff get a case and the amount stays reserved,
since a request that timed out may have gone through. Every attempt carries the
refund's own idempotency key, so money is never refunded twice nor lost from view.
"""
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import BookingState, Payment, PaymentState, Refund, RefundState, record
from ..models.payment import REFUND_TRANSITIONS
from ..payments import GatewayError, RefundView, get_gateway
from ..timeutil import now_utc
from . import ledger
from .attention import open_case
from .checkout import capture_authorised, lock_payment, map_provider_id
from .errors import BookingError

# The provider's words for a refund's state, in ours (requires_action: waiting on the resident's bank).
PROVIDER_STATES = {
    "pending": RefundState.PENDING,
    "requires_action": RefundState.PENDING,
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "canceled": RefundState.CANCELLED,
}
CASES = {RefundState.FAILED: "refund_failed", RefundState.CANCELLED: "refund_cancelled"}


def _setting(name: str) -> int:
    """A refund setting of config.py (REFUND_RETRY_SECONDS, ...), whose defaults live there only."""
    return int(current_app.config[name])


def _backoff(attempts: int) -> timedelta:
    """The wait before the next attempt: REFUND_RETRY_SECONDS, doubling, at most REFUND_RETRY_MAX_SECONDS."""
    base = _setting("REFUND_RETRY_SECONDS")
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), _setting("REFUND_RETRY_MAX_SECONDS")))


def refund(payment: Payment, amount: int, *, reason: str, actor_id: int | None = None,
           now: datetime | None = None) -> Refund:
    """Record a refund of `amount` yen and ask the provider for it.

    Refuses more than what was captured and not yet refunded nor withdrawn by a
    dispute: localstripe would accept it, and so, for some errors, would a person.
    """
    now = now or now_utc()
    # Checked and counted under the payment's row lock: two refunds at once
    # would otherwise both see the same refundable amount, and the second
    # write would overwrite the first while both went to the provider.
    payment = lock_payment(payment)
    if payment.state == PaymentState.AUTHORIZED and payment.booking.state == BookingState.CONFIRMED:
        # Confirmed a moment ago and its capture not yet recorded: capture first, then refund from it.
        if capture_authorised(payment, now=now) != "confirmed" or payment.state != PaymentState.CAPTURED:
            raise BookingError("payment_unavailable")
    if amount <= 0 or amount > payment.refundable:
        raise BookingError("over_refund", refundable=payment.refundable)
    if payment.provider != "stripe":
        return _refund_at_counter(payment, amount, reason=reason, actor_id=actor_id, now=now)
    # Due for the retry job from the start: if this request dies before the provider answers, the job sends it.
    item = Refund(payment_id=payment.id, amount=amount, partial=amount < payment.captured_amount, reason=reason,
                  next_attempt_at=now + _backoff(1))
    payment.refunded_amount += amount
    db.session.add(item)
    db.session.flush()
    record("payment", payment.id, "refund requested", actor_id=actor_id, amount=amount, refund_id=item.id,
           reason=reason)
    # Durable before the provider moves money (see the module docstring).
    db.session.commit()
    send_refund(item, now=now)
    return item


def _refund_at_counter(payment: Payment, amount: int, *, reason: str, actor_id: int | None,
                       now: datetime) -> Refund:
    """A cash or terminal payment is refunded by staff at the counter, not through the provider:
    paid out in cash, or back to the card on the terminal. It is final when recorded, with its ledger row.
    """
    item = Refund(payment_id=payment.id, amount=amount, partial=amount < payment.captured_amount, reason=reason,
                  state=RefundState.SUCCEEDED, next_attempt_at=None)
    payment.refunded_amount += amount
    db.session.add(item)
    db.session.flush()
    ledger.post(payment, "refund", amount, f"counter-refund-{item.id}", at=now)
    record("payment", payment.id, "refund paid out at the counter", actor_id=actor_id, amount=amount,
           refund_id=item.id, reason=reason, method=payment.provider)
    db.session.flush()
    return item


def send_refund(item: Refund, *, now: datetime | None = None, due_only: bool = False) -> None:
    """Ask the provider for a pending refund of ours: send it, or, once sent, ask how it is going.

    Under the payment's lock, and only while the refund is still pending (and,
    for the job, still due): the retry job, a second run of it, and the
    provider's events (which may outrun our own recording) never send or record it twice.
    """
    now = now or now_utc()
    payment = lock_payment(item.payment)
    db.session.get(Refund, item.id, populate_existing=True)
    if item.state != RefundState.PENDING:
        return
    if due_only and (item.next_attempt_at is None or item.next_attempt_at > now):
        return  # a concurrent run, or an event, dealt with it meanwhile
    gateway = get_gateway()
    if item.sent:
        # In transit at the provider: its events normally tell us; this is for the one we missed.
        try:
            record_sent(item, gateway.retrieve_refund(item.provider_refund_id), now=now)
        except GatewayError as exc:
            item.last_error = _describe(exc)
            item.next_attempt_at = now + timedelta(seconds=_setting("REFUND_POLL_SECONDS"))
        return
    item.attempts += 1
    try:
        view = gateway.refund(payment.intent_id, item.amount, refund_id=item.id, refund_key=item.idempotency_key,
                              reason=item.reason)
    except GatewayError as exc:
        _attempt_failed(item, exc, now)
        return
    record_sent(item, view, now=now)


def _describe(exc: GatewayError) -> str:
    return f"{exc.code}: {exc.message}"[:500]


def _attempt_failed(item: Refund, exc: GatewayError, now: datetime) -> None:
    payment = item.payment
    item.last_error = _describe(exc)
    current_app.logger.warning("refund %s attempt %s failed (%s): %s", item.id, item.attempts,
                               "transient" if exc.transient else "permanent", item.last_error)
    if not exc.transient:
        apply_provider_state(item, "failed", why=item.last_error)
        return
    if item.attempts >= _setting("REFUND_MAX_ATTEMPTS"):
        # Given up on by itself; still reserved, since a timed-out request may have gone through.
        item.next_attempt_at = None
        record("payment", payment.id, "refund retries exhausted", refund_id=item.id, attempts=item.attempts)
        open_case(payment, "refund_retries_exhausted",
                  f"refund #{item.id}, {item.amount} yen, {item.attempts} attempts: {item.last_error}", refund=item)
        return
    item.next_attempt_at = now + _backoff(item.attempts)


def record_sent(item: Refund, view: RefundView, *, now: datetime | None = None) -> None:
    """Record the provider's answer to a refund of ours (its id, and its state as the provider says)."""
    payment = item.payment
    if item.provider_refund_id is None:
        item.provider_refund_id = view.id
        map_provider_id(view.id, "refund", payment)
        record("payment", payment.id, "refund sent", refund_id=item.id, provider_refund_id=view.id)
    apply_provider_state(item, view.status, why=view.failure_reason, now=now,
                         balance_transaction_id=view.balance_transaction_id)
    if item.state == RefundState.PENDING:
        item.next_attempt_at = (now or now_utc()) + timedelta(seconds=_setting("REFUND_POLL_SECONDS"))


def apply_provider_state(item: Refund, status: str, *, why: str = "", now: datetime | None = None,
                         balance_transaction_id: str | None = None) -> bool:
    """Follow the provider's state for a refund; returns whether anything changed.

    Money: succeeded writes the ledger row; failed or cancelled gives the amount
    back to what may be refunded (and reverses the ledger if it had succeeded)
    and opens a staff case. A stale state (pending after succeeded) changes nothing.
    The caller holds the payment's lock.
    """
    target = PROVIDER_STATES.get(status)
    current = RefundState(item.state)
    if target is None or target == current:
        return False
    if target not in REFUND_TRANSITIONS[current]:
        current_app.logger.info("refund %s: %s -> %s ignored (stale)", item.id, current, target)
        return False
    payment = item.payment
    item.state = target
    if target == RefundState.SUCCEEDED:
        ledger.post(payment, "refund", item.amount, item.provider_refund_id, at=now,
                    provider_refund_id=item.provider_refund_id, balance_transaction_id=balance_transaction_id)
    elif target in CASES:
        payment.refunded_amount -= item.amount
        if current == RefundState.SUCCEEDED:
            ledger.post(payment, "refund_reversal", item.amount, item.provider_refund_id, at=now,
                        provider_refund_id=item.provider_refund_id)
        item.last_error = item.last_error or why
        open_case(payment, CASES[target], f"refund #{item.id}, {item.amount} yen: {why or status}", refund=item)
    if target != RefundState.PENDING:
        item.next_attempt_at = None
    record("payment", payment.id, f"refund {target}", refund_id=item.id, provider_refund_id=item.provider_refund_id,
           amount=item.amount, reason=why)
    return True


def retry_pending_refunds(*, now: datetime | None = None, batch: int = 500) -> int:
    """The job: every pending refund whose next attempt is due, one transaction each; returns how many were tried."""
    now = now or now_utc()
    due = db.session.scalars(
        select(Refund.id).where(Refund.state == RefundState.PENDING, Refund.next_attempt_at <= now)
        .order_by(Refund.next_attempt_at).limit(batch)
    ).all()
    db.session.rollback()  # nothing is held while the provider is asked about each
    for refund_id in due:
        # send_refund re-reads it under the payment's lock and skips it if a
        # concurrent run, or the provider's event, has dealt with it meanwhile.
        send_refund(db.session.get(Refund, refund_id), now=now, due_only=True)
        db.session.commit()
    return len(due)


# -- what the provider tells us --------------------------------------------------------------------

def sync_provider_refund(view: RefundView, payment: Payment) -> str:
    """Bring our record of one provider refund in line with it: ours, or one made at the provider.

    The caller holds the payment's lock.
    """
    item = db.session.scalar(select(Refund).where(Refund.provider_refund_id == view.id))
    if item is None and view.refund_key:
        # One we asked for whose answer we never recorded (we crashed, or the event outran us).
        item = db.session.scalar(select(Refund).where(Refund.idempotency_key == view.refund_key,
                                                      Refund.payment_id == payment.id))
    if item is not None:
        was = (item.state, item.provider_refund_id)
        if item.provider_refund_id is None:
            record_sent(item, view)
        else:
            apply_provider_state(item, view.status, why=view.failure_reason,
                                 balance_transaction_id=view.balance_transaction_id)
        return "updated" if (item.state, item.provider_refund_id) != was else "unchanged"
    return "recorded" if _record_external(payment, view) else "unchanged"


def _record_external(payment: Payment, view: RefundView) -> Refund | None:
    """A refund made at the provider (its dashboard), not asked for by us: recorded as "external"."""
    if PROVIDER_STATES.get(view.status) not in (RefundState.PENDING, RefundState.SUCCEEDED):
        return None  # failed or cancelled before we heard of it: no money moved
    amount = min(view.amount, payment.captured_amount - payment.refunded_amount)
    if amount <= 0:
        current_app.logger.warning("refund %s: %s yen at the provider, nothing left to refund on payment %s",
                                   view.id, view.amount, payment.id)
        return None
    item = Refund(payment_id=payment.id, amount=amount, partial=amount < payment.captured_amount, reason="external",
                  state=RefundState.PENDING, provider_refund_id=view.id)
    payment.refunded_amount += amount
    db.session.add(item)
    db.session.flush()
    map_provider_id(view.id, "refund", payment)
    record("payment", payment.id, "refund recorded from the provider", amount=amount, refund_id=item.id,
           provider_refund_id=view.id)
    apply_provider_state(item, view.status, why=view.failure_reason, balance_transaction_id=view.balance_transaction_id)
    if item.state == RefundState.PENDING:
        item.next_attempt_at = now_utc() + timedelta(seconds=_setting("REFUND_POLL_SECONDS"))
    return item
