"""Refunds: the room's policy at every cut-off, never more than was paid, and never lost."""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.models import BookingState, LedgerEntry, Payment, PaymentState, Refund, RefundState
from reservations.payments import get_gateway
from reservations.services import cancellation, checkout, refund_policy, refunds
from reservations.services.errors import BookingError
from reservations.timeutil import local, now_utc
from tests.helpers import (
    book,
    charge_id,
    count,
    fetch_intent,
    intents_of,
    post_event,
    provider_down,
    refunds_at_provider,
    run_together,
)

pytestmark = pytest.mark.payments

DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)


@pytest.fixture
def paid(localstripe, room, resident, now):
    """A confirmed MORNING booking, paid 2,800 yen by card."""
    booking = book(resident, room, now=now)
    assert checkout.pay(booking.payment, token=localstripe.card_token(), now=now)[0] == "confirmed"
    db.session.commit()
    return booking


def provider_refunds(localstripe, payment):
    return refunds_at_provider(localstripe, charge_id(fetch_intent(localstripe, payment.intent_id)))


# -- the policy at its cut-offs ------------------------------------------------------------------

@pytest.mark.parametrize(("before_start", "percent"), [
    (7 * DAY + MINUTE, 100),
    (7 * DAY, 100),  # exactly start − 7 days: still the full refund
    (7 * DAY - MINUTE, 50),
    (2 * DAY, 50),  # exactly start − 2 days: still half
    (2 * DAY - MINUTE, 0),
    (MINUTE, 0),
], ids=["7d+1min-before", "7d-before", "7d-1min-before", "2d-before", "2d-1min-before", "1min-before"])
def test_cancelling_refunds_by_the_default_policy_at_each_cut_off(
        app, localstripe, paid, resident, before_start, percent):
    payment = paid.payment
    when = paid.start_at - before_start

    refund = cancellation.cancel_booking(paid, resident, now=when)
    db.session.commit()

    assert paid.state == BookingState.CANCELLED
    expected = 2800 * percent // 100
    assert payment.refunded_amount == expected
    at_provider = provider_refunds(localstripe, payment)
    if not percent:
        assert refund is None and count(Refund) == 0 and at_provider == []
        return
    assert (refund.amount, refund.partial, refund.reason, refund.state) == (
        expected, percent < 100, "policy", RefundState.SUCCEEDED)
    assert refund.provider_refund_id.startswith("re_")
    assert [(r["id"], r["amount"]) for r in at_provider] == [(refund.provider_refund_id, expected)]
    ledger = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "refund")).all()
    assert [(e.amount, e.reference) for e in ledger] == [(expected, refund.provider_refund_id)]


def test_the_policy_cut_offs_are_the_same_instants_in_tokyo(paid):
    start = paid.start_at
    assert refund_policy.refund_percent(paid, start - 7 * DAY) == 100
    assert refund_policy.refund_percent(paid, start - 7 * DAY + timedelta(seconds=1)) == 50
    assert refund_policy.refund_percent(paid, start - 2 * DAY) == 50
    assert refund_policy.refund_percent(paid, start - 2 * DAY + timedelta(seconds=1)) == 0
    assert refund_policy.refund_percent(paid, start) == 0
    assert local(start - 7 * DAY).time() == local(start).time()  # no DST in Japan: a day is 24 hours


@pytest.mark.parametrize(("before_start", "percent"), [
    (10 * DAY, 80), (3 * DAY, 80), (3 * DAY - MINUTE, 30), (DAY, 30), (DAY - MINUTE, 0)])
def test_a_room_with_its_own_policy_refunds_by_it(app, localstripe, room, paid, resident, before_start, percent):
    room.refund_policy = [{"days_before": 1, "percent": 30}, {"days_before": 3, "percent": 80}]
    db.session.commit()

    refund = cancellation.cancel_booking(paid, resident, now=paid.start_at - before_start)
    db.session.commit()

    expected = 2800 * percent // 100
    assert paid.payment.refunded_amount == expected
    assert (refund.amount if refund else 0) == expected
    assert sum(r["amount"] for r in provider_refunds(localstripe, paid.payment)) == expected


def test_cancelling_a_hold_before_paying_releases_the_intent_and_refunds_nothing(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    checkout.ensure_intent(booking.payment)
    db.session.commit()

    assert cancellation.cancel_booking(booking, resident, now=now) is None
    db.session.commit()

    assert booking.state == BookingState.CANCELLED and booking.payment.state == PaymentState.CANCELLED
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"
    assert count(Refund) == 0


# -- never more than was paid ----------------------------------------------------------------------------

def test_a_refund_above_what_was_paid_is_refused_and_nothing_is_sent(app, localstripe, paid):
    payment = paid.payment

    with pytest.raises(BookingError) as err:
        refunds.refund(payment, payment.captured_amount + 1, reason="staff")
    db.session.commit()

    assert err.value.code == "over_refund" and err.value.details == {"refundable": 2800}
    assert payment.refunded_amount == 0 and count(Refund) == 0
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 0
    assert provider_refunds(localstripe, payment) == []


def test_a_second_partial_refund_that_would_exceed_what_was_paid_is_refused(app, localstripe, paid):
    payment = paid.payment
    first = refunds.refund(payment, 2000, reason="staff")
    db.session.commit()

    with pytest.raises(BookingError) as err:
        refunds.refund(payment, 801, reason="staff")
    db.session.commit()

    assert err.value.code == "over_refund" and err.value.details == {"refundable": 800}
    assert [r.id for r in payment.refunds] == [first.id] and payment.refunded_amount == 2000
    assert [r["amount"] for r in provider_refunds(localstripe, payment)] == [2000]
    last = refunds.refund(payment, 800, reason="staff")  # the rest is still allowed
    db.session.commit()
    assert last.partial and payment.refunded_amount == payment.captured_amount


def test_two_refunds_at_once_never_exceed_what_was_paid(app, backend, localstripe, paid):
    payment_id = paid.payment.id
    db.session.rollback()
    # Both read "nothing refunded yet" before either refunds. (On SQLite the first
    # read already takes the write lock, so the second cannot read until the first commits.)
    both_read = threading.Barrier(2) if backend == "postgresql" else None

    def refund_2000():
        payment = db.session.get(Payment, payment_id)
        if both_read:
            assert payment.refunded_amount == 0
            both_read.wait(timeout=30)
        return refunds.refund(payment, 2000, reason="staff").amount

    results = run_together(app, refund_2000, refund_2000)

    assert sorted(map(repr, results)) == sorted([repr(2000), repr(BookingError("over_refund"))]), results
    payment = db.session.get(Payment, payment_id)
    assert payment.refunded_amount == 2000 and count(Refund) == 1
    assert [r["amount"] for r in provider_refunds(localstripe, payment)] == [2000]


def test_the_database_refuses_a_refunded_amount_above_the_captured_amount(app, paid):
    payment_id, captured = paid.payment.id, paid.payment.captured_amount
    with pytest.raises(IntegrityError):
        db.session.execute(update(Payment).where(Payment.id == payment_id)
                           .values(refunded_amount=captured + 1))
        db.session.flush()
    db.session.rollback()
    assert db.session.get(Payment, payment_id).refunded_amount == 0


# -- never lost ------------------------------------------------------------------------------------

def test_a_refund_while_the_provider_is_unreachable_stays_pending_and_is_sent_later(
        app, localstripe, paid, resident, now):
    payment = paid.payment
    with provider_down(app):
        refund = cancellation.cancel_booking(paid, resident, now=paid.start_at - 8 * DAY)
        db.session.commit()
        assert refunds.retry_pending_refunds(now=now_utc() + 2 * MINUTE) == 1  # still down: stays pending
        db.session.commit()

    assert refund.state == RefundState.PENDING and refund.provider_refund_id is None
    assert payment.refunded_amount == 2800  # reserved: nobody may refund it twice meanwhile
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 0
    assert provider_refunds(localstripe, payment) == []
    assert refunds.retry_pending_refunds(now=now_utc()) == 0  # too fresh: its first attempt may be in flight

    assert refunds.retry_pending_refunds(now=now_utc() + 2 * MINUTE) == 1
    db.session.commit()

    assert refund.state == RefundState.SUCCEEDED and refund.provider_refund_id.startswith("re_")
    assert [(r["id"], r["amount"]) for r in provider_refunds(localstripe, payment)] == [
        (refund.provider_refund_id, 2800)]
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
    assert refunds.retry_pending_refunds(now=now_utc() + 2 * MINUTE) == 0  # sent once
    assert len(intents_of(localstripe, payment.id)) == 1


def test_cancelling_a_hold_the_webhook_has_just_paid_refunds_by_the_policy(app, client, localstripe, room, resident,
                                                                          now):
    booking = book(resident, room, now=now)
    checkout.ensure_intent(booking.payment)
    db.session.commit()
    get_gateway().confirm_with_token(booking.payment.intent_id, localstripe.card_token(),
                                     payment_id=booking.payment.id)
    intent = fetch_intent(localstripe, booking.payment.intent_id)
    # The resident's cancel request has read the booking, still held ...
    assert booking.state == BookingState.HELD
    db.session.expunge(booking)
    db.session.rollback()
    # ... when the provider's event confirms it in another request.
    [webhook] = run_together(app, lambda: post_event(client, localstripe, "payment_intent.succeeded", intent))
    assert webhook.json["outcome"] == "confirmed"
    db.session.add(booking)

    refund = cancellation.cancel_booking(booking, resident, now=now)
    db.session.commit()

    assert booking.state == BookingState.CANCELLED
    assert refund is not None and refund.amount == booking.price  # more than 7 days ahead: 100 %
    assert booking.payment.refunded_amount == booking.payment.captured_amount == booking.price


def test_two_retry_runs_at_once_send_a_pending_refund_once(app, localstripe, paid, resident):
    with provider_down(app):
        refund = cancellation.cancel_booking(paid, resident, now=paid.start_at - 8 * DAY)
        db.session.commit()
    refund_id, payment_id = refund.id, paid.payment.id
    when = now_utc() + 2 * MINUTE
    db.session.rollback()

    run_together(app, lambda: refunds.retry_pending_refunds(now=when),
                 lambda: refunds.retry_pending_refunds(now=when))

    refund = db.session.get(Refund, refund_id)
    assert refund.state == RefundState.SUCCEEDED
    assert [r["id"] for r in provider_refunds(localstripe, db.session.get(Payment, payment_id))] == [
        refund.provider_refund_id]
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
