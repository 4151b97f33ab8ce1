"""No capture under the room lock: the confirmation is committed first, the capture follows, and a
crash in between is finished by the capture_confirmed_authorisations job, once."""
import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.jobs import JOBS
from reservations.models import (
    AttentionCase,
    Booking,
    BookingState,
    LedgerEntry,
    PaymentState,
    Receipt,
    Room,
    User,
)
from reservations.payments import ProviderUnreachable, get_gateway
from reservations.services import checkout
from reservations.services.booking import place_hold
from reservations.services.checkout import capture_confirmed_authorisations
from reservations.services.rules import division_slot
from reservations.timeutil import now_utc
from tests.helpers import audit_actions, book, booking_day, count, fetch_intent, outbox, run_together

pytestmark = pytest.mark.payments


class Crashed(Exception):
    """The process died here (a deploy, the OOM killer)."""


class CaptureFails:
    """The real gateway, except that capture raises `error` before the provider is asked."""

    def __init__(self, gateway, error):
        self._gateway, self._error = gateway, error
        self.captures = 0

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def capture(self, intent_id, **kwargs):
        self.captures += 1
        raise self._error


def with_gateway(app, gateway):
    app.extensions["payment_gateway"] = gateway
    return gateway


def test_a_crash_between_the_confirmation_and_the_capture_is_finished_by_the_job_once(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    broken = with_gateway(app, CaptureFails(get_gateway(), Crashed()))

    with pytest.raises(Crashed):
        checkout.pay(payment, token=localstripe.card_token(), now=now)
    db.session.rollback()
    app.extensions.pop("payment_gateway")

    # The decision was durable before the provider was asked to capture.
    db.session.expire_all()
    assert broken.captures == 1
    assert booking.state == BookingState.CONFIRMED and payment.state == PaymentState.AUTHORIZED
    assert fetch_intent(localstripe, payment.intent_id)["status"] == "requires_capture"
    assert count(LedgerEntry) == 0 and count(Receipt) == 0 and payment.captured_amount == 0
    assert capture_confirmed_authorisations(now=now_utc()) == {}  # too fresh: its request may still be capturing

    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=2)) == {"confirmed": 1}
    db.session.commit()

    assert payment.state == PaymentState.CAPTURED and payment.captured_amount == booking.price
    assert fetch_intent(localstripe, payment.intent_id)["status"] == "succeeded"
    assert count(LedgerEntry, LedgerEntry.kind == "capture") == 1 and count(Receipt) == 1
    assert len(outbox(app)) == 1
    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=5)) == {}  # once
    assert [a for a, _ in audit_actions("booking", booking.id)].count("held->confirmed") == 1
    assert [a for a, _ in audit_actions("payment", payment.id)][-2:] == ["pending->authorized", "authorized->captured"]
    assert "capture_confirmed_authorisations" in {job.id for job in JOBS}


def test_a_provider_unreachable_at_capture_still_confirms_and_the_job_captures_later(
        client, app, localstripe, room, resident, login_as, now):
    login_as(resident)
    booking = book(resident, room, now=now)
    with_gateway(app, CaptureFails(get_gateway(), ProviderUnreachable("down", code="unreachable")))

    response = client.post(f"/bookings/{booking.id}/pay", json={"token": localstripe.card_token()})
    app.extensions.pop("payment_gateway")

    assert response.status_code == 200
    assert response.json == {"status": "confirmed", "redirect": f"/bookings/{booking.id}"}  # no receipt yet
    db.session.expire_all()
    assert booking.state == BookingState.CONFIRMED and booking.payment.state == PaymentState.AUTHORIZED
    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=2)) == {"confirmed": 1}
    db.session.commit()
    assert booking.payment.state == PaymentState.CAPTURED and count(Receipt) == 1


class WhileCapturing:
    """The real gateway; while it captures, `during` runs (in other threads) first."""

    def __init__(self, gateway, during):
        self._gateway, self._during = gateway, during
        self.seen = None

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def capture(self, intent_id, **kwargs):
        self.seen = self._during()
        return self._gateway.capture(intent_id, **kwargs)


def test_another_resident_can_hold_in_the_room_while_the_provider_captures(
        app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    room_id, other_id, day = room.id, make_user().id, booking_day()

    def hold_the_afternoon():
        room = db.session.get(Room, room_id)
        return place_hold(db.session.get(User, other_id), room, division_slot(room, day, ["AFTERNOON"]), now=now).id

    # Were the room still locked, the other hold would wait for it, and time out.
    capturing = with_gateway(app, WhileCapturing(get_gateway(), lambda: run_together(app, hold_the_afternoon,
                                                                                     timeout=10)))
    outcome, _ = checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    app.extensions.pop("payment_gateway")

    [other] = capturing.seen
    assert isinstance(other, int), other
    assert outcome == "confirmed" and booking.payment.state == PaymentState.CAPTURED
    assert db.session.get(Booking, other).state == BookingState.HELD


class PartialCapture:
    """The real gateway, except that the provider reports receiving less than the intent's amount."""

    def __init__(self, gateway):
        self._gateway = gateway

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def capture(self, intent_id, **kwargs):
        return dataclasses.replace(self._gateway.capture(intent_id, **kwargs), amount_received=2000)


def test_the_captured_amount_is_what_the_provider_received(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    with_gateway(app, PartialCapture(get_gateway()))

    assert checkout.pay(booking.payment, token=localstripe.card_token(), now=now)[0] == "confirmed"
    db.session.commit()
    app.extensions.pop("payment_gateway")

    assert booking.payment.captured_amount == 2000 and booking.payment.refundable == 2000
    assert db.session.scalars(select(LedgerEntry.amount)).all() == [2000]


def test_an_authorisation_that_lapsed_before_capture_is_a_staff_case(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    with_gateway(app, CaptureFails(get_gateway(), Crashed()))
    with pytest.raises(Crashed):
        checkout.pay(payment, token=localstripe.card_token(), now=now)
    db.session.rollback()
    app.extensions.pop("payment_gateway")
    get_gateway().cancel(payment.intent_id, payment_key=payment.idempotency_key)  # e.g. 7 days passed

    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=2)) == {"capture_failed": 1}
    db.session.commit()

    db.session.expire_all()
    assert booking.state == BookingState.CONFIRMED and payment.state == PaymentState.CANCELLED
    assert count(LedgerEntry) == 0
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.payment_id) == ("capture_failed", payment.id)
    assert capture_confirmed_authorisations(now=now_utc() + timedelta(minutes=5)) == {}


def test_two_job_runs_at_once_capture_a_crashed_confirmation_once(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    booking_id = booking.id
    with_gateway(app, CaptureFails(get_gateway(), Crashed()))
    with pytest.raises(Crashed):
        checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.rollback()
    app.extensions.pop("payment_gateway")
    later = now_utc() + timedelta(minutes=2)

    results = run_together(app, lambda: capture_confirmed_authorisations(now=later),
                           lambda: capture_confirmed_authorisations(now=later))

    assert sorted(results, key=len) == [{}, {"confirmed": 1}], results  # captured, and counted, by one run
    booking = db.session.get(Booking, booking_id)
    assert booking.payment.state == PaymentState.CAPTURED
    assert count(LedgerEntry, LedgerEntry.kind == "capture") == 1 and count(Receipt) == 1
    assert [a for a, _ in audit_actions("payment", booking.payment.id)].count("authorized->captured") == 1


def crashed_confirmation(app, localstripe, booking):
    """A confirmed booking whose capture was lost: the process died before the provider was asked."""
    with_gateway(app, CaptureFails(get_gateway(), Crashed()))
    with pytest.raises(Crashed):
        checkout.pay(booking.payment, token=localstripe.card_token(), now=now_utc())
    db.session.rollback()
    app.extensions.pop("payment_gateway")


def test_a_job_run_while_another_run_is_capturing_leaves_that_payment_alone(app, localstripe, room, resident, now):
    """The first run committed its claim and is waiting for the provider's capture (no lock held):
    a second run, started at that very moment, must neither capture nor count that payment again."""
    booking = book(resident, room, now=now)
    booking_id = booking.id
    crashed_confirmation(app, localstripe, booking)
    later = now_utc() + timedelta(minutes=2)
    started = []

    def second_run_once():  # during the first run's capture only, not during its own
        if started:
            return None
        started.append(True)
        return run_together(app, lambda: capture_confirmed_authorisations(now=later), timeout=20)

    capturing = with_gateway(app, WhileCapturing(get_gateway(), second_run_once))

    first = capture_confirmed_authorisations(now=later)
    db.session.commit()
    app.extensions.pop("payment_gateway")

    assert (first, capturing.seen) == ({"confirmed": 1}, [{}]), (first, capturing.seen)
    booking = db.session.get(Booking, booking_id)
    assert booking.payment.state == PaymentState.CAPTURED
    assert count(LedgerEntry, LedgerEntry.kind == "capture") == 1 and count(Receipt) == 1
    assert [a for a, _ in audit_actions("payment", booking.payment.id)].count("authorized->captured") == 1
    assert capture_confirmed_authorisations(now=later + timedelta(minutes=5)) == {}

