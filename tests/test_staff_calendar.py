"""The staff calendars: a building's day, rooms by divisions, who holds each slot and in what state."""
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from reservations.extensions import db
from reservations.models import BookingState, Role, Room, User
from reservations.services import calendars
from reservations.services.cancellation import cancel_booking
from tests.helpers import book, booking_day, calendar_booking, statements


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


# -- a room's week ------------------------------------------------------------------------------------

def week_page(client, room_id, start) -> str:
    response = client.get(f"/staff/rooms/{room_id}/week?start={start.isoformat()}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def entries_by_state(html: str) -> dict[str, str]:
    """Each entry's words, by the state its colour class names."""
    return {state: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()
            for state, body in re.findall(r'<a class="entry entry-(\w+)"[^>]*>(.*?)</a>', html, re.S)}


@pytest.fixture
def every_state(room, make_user, staff, now):
    """One booking of `room` in each calendar state, over the week from booking_day(); returns (start, ids)."""
    start = booking_day()
    day = [start + timedelta(days=n) for n in range(7)]
    person = lambda name: make_user(name=name)  # noqa: E731
    made = {
        "held": calendar_booking(person("Held Person"), room, day[0], "MORNING", state="held", now=now),
        "awaiting": calendar_booking(person("Deadline Person"), room, day[0], "AFTERNOON", state="held",
                                     pay_mode="deadline", hold_expires_at=now + timedelta(days=5)),
        "paid": calendar_booking(person("Paid Person"), room, day[1], "MORNING", paid=True),
        "counter_unpaid": calendar_booking(person("Counter Person"), room, day[1], "AFTERNOON", state="held",
                                           channel="counter", pay_mode="deadline",
                                           hold_expires_at=now + timedelta(days=5)),
        "confirmed": calendar_booking(person("Free Person"), room, day[2], "MORNING", price=0),
        "blocked": calendar_booking(staff, room, day[2], "AFTERNOON", price=0, kind="block", note="ピアノ調律"),
        "cancelled": calendar_booking(person("Gone Person"), room, day[3], "MORNING", state="cancelled"),
        "no_show": calendar_booking(person("Absent Person"), room, day[4], "MORNING", state="no_show"),
        "used": calendar_booking(person("Used Person"), room, day[5], "MORNING", state="completed"),
    }
    # Also unpaid at the counter: confirmed there with a fee and nothing taken yet.
    made["counter_confirmed"] = calendar_booking(person("Walk In"), room, day[6], "EVENING", channel="counter")
    return start, {state: b.id for state, b in made.items()}


def test_a_rooms_week_shows_every_state_in_words_with_name_and_channel(client, english, room, every_state):
    start, ids = every_state
    html = week_page(client, room.id, start)
    found = entries_by_state(html)
    assert set(found) == set(calendars.ENTRY_STATES)  # every state, each with its own colour class
    assert found["held"] == "Held Person Held, paying now · Online"
    assert found["awaiting"] == "Deadline Person Awaiting payment · Online"
    assert found["paid"] == "Paid Person Paid · Online"
    assert found["counter_unpaid"] == "Walk In Unpaid, at the counter · Counter"  # the last of that state
    assert "Counter Person Unpaid, at the counter · Counter" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert found["confirmed"] == "Free Person Confirmed, no fee · Online"
    assert found["blocked"] == "ピアノ調律 Blocked"  # a block shows its purpose, not the staff member's name
    assert found["cancelled"] == "Gone Person Cancelled · Online"
    assert found["no_show"] == "Absent Person No-show · Online"
    assert found["used"] == "Used Person Used · Online"
    for booking_id in ids.values():  # each opens its booking
        assert f'href="/staff/bookings/{booking_id}"' in html
    assert html.count('<th scope="row">') == 7
    for label in calendars.ENTRY_STATES.values():  # the legend says every state in words
        assert str(label) in html


def test_a_free_cell_of_the_week_links_to_the_counter_and_a_block(client, english, room, every_state):
    start, _ids = every_state
    html = week_page(client, room.id, start)
    links = re.findall(r'href="(/staff/(?:counter|blocks)/new\?[^"]+)"', html)
    day3_evening = {"room_id": [str(room.id)], "date": [(start + timedelta(days=3)).isoformat()],
                    "division": ["EVENING"]}
    parsed = [(urlsplit(link.replace("&amp;", "&")).path, parse_qs(urlsplit(link.replace("&amp;", "&")).query))
              for link in links]
    assert ("/staff/counter/new", day3_evening) in parsed and ("/staff/blocks/new", day3_evening) in parsed
    # A taken cell offers neither; a cancelled booking's cell is free again.
    day0_morning = {"room_id": [str(room.id)], "date": [start.isoformat()], "division": ["MORNING"]}
    day3_morning = {**day3_evening, "division": ["MORNING"]}
    assert ("/staff/counter/new", day0_morning) not in parsed
    assert ("/staff/counter/new", day3_morning) in parsed
    assert len(parsed) == 2 * (21 - 7)  # 7 of the 21 cells are taken (held, awaiting, paid, ..., blocked)


def test_an_hourly_rooms_free_hours_link_by_their_start(client, english, staff, make_hourly_room):
    court = make_hourly_room()
    start = booking_day()
    html = week_page(client, court.id, start)
    assert f'href="/staff/counter/new?room_id={court.id}&amp;date={start.isoformat()}&amp;start=09:00"' in html
    assert f'href="/staff/blocks/new?room_id={court.id}&amp;date={start.isoformat()}&amp;start=20:00"' in html
    assert html.count('<li class="cell-slot free">') == 7 * 12


@pytest.mark.parametrize("start", ["2026-02-30", "9999-12-31", "0001-01-01"])
def test_a_bad_week_start_says_so_and_an_unknown_room_is_a_404(client, english, staff, room, start):
    response = client.get(f"/staff/rooms/{room.id}/week?start={start}")
    assert response.status_code == 200 and "Enter a date like" in response.get_data(as_text=True)
    assert client.get("/staff/rooms/999999/week").status_code == 404


def test_a_rooms_week_is_a_constant_number_of_queries(client, staff, room, make_user, now):
    start = booking_day()
    calendar_booking(make_user(), room, start, "MORNING")
    room_id = room.id
    db.session.remove()
    with statements() as one:
        client.get(f"/staff/rooms/{room_id}/week?start={start.isoformat()}")
    room = db.session.get(Room, room_id)
    for n in range(1, 7):
        for code in ("MORNING", "AFTERNOON", "EVENING"):
            calendar_booking(make_user(), room, start + timedelta(days=n), code, paid=n % 2 == 0)
    db.session.remove()
    with statements() as many:
        html = client.get(f"/staff/rooms/{room_id}/week?start={start.isoformat()}").get_data(as_text=True)
    assert html.count('class="entry entry-') - len(calendars.ENTRY_STATES) == 19
    assert len(many) == len(one), (len(one), len(many))
