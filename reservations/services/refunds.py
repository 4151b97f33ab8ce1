"""Refunds: recorded, then sent to the provider (the policy that decides how much is services.refund_policy).

A refund is recorded (pending, and counted against what may still be refunded)
and committed before the provider is asked, then marked succeeded. A crash in
between leaves a pending refund that `retry_pending_refunds` sends again with
the same idempotency key, so money is never refunded twice nor lost from view.
"""
from datetime import datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..models import LedgerEntry, Payment, Refund, RefundState, record
from ..payments import GatewayError, RefundView, get_gateway
from ..timeutil import now_utc
from .checkout import lock_payment, map_provider_id
from .errors import BookingError


def refund(payment: Payment, amount: int, *, reason: str, actor_id: int | None = None) -> Refund:
    """Record a refund of `amount` yen and ask the provider for it.

    Refuses more than what was captured and not yet refunded: localstripe
    would accept it, and so, for some errors, would a person.
    """
    # Checked and counted under the payment's row lock: two refunds at once
    # would otherwise both see the same refundable amount, and the second
    # write would overwrite the first while both went to the provider.
    payment = lock_payment(payment)
    if amount <= 0 or amount > payment.refundable:
        raise BookingError("over_refund", refundable=payment.refundable)
    item = Refund(payment_id=payment.id, amount=amount, partial=amount < payment.captured_amount, reason=reason)
    payment.refunded_amount += amount
    db.session.add(item)
    db.session.flush()
    record("payment", payment.id, "refund requested", actor_id=actor_id, amount=amount, refund_id=item.id,
           reason=reason)
    # Durable before the provider moves money (see the module docstring).
    db.session.commit()
    send_refund(item)
    return item


def send_refund(item: Refund) -> None:
    """Ask the provider for a recorded refund; on failure it stays pending for the retry job.

    Under the payment's lock, and only while the refund is still pending: the
    retry job, a second run of it, and the provider's charge.refunded event
    (which may outrun our own recording) never send or record it twice.
    """
    payment = lock_payment(item.payment)
    db.session.get(Refund, item.id, populate_existing=True)
    if item.state != RefundState.PENDING:
        return
    try:
        view = get_gateway().refund(payment.intent_id, item.amount, refund_id=item.id, reason=item.reason)
    except GatewayError:
        return
    record_sent(item, view)


def record_sent(item: Refund, view: RefundView) -> None:
    """Record the provider's answer to a pending refund of ours."""
    payment = item.payment
    item.provider_refund_id = view.id
    item.state = RefundState.SUCCEEDED if view.status in ("succeeded", "pending") else RefundState.FAILED
    if item.state == RefundState.FAILED:
        payment.refunded_amount -= item.amount
    else:
        map_provider_id(view.id, "refund", payment)
        db.session.add(LedgerEntry(payment_id=payment.id, kind="refund", amount=item.amount, reference=view.id))
    record("payment", payment.id, f"refund {item.state}", refund_id=item.id, provider_refund_id=view.id)


def retry_pending_refunds(*, now: datetime | None = None, older_than: timedelta = timedelta(minutes=1)) -> int:
    """Send again the refunds still pending after `older_than`, one transaction each; returns how many were tried."""
    now = now or now_utc()
    pending = db.session.scalars(
        select(Refund).where(Refund.state == RefundState.PENDING, Refund.created_at <= now - older_than)
        .order_by(Refund.id)
    ).all()
    for item in pending:
        # send_refund re-reads it under the payment's lock and skips it if a
        # concurrent run, or the provider's event, has recorded it meanwhile.
        send_refund(item)
        db.session.commit()
    return len(pending)
