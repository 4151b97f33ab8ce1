"""Provider events: stored once, then acted on from the provider's current state."""
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import LedgerEntry, Payment, ProviderObject, Refund, RefundState, WebhookEvent, record
from ..payments import WebhookEventView, get_gateway
from .checkout import lock_payment, map_provider_id, payment_for_intent, settle
from .refunds import record_sent

HANDLED = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    "charge.refunded",
}


def handle_event(event: WebhookEventView) -> str:
    """Record the event id (a duplicate is a no-op) and act on it; returns what happened.

    Events may arrive late, twice or out of order: we never trust the event's
    copy of the object and re-fetch it, so order does not matter.
    """
    db.session.add(WebhookEvent(id=event.id, type=event.type, payload=event.payload))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    if event.type not in HANDLED:
        return "ignored"
    if event.type.startswith("payment_intent."):
        payment = payment_for_intent(event.object_id)
        return settle(payment) if payment else "unknown payment"
    return _sync_refunds(event.object_id)


def _sync_refunds(charge_id: str) -> str:
    """A refund made at the provider (e.g. from its dashboard) is recorded here too."""
    mapped = db.session.get(ProviderObject, charge_id)
    if mapped is None:
        return "unknown payment"
    payment = lock_payment(db.session.get(Payment, mapped.payment_id))
    ours = {r.id: r for r in db.session.scalars(select(Refund).where(Refund.payment_id == payment.id))}
    known = {r.provider_refund_id for r in ours.values()}
    added = 0
    for view in get_gateway().list_refunds(charge_id):
        if view.id in known or view.status not in ("succeeded", "pending"):
            continue
        if view.refund_id in ours:
            # One we asked for whose answer we never recorded (we crashed, or
            # this event outran us): complete it rather than count it twice.
            if ours[view.refund_id].state == RefundState.PENDING:
                record_sent(ours[view.refund_id], view)
                added += 1
            continue
        amount = min(view.amount, payment.refundable)
        if amount <= 0:
            continue
        db.session.add(Refund(payment_id=payment.id, amount=amount, partial=amount < payment.captured_amount,
                              reason="provider", state=RefundState.SUCCEEDED, provider_refund_id=view.id))
        payment.refunded_amount += amount
        map_provider_id(view.id, "refund", payment)
        db.session.add(LedgerEntry(payment_id=payment.id, kind="refund", amount=amount, reference=view.id))
        record("payment", payment.id, "refund recorded from the provider", amount=amount, provider_refund_id=view.id)
        added += 1
    return f"{added} refunds recorded"
