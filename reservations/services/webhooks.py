"""Provider events: only those we handle are stored, once, then acted on from the provider's current state."""
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, OperationalError

from ..extensions import db
from ..models import Payment, PaymentState, WebhookEvent
from ..payments import GatewayError, WebhookEventView, get_gateway
from ..timeutil import now_utc
from .attention import open_webhook_case
from .checkout import lock_payment, payment_for_provider_id, payment_of, settle
from .disputes import sync_dispute
from .refunds import sync_provider_refund

INTENT_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
}
REFUND_EVENTS = {"charge.refund.updated", "refund.created", "refund.updated", "refund.failed"}
DISPUTE_EVENTS = {
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
}
UNKNOWN = "unknown payment"
HANDLED = INTENT_EVENTS | REFUND_EVENTS | DISPUTE_EVENTS | {"charge.refunded"}


def handle_event(event: WebhookEventView) -> str:
    """Record the event id (a duplicate is a no-op) and act on it; returns what happened.

    Events of a type we do not handle are neither stored nor acted on. Events may
    arrive late, twice or out of order: we never trust the event's copy of the
    object and re-fetch it, so order does not matter (disputes excepted where
    the provider cannot be asked: see services.disputes).

    An event we cannot apply (it names no payment of ours, or applying it failed) opens a
    "webhook_unapplied" case for staff (services.attention.open_webhook_case); it is kept as seen.
    """
    if event.type not in HANDLED:
        return "ignored"
    db.session.add(WebhookEvent(id=event.id, type=event.type, payload=event.payload))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    try:
        outcome = _apply(event)
    except (GatewayError, OperationalError):
        # The provider could not be asked (the endpoint says: retry later), or refused (logged there);
        # or the database could not be reached or locked: nothing is kept, and the provider sends it again.
        raise
    except Exception as exc:  # a bug or a state we cannot follow: a person looks at it, the provider stops sending
        db.session.rollback()
        current_app.logger.exception("webhook %s %s could not be applied", event.id, event.type)
        return _not_applied(event, f"{type(exc).__name__}: {exc}"[:500])
    if outcome == UNKNOWN:
        open_webhook_case(event.id, f"{event.type} {event.object_id}: no payment of ours has this id")
    return outcome


def _apply(event: WebhookEventView) -> str:
    if event.type in INTENT_EVENTS:
        payment = payment_for_provider_id(event.object_id)
        return settle(payment) if payment else UNKNOWN
    if event.type in DISPUTE_EVENTS:
        return sync_dispute(event.object_id, event_type=event.type, event_copy=event.object)
    if event.type in REFUND_EVENTS:
        return _sync_refund(event.object_id, _intent_named(event))
    return _sync_refunds(event.object_id, _intent_named(event))


def _not_applied(event: WebhookEventView, error: str) -> str:
    """After an error while applying `event` (rolled back): keep the event as seen, so that it is not applied
    half again on a redelivery, and open a case, on the payment's building when the event names one we know."""
    if db.session.get(WebhookEvent, event.id) is None:  # a commit inside the apply may have stored it already
        db.session.add(WebhookEvent(id=event.id, type=event.type, payload=event.payload))
        try:
            db.session.flush()
        except IntegrityError:  # the same event, delivered again meanwhile: that delivery reports it
            db.session.rollback()
            return "duplicate"
    payment = payment_for_provider_id(event.object_id)
    open_webhook_case(event.id, f"{event.type} {event.object_id}: could not be applied ({error})", payment)
    return "not applied"


def _intent_named(event: WebhookEventView) -> str | None:
    """The intent a refund or charge event's object names (its payment_intent): an id, never its state."""
    intent = event.object.get("payment_intent") if isinstance(event.object, dict) else None
    return intent if isinstance(intent, str) and intent.startswith("pi_") else None


def _captured_first(payment: Payment) -> Payment:
    """Our payment, locked; a capture the provider made that we have not recorded yet is recorded first.

    The charge id is mapped when we record the capture. When its answer was lost (a
    timeout, a crash), the capture job or payment_intent.succeeded records it later, and a
    refund's events may come before that: without the capture there is nothing to refund from.
    """
    if payment.state == PaymentState.AUTHORIZED:
        settle(payment)  # the intent succeeded at the provider: recorded, with its charge id
    return lock_payment(payment)


def _sync_refund(refund_id: str, intent_id: str | None = None) -> str:
    """One refund changed at the provider (pending → succeeded, → failed, cancelled): follow it."""
    view = get_gateway().retrieve_refund(refund_id)
    payment = payment_of(view.id, view.charge_id, intent_id)
    if payment is None:
        return UNKNOWN
    return f"refund {sync_provider_refund(view, _captured_first(payment))}"


def _sync_refunds(charge_id: str, intent_id: str | None = None) -> str:
    """charge.refunded: every refund of the charge, including one made in the provider's dashboard."""
    payment = payment_of(charge_id, intent_id)
    if payment is None:
        return UNKNOWN
    payment = _captured_first(payment)
    outcomes = [sync_provider_refund(view, payment) for view in get_gateway().list_refunds(charge_id)]
    return f"{sum(o != 'unchanged' for o in outcomes)} refunds recorded"


def prune_webhook_events(*, now: datetime | None = None, days: int | None = None, batch: int = 1000) -> int:
    """The retention job: delete stored events older than WEBHOOK_EVENT_RETENTION_DAYS, in batches; returns how many.

    An event older than that is past any redelivery by the provider (Stripe retries
    for three days), so its id no longer guards against acting on it twice.
    """
    now = now or now_utc()
    days = days if days is not None else int(current_app.config.get("WEBHOOK_EVENT_RETENTION_DAYS", 90))
    cutoff = now - timedelta(days=days)
    deleted = 0
    while True:
        ids = db.session.scalars(
            select(WebhookEvent.id).where(WebhookEvent.received_at < cutoff).order_by(WebhookEvent.received_at)
            .limit(batch)
        ).all()
        if not ids:
            return deleted
        db.session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
        db.session.commit()  # one batch at a time: never one huge transaction
        deleted += len(ids)
