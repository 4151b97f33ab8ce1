"""Booking at the counter (窓口): for a registered resident or a walk-in, paid in cash, on the terminal,
or online by the payment deadline, each recorded as what it was."""
import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
    Booking,
    BookingState,
    Building,
    LedgerEntry,
    Payment,
    PaymentState,
    Receipt,
    Role,
    User,
)
from reservations.services import counter, deadline
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot
from tests.helpers import booking_day, count, outbox


@pytest.fixture
def staff(make_user, login_as):
    return login_as(make_user("staff@example.com", role=Role.STAFF, name="窓口 職員"))


def counter_url(room, day, division="MORNING", **more) -> str:
    query = "&".join(f"{k}={v}" for k, v in more.items())
    return f"/staff/counter/new?room_id={room.id}&date={day.isoformat()}&division={division}" + (
        f"&{query}" if query else "")


WALK_IN = {"customer": "walk_in", "name": "窓口 太郎", "name_kana": "マドグチ タロウ", "phone": "03-1234-5678",
           "residency": "resident"}


def post_booking(client, room, day, *, division="MORNING", query=None, **fields):
    data = {"date": day.isoformat(), "divisions": [division], **fields}
    url = counter_url(room, day, division, **({"q": query} if query else {}))
    return client.post(url, data=data)


def test_cash_is_captured_ledgered_and_receipted_with_the_next_serial(app, client, english, staff, room):
    day = booking_day()
    first = post_booking(client, room, day, division="MORNING", method="cash", **WALK_IN)
    second = post_booking(client, room, day, division="AFTERNOON", method="cash", **WALK_IN)
    assert first.status_code == second.status_code == 302
    booking = db.session.scalars(select(Booking).order_by(Booking.id.desc())).first()
    assert second.headers["Location"] == f"/staff/bookings/{booking.id}/receipt"
    assert booking.state == BookingState.CONFIRMED and booking.channel == "counter" and booking.price == 3600
    payment = booking.payment
    assert (payment.provider, payment.state, payment.captured_amount, payment.intent_id) == (
        "cash", PaymentState.CAPTURED, 3600, None)
    ledger = db.session.scalars(select(LedgerEntry).where(LedgerEntry.payment_id == payment.id)).all()
    assert [(e.kind, e.amount, e.reference) for e in ledger] == [("capture", 3600, f"cash-{payment.id}")]
    receipts = db.session.scalars(select(Receipt).order_by(Receipt.serial)).all()
    assert [(r.method, r.amount) for r in receipts] == [("cash", 2800), ("cash", 3600)]
    assert receipts[1].serial == receipts[0].serial + 1 and receipts[1].booking_id == booking.id
    page = client.get(f"/staff/bookings/{booking.id}/receipt").get_data(as_text=True)
    assert receipts[1].number in page and "¥3,600" in page and "in cash" in page and "窓口 太郎" in page


def test_a_walk_in_is_booked_by_name_kana_and_phone_without_an_address_and_gets_no_mail(app, client, staff, room):
    response = post_booking(client, room, booking_day(), method="cash", **WALK_IN)
    assert response.status_code == 302
    walk_in = db.session.scalar(select(User).where(User.walk_in.is_(True)))
    assert (walk_in.name, walk_in.name_kana, walk_in.phone, walk_in.role) == (
        "窓口 太郎", "マドグチ タロウ", "03-1234-5678", Role.RESIDENT)
    assert walk_in.email.startswith("walk-in-") and walk_in.email.endswith("@walk-in.invalid")
    assert walk_in.email_verified_at is None and not walk_in.check_password("")  # no password ever matches
    assert not walk_in.check_password("!")
    assert db.session.scalar(select(Booking.user_id)) == walk_in.id
    assert outbox(app) == []  # the receipt mail went nowhere: it is printed instead


def test_a_walk_in_needs_name_kana_and_phone(app, client, english, staff, room):
    response = post_booking(client, room, booking_day(), method="cash", customer="walk_in", name="窓口 太郎")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Enter the reading of the name in kana." in html and "Enter a phone number to reach them." in html
    assert count(Booking) == 0 and count(User, User.walk_in.is_(True)) == 0


def test_the_terminal_needs_its_slip_number_and_records_it(app, client, english, staff, room):
    day = booking_day()
    response = post_booking(client, room, day, method="terminal", slip_number="", **WALK_IN)
    assert response.status_code == 422
    assert "Enter the slip number the card terminal printed." in response.get_data(as_text=True)
    assert count(Booking) == 0 and count(Payment) == 0 and count(User, User.walk_in.is_(True)) == 0
    # The service says the same to any caller, before it makes anything.
    with pytest.raises(BookingError) as refused:
        counter.book_on_behalf(staff, room, division_slot(room, day, ["MORNING"]), method="terminal",
                               slip_number="  ", **{k: WALK_IN[k] for k in ("name", "name_kana", "phone")})
    assert refused.value.code == "slip_required" and count(User, User.walk_in.is_(True)) == 0
    db.session.rollback()

    assert post_booking(client, room, day, method="terminal", slip_number="ＴＭ-0042", **WALK_IN).status_code == 302
    payment = db.session.scalar(select(Payment))
    assert (payment.provider, payment.slip_number, payment.state, payment.captured_amount) == (
        "terminal", "TM-0042", PaymentState.CAPTURED, 2800)
    receipt = db.session.scalar(select(Receipt))
    assert receipt.method == "terminal"
    assert "TM-0042" in client.get(f"/staff/bookings/{payment.booking_id}/receipt").get_data(as_text=True)


@pytest.mark.payments  # online payment on: a deadline booking's checkout waits for the resident
def test_online_by_the_deadline_holds_the_booking_with_a_payment_link_and_captures_nothing(
        app, client, english, staff, room, resident):
    day = booking_day()
    response = post_booking(client, room, day, method="online", query=resident.email[:8],
                            customer="registered", user_id=str(resident.id))
    booking = db.session.scalar(select(Booking))
    assert response.status_code == 302 and response.headers["Location"] == f"/staff/bookings/{booking.id}/payment-slip"
    assert (booking.state, booking.pay_mode, booking.user_id) == (BookingState.HELD, "deadline", resident.id)
    assert booking.hold_expires_at == deadline.payment_deadline(room, booking.start_at)
    payment = booking.payment
    assert (payment.provider, payment.state, payment.captured_amount, payment.intent_id) == (
        "stripe", PaymentState.NEW, 0, None)
    assert count(LedgerEntry) == 0 and count(Receipt) == 0
    link = deadline.payment_link(booking)
    mails = outbox(app)
    assert [m["To"] for m in mails] == [resident.email] and link in mails[0].get_content()
    slip = client.get(f"/staff/bookings/{booking.id}/payment-slip").get_data(as_text=True)
    assert link in slip and "¥2,800" in slip


@pytest.mark.payments
def test_online_is_refused_when_the_deadline_would_be_no_later_than_paying_now(app, staff, room, resident, now):
    room.deadline_days_before = 30  # the deadline of a slot two weeks ahead has passed already
    db.session.commit()
    with pytest.raises(BookingError) as refused:
        counter.book_on_behalf(staff, room, division_slot(room, booking_day(), ["MORNING"]), method="online",
                               user=resident, now=now)
    assert refused.value.code == "deadline_too_close" and count(Booking) == 0


def test_a_registered_resident_is_found_by_address_name_or_phone_and_booked(
        app, client, english, staff, room, make_user):
    resident = make_user("hanako.yamada@example.com", name="山田 花子", name_kana="ヤマダ ハナコ",
                         phone="090-1111-2222")
    make_user("other@example.com", name="佐藤 一郎")
    make_user("yamada.staff@example.com", role=Role.STAFF, name="山田 職員")  # staff are never offered
    for query in ("hanako.ya", "山田", "ヤマダ", "090-1111", "09011112222"):
        assert [u.id for u in counter.search_residents(query)] == [resident.id], query
    assert counter.search_residents("y") == []  # one letter would list the ward
    assert counter.search_residents("%") == []  # a LIKE wildcard is a character, not "anything"
    day = booking_day()
    page = client.get(counter_url(room, day, q="山田")).get_data(as_text=True)
    assert "hanako.yamada@example.com" in page and "yamada.staff@example.com" not in page
    response = post_booking(client, room, day, method="cash", query="山田", customer="registered",
                            user_id=str(resident.id))
    assert response.status_code == 302
    booking = db.session.scalar(select(Booking))
    assert (booking.user_id, booking.channel, booking.residency) == (resident.id, "counter", "resident")
    assert count(User, User.walk_in.is_(True)) == 0
    assert [m["To"] for m in outbox(app)] == [resident.email]  # the receipt, by mail as for a card


def test_a_back_office_account_is_not_booked_for(app, client, english, staff, room):
    response = post_booking(client, room, booking_day(), method="cash", customer="registered",
                            user_id=str(staff.id))
    assert response.status_code == 422 and count(Booking) == 0


def test_staff_of_another_building_are_refused(app, client, make_user, login_as, room, resident):
    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall")
    elsewhere = login_as(make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other]))
    day = booking_day()
    assert client.get(counter_url(room, day)).status_code == 404
    assert post_booking(client, room, day, method="cash", **WALK_IN).status_code == 404
    with pytest.raises(BookingError) as refused:
        counter.book_on_behalf(elsewhere, room, division_slot(room, day, ["MORNING"]), method="cash", user=resident)
    assert refused.value.code == "staff_only"
    db.session.rollback()
    assert count(Booking) == 0


def test_the_page_shows_the_slot_and_its_fees_from_the_day_views_link(app, client, english, staff, room):
    html = client.get(counter_url(room, booking_day())).get_data(as_text=True)
    assert "¥2,800 in the ward" in html and "¥4,200 for non-residents" in html
    assert '<input checked id="divisions-0" name="divisions" type="checkbox" value="MORNING">' in html
    # Without a room it offers the rooms of the staff member's buildings.
    picker = client.get("/staff/counter/new").get_data(as_text=True)
    assert f"/staff/counter/new?room_id={room.id}" in picker


@pytest.mark.payments
def test_a_booking_waiting_for_its_online_payment_is_paid_at_the_counter_instead(
        app, client, english, staff, room, resident, localstripe, now):
    from reservations.services import checkout
    from tests.helpers import fetch_intent

    booking = counter.book_on_behalf(staff, room, division_slot(room, booking_day(), ["MORNING"]),
                                     method="online", user=resident, now=now).booking
    db.session.commit()
    checkout.ensure_intent(booking.payment, now=now)  # the resident opened the card form, and came in instead
    db.session.commit()
    intent_id = booking.payment.intent_id

    page = client.get(f"/staff/bookings/{booking.id}").get_data(as_text=True)
    assert f'action="/staff/bookings/{booking.id}/counter-payment"' in page
    refused = client.post(f"/staff/bookings/{booking.id}/counter-payment", data={"pay-method": "terminal"})
    assert refused.status_code == 302 and count(LedgerEntry) == 0  # no slip number: nothing taken
    response = client.post(f"/staff/bookings/{booking.id}/counter-payment",
                           data={"pay-method": "terminal", "pay-slip_number": "T-0042"})

    db.session.expire_all()
    assert response.headers["Location"] == f"/staff/bookings/{booking.id}/receipt"
    assert booking.state == BookingState.CONFIRMED
    payment = booking.payment
    assert (payment.provider, payment.slip_number, payment.state, payment.captured_amount) == (
        "terminal", "T-0042", PaymentState.CAPTURED, booking.price)
    assert fetch_intent(localstripe, intent_id)["status"] == "canceled"  # no money can come online any more
    assert [(e.kind, e.amount) for e in db.session.scalars(select(LedgerEntry))] == [("capture", booking.price)]
    assert db.session.scalar(select(Receipt.method).where(Receipt.booking_id == booking.id)) == "terminal"
    # A late event for the cancelled intent finds the payment captured, and changes nothing.
    assert checkout.settle(payment, now=now) == "confirmed" and count(LedgerEntry) == 1
