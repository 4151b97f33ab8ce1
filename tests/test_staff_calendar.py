"""The staff calendars: a building's day, rooms by divisions, who holds each slot and in what state."""
import re
from datetime import timedelta

import pytest

from reservations.extensions import db
from reservations.models import BookingState, Role, User
from reservations.services import calendars
from reservations.services.cancellation import cancel_booking
from tests.helpers import book, booking_day, statements


@pytest.fixture
def staff(make_user, login_as):
    return login_as(make_user("staff@example.com", role=Role.STAFF, name="窓口 職員"))


def day_page(client, building_id, day) -> str:
    response = client.get(f"/staff/buildings/{building_id}/day?date={day.isoformat()}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def entry_texts(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m)).strip()
            for m in re.findall(r'<a class="entry entry-\w+"[^>]*>(.*?)</a>', html, re.S)]


@pytest.mark.payments  # holds, paid online
def test_the_day_shows_each_booking_with_its_name_state_and_channel(client, english, staff, room, make_user, now):
    day = booking_day()
    held = book(make_user(name="Held Person"), room, ("MORNING",), day=day, now=now)
    held_id = held.id
    cancelled = book(make_user(name="Gone Person"), room, ("AFTERNOON",), day=day, now=now)
    cancel_booking(cancelled, cancelled.user, now=now)
    db.session.commit()
    expired = book(make_user(name="Lapsed Person"), room, ("EVENING",), day=day, now=now - timedelta(hours=1))
    db.session.commit()
    html = day_page(client, room.building_id, day)
    assert entry_texts(html) == ["Held Person Held, paying now · Online", "Gone Person Cancelled · Online"]
    assert "Lapsed Person" not in html  # a hold that ran out blocks nobody, and is not on the calendar
    assert f'href="/staff/bookings/{held_id}"' in html
    assert expired.state == BookingState.HELD  # still held in the table: no job ran, it simply does not count
    # Every state has its words in the legend, not only its colour.
    for label in calendars.ENTRY_STATES.values():
        assert str(label) in html


def test_a_bad_date_says_so_and_shows_today(client, english, staff, room):
    response = client.get(f"/staff/buildings/{room.building_id}/day?date=2026-13-45")
    assert response.status_code == 200
    assert "Enter a date like" in response.get_data(as_text=True)


def test_the_booking_page_shows_its_history(client, english, staff, room, resident, now):
    booking = book(resident, room, now=now)
    booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason="phone call")
    db.session.commit()
    html = client.get(f"/staff/bookings/{booking.id}").get_data(as_text=True)
    assert "Booking made (held)" in html and "Confirmed → Cancelled" in html
    assert "窓口 職員" in html and "phone call" in html


def test_a_buildings_day_is_a_constant_number_of_queries(client, staff, make_room, resident, now):
    day = booking_day()
    first = make_room("部屋1")
    book(resident, first, day=day, now=now)
    building_id, resident_id = first.building_id, resident.id
    db.session.commit()
    db.session.remove()
    with statements() as one:
        client.get(f"/staff/buildings/{building_id}/day?date={day.isoformat()}")
    resident = db.session.get(User, resident_id)
    for n in range(2, 31):
        room = make_room(f"部屋{n}")
        if n <= 5:
            book(resident, room, day=day, now=now)
    db.session.commit()
    db.session.remove()
    with statements() as thirty:
        html = client.get(f"/staff/buildings/{building_id}/day?date={day.isoformat()}").get_data(as_text=True)
    assert html.count('<th scope="row">') == 30
    assert len(thirty) == len(one), (len(one), len(thirty))
