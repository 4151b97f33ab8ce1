"""POST /webhooks/stripe: genuine events only, each acted on once, from the provider's current state.

localstripe sends its events about a second late and never again, so the tests
deliver them themselves, signed as Stripe signs them.
"""
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
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
    get_gateway().confirm_with_token(payment.intent_id, localstripe.card_token(), payment_id=payment.id)
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
    assert snapshot() == before
    assert booking.state == BookingState.HELD


def test_an_event_of_a_type_we_do_not_handle_is_stored_and_ignored(app, client, localstripe):
    response = post_event(client, localstripe, "customer.created", {"id": "cus_1", "object": "customer"})
    assert response.status_code == 200 and response.json["outcome"] == "ignored"
    assert count(WebhookEvent) == 1


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
    assert (refund.amount, refund.reason, refund.provider_refund_id, refund.partial) == (
        1000, "provider", made.json()["id"], True)
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
                                                  "metadata[refund_id]": str(pending.id)}).raise_for_status()

    response = post_event(client, localstripe, "charge.refunded", {"id": charge, "object": "charge"})

    assert response.json["outcome"] == "1 refunds recorded"
    db.session.expire_all()
    assert [(r.id, r.state, r.reason) for r in payment.refunds] == [(pending.id, RefundState.SUCCEEDED, "staff")]
    assert pending.provider_refund_id.startswith("re_")
    assert payment.refunded_amount == 1400
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
    assert refunds.retry_pending_refunds(now=now_utc() + timedelta(minutes=2)) == 0
    assert len(api(localstripe, "GET", "/v1/refunds", params={"charge": charge}).json()["data"]) == 1
