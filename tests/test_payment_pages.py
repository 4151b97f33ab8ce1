"""Paying for a hold through the views, against a real localstripe: the payment page, the JSON pay
endpoints pay.js calls, the receipt, and cancelling with the refund the policy gives.

The browser's half (Stripe.js's createToken and its 3-D Secure box) is done here with the same
HTTP calls Stripe.js makes; tests/e2e drives the real thing.
"""
import re
import threading
from datetime import date, timedelta
from html import unescape

import pytest
import requests
from flask import current_app
from sqlalchemy import event, func, select

from reservations.extensions import db
from reservations.models import Booking, BookingState, LedgerEntry, Payment, PaymentState, Receipt, RefundState
from reservations.services import booking as booking_service
from reservations.services import checkout, expiry, refund_policy, rules
from reservations.timeutil import business_date, now_utc
from tests.conftest import CHUO_DIVISIONS, free_port
from tests.helpers import intents_of, run_together

pytestmark = pytest.mark.payments

DECLINED = "4000000000000341"  # attaches, then declines when charged
THREE_D_SECURE = "4000002500003155"


def day_ahead(first: int, last: int) -> date:
    """A day `first` to `last` days ahead that is not in the year-end break (bookable online)."""
    today = business_date(now_utc())
    for offset in range(first, last + 1):
        day = today + timedelta(days=offset)
        if not rules.is_year_end(day):
            return day
    raise AssertionError("no bookable day in range")


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def fresh(obj):
    db.session.rollback()  # see what the request committed, not this session's cache
    db.session.refresh(obj)
    return obj


@pytest.fixture
def signed_in(client, resident, login_as):
    login_as(resident)
    with client.session_transaction() as sess:
        sess["lang"] = "en"
    return resident


@pytest.fixture
def hold(client, signed_in, room):
    """Reserve a division through the form; returns the held booking (payments are on)."""

    def make(day: date | None = None, divisions=("MORNING",), price=2800) -> Booking:
        day = day or day_ahead(10, 20)
        response = client.post(f"/rooms/{room.id}/book", data={
            "date": day.isoformat(), "divisions": list(divisions), "expected_price": str(price)})
        made = db.session.scalars(select(Booking).order_by(Booking.id.desc())).first()
        assert response.status_code == 302
        assert response.headers["Location"] == f"/bookings/{made.id}/pay"
        return made

    return make


def authenticate(localstripe, client_secret: str, success: bool) -> None:
    """What Stripe.js's confirmCardPayment does when the resident answers localstripe's 3-D Secure box."""
    intent_id = client_secret.split("_secret_")[0]
    requests.post(f"{localstripe.url}/v1/payment_intents/{intent_id}/_authenticate",
                  params={"success": "true" if success else "false"},
                  json={"key": "pk_test_localstripe", "client_secret": client_secret}, timeout=5).raise_for_status()


# --- the payment page ---------------------------------------------------------------


def test_reserving_holds_the_slot_and_opens_the_payment_page(client, hold, localstripe):
    made = hold()

    assert made.state == BookingState.HELD and made.payment.state == PaymentState.NEW
    page = client.get(f"/bookings/{made.id}/pay")

    assert page.status_code == 200
    html = text(page)
    assert "¥2,800" in html and "Amount (tax included)" in html
    assert "Music room" in html and "Test Hall" in html and "09:00–12:00" in html
    expiry = made.hold_expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert re.search(rf'<time id="hold-countdown" datetime="{expiry}"[^>]*>until \d\d:\d\d</time>', html)
    assert f'<script src="{localstripe.url}/js.stripe.com/v3/"></script>' in html
    assert '<script src="/static/pay.js"></script>' in html
    assert 'id="card-element"' in html and 'role="alert"' in html
    assert 'data-key="pk_test_localstripe"' in html
    assert f'data-complete-url="/bookings/{made.id}/pay/complete"' in html
    fresh(made)
    assert made.payment.state == PaymentState.PENDING and made.payment.intent_id.startswith("pi_")


def test_the_booking_page_of_a_hold_offers_pay_now(client, hold):
    made = hold()

    html = text(client.get(f"/bookings/{made.id}"))

    assert "Held" in html and f'href="/bookings/{made.id}/pay"' in html and "Pay now" in html
    assert "Waiting for payment" in html and "Nothing has been charged" in html
    assert f'href="/bookings/{made.id}/pay"' in text(client.get("/bookings"))


def test_a_free_room_is_confirmed_at_once_even_with_payments_on(client, signed_in, make_room):
    free = make_room("談話室", divisions=[(code, start, end, 0, 0) for code, start, end, *_ in CHUO_DIVISIONS])

    response = client.post(f"/rooms/{free.id}/book", data={
        "date": day_ahead(10, 20).isoformat(), "divisions": ["MORNING"], "expected_price": "0"})

    made = db.session.scalars(select(Booking)).one()
    assert response.headers["Location"] == f"/bookings/{made.id}"
    assert made.state == BookingState.CONFIRMED and made.payment is None


# --- paying -------------------------------------------------------------------------


def test_a_good_card_confirms_the_booking_and_the_receipt_shows_its_number(client, hold, localstripe, resident):
    made = hold()
    client.get(f"/bookings/{made.id}/pay")

    response = client.post(f"/bookings/{made.id}/pay", json={"token": localstripe.card_token()})

    assert response.status_code == 200
    assert response.get_json() == {"status": "confirmed", "redirect": f"/bookings/{made.id}/receipt"}
    fresh(made)
    assert made.state == BookingState.CONFIRMED
    assert (made.payment.state, made.payment.captured_amount) == (PaymentState.CAPTURED, 2800)
    receipt = db.session.scalars(select(Receipt)).one()
    page = client.get(f"/bookings/{made.id}/receipt")
    assert page.status_code == 200
    html = text(page)
    assert "Thank you. Your booking is confirmed and paid." in html
    assert "領収書" in html and receipt.number in html and re.fullmatch(r"\d{4}-\d{6}", receipt.number)
    assert resident.name in html and "¥2,800" in html and "Amount (tax included)" in html
    assert "Music room" in html and "Test Hall" in html and "09:00–12:00" in html
    assert receipt.issuer in html and "Print this receipt" in html
    detail = text(client.get(f"/bookings/{made.id}"))
    assert "Confirmed" in detail and "Paid" in detail and f"Receipt {receipt.number}" in detail
    assert "Pay now" not in detail

    # A second click, a second token: the same booking, one charge.
    again = client.post(f"/bookings/{made.id}/pay", json={"token": localstripe.card_token()})
    assert again.get_json()["status"] == "confirmed"
    assert db.session.scalar(select(func.count(LedgerEntry.id))) == 1
    # Once paid, the payment page sends the resident to the receipt.
    assert client.get(f"/bookings/{made.id}/pay").headers["Location"] == f"/bookings/{made.id}/receipt"


def test_the_receipt_is_a_japanese_document_by_default(client, hold, localstripe, resident):
    made = hold()
    client.post(f"/bookings/{made.id}/pay", json={"token": localstripe.card_token()})
    with client.session_transaction() as sess:
        sess.pop("lang")  # the resident's own language: Japanese

    html = text(client.get(f"/bookings/{made.id}/receipt"))

    assert '<html lang="ja">' in html and "領収書" in html and "税込" in html
    assert f"{resident.name} 様" in html and "Receipt" not in html


def test_a_declined_card_is_an_error_and_frees_the_slot(client, hold, localstripe, room, make_user):
    made = hold()
    day = business_date(made.start_at)

    response = client.post(f"/bookings/{made.id}/pay", json={"token": localstripe.card_token(DECLINED)})

    assert response.status_code == 402
    reply = response.get_json()
    assert reply["status"] == "error"
    assert reply["message"] == "Your card was declined. Nothing was charged and the slot was released."
    assert reply["retry"] is False and reply["next"] == f"/rooms/{room.id}/days/{day}#day"
    fresh(made)
    assert made.state == BookingState.CANCELLED
    assert made.payment.state == PaymentState.FAILED and made.payment.captured_amount == 0
    day_view = text(client.get(f"/rooms/{room.id}/days/{day}"))
    assert re.search(r'value="MORNING" id="unit-MORNING">', day_view)  # not disabled: free
    other = make_user(name="佐藤 次郎")
    booking_service.reserve(other, room, rules.division_slot(room, day, ["MORNING"]))
    db.session.commit()


@pytest.mark.parametrize(("success", "state"), [(True, BookingState.CONFIRMED), (False, BookingState.CANCELLED)])
def test_a_3d_secure_card_asks_the_page_to_authenticate(client, hold, localstripe, success, state):
    made = hold()

    response = client.post(f"/bookings/{made.id}/pay", json={"token": localstripe.card_token(THREE_D_SECURE)})

    reply = response.get_json()
    assert response.status_code == 200 and reply["status"] == "requires_action"
    assert reply["client_secret"].startswith(fresh(made).payment.intent_id + "_secret_")
    authenticate(localstripe, reply["client_secret"], success)

    done = client.post(f"/bookings/{made.id}/pay/complete", json={})

    fresh(made)
    assert made.state == state
    if success:
        assert done.get_json() == {"status": "confirmed", "redirect": f"/bookings/{made.id}/receipt"}
        assert made.payment.state == PaymentState.CAPTURED
    else:
        assert done.status_code == 402
        assert done.get_json()["message"] == "The card authentication (3-D Secure) failed. Nothing was charged."
        assert made.payment.state == PaymentState.FAILED and made.payment.captured_amount == 0


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": "not a token"}, ["tok_x"], "tok_x", None])
def test_a_missing_or_malformed_token_is_a_400_never_a_500(client, hold, body):
    made = hold()

    response = client.post(f"/bookings/{made.id}/pay", json=body)

    assert response.status_code == 400
    assert response.get_json() == {"status": "error", "message": "Please enter your card details.",
                                   "retry": True, "next": None}
    assert fresh(made).state == BookingState.HELD


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_json_body_is_a_400_never_a_500(client, hold, depth):
    made = hold()

    response = client.post(f"/bookings/{made.id}/pay", data='{"token": ' + "[" * depth + "]" * depth + "}",
                           content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["message"] == "Please enter your card details."
    assert fresh(made).state == BookingState.HELD


def test_paying_after_the_hold_ran_out_charges_nothing(client, hold, localstripe):
    made = hold()
    client.get(f"/bookings/{made.id}/pay")
    expiry.release_expired_holds(now=made.hold_expires_at + timedelta(seconds=1))

    response = client.post(f"/bookings/{made.id}/pay", json={"token": localstripe.card_token()})

    assert response.status_code == 409
    assert response.get_json()["message"].startswith("Your hold on this slot has run out.")
    fresh(made)
    assert made.state == BookingState.EXPIRED and made.payment.captured_amount == 0
    page = client.get(f"/bookings/{made.id}/pay")
    assert page.headers["Location"] == f"/bookings/{made.id}"
    assert "Your hold on this slot has run out." in text(client.get(page.headers["Location"]))


# --- someone else's booking -----------------------------------------------------------


def test_another_residents_payment_and_receipt_are_not_found(client, signed_in, make_user, room, localstripe):
    other = make_user("jiro@example.com", name="佐藤 次郎")
    theirs = booking_service.reserve(other, room, rules.division_slot(room, day_ahead(10, 20), ["EVENING"]))
    db.session.commit()
    checkout.pay(theirs.payment, token=localstripe.card_token())
    db.session.commit()
    assert theirs.state == BookingState.CONFIRMED

    for attempt in (
        lambda: client.get(f"/bookings/{theirs.id}/pay"),
        lambda: client.post(f"/bookings/{theirs.id}/pay", json={"token": localstripe.card_token()}),
        lambda: client.post(f"/bookings/{theirs.id}/pay/complete", json={}),
        lambda: client.get(f"/bookings/{theirs.id}/receipt"),
    ):
        response = attempt()
        assert response.status_code == 404
        html = text(response)
        assert "佐藤" not in html and "¥3,600" not in html and "18:00" not in html
    assert client.get("/bookings/99999999999/receipt").status_code == 404
    assert db.session.scalar(select(func.count(LedgerEntry.id))) == 1


def test_a_booking_without_a_receipt_has_no_receipt_page(client, hold):
    made = hold()

    assert client.get(f"/bookings/{made.id}/receipt").status_code == 404


# --- the provider cannot be reached ----------------------------------------------------


class TestProviderUnreachable:
    @pytest.fixture
    def app_config(self, app_config):
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        return {**app_config, "STRIPE_API_BASE": dead, "STRIPE_JS_URL": f"{dead}/js.stripe.com/v3/"}

    def test_the_payment_page_says_so_with_a_retry_button_and_keeps_the_hold(self, client, hold):
        made = hold()

        page = client.get(f"/bookings/{made.id}/pay")

        assert page.status_code == 503
        html = text(page)
        assert "The payment service cannot be reached right now. Nothing was charged" in html
        assert re.search(rf'<form method="get" action="/bookings/{made.id}/pay">\s*<p class="actions">'
                         r'<button type="submit" class="primary">Try again</button>', html)
        fresh(made)
        assert made.state == BookingState.HELD and made.payment.state == PaymentState.NEW

    def test_paying_says_so_and_lets_the_resident_try_again(self, client, hold):
        made = hold()

        response = client.post(f"/bookings/{made.id}/pay", json={"token": "tok_anything"})

        assert response.status_code == 503
        reply = response.get_json()
        assert reply["message"].startswith("The payment service cannot be reached right now.")
        assert reply["retry"] is True
        assert fresh(made).state == BookingState.HELD


# --- cancelling a paid booking -----------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "policy", "percent", "refund"),
    [
        ((10, 20), None, 100, 2800),
        ((3, 6), None, 50, 1400),  # start − 7 days has passed, start − 2 days has not
        ((10, 20), [("days", 30, 100)], 0, 0),
    ],
)
def test_cancelling_a_paid_booking_shows_then_gives_the_policy_refund(
        client, hold, localstripe, room, days, policy, percent, refund):
    if policy is not None:
        refund_policy.set_room_policy(room, policy)
        db.session.commit()
    made = hold(day_ahead(*days))
    client.post(f"/bookings/{made.id}/pay", json={"token": localstripe.card_token()})

    before = text(client.get(f"/bookings/{made.id}"))
    if refund:
        assert f"If you cancel now, you get {percent}% back: ¥{refund:,} to your card." in before
    else:
        assert "If you cancel now, there is no refund under the cancellation policy." in before
    assert "Refund if you cancel" in before and 'aria-current="true"' in before

    response = client.post(f"/bookings/{made.id}/cancel")

    after = text(client.get(response.headers["Location"]))
    fresh(made)
    assert made.state == BookingState.CANCELLED
    payment = db.session.get(Payment, made.payment.id)
    assert payment.refunded_amount == refund
    if refund:
        assert f"Your booking has been cancelled. ¥{refund:,} will be refunded to your card." in after
        assert [(r.amount, r.state) for r in payment.refunds] == [(refund, RefundState.SUCCEEDED)]
        assert "Refunds" in after and "Refunded" in after
    else:
        assert "Your booking has been cancelled. Under the cancellation policy there is no refund." in after
        assert payment.refunds == []
    assert "Cancel booking" not in after


def test_cancelling_a_hold_before_paying_releases_it(client, hold):
    made = hold()
    client.get(f"/bookings/{made.id}/pay")

    response = client.post(f"/bookings/{made.id}/cancel")

    assert "Your booking has been cancelled." in text(client.get(response.headers["Location"]))
    fresh(made)
    assert made.state == BookingState.CANCELLED and made.payment.state == PaymentState.CANCELLED


# --- CSRF: pay.js sends the token in a header -------------------------------------------


class TestWithCsrf:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WTF_CSRF_ENABLED": True}

    def test_the_pay_endpoint_needs_the_pages_csrf_token_in_a_header(self, client, signed_in, room, localstripe):
        review = text(client.get(f"/rooms/{room.id}/book?date={day_ahead(10, 20)}&divisions=MORNING"))
        token = re.search(r'name="csrf_token" value="([^"]+)"', review).group(1)
        reserved = client.post(f"/rooms/{room.id}/book", data={
            "date": day_ahead(10, 20).isoformat(), "divisions": ["MORNING"], "expected_price": "2800",
            "csrf_token": token})
        pay_url = reserved.headers["Location"]
        page = text(client.get(pay_url))
        csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)

        refused = client.post(pay_url, json={"token": localstripe.card_token()})
        assert refused.status_code == 400

        paid = client.post(pay_url, json={"token": localstripe.card_token()}, headers={"X-CSRFToken": csrf})
        assert paid.get_json()["status"] == "confirmed"


def test_a_pay_page_whose_hold_the_job_releases_meanwhile_says_the_hold_ran_out(client, hold, localstripe):
    """The page read the hold as live; the expiry job released it before the page took the payment's lock.

    On PostgreSQL the job runs at that very moment (before the page's locking read). SQLite cannot
    interleave them (the page's transaction takes the write lock at BEGIN), so there the job runs just before.
    """
    made = hold()
    booking_id, payment_id = made.id, made.payment.id
    when = made.hold_expires_at + timedelta(seconds=1)  # for the job; for the page (real time) it is live
    db.session.rollback()
    page_thread = threading.get_ident()
    ran = []

    def job_first(conn, cursor, statement, *args):
        if threading.get_ident() == page_thread and not ran and "FOR UPDATE" in statement and "payments" in statement:
            ran.extend(run_together(current_app._get_current_object(),
                                    lambda: expiry.release_expired_holds(now=when), timeout=20))

    if db.engine.dialect.name == "postgresql":
        event.listen(db.engine, "before_cursor_execute", job_first)
    else:
        ran.append(expiry.release_expired_holds(now=when))
        db.session.commit()
    try:
        page = client.get(f"/bookings/{booking_id}/pay")
    finally:
        if db.engine.dialect.name == "postgresql":
            event.remove(db.engine, "before_cursor_execute", job_first)

    assert ran == [{"released": 1}], ran
    assert page.status_code == 302 and page.headers["Location"] == f"/bookings/{booking_id}"
    assert "Your hold on this slot has run out." in text(client.get(page.headers["Location"]))
    payment = db.session.get(Payment, payment_id)
    assert payment.state == PaymentState.CANCELLED and payment.intent_id is None
    assert intents_of(localstripe, payment_id) == []  # no intent opened for a hold that is gone
