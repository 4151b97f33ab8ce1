"""Reserve now, pay by a deadline: the booking holds its slot until 23:59 three days before the day of use.

Paid by then it is confirmed; unpaid, the expiry job cancels it at the deadline and tells the resident, and
the slot is free the moment the deadline passes, job or no job; a payment after it is always returned.
Reminders go out before the deadline and on its day, once each. A counter booking (a walk-in has no account)
is paid through a signed link that opens that booking's checkout only, until its deadline.
"""
from datetime import time, timedelta
from html import unescape
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AttentionCase, Booking, BookingState, PaymentState, Refund, RefundState, Role
from reservations.payments import get_gateway
from reservations.services import checkout, deadline, expiry
from reservations.services.booking import place_hold, reserve
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot, is_year_end
from reservations.timeutil import at_tokyo, business_date, now_utc
from tests.helpers import (
    DECLINED_CARD,
    THREE_D_SECURE_CARD,
    audit_actions,
    book,
    booking_day,
    count,
    fetch_intent,
    finish_3d_secure,
    outbox,
    post_event,
)

pytestmark = pytest.mark.payments


@pytest.fixture
def deadline_room(make_room):
    """A room paid by 23:59 three days before the day of use; the first reminder two days before that."""
    return make_room("和室", payment_mode="deadline", deadline_days_before=3, deadline_time=time(23, 59),
                     reminder_days_before=2)


@pytest.fixture
def english_resident(resident):
    resident.locale = "en"  # mails in English, whatever the Japanese catalog says of the new strings
    db.session.commit()
    return resident


@pytest.fixture
def walk_in(make_user):
    return make_user(f"walkin-{now_utc().timestamp():.0f}@walk-in.invalid", walk_in=True, verified=False)


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF)


def deadline_minute(room, day):
    """The deadline's minute as the room states it, e.g. 23:59 three days before."""
    return at_tokyo(day - timedelta(days=room.deadline_days_before), room.deadline_time)


def due_of(room, day):
    """When the hold lapses: the end of the deadline's minute."""
    return deadline_minute(room, day) + timedelta(minutes=1, microseconds=-1)


def booked_long_ago(user, room, *, staff=None):
    """A deadline booking made weeks ago for a day a few days ahead, whose deadline (ten days before it) has
    passed by the real clock, which the webhook endpoint and the link's page use. With `staff`, a counter one."""
    room.deadline_days_before = 10
    db.session.commit()
    day = business_date(now_utc()) + timedelta(days=1)
    while is_year_end(day):
        day += timedelta(days=1)
    made_at = now_utc() - timedelta(days=20)
    slot = division_slot(room, day, ["MORNING"])
    if staff is None:
        booking = reserve(user, room, slot, now=made_at)
    else:
        booking = place_hold(user, room, slot, now=made_at, deadline=True, channel="counter", actor=staff)
    db.session.commit()
    assert booking.pay_mode == "deadline" and booking.hold_expires_at < now_utc() - timedelta(days=2)
    return booking


def texts(mails):
    return [m.get_body().get_content() for m in mails]


# -- (1) paid in the deadline minute (23:59:59): confirmed; the pages say "pay by" --------------------------------

def test_a_booking_paid_in_the_deadline_minute_is_confirmed(
        app, client, login_as, localstripe, deadline_room, resident, now):
    login_as(resident)
    client.post("/lang/en")
    day = booking_day().isoformat()
    review = unescape(client.get(f"/rooms/{deadline_room.id}/book?date={day}&divisions=MORNING").get_data(as_text=True))
    assert "The slot is reserved for you at once. Pay by card by " in review and "minutes while you pay" not in review
    reserved = client.post(f"/rooms/{deadline_room.id}/book",
                           data={"date": day, "divisions": ["MORNING"], "expected_price": "2800"})
    booking = db.session.scalars(select(Booking)).one()
    assert reserved.headers["Location"] == f"/bookings/{booking.id}/pay"
    due = due_of(deadline_room, booking_day())
    assert (booking.state, booking.pay_mode, booking.hold_expires_at) == (BookingState.HELD, "deadline", due)
    mine = unescape(client.get("/bookings").get_data(as_text=True))
    assert f'href="/bookings/{booking.id}/pay"' in mine and ">Pay<" in mine and "Pay by " in mine
    assert "Pay now" not in mine and "Your booking is reserved. Please pay by " in mine  # the reserve's flash
    page = unescape(client.get(f"/bookings/{booking.id}/pay").get_data(as_text=True))
    assert "Pay by " in page and 'id="pay-form"' in page
    assert "hold-countdown" not in page and "minutes while you pay" not in page  # no 10-minute hold here

    at = deadline_minute(deadline_room, booking_day()) + timedelta(seconds=59)  # 23:59:59, in the deadline minute
    outcome, _ = checkout.pay(booking.payment, token=localstripe.card_token(), now=at)
    db.session.commit()

    assert outcome == "confirmed" and booking.state == BookingState.CONFIRMED
    assert booking.payment.state == PaymentState.CAPTURED and booking.payment.captured_amount == booking.price
    assert expiry.release_expired_holds(now=due + timedelta(minutes=1)) == {}  # nothing left for the job
    assert booking.state == BookingState.CONFIRMED and count(AttentionCase) == 0


def test_a_declined_card_keeps_a_deadline_booking_reserved_until_its_deadline(
        app, localstripe, deadline_room, resident, now):
    booking = book(resident, deadline_room, now=now)
    with pytest.raises(BookingError) as declined:
        checkout.pay(booking.payment, token=localstripe.card_token(DECLINED_CARD), now=now)
    db.session.commit()
    assert declined.value.code == "card_declined_deadline_kept"
    assert booking.state == BookingState.HELD and booking.payment.state == PaymentState.FAILED
    assert booking.is_active(now)  # still holds its slot until the deadline
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "requires_payment_method"
    # (Stripe takes another card on that intent; localstripe cannot: see payments/stripe_gateway.py.)

    # Nobody paid by the deadline: the job cancels the booking and the intent, as for any unpaid one.
    assert expiry.release_expired_holds(now=booking.hold_expires_at + timedelta(minutes=1)) == \
        {"deadline_cancelled": 1}
    db.session.expire_all()
    assert booking.state == BookingState.CANCELLED
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"


# -- (2) unpaid one minute after: the job cancels it and tells the resident -----------------------------------

@pytest.mark.parametrize("channel", ["online", "counter"])
def test_an_unpaid_booking_is_cancelled_by_the_job_at_its_deadline_and_the_resident_told(
        app, localstripe, deadline_room, english_resident, walk_in, staff, now, channel):
    slot = division_slot(deadline_room, booking_day(), ["MORNING"])
    if channel == "online":
        booking = reserve(english_resident, deadline_room, slot, now=now)
        db.session.commit()
        checkout.ensure_intent(booking.payment, now=now)  # the pay page was opened, no card given
    else:
        booking = place_hold(walk_in, deadline_room, slot, now=now, deadline=True, channel="counter", actor=staff)
    db.session.commit()
    due = booking.hold_expires_at

    minute = deadline_minute(deadline_room, booking_day())
    assert expiry.release_expired_holds(now=minute + timedelta(seconds=59)) == {}  # 23:59:59: still payable
    counts = expiry.release_expired_holds(now=minute + timedelta(minutes=1))  # 00:00, one minute after 23:59

    db.session.expire_all()
    assert counts == {"deadline_cancelled": 1}
    assert booking.state == BookingState.CANCELLED
    assert ("held->cancelled", "unpaid at the payment deadline") in audit_actions("booking", booking.id)
    cases = db.session.scalars(select(AttentionCase.reason)).all()
    if channel == "online":
        assert booking.payment.state == PaymentState.CANCELLED
        assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"
        [mail] = outbox(app)
        assert mail["To"] == english_resident.email and "not paid by the deadline" in mail["Subject"]
        assert f"http://127.0.0.1:5000/bookings/{booking.id}" in mail.get_body().get_content()
        assert cases == []
    else:
        assert outbox(app) == []  # a walk-in has no address: staff follow it up
        assert cases == ["counter_unpaid_past_deadline"]
    # Once: a second run finds nothing, and says nothing again.
    assert expiry.release_expired_holds(now=due + timedelta(minutes=2)) == {}
    assert len(outbox(app)) == (1 if channel == "online" else 0)


# -- (3) a payment after the deadline is returned, free slot or not -------------------------------------------

@pytest.mark.parametrize("how", ["webhook, authorised", "webhook, captured", "job, authorised"])
def test_a_payment_after_the_deadline_is_returned_with_a_staff_case_and_a_mail(
        app, client, localstripe, deadline_room, english_resident, how):
    booking = booked_long_ago(english_resident, deadline_room)
    payment = booking.payment
    checkout.ensure_intent(payment, now=booking.created_at)
    db.session.commit()
    gateway = get_gateway()
    gateway.confirm_with_token(payment.intent_id, localstripe.card_token(), payment_key=payment.idempotency_key)
    if "captured" in how:
        gateway.capture(payment.intent_id, payment_key=payment.idempotency_key)
    intent = fetch_intent(localstripe, payment.intent_id)

    if how.startswith("webhook"):
        response = post_event(client, localstripe, "payment_intent.succeeded", intent)
        assert response.status_code == 200 and response.json["outcome"] == "refunded"
    else:
        assert expiry.release_expired_holds() == {"refunded": 1}

    db.session.expire_all()
    assert booking.state == BookingState.CANCELLED
    assert ("held->cancelled", "paid after the payment deadline") in audit_actions("booking", booking.id)
    if "captured" in how:
        [refund] = db.session.scalars(select(Refund)).all()
        assert (refund.amount, refund.state) == (booking.price, RefundState.SUCCEEDED)
        assert payment.refunded_amount == payment.captured_amount == booking.price
    else:
        assert fetch_intent(localstripe, payment.intent_id)["status"] == "canceled"  # the authorisation released
        assert payment.state == PaymentState.CANCELLED and count(Refund) == 0
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.booking_id, case.reason) == (booking.id, "paid_after_deadline")
    [mail] = outbox(app)
    assert mail["To"] == english_resident.email and "after the payment deadline" in mail["Subject"]
    # The resident has been told: the job neither cancels it again nor mails again.
    assert expiry.release_expired_holds() == {}
    assert len(outbox(app)) == 1 and count(AttentionCase) == 1


# -- (4) the deadline frees the slot by itself ----------------------------------------------------------------

def test_the_slot_is_free_the_minute_after_the_deadline_without_any_job(
        app, localstripe, deadline_room, english_resident, make_user, now):
    booking = book(english_resident, deadline_room, now=now)
    due = booking.hold_expires_at
    slot = division_slot(deadline_room, booking_day(), ["MORNING"])
    other = make_user()
    with pytest.raises(BookingError) as taken:
        place_hold(other, deadline_room, slot, now=due - timedelta(minutes=1))
    assert taken.value.code == "slot_taken"
    db.session.rollback()

    theirs = place_hold(other, deadline_room, slot, now=due + timedelta(minutes=1))  # no job has run
    db.session.commit()

    assert theirs.state == BookingState.HELD
    db.session.expire_all()
    assert booking.state == BookingState.EXPIRED  # retired by their booking
    # The job still tells the resident whose booking ended, once.
    assert expiry.release_expired_holds(now=due + timedelta(minutes=2)) == {"deadline_told": 1}
    assert expiry.release_expired_holds(now=due + timedelta(minutes=3)) == {}
    assert [m["To"] for m in outbox(app)] == [english_resident.email]


# -- (5) reminders --------------------------------------------------------------------------------------------

def test_reminders_go_out_before_the_deadline_and_on_its_day_once_each_and_never_to_a_paid_booking(
        app, localstripe, deadline_room, english_resident, make_user, now):
    booking = book(english_resident, deadline_room, now=now)
    paid = book(make_user(locale="en"), deadline_room, ("EVENING",), now=now)
    assert checkout.pay(paid.payment, token=localstripe.card_token(), now=now)[0] == "confirmed"
    db.session.commit()
    sent_before = len(outbox(app))  # the paid one's receipt
    due_day = business_date(booking.hold_expires_at)
    first = at_tokyo(due_day - timedelta(days=2), deadline.REMINDER_TIME)
    last = at_tokyo(due_day, deadline.REMINDER_TIME)

    def run(at):
        result = deadline.send_payment_reminders(now=at)
        db.session.expire_all()
        return result

    assert run(first - timedelta(minutes=1)) == {"first": 0, "deadline_day": 0}
    assert run(first) == {"first": 1, "deadline_day": 0}
    assert run(first + timedelta(hours=1)) == {"first": 0, "deadline_day": 0}
    assert booking.reminders_sent == 1
    assert run(last - timedelta(minutes=1)) == {"first": 0, "deadline_day": 0}
    assert run(last) == {"first": 0, "deadline_day": 1}
    assert run(last + timedelta(hours=1)) == {"first": 0, "deadline_day": 0}
    assert run(booking.hold_expires_at + timedelta(minutes=1)) == {"first": 0, "deadline_day": 0}

    mails = outbox(app)[sent_before:]
    assert [m["To"] for m in mails] == [english_resident.email] * 2
    assert "Reminder" in mails[0]["Subject"] and "Today" in mails[1]["Subject"]
    assert all(f"http://127.0.0.1:5000/bookings/{booking.id}/pay" in body for body in texts(mails))
    assert booking.reminders_sent == 2 and paid.reminders_sent == 0
    assert [a for a, _ in audit_actions("booking", booking.id)].count("payment reminder sent") == 2


def test_a_job_that_was_stopped_sends_only_the_latest_reminder_due(app, localstripe, deadline_room,
                                                                   english_resident, now):
    booking = book(english_resident, deadline_room, now=now)
    last = at_tokyo(business_date(booking.hold_expires_at), deadline.REMINDER_TIME)

    assert deadline.send_payment_reminders(now=last + timedelta(hours=2)) == {"first": 0, "deadline_day": 1}
    assert deadline.send_payment_reminders(now=last + timedelta(hours=3)) == {"first": 0, "deadline_day": 0}
    assert len(outbox(app)) == 1


# -- (6) the caps ---------------------------------------------------------------------------------------------

def test_deadline_bookings_count_against_the_active_cap_but_not_against_the_live_holds_cap(
        app, localstripe, deadline_room, make_room, resident, now):
    pay_now_room = make_room("会議室")
    assert app.config["MAX_LIVE_HOLDS"] == 2 and app.config["MAX_ACTIVE_BOOKINGS"] == 5
    day = booking_day()
    for code in ("MORNING", "AFTERNOON", "EVENING"):
        assert book(resident, deadline_room, (code,), now=now).pay_mode == "deadline"
    for code in ("MORNING", "AFTERNOON"):  # two short holds on top of three deadline bookings: allowed
        assert book(resident, pay_now_room, (code,), now=now).pay_mode == "now"

    with pytest.raises(BookingError) as refused:  # but five active bookings are the most
        reserve(resident, pay_now_room, division_slot(pay_now_room, day, ["EVENING"]), now=now)
    assert refused.value.code == "too_many"


# -- (7) too late for a deadline: paid now --------------------------------------------------------------------

def test_a_booking_made_when_its_deadline_would_have_passed_is_paid_now(app, deadline_room, make_user, now):
    day = booking_day()
    due = due_of(deadline_room, day)

    def hold(at, code):
        booking = place_hold(make_user(), deadline_room, division_slot(deadline_room, day, [code]), now=at)
        db.session.commit()
        return booking.pay_mode, booking.hold_expires_at - at

    assert hold(due - timedelta(minutes=11), "MORNING") == ("deadline", timedelta(minutes=11))
    assert hold(due - timedelta(minutes=5), "AFTERNOON") == ("now", timedelta(minutes=10))  # a later "deadline" is none
    assert hold(due + timedelta(hours=1), "EVENING") == ("now", timedelta(minutes=10))


# -- (8) the signed payment link of a counter booking ---------------------------------------------------------

def test_the_signed_link_pays_that_counter_booking_without_logging_in(
        app, client, localstripe, room, deadline_room, walk_in, staff, resident, now):
    slot = division_slot(room, booking_day(), ["MORNING"])  # a pay-now room: the counter asks for a deadline
    booking = place_hold(walk_in, room, slot, now=now, deadline=True, channel="counter", actor=staff)
    other = book(resident, deadline_room, now=now)
    db.session.commit()
    link = deadline.payment_link(booking)
    assert link.startswith("http://127.0.0.1:5000/pay/")
    path = urlsplit(link).path
    assert deadline.booking_of_link(path.rsplit("/", 1)[1]) == booking
    assert deadline.booking_of_link(path.rsplit("/", 1)[1], now=booking.hold_expires_at) is None  # expired

    client.post("/lang/en")
    page = client.get(path)  # nobody is signed in
    html = unescape(page.get_data(as_text=True))
    assert page.status_code == 200 and "Pay by " in html
    assert f'action="{path}"' in html and f'data-complete-url="{path}/complete"' in html
    assert f"/bookings/{booking.id}" not in html  # no page of My bookings to go back to
    challenged = client.post(path, json={"token": localstripe.card_token(THREE_D_SECURE_CARD)})
    assert challenged.get_json()["status"] == "requires_action"  # 3-D Secure, as on the pay page
    db.session.expire_all()
    assert finish_3d_secure(localstripe, booking.payment.intent_id, success=True).ok
    paid = client.post(f"{path}/complete", json={})
    assert paid.get_json() == {"status": "confirmed", "redirect": path}
    db.session.expire_all()
    assert booking.state == BookingState.CONFIRMED and booking.payment.state == PaymentState.CAPTURED
    assert other.state == BookingState.HELD and other.payment.intent_id is None  # only that booking
    assert client.get(path).status_code == 200  # the paid page, until the deadline

    token = path.rsplit("/", 1)[1]
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "x", token + "x"):
        response = client.get(f"/pay/{bad}")
        assert response.status_code == 404 and "payment link is not valid" in response.get_data(as_text=True)
        assert client.post(f"/pay/{bad}", json={"token": localstripe.card_token()}).status_code == 404
    assert db.session.scalar(select(Booking.state).where(Booking.id == other.id)) == BookingState.HELD


def test_the_link_of_a_booking_past_its_deadline_is_a_404(app, client, localstripe, room, walk_in, staff):
    booking = booked_long_ago(walk_in, room, staff=staff)
    path = urlsplit(deadline.payment_link(booking)).path
    client.post("/lang/en")

    response = client.get(path)

    assert response.status_code == 404 and "payment link is not valid" in response.get_data(as_text=True)
    assert client.post(path, json={"token": localstripe.card_token()}).status_code == 404
    assert client.post(f"{path}/complete", json={}).status_code == 404  # nothing was begun to settle
    db.session.expire_all()
    assert booking.payment is None and booking.state == BookingState.HELD
