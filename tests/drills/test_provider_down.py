"""Fault drill (issue 11, "2. Fault drills"): the provider is down while residents pay.

They get a clear message and no 500, the hold stays until it expires, and once Stripe is back nothing is
lost or charged twice. In-process on both databases, through the real pages, against the real localstripe;
"down" is tests/helpers.py provider_down (the gateway points at a closed port). The clock is frozen at each
step with time_machine, so holds run out when the story says, not when the machine is slow.
"""
from datetime import timedelta
from html import unescape

import pytest
import time_machine
from sqlalchemy import select

from reservations.extensions import db
from reservations.filters import tokyo_time
from reservations.jobs import JOBS, run_job
from reservations.models import Booking, BookingState, LedgerEntry, PaymentState, Receipt
from reservations.services.expiry import release_expired_holds
from reservations.timeutil import now_utc
from tests.conftest import CHUO_DIVISIONS
from tests.helpers import (
    api,
    audit_actions,
    booking_day,
    count,
    event_payload,
    fetch_intent,
    intents_of,
    provider_down,
    signed,
)

pytestmark = pytest.mark.payments

UNAVAILABLE = "The payment service cannot be reached right now. Nothing was charged; please try again in a moment."
SLOT_TAKEN = "This slot was just taken. Please choose another."
PRICES = {code: fee for code, _start, _end, fee, _holiday in CHUO_DIVISIONS}


def at(moment):
    """The clock stands still at `moment` for everything in the block: pages, services and signatures."""
    return time_machine.travel(moment, tick=False)


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def reserve_on_page(client, room, day, code: str) -> Booking:
    """The resident reserves a division through the reserve form, as the review page posts it."""
    response = client.post(f"/rooms/{room.id}/book", data={
        "date": day.isoformat(), "divisions": [code], "expected_price": str(PRICES[code])})
    made = db.session.scalars(select(Booking).order_by(Booking.id.desc())).first()
    assert response.status_code == 302 and response.headers["Location"] == f"/bookings/{made.id}/pay"
    return made


def seen(booking: Booking) -> Booking:
    """The booking as the requests committed it, not as this session cached it."""
    db.session.rollback()
    db.session.refresh(booking)
    db.session.refresh(booking.payment)
    return booking


def charges(localstripe, payment) -> list[dict]:
    """Every charge the provider made for our payment, over all its intents."""
    return [charge for intent in intents_of(localstripe, payment.id)
            for charge in fetch_intent(localstripe, intent["id"])["charges"]["data"]]


def test_residents_paying_while_the_provider_is_down_keep_their_holds_and_are_charged_once_it_is_back(
        app, client, english, login_as, make_user, room, localstripe):
    """Drill "the provider is down while residents pay": a clear message and no 500, the hold kept to its
    expiry (the slot not bookable by another), nothing charged; once back, one charge and one ledger row.
    A second resident's hold that ran out meanwhile is kept by the expiry job while the provider cannot be
    asked, then released with its intent cancelled once it can: nothing charged."""
    amy, ben, cho = make_user(name="青木 亜美"), make_user(name="馬場 勉"), make_user(name="千葉 長")
    t0, day = now_utc().replace(microsecond=0), booking_day()

    # Cho reserved the evening a little earlier and opened the payment page while all was well.
    with at(t0):
        login_as(cho)
        cho_booking = reserve_on_page(client, room, day, "EVENING")
        assert client.get(f"/bookings/{cho_booking.id}/pay").status_code == 200
    assert seen(cho_booking).payment.intent_id

    with at(t0 + timedelta(minutes=3)):
        login_as(amy)
        booking = reserve_on_page(client, room, day, "MORNING")
    payment, expires_at = booking.payment, booking.hold_expires_at
    assert expires_at == t0 + timedelta(minutes=13)

    # The provider goes down. Amy opens the payment page: the reason, the hold's end, a retry, no 500.
    with at(t0 + timedelta(minutes=4)), provider_down(app):
        page = client.get(f"/bookings/{booking.id}/pay")
    assert page.status_code == 503
    html = text(page)
    assert UNAVAILABLE in html and 'role="alert"' in html
    assert f"We still hold this slot for you until {tokyo_time(expires_at)}." in html and "Try again" in html
    assert intents_of(localstripe, payment.id) == []  # nothing was even opened at the provider
    assert seen(booking).state == BookingState.HELD and booking.hold_expires_at == expires_at

    # It answers for a moment (the card form opens, with its intent), then fails again as she pays.
    with at(t0 + timedelta(minutes=5)):
        assert client.get(f"/bookings/{booking.id}/pay").status_code == 200
    token = localstripe.card_token()  # Stripe.js in her browser reaches Stripe itself
    with at(t0 + timedelta(minutes=6)), provider_down(app):
        paid = client.post(f"/bookings/{booking.id}/pay", json={"token": token})
    assert paid.status_code == 503
    assert paid.get_json() == {"status": "error", "message": UNAVAILABLE, "retry": True, "next": None}
    seen(booking)
    assert (booking.state, booking.hold_expires_at, payment.state) == (BookingState.HELD, expires_at,
                                                                       PaymentState.PENDING)
    [intent] = intents_of(localstripe, payment.id)
    assert intent["status"] == "requires_payment_method" and charges(localstripe, payment) == []

    # Meanwhile Ben wants the same morning: the hold still holds it, provider or not.
    with at(t0 + timedelta(minutes=7)), provider_down(app):
        login_as(ben)
        taken = client.post(f"/rooms/{room.id}/book", data={
            "date": day.isoformat(), "divisions": ["MORNING"], "expected_price": "2800"}, follow_redirects=True)
        day_page = text(client.get(f"/rooms/{room.id}/days/{day}"))
    assert taken.status_code == 200 and SLOT_TAKEN in text(taken)
    assert 'value="MORNING" id="unit-MORNING" disabled>' in day_page
    assert count(Booking, Booking.user_id == ben.id) == 0

    # Cho's hold ran out (t0+10) while the provider is down: the job cannot ask it whether money is on its
    # way, so it leaves the hold for its next run, and leaves Amy's live hold alone.
    with at(t0 + timedelta(minutes=11)), provider_down(app):
        assert release_expired_holds() == {"provider_unreachable": 1}
    db.session.rollback()
    assert seen(cho_booking).state == BookingState.HELD and cho_booking.payment.state == PaymentState.PENDING
    assert seen(booking).state == BookingState.HELD

    # The provider is back. Amy presses pay again (same token: one charge), and the job's next run releases
    # Cho's hold and cancels its intent.
    ids = booking.id, cho_booking.id
    with at(t0 + timedelta(minutes=12)):
        login_as(amy)
        again = client.post(f"/bookings/{booking.id}/pay", json={"token": token})
        assert again.status_code == 200
        assert again.get_json() == {"status": "confirmed", "redirect": f"/bookings/{booking.id}/receipt"}
        assert run_job({j.id: j for j in JOBS}["release_expired_holds"]) == {"released": 1}

    booking, cho_booking = (db.session.get(Booking, i) for i in ids)
    payment = booking.payment
    assert booking.state == BookingState.CONFIRMED and booking.hold_expires_at == expires_at
    assert (payment.state, payment.captured_amount) == (PaymentState.CAPTURED, 2800)
    [charge] = charges(localstripe, payment)
    assert (charge["amount"], charge["captured"]) == (2800, True)
    assert count(LedgerEntry, LedgerEntry.payment_id == payment.id) == 1 and count(Receipt) == 1
    assert [a for a, _ in audit_actions("booking", booking.id)] == ["held", "held->confirmed"]

    assert cho_booking.state == BookingState.EXPIRED and cho_booking.payment.state == PaymentState.CANCELLED
    assert fetch_intent(localstripe, cho_booking.payment.intent_id)["status"] == "canceled"
    assert charges(localstripe, cho_booking.payment) == [] and cho_booking.payment.captured_amount == 0
    assert count(LedgerEntry) == 1
    assert [a for a, _ in audit_actions("booking", cho_booking.id)] == ["held", "held->expired"]


def confirmed_at_the_provider(localstripe, intent_id: str, token: str) -> None:
    """What our confirm request did at the provider before its answer was lost: the token's card set on
    the intent, then the intent confirmed (authorised: manual capture). Straight to localstripe's API."""
    card = api(localstripe, "GET", f"/v1/tokens/{token}").json()["card"]["id"]
    api(localstripe, "POST", f"/v1/payment_intents/{intent_id}", data={"payment_method": card}).raise_for_status()
    api(localstripe, "POST", f"/v1/payment_intents/{intent_id}/confirm").raise_for_status()


@pytest.mark.parametrize("first", ["webhook", "retry", "job"])
def test_a_payment_the_provider_took_while_its_answer_was_lost_is_settled_once_whoever_comes_first(
        app, client, english, login_as, resident, room, localstripe, first):
    """Drill "the provider is down while residents pay", its worst moment: the pay request reached the
    provider, which authorised the card, but the answer never came back (the app saw a connection error).
    The provider's event, the resident's retry or the expiry job settles it, whichever comes first, and the
    other two change nothing: one charge, one ledger row, one confirmation."""
    login_as(resident)
    t0 = now_utc().replace(microsecond=0)
    with at(t0):
        booking = reserve_on_page(client, room, booking_day(), "MORNING")
        assert client.get(f"/bookings/{booking.id}/pay").status_code == 200
    payment = seen(booking).payment
    token = localstripe.card_token()

    with at(t0 + timedelta(minutes=2)), provider_down(app):
        confirmed_at_the_provider(localstripe, payment.intent_id, token)
        lost = client.post(f"/bookings/{booking.id}/pay", json={"token": token})
    assert lost.status_code == 503 and lost.get_json()["retry"] is True
    assert seen(booking).state == BookingState.HELD and payment.state == PaymentState.PENDING
    assert fetch_intent(localstripe, payment.intent_id)["status"] == "requires_capture"  # authorised, not taken

    def webhook(moment):
        with at(moment):
            intent = fetch_intent(localstripe, payment.intent_id)
            body = event_payload("payment_intent.amount_capturable_updated", intent, event_id="evt_lost_answer")
            response = client.post("/webhooks/stripe", data=body, headers=signed(localstripe.webhook_secret, body))
        assert response.status_code == 200
        return response.get_json()["outcome"]

    def retry(moment):
        with at(moment):
            response = client.post(f"/bookings/{booking.id}/pay", json={"token": localstripe.card_token()})
        assert response.status_code == 200
        return response.get_json()["status"]

    def job(moment):
        with at(max(moment, t0 + timedelta(minutes=11))):  # once the hold ran out (t0+10) unsettled, it asks
            counts = release_expired_holds()
        return "confirmed" if counts == {"confirmed": 1} else counts

    ways = {"webhook": webhook, "retry": retry, "job": job}
    order = [first, *(w for w in ways if w != first)]
    outcomes = [ways[w](t0 + timedelta(minutes=3 + 10 * n)) for n, w in enumerate(order)]

    assert outcomes[0] == "confirmed"
    assert outcomes[1:] == [{} if w == "job" else "confirmed" for w in order[1:]]  # nothing left to do
    seen(booking)
    assert booking.state == BookingState.CONFIRMED
    assert (payment.state, payment.captured_amount) == (PaymentState.CAPTURED, 2800)
    [charge] = charges(localstripe, payment)
    assert (charge["amount"], charge["captured"]) == (2800, True) and len(intents_of(localstripe, payment.id)) == 1
    assert count(LedgerEntry) == 1 and count(Receipt) == 1
    assert [a for a, _ in audit_actions("booking", booking.id)].count("held->confirmed") == 1
