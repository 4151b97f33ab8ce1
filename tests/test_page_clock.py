"""Pages at a time boundary, with the clock frozen for the whole request (time-machine).

Services take `now=` in their own tests; here nothing is passed: the page, its
forms, the rules and the database writes all read the same frozen clock, as a
request at that instant would. The session is signed in inside each frozen
block, since a cookie signed months earlier would have expired by then.
"""
import re
from datetime import UTC, date, datetime

import pytest
import time_machine
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import Booking, BookingState, Receipt
from reservations.timeutil import TOKYO


def tokyo(*args) -> datetime:
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)


def frozen(moment: datetime):
    # tick=False: the clock stands still for the whole request, so "before 09:00" stays before.
    return time_machine.travel(moment, tick=False)


def day_section(html: str) -> str:
    return re.search(r'<section id="day"(.*?)</section>', html, re.S).group(1)


# --- the booking window opens: 1 March 2027 09:00 Tokyo opens all of May ----------------

OPENING = (2027, 3, 1, 9, 0, 0)
MAY_DAY = date(2027, 5, 12)  # a plain Wednesday


def reserve(client, room, day: date):
    return client.post(f"/rooms/{room.id}/book",
                       data={"date": day.isoformat(), "divisions": "MORNING", "expected_price": "2800"})


def test_a_division_opens_at_nine_on_the_opening_day_not_a_second_before(client, room, resident, login_as):
    with frozen(tokyo(2027, 3, 1, 8, 59, 59)):
        login_as(resident)
        client.post("/lang/en")
        page = client.get(f"/rooms/{room.id}/days/{MAY_DAY.isoformat()}")
        assert page.status_code == 200
        section = day_section(page.get_data(as_text=True))
        assert 'value="MORNING" id="unit-MORNING" disabled>' in section
        assert "Not bookable online" in section and "Check price and book" not in section
        refused = reserve(client, room, MAY_DAY)
        assert refused.status_code == 302
        followed = client.get(refused.headers["Location"]).get_data(as_text=True)
        assert "Booking for that day has not opened yet." in followed
        assert db.session.scalars(select(Booking)).all() == []

    with frozen(tokyo(*OPENING)):
        login_as(resident)
        client.post("/lang/en")
        section = day_section(client.get(f"/rooms/{room.id}/days/{MAY_DAY.isoformat()}").get_data(as_text=True))
        assert re.search(r'value="MORNING" id="unit-MORNING">', section)
        assert "Check price and book" in section
        accepted = reserve(client, room, MAY_DAY)
        assert accepted.status_code == 302
        made = db.session.scalars(select(Booking)).one()
        assert accepted.headers["Location"].endswith(f"/bookings/{made.id}")
        assert made.state == BookingState.CONFIRMED  # online payment is off in these tests
        assert made.created_at == tokyo(*OPENING)


def test_the_month_calendar_marks_the_new_month_bookable_from_nine(client, room):
    month = f"?month={MAY_DAY:%Y-%m}"

    def mark(html):
        cell = re.search(rf'<td data-date="{MAY_DAY.isoformat()}"[^>]*>(.*?)</td>', html, re.S).group(1)
        return re.search(r'class="mark[^"]*" aria-hidden="true">([^<]+)</span>', cell).group(1)

    with frozen(tokyo(2027, 3, 1, 8, 59, 59)):
        assert mark(client.get(f"/rooms/{room.id}{month}").get_data(as_text=True)) == "—"
    with frozen(tokyo(*OPENING)):
        assert mark(client.get(f"/rooms/{room.id}{month}").get_data(as_text=True)) == "○"


# --- Tokyo midnight: 00:00 JST is 15:00 UTC the day before ------------------------------


def test_today_moves_at_tokyo_midnight_not_utc_midnight(client, room):
    last_of_january = date(2027, 1, 31)

    with frozen(datetime(2027, 1, 31, 14, 59, 59, tzinfo=UTC)):  # 23:59:59 in Tokyo
        assert client.get(f"/?date={last_of_january.isoformat()}").status_code == 200
        html = client.get(f"/rooms/{room.id}").get_data(as_text=True)
        assert re.search(r'<td data-date="2027-01-31"[^>]*aria-current="date"', html)
        assert "<caption>2027年1月</caption>" in html

    with frozen(datetime(2027, 1, 31, 15, 0, 0, tzinfo=UTC)):  # 00:00:00 on 1 February in Tokyo
        refused = client.get(f"/?date={last_of_january.isoformat()}")
        assert refused.status_code == 400  # yesterday, for a resident in Tokyo
        assert client.get("/?date=2027-02-01").status_code == 200
        html = client.get(f"/rooms/{room.id}").get_data(as_text=True)
        assert re.search(r'<td data-date="2027-02-01"[^>]*aria-current="date"', html)
        assert "<caption>2027年2月</caption>" in html
        assert 'rel="prev"' not in html  # January is past: the calendar starts at this month


def test_the_search_form_refuses_yesterday_with_a_clear_message_after_midnight(client, room):
    with frozen(datetime(2027, 1, 31, 15, 0, 0, tzinfo=UTC)):
        client.post("/lang/en")
        html = client.get("/?date=2027-01-31").get_data(as_text=True)
        assert "Choose a date from today up to one year ahead." in html


# --- 1 April: receipt numbers start again in the new fiscal year ------------------------


@pytest.mark.payments
def test_receipt_numbers_restart_on_the_first_of_april_in_tokyo(client, room, resident, login_as, localstripe):
    def book_and_pay(day: date) -> str:
        login_as(resident)
        client.post("/lang/en")
        made = reserve(client, room, day)
        assert made.status_code == 302 and "/pay" in made.headers["Location"], made.headers.get("Location")
        booking_id = int(re.search(r"/bookings/(\d+)/pay", made.headers["Location"]).group(1))
        assert client.get(f"/bookings/{booking_id}/pay").status_code == 200
        paid = client.post(f"/bookings/{booking_id}/pay", json={"token": localstripe.card_token()})
        assert paid.status_code == 200 and paid.get_json()["status"] == "confirmed", paid.get_json()
        page = client.get(f"/bookings/{booking_id}/receipt")
        assert page.status_code == 200
        return re.search(r'<dd class="receipt-number">([^<]+)</dd>', page.get_data(as_text=True)).group(1)

    with frozen(tokyo(2027, 3, 31, 23, 59, 58)):
        first = book_and_pay(date(2027, 4, 14))
    with frozen(tokyo(2027, 3, 31, 23, 59, 59)):
        last_of_the_year = book_and_pay(date(2027, 4, 15))
    with frozen(tokyo(2027, 4, 1, 0, 0, 0)):
        first_of_the_next = book_and_pay(date(2027, 4, 16))

    assert (first, last_of_the_year, first_of_the_next) == ("2026-000001", "2026-000002", "2027-000001")
    issued = db.session.scalars(select(Receipt.issued_at).order_by(Receipt.id)).all()
    assert issued == [tokyo(2027, 3, 31, 23, 59, 58), tokyo(2027, 3, 31, 23, 59, 59), tokyo(2027, 4, 1)]
