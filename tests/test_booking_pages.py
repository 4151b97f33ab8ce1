"""The booking flow through the views: review, reserve, my bookings, cancel, and every way it can go wrong.

Each test signs in (and picks its language) before its first request: the test
app context, and with it flask_login's and flask_babel's caches on g, lives
across the requests of one test.
"""
import re
from datetime import date, time, timedelta
from html import unescape

import pytest
from flask_babel import force_locale, format_date, format_time
from sqlalchemy import func, select

from reservations.extensions import db
from reservations.models import Booking, BookingState, Closure, ClosureKind, Residency
from reservations.services import booking, rules
from reservations.timeutil import business_date, now_utc
from tests.helpers import booking_day


def bookings_count() -> int:
    db.session.rollback()  # see the committed table, not this session's cache
    return db.session.scalar(select(func.count(Booking.id)))


def reserve_data(day: date, divisions=(), price=None, **extra) -> dict:
    data = {"date": day.isoformat() if isinstance(day, date) else day, "divisions": list(divisions), **extra}
    if price is not None:
        data["expected_price"] = str(price)
    return data


def page_text(response) -> str:
    """The page with HTML entities decoded, to compare with messages ("room's" is sent as "room&#39;s")."""
    return unescape(response.get_data(as_text=True))


def shown_price(html: str) -> int:
    return int(re.search(r'name="expected_price" value="(\d+)"', html).group(1))


def read_english(client) -> None:
    """Messages are asserted in English, whatever the Japanese catalog says (no POST: CSRF may be on)."""
    with client.session_transaction() as sess:
        sess["lang"] = "en"


@pytest.fixture
def signed_in(client, resident, login_as):
    """The resident, signed in, reading English."""
    login_as(resident)
    read_english(client)
    return resident


# --- the happy path ---------------------------------------------------------


def test_review_shows_the_server_price_and_a_reserve_form(client, signed_in, room):
    day = booking_day()

    response = client.get(f"/rooms/{room.id}/book?date={day}&divisions=MORNING&divisions=AFTERNOON")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "09:00–17:00" in html and "Morning, Afternoon" in html
    assert "¥2,800" in html and "¥3,600" in html and "¥6,400" in html
    assert "Lives in the ward" in html
    assert "You can cancel free of charge until" in html
    form = re.search(r'<form method="post" action="/rooms/\d+/book">(.*?)</form>', html, re.S).group(1)
    assert 'name="csrf_token"' in form
    assert re.findall(r'name="divisions" value="(\w+)"', form) == ["MORNING", "AFTERNOON"]
    assert shown_price(form) == 6400
    assert bookings_count() == 0


def test_reserve_my_bookings_and_cancel_end_to_end(client, signed_in, room):
    day = booking_day()
    review = client.get(f"/rooms/{room.id}/book?date={day}&divisions=AFTERNOON&divisions=EVENING")
    price = shown_price(review.get_data(as_text=True))

    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(day, ["AFTERNOON", "EVENING"], price))

    made = db.session.scalars(select(Booking)).one()
    assert response.status_code == 302
    assert response.headers["Location"] == f"/bookings/{made.id}"
    assert (made.state, made.price, made.user_id, made.divisions) == (
        BookingState.CONFIRMED, 7200, signed_in.id, ["AFTERNOON", "EVENING"])
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your booking is confirmed." in page
    assert "Confirmed" in page and "13:00–21:00" in page and "¥7,200" in page
    deadline = made.start_at  # nothing is paid online (payments off): free to cancel until it starts
    with force_locale("en"):
        deadline = f"{format_date(deadline, 'full')} {format_time(deadline, 'HH:mm')}"
    assert f"You can cancel free of charge until {deadline}." in page
    assert f'action="/bookings/{made.id}/cancel"' in page

    mine = client.get("/bookings").get_data(as_text=True)
    card = re.search(rf'id="booking-{made.id}">(.*?)</li>', mine, re.S).group(1)
    assert "Music room" in card and "13:00–21:00" in card and "¥7,200" in card and "Confirmed" in card

    cancelled = client.post(f"/bookings/{made.id}/cancel")
    assert cancelled.status_code == 302
    db.session.refresh(made)
    assert made.state == BookingState.CANCELLED
    page = client.get(f"/bookings/{made.id}").get_data(as_text=True)
    assert "Your booking has been cancelled." in page and "Cancelled" in page
    assert "/cancel" not in page
    mine = client.get("/bookings").get_data(as_text=True)
    assert "Past and cancelled" in mine and f'id="booking-{made.id}"' in mine


def test_an_hourly_room_is_booked_by_start_time_and_duration(client, signed_in, make_hourly_room):
    court = make_hourly_room()
    day = booking_day()

    review = client.get(f"/rooms/{court.id}/book?date={day}&start=10:00&minutes=120").get_data(as_text=True)
    assert "10:00–12:00" in review and "2 h" in review and "¥2,000" in review

    response = client.post(f"/rooms/{court.id}/book",
                           data=reserve_data(day, price=shown_price(review), start="10:00", minutes="120"))

    made = db.session.scalars(select(Booking)).one()
    assert response.headers["Location"] == f"/bookings/{made.id}"
    assert made.price == 2000 and made.end_at - made.start_at == timedelta(hours=2)


def test_a_non_resident_sees_and_pays_one_and_a_half_times(client, make_user, login_as, room):
    visitor = login_as(make_user(residency=Residency.OUTSIDE))
    read_english(client)
    day = booking_day()

    html = client.get(f"/rooms/{room.id}/book?date={day}&divisions=MORNING").get_data(as_text=True)

    assert shown_price(html) == 4200
    assert "Non-resident surcharge (×1.5)" in html and "¥1,400" in html and "¥4,200" in html
    assert "Non-resident" in html
    client.post(f"/rooms/{room.id}/book", data=reserve_data(day, ["MORNING"], 4200))
    made = db.session.scalars(select(Booking)).one()
    assert (made.user_id, made.price, made.residency) == (visitor.id, 4200, Residency.OUTSIDE)


def test_booking_pages_need_a_login(client, room):
    for url in (f"/rooms/{room.id}/book?date={booking_day()}&divisions=MORNING", "/bookings", "/bookings/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/account/login" in response.headers["Location"], url
    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(booking_day(), ["MORNING"], 2800))
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]
    assert bookings_count() == 0


# --- bad input: a clear message and nothing booked --------------------------


def past_weekday() -> date:
    return business_date(now_utc()) - timedelta(days=1)


@pytest.mark.parametrize(
    ("divisions", "day", "message"),
    [
        (["MORNING"], "2026-02-30", "That date is not valid."),
        (["MORNING"], "someday", "That date is not valid."),
        (["MORNING"], "0001-01-01", "That date is not valid."),
        (["MORNING"], None, "That date is not valid."),
        (["MORNING"], "past", "That time has already passed."),
        (["MORNING", "EVENING"], "ok", "Choose one division or several consecutive divisions."),
        (["NIGHT"], "ok", "Choose one division or several consecutive divisions."),
        ([], "ok", "Choose one division or several consecutive divisions."),
        (["MORNING", "MORNING"], "ok", "Choose one division or several consecutive divisions."),
    ],
)
def test_bad_division_slots_are_refused_with_a_message(client, signed_in, room, divisions, day, message):
    when = {"past": past_weekday(), "ok": booking_day(), None: ""}.get(day, day)

    for attempt in (
        lambda: client.get(f"/rooms/{room.id}/book", query_string={"date": when, "divisions": divisions}),
        lambda: client.post(f"/rooms/{room.id}/book", data=reserve_data(when, divisions, 2800)),
    ):
        response = attempt()
        assert response.status_code == 302
        assert response.headers["Location"].startswith(f"/rooms/{room.id}")
        page = client.get(response.headers["Location"])
        assert page.status_code == 200
        assert message in page_text(page)
    assert bookings_count() == 0


@pytest.mark.parametrize(
    ("start", "minutes", "message"),
    [
        ("22:00", "60", "That time is outside the room's opening hours."),
        ("20:00", "120", "That time is outside the room's opening hours."),
        ("08:00", "60", "That time is outside the room's opening hours."),
        ("25:00", "60", "That time is outside the room's opening hours."),
        ("10:00", "240", "That duration is not allowed for this room."),
        ("10:00", "30", "That duration is not allowed for this room."),
        ("10:00", "-60", "That duration is not allowed for this room."),
        ("10:00", "99999999999999", "That duration is not allowed for this room."),
        ("10:00", "", "That duration is not allowed for this room."),
    ],
)
def test_bad_hourly_slots_are_refused_with_a_message(client, signed_in, make_hourly_room, start, minutes, message):
    court = make_hourly_room()
    day = booking_day()

    asked = {"start": start, "minutes": minutes}
    for attempt in (
        lambda: client.get(f"/rooms/{court.id}/book", query_string={"date": day, **asked}),
        lambda: client.post(f"/rooms/{court.id}/book", data=reserve_data(day, price=1000, **asked)),
    ):
        response = attempt()
        assert response.status_code == 302
        assert response.headers["Location"] == f"/rooms/{court.id}/days/{day}#day"
        assert message in page_text(client.get(response.headers["Location"]))
    assert bookings_count() == 0


def test_a_tampered_price_books_nothing_and_shows_the_real_price(client, signed_in, room):
    day = booking_day()

    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(day, ["MORNING"], 1))

    assert bookings_count() == 0
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"/rooms/{room.id}/book?")
    review = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The price has changed. Please check the new price and try again." in review
    assert shown_price(review) == 2800


def test_a_missing_price_books_nothing(client, signed_in, room):
    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(booking_day(), ["MORNING"]))

    assert response.status_code == 302
    assert "The price has changed" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert bookings_count() == 0


def test_a_slot_taken_by_someone_else_is_refused(client, signed_in, make_user, room):
    day = booking_day()
    other = make_user(name="佐藤 次郎")
    booking.reserve(other, room, rules.division_slot(room, day, ["AFTERNOON"]))
    db.session.commit()

    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(day, ["MORNING", "AFTERNOON"], 6400))

    assert response.headers["Location"] == f"/rooms/{room.id}/days/{day}#day"
    assert "This slot was just taken. Please choose another." in client.get(response.headers["Location"]).get_data(
        as_text=True)
    assert bookings_count() == 1
    assert db.session.scalars(select(Booking.user_id)).all() == [other.id]


def test_a_closed_day_is_refused(client, signed_in, room):
    day = booking_day()
    room.closures.append(Closure(kind=ClosureKind.PERIOD, start_date=day, end_date=day))
    db.session.commit()

    response = client.get(f"/rooms/{room.id}/book?date={day}&divisions=MORNING")

    assert "The room is closed on that day." in client.get(response.headers["Location"]).get_data(as_text=True)


def test_a_room_not_bookable_online_is_refused(client, signed_in, make_hourly_room):
    court = make_hourly_room(open_time=None, close_time=None)
    day = booking_day()

    for attempt in (
        lambda: client.get(f"/rooms/{court.id}/book?date={day}&start=10:00&minutes=60"),
        lambda: client.post(f"/rooms/{court.id}/book", data=reserve_data(day, price=1000, start="10:00", minutes=60)),
    ):
        response = attempt()
        assert response.status_code == 302
        assert "This room cannot be booked online yet." in page_text(client.get(response.headers["Location"]))
    assert bookings_count() == 0


def test_unknown_room_is_not_found_in_the_booking_flow(client, signed_in):
    assert client.get(f"/rooms/4242/book?date={booking_day()}&divisions=MORNING").status_code == 404
    assert client.post("/rooms/4242/book", data=reserve_data(booking_day(), ["MORNING"], 2800)).status_code == 404


def test_another_residents_booking_is_not_found_and_leaks_nothing(client, signed_in, make_user, make_room):
    other = make_user("jiro@example.com", name="佐藤 次郎", phone="090-1234-5678")
    secret_room = make_room("秘密の練習室")
    secret_room.name_en = "Secret practice room"
    db.session.commit()
    theirs = booking.reserve(other, secret_room, rules.division_slot(secret_room, booking_day(), ["EVENING"]))
    db.session.commit()

    for attempt in (lambda: client.get(f"/bookings/{theirs.id}"), lambda: client.post(f"/bookings/{theirs.id}/cancel")):
        response = attempt()
        assert response.status_code == 404
        html = response.get_data(as_text=True)
        for secret in ("佐藤", "jiro@example.com", "090-1234-5678", "秘密の練習室", "Secret practice room",
                       "¥3,600", "18:00"):
            assert secret not in html
    assert "Secret practice room" not in client.get("/bookings").get_data(as_text=True)
    assert client.get("/bookings/99999999999").status_code == 404
    db.session.refresh(theirs)
    assert theirs.state == BookingState.CONFIRMED


def test_cancelling_after_the_start_is_refused_with_a_message(client, signed_in, room):
    started = now_utc() - timedelta(minutes=1)  # under way; made at the counter
    late = Booking(user_id=signed_in.id, room_id=room.id, start_at=started, end_at=started + timedelta(hours=3),
                   state=BookingState.CONFIRMED, price=2800, residency=signed_in.residency, channel="counter")
    db.session.add(late)
    db.session.commit()

    page = client.get(f"/bookings/{late.id}").get_data(as_text=True)
    assert "/cancel" not in page and "The cancellation deadline" in page

    response = client.post(f"/bookings/{late.id}/cancel")
    assert "The cancellation deadline has passed." in client.get(response.headers["Location"]).get_data(as_text=True)
    db.session.refresh(late)
    assert late.state == BookingState.CONFIRMED


# --- CSRF --------------------------------------------------------------------


class TestWithCsrf:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WTF_CSRF_ENABLED": True}

    def test_reserve_without_a_token_is_refused_and_books_nothing(self, client, signed_in, room):
        day = booking_day()

        response = client.post(f"/rooms/{room.id}/book", data=reserve_data(day, ["MORNING"], 2800))

        assert response.status_code == 400
        assert "Your session expired or the form was tampered with." in response.get_data(as_text=True)
        assert bookings_count() == 0

    def test_reserve_with_the_token_from_the_review_page_books(self, client, signed_in, room):
        day = booking_day()
        review = client.get(f"/rooms/{room.id}/book?date={day}&divisions=MORNING").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', review).group(1)

        response = client.post(f"/rooms/{room.id}/book",
                               data={**reserve_data(day, ["MORNING"], 2800), "csrf_token": token})

        assert response.status_code == 302
        assert bookings_count() == 1

    def test_cancel_without_a_token_is_refused(self, client, signed_in, room):
        made = booking.reserve(signed_in, room, rules.division_slot(room, booking_day(), ["MORNING"]))
        db.session.commit()

        assert client.post(f"/bookings/{made.id}/cancel").status_code == 400
        db.session.refresh(made)
        assert made.state == BookingState.CONFIRMED


# --- languages ----------------------------------------------------------------


def booking_pages(room_id: int) -> list[str]:
    return [f"/rooms/{room_id}/book?date={booking_day()}&divisions=MORNING", "/bookings"]


def test_review_and_my_bookings_render_in_japanese_by_default(client, resident, login_as, room):
    login_as(resident)
    for url in booking_pages(room.id):
        html = client.get(url).get_data(as_text=True)
        assert '<html lang="ja"' in html, url


def test_review_and_my_bookings_render_in_english(client, signed_in, room):
    for url in booking_pages(room.id):
        html = client.get(url).get_data(as_text=True)
        assert '<html lang="en"' in html and "My bookings" in html, url


def test_times_are_shown_in_tokyo_time(client, signed_in, make_hourly_room):
    court = make_hourly_room()
    day = booking_day()
    made = booking.reserve(signed_in, court, rules.hourly_slot(court, day, time(9), 60))
    db.session.commit()
    assert made.start_at.hour == 0  # 09:00 in Tokyo is midnight UTC

    assert "09:00–10:00" in client.get("/bookings").get_data(as_text=True)
