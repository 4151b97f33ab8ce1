"""Conservation: after a scripted month of every kind of movement, the ledger holds exactly the money that
moved, and reconciliation with the provider reports every row as matched.

The month (November 2026, each step at its own time through the services' `now`): card payments, a
partial and a full refund by card, cash and terminal payments at the counter, a move to a cheaper room
(the difference back to the card), a payment made after its day was closed (counted on the next open
day, marked late), and a dispute the ward won (withdrawn, then reinstated). localstripe keeps the
provider's side: its balance transactions (fee 0); the dispute's transactions come in the signed events
Stripe would send, as localstripe has no disputes, with the dispute fee Stripe charges and gives back.
Counter money (cash, terminal) never passes Stripe.

    ledger total == Stripe's net (balance transactions, plus the dispute's) + counter money, exactly.
"""
import time as clock
from datetime import UTC, date, datetime, time, timedelta

import pytest
import requests
from sqlalchemy import func, select

from reservations.extensions import db
from reservations.models import DayClose, LedgerEntry, ReconciliationItem, Role
from reservations.services import checkout, counter, moves, refunds
from reservations.services.finance.reconcile import reconcile
from reservations.services.rules import division_slot
from tests.helpers import book, booking_day, charge_id, fetch_intent, post_event

pytestmark = pytest.mark.payments

CHEAP = [("MORNING", time(9), time(12), 2000, 2000)]


def at(day: int, hour: int = 10) -> datetime:
    """A moment of November 2026, Tokyo time."""
    return datetime(2026, 11, day, hour - 9, 0, tzinfo=UTC)


def provider_net(localstripe) -> tuple[int, int]:
    """localstripe's balance transactions: how many, and the sum of their net."""
    data = requests.get(f"{localstripe.url}/v1/balance_transactions", params={"limit": 100}, timeout=5,
                        headers={"Authorization": "Bearer sk_test_localstripe"}).json()["data"]
    return len(data), sum(t["net"] for t in data)


def dispute(localstripe, booking, status: str, transactions: list[dict]) -> dict:
    intent = fetch_intent(localstripe, booking.payment.intent_id)
    return {"id": "dp_conservation", "object": "dispute", "amount": booking.payment.captured_amount,
            "currency": "jpy", "charge": charge_id(intent), "payment_intent": intent["id"], "status": status,
            "reason": "fraudulent", "balance_transactions": transactions, "is_charge_refundable": False,
            "livemode": False, "metadata": {}, "created": int(clock.time())}


def txn(txn_id: str, amount: int, fee: int, category: str) -> dict:
    return {"id": txn_id, "object": "balance_transaction", "amount": amount, "fee": fee, "net": amount - fee,
            "currency": "jpy", "reporting_category": category, "type": "adjustment", "created": int(clock.time())}


def test_a_scripted_month_conserves_every_yen_and_reconciles_as_matched(
        app, client, localstripe, make_user, make_room, room, capsys):
    cheap = make_room("会議室", divisions=CHEAP)
    staff = make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")
    residents = [make_user(f"r{i}@example.com", name=f"区民 {i}") for i in range(4)]
    day = booking_day()

    def card(user, codes, when, *, on=day):
        booking = book(user, room, codes, now=when, day=on)
        assert checkout.pay(booking.payment, token=localstripe.card_token(), now=when)[0] == "confirmed"
        db.session.commit()
        return booking

    # Card payments; a partial and a full refund by card.
    card(residents[0], ["MORNING"], at(2))
    partly = card(residents[0], ["AFTERNOON"], at(3))
    refunds.refund(partly.payment, 1400, reason="staff", actor_id=staff.id, now=at(5))
    wholly = card(residents[1], ["MORNING"], at(4), on=day + timedelta(days=1))
    refunds.refund(wholly.payment, wholly.payment.captured_amount, reason="staff", actor_id=staff.id, now=at(6))
    db.session.commit()
    # Cash and terminal at the counter.
    counter.book_on_behalf(staff, room, division_slot(room, day + timedelta(days=2), ["MORNING"]), method="cash",
                           user=residents[2], now=at(10))
    counter.book_on_behalf(staff, room, division_slot(room, day + timedelta(days=2), ["EVENING"]),
                           method="terminal", slip_number="T-0042", user=residents[2], now=at(12))
    db.session.commit()
    # A move to a cheaper room: the difference goes back to the card.
    movable = card(residents[3], ["EVENING"], at(14))
    moves.move_booking(movable, cheap, division_slot(cheap, day, ["MORNING"]), staff=staff, now=at(15))
    db.session.commit()
    # 20 November is closed; a card payment recorded that day is counted on the 21st, late.
    db.session.add(DayClose(business_date=date(2026, 11, 20), closed_at=at(20, 18)))
    db.session.commit()
    late = card(residents[1], ["EVENING"], at(20, 20), on=day + timedelta(days=1))
    # A dispute, won: withdrawn, then given back.
    disputed = card(residents[3], ["AFTERNOON"], at(24), on=day + timedelta(days=3))
    # Stripe charges a dispute fee when the funds are withdrawn and gives it back when the ward wins.
    withdrawn = txn("txn_dispute_out", -disputed.payment.captured_amount, 1500, "dispute")
    reinstated = txn("txn_dispute_back", disputed.payment.captured_amount, -1500, "dispute_reversal")
    post_event(client, localstripe, "charge.dispute.funds_withdrawn", dispute(localstripe, disputed,
                                                                               "under_review", [withdrawn]))
    post_event(client, localstripe, "charge.dispute.funds_reinstated",
               dispute(localstripe, disputed, "won", [withdrawn, reinstated]))
    db.session.expire_all()

    # Reconciliation reads Stripe's side and books its fees (the dispute's: an expense and its return).
    run = reconcile(date(2026, 11, 1), date(2026, 12, 31), trigger="cli")
    db.session.commit()

    entries = db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    kinds = {e.kind for e in entries}
    assert {"capture", "refund", "dispute_withdrawal", "dispute_reinstatement", "fee", "fee_refund"} <= kinds
    assert {e.method for e in entries} == {"card", "cash", "terminal"}
    [late_row] = [e for e in entries if e.booking_id == late.id]
    assert (late_row.paid_on, late_row.business_date, late_row.late) == (date(2026, 11, 20), date(2026, 11, 21),
                                                                        True)
    ledger_total = sum(e.amount for e in entries)
    counter_money = sum(e.amount for e in entries if e.method in ("cash", "terminal"))
    stripe_rows, stripe_net = provider_net(localstripe)
    stripe_net += withdrawn["net"] + reinstated["net"]
    money_in = sum(e.amount for e in entries if e.amount > 0)
    money_out = -sum(e.amount for e in entries if e.amount < 0)
    difference = ledger_total - (stripe_net + counter_money)
    with capsys.disabled():
        print(f"\nconservation ({db.engine.dialect.name}): {len(entries)} ledger rows, "
              f"{stripe_rows + 2} provider balance transactions; yen in {money_in:,}, yen out {money_out:,}, "
              f"ledger net {ledger_total:,} = Stripe net {stripe_net:,} + counter {counter_money:,}; "
              f"difference {difference}")
    assert difference == 0
    assert ledger_total == db.session.scalar(select(func.sum(LedgerEntry.amount)))

    items = db.session.scalars(select(ReconciliationItem).where(ReconciliationItem.run_id == run.id)).all()
    card_rows = [e for e in entries if e.method == "card"]
    assert {i.status for i in items} == {"matched"}, [(i.status, i.balance_transaction_id, i.ledger_entry_id,
                                                       i.detail) for i in items if i.status != "matched"]
    assert sorted(i.ledger_entry_id for i in items) == sorted(e.id for e in card_rows)
    assert (run.matched, run.only_in_stripe, run.only_in_ledger, run.mismatched) == (len(card_rows), 0, 0, 0)
