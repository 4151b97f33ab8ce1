"""POST /webhooks/stripe: genuine events only, each acted on once, from the provider's current state.

localstripe sends its events about a second late and never again, so the tests
deliver them themselves, signed as Stripe signs them.
"""
import dataclasses
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.jobs import JOBS
from reservations.models import (
    AttentionCase,
    AuditEntry,
    BookingState,
    LedgerEntry,
    Payment,
    PaymentState,
    Receipt,
    Refund,
    RefundState,
    WebhookEvent,
)
from reservations.payments import get_gateway
from reservations.services import checkout, refunds
from reservations.services.errors import BookingError
from reservations.services.webhooks import prune_webhook_events
from reservations.timeutil import now_utc
from tests.helpers import (
    DECLINED_CARD,
    api,
    audit_actions,
    book,
    charge_id,
    count,
    event_payload,
    fetch_intent,
    outbox,
    post_event,
    provider_down,
    signed,
)

pytestmark = pytest.mark.payments


def authorised_behind_our_back(localstripe, booking) -> tuple[dict, dict]:
    """The card was authorised at the provider but our pay request died before settling.

    Returns the intent as it was before the card (a stale copy, as an event
    may carry) and as it is now.
    """
    payment = booking.payment
    checkout.ensure_intent(payment)
    db.session.commit()
    stale = fetch_intent(localstripe, payment.intent_id)
    get_gateway().confirm_with_token(payment.intent_id, localstripe.card_token(),
                                     payment_key=payment.idempotency_key)
    fresh = fetch_intent(localstripe, payment.intent_id)
    assert (stale["status"], fresh["status"]) == ("requires_payment_method", "requires_capture")
    return stale, fresh


def snapshot():
    """Everything an event could change."""
    db.session.expire_all()
    return (
        [(p.id, p.state, p.captured_amount, p.refunded_amount) for p in db.session.scalars(select(Payment))],
        count(AuditEntry), count(LedgerEntry), count(Receipt), count(Refund),
    )


# -- only genuine events ------------------------------------------------------------------------

@pytest.mark.parametrize("forgery", ["wrong secret", "tampered body", "no signature", "garbage signature"])
def test_a_forged_event_is_refused_and_changes_nothing(app, client, localstripe, room, resident, now, forgery):
    booking = book(resident, room, now=now)
    _, fresh = authorised_behind_our_back(localstripe, booking)
    before = snapshot()
    payload = event_payload("payment_intent.succeeded", fresh)
    headers = signed(localstripe.webhook_secret, payload)
    if forgery == "wrong secret":
        headers = signed("whsec_not_ours", payload)
    elif forgery == "tampered body":
        payload = payload.replace('"amount": 2800', '"amount": 1')
    elif forgery == "no signature":
        del headers["Stripe-Signature"]
    else:
        headers["Stripe-Signature"] = "t=abc,v1=zz"

    response = client.post("/webhooks/stripe", data=payload, headers=headers)

    assert response.status_code == 400
    assert count(WebhookEvent) == 0
    assert snapshot() == before
    assert booking.state == BookingState.HELD


@pytest.mark.parametrize("body", ["{not json", '{"id": "evt_1"}', "[]", '"event"',
                                  '{"id": "evt_1", "type": "payment_intent.succeeded", "data": {}}'],
                         ids=["broken-json", "no-data", "a-list", "a-string", "no-object"])
def test_a_correctly_signed_body_that_is_not_an_event_is_a_400_not_a_500(app, client, localstripe, body):
    response = client.post("/webhooks/stripe", data=body, headers=signed(localstripe.webhook_secret, body))
    assert response.status_code == 400
    assert count(WebhookEvent) == 0


# -- acted on from the provider's state ---------------------------------------------------------------

def test_a_succeeded_event_confirms_an_authorised_booking_even_from_a_stale_copy(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    stale, _ = authorised_behind_our_back(localstripe, booking)

    response = post_event(client, localstripe, "payment_intent.succeeded", stale)

    assert response.status_code == 200 and response.json["outcome"] == "confirmed"
    db.session.expire_all()
    assert booking.state == BookingState.CONFIRMED
    assert booking.payment.state == PaymentState.CAPTURED and booking.payment.captured_amount == booking.price
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "succeeded"
    assert count(LedgerEntry) == 1 and count(Receipt) == 1 and len(outbox(app)) == 1


def test_the_same_event_twice_is_acted_on_once(app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    _, fresh = authorised_behind_our_back(localstripe, booking)

    first = post_event(client, localstripe, "payment_intent.succeeded", fresh, event_id="evt_twice")
    after_first = snapshot()
    second = post_event(client, localstripe, "payment_intent.succeeded", fresh, event_id="evt_twice")

    assert first.json["outcome"] == "confirmed"
    assert second.status_code == 200 and second.json["outcome"] == "duplicate"
    assert db.session.scalars(select(WebhookEvent.id)).all() == ["evt_twice"]
    assert snapshot() == after_first
    assert len(outbox(app)) == 1


def test_a_failure_arriving_after_the_success_does_not_undo_the_confirmation(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    stale, fresh = authorised_behind_our_back(localstripe, booking)
    assert post_event(client, localstripe, "payment_intent.succeeded", fresh).json["outcome"] == "confirmed"
    failed_copy = {**stale, "status": "requires_payment_method",
                   "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}
    before = snapshot()

    response = post_event(client, localstripe, "payment_intent.payment_failed", failed_copy)

    assert response.status_code == 200 and response.json["outcome"] == "confirmed"
    assert snapshot() == before
    assert booking.state == BookingState.CONFIRMED and booking.payment.state == PaymentState.CAPTURED


def test_a_success_for_a_payment_the_browser_already_settled_changes_nothing(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    intent = fetch_intent(localstripe, booking.payment.intent_id)
    before = snapshot()

    response = post_event(client, localstripe, "payment_intent.succeeded", intent)

    assert response.status_code == 200 and response.json["outcome"] == "confirmed"
    assert snapshot() == before
    assert len(outbox(app)) == 1


def test_a_failure_event_for_a_declined_and_released_payment_changes_nothing(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    with pytest.raises(BookingError, match="card_declined"):
        checkout.pay(booking.payment, token=localstripe.card_token(DECLINED_CARD), now=now)
    db.session.commit()
    intent = fetch_intent(localstripe, booking.payment.intent_id)
    before = snapshot()

    response = post_event(client, localstripe, "payment_intent.payment_failed", intent)

    assert response.status_code == 200 and response.json["outcome"] == "released"
    assert snapshot() == before
    assert booking.state == BookingState.CANCELLED and booking.payment.state == PaymentState.FAILED


def test_an_event_for_an_intent_we_do_not_know_is_accepted_and_changes_nothing(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    authorised_behind_our_back(localstripe, booking)
    before = snapshot()
    foreign = {"id": "pi_not_ours", "object": "payment_intent", "status": "succeeded", "amount": 500,
               "currency": "jpy", "metadata": {}}

    response = post_event(client, localstripe, "payment_intent.succeeded", foreign)

    assert response.status_code == 200 and response.json["outcome"] == "unknown payment"
    payments, audits, *money = snapshot()
    assert (payments, *money) == (before[0], *before[2:])  # no payment, ledger row, receipt or refund changed
    assert audits == before[1] + 1  # only the staff case it opened (services/attention.open_webhook_case)
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.building_id, case.booking_id) == ("webhook_unapplied", None, None)
    assert booking.state == BookingState.HELD


def test_an_event_of_a_type_we_do_not_handle_is_ignored_and_not_stored(app, client, localstripe):
    response = post_event(client, localstripe, "customer.created", {"id": "cus_1", "object": "customer"})
    assert response.status_code == 200 and response.json["outcome"] == "ignored"
    assert count(WebhookEvent) == 0


def test_an_event_signed_an_hour_ago_is_refused_and_nothing_is_stored(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    _, fresh = authorised_behind_our_back(localstripe, booking)
    before = snapshot()
    payload = event_payload("payment_intent.succeeded", fresh)
    an_hour_ago = int(time.time()) - 3600

    response = client.post("/webhooks/stripe", data=payload,
                           headers=signed(localstripe.webhook_secret, payload, timestamp=an_hour_ago))

    assert response.status_code == 400
    assert count(WebhookEvent) == 0 and snapshot() == before
    assert booking.state == BookingState.HELD
    # Within the 300 s tolerance it is still genuine.
    recent = client.post("/webhooks/stripe", data=payload,
                         headers=signed(localstripe.webhook_secret, payload, timestamp=int(time.time()) - 250))
    assert recent.status_code == 200 and recent.json["outcome"] == "confirmed"


def test_a_body_above_the_limit_is_refused_unread_and_nothing_is_stored(app, client, localstripe):
    limit = app.config["WEBHOOK_MAX_BYTES"]
    assert limit == 256 * 1024
    obj = {"id": "pi_big", "object": "payment_intent", "padding": "x" * limit}
    payload = event_payload("payment_intent.succeeded", obj)

    response = client.post("/webhooks/stripe", data=payload, headers=signed(localstripe.webhook_secret, payload))

    assert response.status_code == 413
    assert count(WebhookEvent) == 0


def test_a_body_nested_thousands_deep_is_a_400_not_a_500(app, client, localstripe):
    payload = "[" * 100_000 + "]" * 100_000
    response = client.post("/webhooks/stripe", data=payload, headers=signed(localstripe.webhook_secret, payload))
    assert response.status_code == 400 and count(WebhookEvent) == 0


def test_an_event_while_the_provider_is_unreachable_asks_for_a_retry_and_is_not_stored(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    _, fresh = authorised_behind_our_back(localstripe, booking)
    with provider_down(app):
        response = post_event(client, localstripe, "payment_intent.succeeded", fresh, event_id="evt_retry")
    assert response.status_code == 503
    assert count(WebhookEvent) == 0 and booking.state == BookingState.HELD

    again = post_event(client, localstripe, "payment_intent.succeeded", fresh, event_id="evt_retry")
    assert again.json["outcome"] == "confirmed"


def test_a_refund_made_at_the_provider_is_recorded_once(app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    charge = charge_id(fetch_intent(localstripe, booking.payment.intent_id))
    made = api(localstripe, "POST", "/v1/refunds", data={"charge": charge, "amount": 1000})
    made.raise_for_status()
    charge_copy = {"id": charge, "object": "charge", "amount": 2800, "amount_refunded": 1000}

    first = post_event(client, localstripe, "charge.refunded", charge_copy)
    second = post_event(client, localstripe, "charge.refunded", charge_copy)

    assert (first.json["outcome"], second.json["outcome"]) == ("1 refunds recorded", "0 refunds recorded")
    db.session.expire_all()
    [refund] = booking.payment.refunds
    assert (refund.amount, refund.reason, refund.provider_refund_id, refund.partial, refund.state) == (
        1000, "external", made.json()["id"], True, RefundState.SUCCEEDED)
    assert booking.payment.refunded_amount == 1000
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
    assert ("refund recorded from the provider", "") in audit_actions("payment", booking.payment.id)


def test_a_refund_we_sent_but_never_recorded_is_completed_by_the_providers_event_not_counted_twice(
        app, client, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    payment = booking.payment
    with provider_down(app):
        pending = refunds.refund(payment, 1400, reason="staff")
        db.session.commit()
    assert pending.state == RefundState.PENDING
    # Our request did reach the provider; its answer was lost (a timeout, a crash).
    charge = charge_id(fetch_intent(localstripe, payment.intent_id))
    api(localstripe, "POST", "/v1/refunds", data={"charge": charge, "amount": 1400,
                                                  "metadata[refund_id]": str(pending.id),
                                                  "metadata[refund_key]": pending.idempotency_key}).raise_for_status()

    response = post_event(client, localstripe, "charge.refunded", {"id": charge, "object": "charge"})

    assert response.json["outcome"] == "1 refunds recorded"
    db.session.expire_all()
    assert [(r.id, r.state, r.reason) for r in payment.refunds] == [(pending.id, RefundState.SUCCEEDED, "staff")]
    assert pending.provider_refund_id.startswith("re_")
    assert payment.refunded_amount == 1400
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
    assert refunds.retry_pending_refunds(now=now_utc() + timedelta(minutes=2)) == 0
    assert len(api(localstripe, "GET", "/v1/refunds", params={"charge": charge}).json()["data"]) == 1


# -- refunds follow the provider's states ------------------------------------------------------------

class ReportsRefundsPending:
    """The real gateway, except that a refund it creates reads as still pending, as Stripe's often do.

    localstripe makes every refund succeeded at once; the tests then move it at
    localstripe (its refunds can be updated) and post the event Stripe would send.
    """

    def __init__(self, gateway):
        self._gateway = gateway

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def refund(self, *args, **kwargs):
        return dataclasses.replace(self._gateway.refund(*args, **kwargs), status="pending")


def set_refund_status(localstripe, refund_id: str, status: str) -> dict:
    response = api(localstripe, "POST", f"/v1/refunds/{refund_id}", data={"status": status})
    response.raise_for_status()
    return response.json()



def refund_in_transit(app, payment, amount):
    app.extensions["payment_gateway"] = ReportsRefundsPending(get_gateway())
    try:
        refund = refunds.refund(payment, amount, reason="staff")
        db.session.commit()
    finally:
        app.extensions.pop("payment_gateway")
    return refund


def test_a_refund_the_provider_reports_pending_is_not_booked_until_it_succeeds(app, client, localstripe, paid):
    payment = paid.payment

    refund = refund_in_transit(app, payment, 1000)

    assert refund.state == RefundState.PENDING and refund.provider_refund_id.startswith("re_")
    assert payment.refunded_amount == 1000  # counted against what may be refunded, ...
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 0  # ... but no money has moved yet
    assert refunds.retry_pending_refunds(now=now_utc() + timedelta(minutes=5)) == 0  # sent: never sent again

    stale = {"id": refund.provider_refund_id, "object": "refund", "status": "pending"}
    response = post_event(client, localstripe, "charge.refund.updated", stale)  # localstripe has it succeeded

    assert response.status_code == 200 and response.json["outcome"] == "refund updated"
    db.session.expire_all()
    assert refund.state == RefundState.SUCCEEDED and payment.refunded_amount == 1000
    [entry] = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "refund")).all()
    assert (entry.amount, entry.reference) == (-1000, refund.provider_refund_id)
    again = post_event(client, localstripe, "refund.updated", stale)
    assert again.json["outcome"] == "refund unchanged" and count(LedgerEntry, LedgerEntry.kind == "refund") == 1


def test_a_pending_refund_that_fails_gives_the_amount_back_and_opens_a_case(app, client, localstripe, paid):
    payment = paid.payment
    refund = refund_in_transit(app, payment, 1000)
    set_refund_status(localstripe, refund.provider_refund_id, "failed")

    response = post_event(client, localstripe, "refund.failed", {"id": refund.provider_refund_id, "object": "refund"})

    assert response.json["outcome"] == "refund updated"
    db.session.expire_all()
    assert refund.state == RefundState.FAILED and refund.next_attempt_at is None
    assert payment.refunded_amount == 0 and payment.refundable == 2800
    assert count(LedgerEntry, LedgerEntry.kind.like("refund%")) == 0
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.refund_id) == ("refund_failed", refund.id)


def test_a_succeeded_refund_that_fails_later_is_reversed_in_the_ledger(app, client, localstripe, paid):
    payment = paid.payment
    refund = refunds.refund(payment, 2800, reason="staff")
    db.session.commit()
    assert refund.state == RefundState.SUCCEEDED and payment.refundable == 0
    set_refund_status(localstripe, refund.provider_refund_id, "failed")

    response = post_event(client, localstripe, "refund.failed", {"id": refund.provider_refund_id, "object": "refund"})

    assert response.json["outcome"] == "refund updated"
    db.session.expire_all()
    assert refund.state == RefundState.FAILED and payment.refunded_amount == 0
    ledger = db.session.scalars(select(LedgerEntry.kind).order_by(LedgerEntry.id)).all()
    assert ledger == ["capture", "refund", "refund_reversal"]
    assert db.session.scalars(select(AttentionCase.reason)).all() == ["refund_failed"]


def test_a_refund_cancelled_at_the_provider_gives_the_amount_back(app, client, localstripe, paid):
    payment = paid.payment
    refund = refund_in_transit(app, payment, 1000)
    set_refund_status(localstripe, refund.provider_refund_id, "canceled")

    post_event(client, localstripe, "refund.updated", {"id": refund.provider_refund_id, "object": "refund"})

    db.session.expire_all()
    assert refund.state == RefundState.CANCELLED and payment.refunded_amount == 0
    assert db.session.scalars(select(AttentionCase.reason)).all() == ["refund_cancelled"]


def test_a_pending_refund_whose_event_never_came_is_asked_about_by_the_retry_job(app, localstripe, paid):
    payment = paid.payment
    refund = refund_in_transit(app, payment, 1000)
    poll = refund.next_attempt_at
    assert poll - now_utc() > timedelta(minutes=55)  # asked about hourly, not hammered

    assert refunds.retry_pending_refunds(now=poll) == 1
    db.session.commit()

    assert refund.state == RefundState.SUCCEEDED and refund.attempts == 1  # asked, not sent again
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
    assert len(api(localstripe, "GET", "/v1/refunds", params={"limit": 100}).json()["data"]) == 1


def test_a_dashboard_refund_reported_by_its_own_event_is_recorded_as_external(app, client, localstripe, paid):
    payment = paid.payment
    charge = charge_id(fetch_intent(localstripe, payment.intent_id))
    made = api(localstripe, "POST", "/v1/refunds", data={"charge": charge, "amount": 800}).json()

    response = post_event(client, localstripe, "refund.created", {"id": made["id"], "object": "refund"})

    assert response.json["outcome"] == "refund recorded"
    db.session.expire_all()
    [refund] = payment.refunds
    assert (refund.reason, refund.amount, refund.state) == ("external", 800, RefundState.SUCCEEDED)
    assert payment.refundable == 2000


def test_an_event_for_a_refund_the_provider_does_not_know_is_acknowledged_and_not_stored(app, client, localstripe):
    response = post_event(client, localstripe, "refund.failed", {"id": "re_not_there", "object": "refund"})

    assert response.status_code == 200 and response.json["outcome"].startswith("refused by the provider")
    assert count(WebhookEvent) == 0 and count(Refund) == 0


# -- retention ------------------------------------------------------------------------------------

def test_the_retention_job_prunes_events_older_than_the_setting_in_batches(app):
    now = now_utc()
    assert app.config["WEBHOOK_EVENT_RETENTION_DAYS"] == 90
    for n, age in enumerate([91, 120, 400, 91, 89, 1]):
        db.session.add(WebhookEvent(id=f"evt_{n}", type="charge.refunded", received_at=now - timedelta(days=age)))
    db.session.commit()

    assert prune_webhook_events(now=now, batch=2) == 4
    db.session.commit()

    assert sorted(db.session.scalars(select(WebhookEvent.id))) == ["evt_4", "evt_5"]
    assert prune_webhook_events(now=now) == 0
    assert "prune_webhook_events" in {job.id for job in JOBS}
