"""Drill: the process paying for a booking is killed with SIGKILL between the provider's answer and our commit.

PostgreSQL only: the drill runs the payment path in a second process (tests/drills/capture_child.py) against
the suite's PostgreSQL database, as an app server would, and kills it; two processes on one SQLite file is
not the deployment's shape.

The child stops itself inside the commit it must never make (a `before_commit` listener of its own; the app
is unchanged) and the test kills it there. Then the recovery the app provides runs (the capture job, the
provider's webhook, the expiry job), and the money must add up: what the provider holds for the intent is
what our ledger holds for the booking, 0 yen unowned, and the provider captured at most once.
"""
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AttentionCase, Booking, BookingState, LedgerEntry, PaymentState, Receipt, Room, User
from reservations.services import checkout, ledger
from reservations.services.booking import place_hold
from reservations.services.checkout import capture_confirmed_authorisations
from reservations.services.expiry import release_expired_holds
from reservations.services.rules import division_slot
from reservations.timeutil import now_utc
from tests.drills.conftest import ROOT
from tests.helpers import (
    THREE_D_SECURE_CARD,
    audit_actions,
    book,
    booking_day,
    count,
    fetch_intent,
    finish_3d_secure,
    post_event,
    refunds_at_provider,
)

pytestmark = pytest.mark.payments


@pytest.fixture
def backend():
    return "postgresql"


def killed_at(step: list[str], *, stop_at: str, database_url: str, localstripe, tmp_path) -> None:
    """Run `step` in a child process until it stops inside the commit `stop_at`, then SIGKILL it there."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "STRIPE_"))}
    env.update({key: str(value) for key, value in localstripe.config.items()})
    env.update({"APP_ENV": "test", "DATABASE_URL": database_url, "PAYMENTS_ENABLED": "1", "STOP_AT": stop_at,
                "MAIL_BACKEND": "outbox", "MAIL_OUTBOX_DIR": str(tmp_path / "child-outbox"), "PYTHONUNBUFFERED": "1"})
    db.session.commit()  # nothing of ours open: the child locks the payment row
    child = subprocess.Popen([sys.executable, "-m", "tests.drills.capture_child", *step], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = []
        for line in child.stdout:  # waits for the child's line, however long its start takes
            said.append(line)
            if line.startswith(("STOPPED", "FINISHED")):
                break
        assert said and said[-1] == f"STOPPED {stop_at}\n", "".join(said)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    db.session.expire_all()


def held_by_provider(localstripe, intent_id: str) -> int:
    """The money the provider keeps for the intent: its charge if captured, less the refunds that went through."""
    charge = fetch_intent(localstripe, intent_id)["latest_charge"]
    if not charge or not charge["captured"] or charge["status"] != "succeeded":
        return 0
    returned = sum(r["amount"] for r in refunds_at_provider(localstripe, charge["id"]) if r["status"] == "succeeded")
    return charge["amount"] - returned


def test_killed_after_the_capture_before_our_commit_the_job_records_it_once(
        app, localstripe, database_urls, room, resident, tmp_path):
    booking = book(resident, room)
    payment = booking.payment

    killed_at(["pay", str(payment.id), localstripe.card_token()], stop_at="captured",
              database_url=database_urls["postgresql"], localstripe=localstripe, tmp_path=tmp_path)

    # As the kill left it: the provider has the money; we have a confirmed booking, an authorisation, no ledger.
    assert fetch_intent(localstripe, payment.intent_id)["status"] == "succeeded"
    assert (booking.state, payment.state) == (BookingState.CONFIRMED, PaymentState.AUTHORIZED)
    assert count(LedgerEntry) == 0 and count(Receipt) == 0

    # The capture job, on its first run once the confirmation is a minute old, finds the charge.
    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=2)) == {"confirmed": 1}
    db.session.commit()
    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=5)) == {}  # once

    assert payment.state == PaymentState.CAPTURED and payment.captured_amount == booking.price
    assert held_by_provider(localstripe, payment.intent_id) == ledger.balance(payment) == booking.price
    assert count(LedgerEntry, LedgerEntry.kind == "capture") == 1 and count(Receipt) == 1
    assert [a for a, _ in audit_actions("payment", payment.id)].count("authorized->captured") == 1


def authorised_by_3d_secure(localstripe, booking) -> str:
    """The resident pays with a 3-D Secure card and passes the challenge: the provider holds the authorisation."""
    outcome, intent = checkout.pay(booking.payment, token=localstripe.card_token(THREE_D_SECURE_CARD))
    db.session.commit()
    assert outcome == "requires_action"
    assert finish_3d_secure(localstripe, intent.id, success=True).ok
    assert fetch_intent(localstripe, intent.id)["status"] == "requires_capture"
    return intent.id


def test_killed_after_3d_secure_before_the_settle_commit_the_webhook_confirms_and_captures(
        app, client, localstripe, database_urls, room, resident, tmp_path):
    booking = book(resident, room)
    payment = booking.payment
    intent_id = authorised_by_3d_secure(localstripe, booking)

    # The page came back from the bank (pay/complete) and its process died inside the settle's commit.
    killed_at(["settle", str(payment.id)], stop_at="confirmed", database_url=database_urls["postgresql"],
              localstripe=localstripe, tmp_path=tmp_path)
    assert (booking.state, payment.state) == (BookingState.HELD, PaymentState.PENDING)
    assert fetch_intent(localstripe, intent_id)["status"] == "requires_capture"

    # The provider's event arrives (it retries until we answer 2xx).
    answer = post_event(client, localstripe, "payment_intent.amount_capturable_updated",
                        fetch_intent(localstripe, intent_id))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    db.session.expire_all()

    assert booking.state == BookingState.CONFIRMED and payment.state == PaymentState.CAPTURED
    assert fetch_intent(localstripe, intent_id)["status"] == "succeeded"
    assert held_by_provider(localstripe, intent_id) == ledger.balance(payment) == booking.price
    assert count(Receipt) == 1
    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=5)) == {}  # nothing left over


def test_killed_after_3d_secure_and_the_slot_taken_meanwhile_the_expiry_job_releases_the_authorisation(
        app, localstripe, database_urls, room, resident, make_user, tmp_path):
    booking = book(resident, room)
    payment = booking.payment
    intent_id = authorised_by_3d_secure(localstripe, booking)
    killed_at(["settle", str(payment.id)], stop_at="confirmed", database_url=database_urls["postgresql"],
              localstripe=localstripe, tmp_path=tmp_path)

    # No event reaches us; the hold runs out and another resident books the slot.
    late = booking.hold_expires_at + timedelta(minutes=1)
    other_id, room_id = make_user().id, room.id
    other = place_hold(db.session.get(User, other_id), db.session.get(Room, room_id),
                       division_slot(room, booking_day(), ["MORNING"]), now=late)
    db.session.commit()

    assert release_expired_holds(now=late + timedelta(minutes=1)).get("refunded") == 1
    db.session.commit()
    db.session.expire_all()

    assert booking.state == BookingState.EXPIRED and db.session.get(Booking, other.id).state == BookingState.HELD
    assert payment.state == PaymentState.CANCELLED and payment.captured_amount == 0
    assert fetch_intent(localstripe, intent_id)["status"] == "canceled"  # nothing was ever taken
    assert held_by_provider(localstripe, intent_id) == ledger.balance(payment) == 0
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.booking_id, case.reason) == (booking.id, "paid_after_slot_taken")
