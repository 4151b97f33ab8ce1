"""Refunds: the room's policy at every cut-off, never more than was paid, and never lost."""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.models import (
    AttentionCase,
    BookingState,
    LedgerEntry,
    Payment,
    PaymentState,
    Refund,
    RefundState,
)
from reservations.payments import get_gateway
from reservations.services import cancellation, checkout, refunds
from reservations.services.errors import BookingError
from reservations.timeutil import now_utc
from tests.helpers import (
    audit_actions,
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



def provider_refunds(localstripe, payment):
    return refunds_at_provider(localstripe, charge_id(fetch_intent(localstripe, payment.intent_id)))


# -- the policy's cut-offs and tiers: tests/test_refund_policy.py ----------------------------------

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
    t0 = now_utc()
    with provider_down(app):
        refund = cancellation.cancel_booking(paid, resident, now=paid.start_at - 8 * DAY)
        db.session.commit()
        assert refund.attempts == 1 and refund.last_error.startswith("unreachable")
        assert refunds.retry_pending_refunds(now=t0 + 2 * MINUTE) == 1  # still down: stays pending
        db.session.commit()

    assert refund.state == RefundState.PENDING and refund.provider_refund_id is None and refund.attempts == 2
    assert payment.refunded_amount == 2800  # reserved: nobody may refund it twice meanwhile
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 0
    assert provider_refunds(localstripe, payment) == []
    assert refunds.retry_pending_refunds(now=t0 + 3 * MINUTE) == 0  # backing off: 60 s, then 120 s

    assert refunds.retry_pending_refunds(now=t0 + 5 * MINUTE) == 1
    db.session.commit()

    assert refund.state == RefundState.SUCCEEDED and refund.provider_refund_id.startswith("re_")
    assert refund.attempts == 3 and refund.next_attempt_at is None
    assert [(r["id"], r["amount"]) for r in provider_refunds(localstripe, payment)] == [
        (refund.provider_refund_id, 2800)]
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
    assert refunds.retry_pending_refunds(now=t0 + DAY) == 0  # sent once
    assert len(intents_of(localstripe, payment.id)) == 1


class TestRetriesRunOut:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "REFUND_MAX_ATTEMPTS": 3}

    def test_transient_failures_back_off_then_stop_at_the_limit_with_a_staff_case(self, app, localstripe, paid):
        payment = paid.payment
        t0 = now_utc()
        with provider_down(app):
            refund = refunds.refund(payment, 1000, reason="staff", now=t0)
            db.session.commit()
            waits = [refund.next_attempt_at - t0]
            for when in (t0 + 2 * MINUTE, t0 + 10 * MINUTE):
                assert refunds.retry_pending_refunds(now=when) == 1
                db.session.commit()
                waits.append(refund.next_attempt_at - when if refund.next_attempt_at else None)

        assert waits == [MINUTE, 2 * MINUTE, None]  # 60 s, 120 s, then given up
        assert (refund.state, refund.attempts) == (RefundState.PENDING, 3)
        # Still reserved: a request that timed out may have reached the provider.
        assert payment.refunded_amount == 1000 and payment.refundable == 1800
        [case] = db.session.scalars(select(AttentionCase)).all()
        assert (case.reason, case.refund_id, case.payment_id) == ("refund_retries_exhausted", refund.id, payment.id)
        assert "3 attempts" in case.detail and "unreachable" in case.detail
        assert refunds.retry_pending_refunds(now=t0 + 30 * DAY) == 0  # a person takes it from here
        assert provider_refunds(localstripe, payment) == []


def test_a_refund_the_provider_refuses_for_good_fails_gives_the_amount_back_and_opens_a_case(
        app, localstripe, paid):
    payment = paid.payment
    localstripe.reset()  # the provider no longer knows the payment (another account, a restored backup)

    refund = refunds.refund(payment, 1000, reason="staff")
    db.session.commit()

    assert refund.state == RefundState.FAILED and refund.attempts == 1 and refund.next_attempt_at is None
    assert refund.last_error == "http_404: Not Found"  # localstripe sends no code; Stripe says resource_missing
    assert payment.refunded_amount == 0 and payment.refundable == 2800  # may be refunded again
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 0
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.refund_id) == ("refund_failed", refund.id)
    assert refunds.retry_pending_refunds(now=now_utc() + DAY) == 0  # never retried
    assert ("refund failed", refund.last_error) in audit_actions("payment", payment.id)


def test_retry_picks_only_due_refunds(app, localstripe, paid):
    payment = paid.payment
    t0 = now_utc()
    with provider_down(app):
        early = refunds.refund(payment, 500, reason="staff", now=t0)
        late = refunds.refund(payment, 700, reason="staff", now=t0 + 10 * MINUTE)
        db.session.commit()

    assert refunds.retry_pending_refunds(now=t0 + 2 * MINUTE) == 1
    db.session.commit()
    assert (early.state, late.state) == (RefundState.SUCCEEDED, RefundState.PENDING)
    assert refunds.retry_pending_refunds(now=t0 + 12 * MINUTE) == 1
    db.session.commit()
    assert late.state == RefundState.SUCCEEDED


def test_cancelling_a_hold_the_webhook_has_just_paid_refunds_by_the_policy(app, client, localstripe, room, resident,
                                                                          now):
    booking = book(resident, room, now=now)
    checkout.ensure_intent(booking.payment)
    db.session.commit()
    get_gateway().confirm_with_token(booking.payment.intent_id, localstripe.card_token(),
                                     payment_key=booking.payment.idempotency_key)
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

    tried = run_together(app, lambda: refunds.retry_pending_refunds(now=when),
                 lambda: refunds.retry_pending_refunds(now=when))

    refund = db.session.get(Refund, refund_id)
    assert refund.state == RefundState.SUCCEEDED and refund.attempts == 2, tried  # one failed send, one good
    assert [r["id"] for r in provider_refunds(localstripe, db.session.get(Payment, payment_id))] == [
        refund.provider_refund_id]
    assert count(LedgerEntry, LedgerEntry.kind == "refund") == 1
