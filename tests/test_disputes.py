"""Disputes (chargebacks): recorded against the payment, counted in what it holds, shown to staff.

localstripe has no disputes, so the tests post the signed events Stripe would
send, their object carrying what Stripe puts in a dispute.
"""
import time

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.models import AttentionCase, Dispute, LedgerEntry, Payment, Role, WebhookEvent
from reservations.services import refunds
from reservations.services.errors import BookingError
from tests.helpers import charge_id, count, fetch_intent, post_event

pytestmark = pytest.mark.payments



def withdrawal(amount: int) -> dict:
    return {"id": "txn_withdrawn", "object": "balance_transaction", "amount": -amount, "fee": 1500,
            "net": -amount - 1500, "currency": "jpy", "reporting_category": "dispute", "type": "adjustment"}


def reinstatement(amount: int) -> dict:
    return {"id": "txn_reinstated", "object": "balance_transaction", "amount": amount, "fee": -1500,
            "net": amount + 1500, "currency": "jpy", "reporting_category": "dispute_reversal", "type": "adjustment"}


def dispute_object(localstripe, booking, *, status="needs_response", amount=2800, transactions=(),
                   dispute_id="dp_1OtherBank") -> dict:
    """A dispute as Stripe sends it in charge.dispute.* events."""
    intent = fetch_intent(localstripe, booking.payment.intent_id)
    return {
        "id": dispute_id, "object": "dispute", "amount": amount, "currency": "jpy", "charge": charge_id(intent),
        "payment_intent": intent["id"], "status": status, "reason": "fraudulent",
        "balance_transactions": list(transactions), "is_charge_refundable": False, "livemode": False,
        "metadata": {}, "created": int(time.time()),
        "evidence_details": {"due_by": int(time.time()) + 7 * 86400, "has_evidence": False, "past_due": False,
                             "submission_count": 0},
    }


def cases() -> list[str]:
    return db.session.scalars(select(AttentionCase.reason).order_by(AttentionCase.id)).all()


def test_a_dispute_is_recorded_withheld_from_refunds_and_given_back_when_won(
        app, client, localstripe, paid, make_user, login_as, english):
    payment = paid.payment

    opened = post_event(client, localstripe, "charge.dispute.created", dispute_object(localstripe, paid))

    assert opened.status_code == 200 and opened.json["outcome"] == "opened"
    db.session.expire_all()
    [dispute] = db.session.scalars(select(Dispute)).all()
    assert (dispute.payment_id, dispute.provider_dispute_id, dispute.status, dispute.amount, dispute.reason) == (
        payment.id, "dp_1OtherBank", "needs_response", 2800, "fraudulent")
    assert (dispute.withdrawn_amount, dispute.reinstated_amount, payment.withdrawn_amount) == (0, 0, 0)
    assert cases() == ["dispute_opened"]

    post_event(client, localstripe, "charge.dispute.funds_withdrawn",
               dispute_object(localstripe, paid, transactions=[withdrawal(2800)]))

    db.session.expire_all()
    assert dispute.withdrawn_amount == 2800 and payment.withdrawn_amount == 2800
    assert payment.refundable == 0  # the bank took it back: refunding it too would pay the resident twice
    with pytest.raises(BookingError, match="over_refund"):
        refunds.refund(payment, 1, reason="staff")
    db.session.rollback()
    assert db.session.scalars(select(LedgerEntry.kind).order_by(LedgerEntry.id)).all() == [
        "capture", "dispute_withdrawal"]

    login_as(make_user("staff@example.com", role=Role.STAFF))
    page = client.get("/staff/attention").get_data(as_text=True)
    assert "Dispute (chargeback) opened by the resident&#39;s bank" in page
    assert "dp_1OtherBank" in page and "Withdrawn by a dispute ¥2,800" in page

    both = [withdrawal(2800), reinstatement(2800)]
    post_event(client, localstripe, "charge.dispute.closed", dispute_object(localstripe, paid, status="won",
                                                                            transactions=both))
    post_event(client, localstripe, "charge.dispute.funds_reinstated",
               dispute_object(localstripe, paid, status="won", transactions=both))

    db.session.expire_all()
    assert (dispute.status, dispute.withdrawn_amount, dispute.reinstated_amount) == ("won", 2800, 2800)
    assert payment.withdrawn_amount == 0 and payment.refundable == 2800
    assert cases() == ["dispute_opened", "dispute_closed"]
    assert count(LedgerEntry, LedgerEntry.kind == "dispute_reinstatement") == 1
    assert "Dispute (chargeback) closed" in client.get("/staff/attention").get_data(as_text=True)


def test_dispute_events_twice_or_out_of_order_change_it_once(app, client, localstripe, paid):
    payment = paid.payment
    lost = dispute_object(localstripe, paid, status="lost", transactions=[withdrawal(2800)])

    first = post_event(client, localstripe, "charge.dispute.closed", lost, event_id="evt_closed")
    again = post_event(client, localstripe, "charge.dispute.closed", lost, event_id="evt_closed")
    older = post_event(client, localstripe, "charge.dispute.created", dispute_object(localstripe, paid))

    assert (first.json["outcome"], again.json["outcome"], older.json["outcome"]) == (
        "opened", "duplicate", "unchanged")
    db.session.expire_all()
    [dispute] = db.session.scalars(select(Dispute)).all()
    assert (dispute.status, dispute.withdrawn_amount) == ("lost", 2800)  # a stale copy never reopens it
    assert payment.withdrawn_amount == 2800 and payment.refundable == 0
    assert cases() == ["dispute_opened", "dispute_closed"]
    assert count(LedgerEntry, LedgerEntry.kind == "dispute_withdrawal") == 1


def test_a_dispute_after_a_partial_refund_leaves_nothing_refundable(app, client, localstripe, paid):
    payment = paid.payment
    refunds.refund(payment, 1000, reason="staff")
    db.session.commit()

    post_event(client, localstripe, "charge.dispute.funds_withdrawn",
               dispute_object(localstripe, paid, amount=1800, transactions=[withdrawal(1800)]))

    db.session.expire_all()
    assert (payment.captured_amount, payment.refunded_amount, payment.withdrawn_amount) == (2800, 1000, 1800)
    assert payment.refundable == 0


def test_a_dispute_for_a_charge_we_do_not_know_is_stored_and_changes_nothing(app, client, localstripe):
    obj = {"id": "dp_foreign", "object": "dispute", "amount": 500, "charge": "ch_not_ours", "status": "needs_response",
           "reason": "general", "balance_transactions": []}

    response = post_event(client, localstripe, "charge.dispute.created", obj)

    assert response.status_code == 200 and response.json["outcome"] == "unknown payment"
    assert count(Dispute) == 0 and count(WebhookEvent) == 1
    # A case for the administrators only (no building): an event we could not apply.
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.building_id, case.booking_id) == ("webhook_unapplied", None, None)


@pytest.mark.parametrize("broken", [{"amount": None}, {"amount": "2800"}, {"balance_transactions": "x"}])
def test_a_malformed_dispute_is_not_a_500_and_not_stored(app, client, localstripe, paid, broken):
    obj = {**dispute_object(localstripe, paid), **broken}
    response = post_event(client, localstripe, "charge.dispute.created", obj)
    assert response.status_code < 500
    assert count(Dispute) == 0


def test_the_database_keeps_dispute_amounts_sane(app, client, localstripe, paid):
    post_event(client, localstripe, "charge.dispute.created", dispute_object(localstripe, paid))
    dispute_id, payment_id = db.session.scalar(select(Dispute.id)), paid.payment.id
    for statement in (
        update(Dispute).where(Dispute.id == dispute_id).values(withdrawn_amount=100, reinstated_amount=200),
        update(Dispute).where(Dispute.id == dispute_id).values(withdrawn_amount=-1),
        update(Dispute).where(Dispute.id == dispute_id).values(amount=0),
        update(Payment).where(Payment.id == payment_id).values(withdrawn_amount=2801),
    ):
        with pytest.raises(IntegrityError):
            db.session.execute(statement)
            db.session.flush()
        db.session.rollback()
