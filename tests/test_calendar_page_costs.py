"""What keeps the calendars cheap at a ward's scale (bench/calendar_pages.py) without changing what they say:
the room's page loads the room with all it shows in one statement, the search reads its rooms as rows, and the
labels are memoised per language; the search keeps the catalog while its token stays the same."""
from datetime import time

import pytest
from flask_babel import force_locale
from sqlalchemy import text

from reservations.extensions import db
from reservations.models import Closure, ClosureKind, RefundTier, RoomEquipment
from reservations.public import labels
from tests.helpers import book, booking_day, statements


def room_page_statements(client, room_id, month) -> tuple[list[str], str]:
    db.session.remove()  # a cold request, as in production: nothing of the room in the session
    with statements() as sent:
        response = client.get(f"/rooms/{room_id}?month={month}")
    assert response.status_code == 200
    return [s for s in sent if not s.startswith("BEGIN")], response.get_data(as_text=True)


def test_a_rooms_month_is_the_same_few_statements_whatever_the_room_has(client, english, make_room, make_user, now):
    day = booking_day()
    month = day.strftime("%Y-%m")
    bare = make_room("会議室")
    bare_id = bare.id
    plain, plain_html = room_page_statements(client, bare_id, month)

    full = make_room("音楽室")
    full.equipment += [RoomEquipment(code="piano"), RoomEquipment(code="brass"), RoomEquipment(code="strings")]
    other_weekday = (day.weekday() + 1) % 7  # closures on other days than the one booked
    full.closures += [Closure(kind=ClosureKind.MONTHLY, weekday=other_weekday, nth=2, reason="点検"),
                      Closure(kind=ClosureKind.WEEKLY, weekday=other_weekday, reason="休館日")]
    full.refund_tiers += [RefundTier(unit="days", count=7, percent=100), RefundTier(unit="days", count=1, percent=50)]
    db.session.commit()
    resident = make_user()
    for codes in (("MORNING",), ("AFTERNOON",), ("EVENING",)):
        book(resident, full, codes, day=day, now=now)
    full_id = full.id
    many, html = room_page_statements(client, full_id, month)

    # The room with its building, divisions, closures, equipment and refund tiers; the month's bookings; its
    # lottery round. The bare room asks its kind's refund tiers too, as it has none of its own.
    assert len(many) == 3, many
    assert len(plain) == 4, plain
    assert "Piano" in html and "Brass allowed" in html and "Strings allowed" in html
    assert "点検" in html and "休館日" in html
    assert "Until 1 day before the day of use: 50% refund" in html  # its own tiers
    assert "Piano" not in plain_html


def test_search_cards_say_what_the_rooms_say_whatever_their_letting(client, english, make_room, make_hourly_room):
    by_division = make_room("音楽室")
    by_division.closures.append(Closure(kind=ClosureKind.WEEKLY, weekday=booking_day().weekday(), reason="休館日"))
    hourly = make_hourly_room(weekday_hourly_fee=800, capacity=None)
    unpriced = make_room("和室", divisions=[("MORNING", time(9), time(12), None, None)])
    db.session.commit()
    html = client.get(f"/?date={booking_day().isoformat()}").get_data(as_text=True)
    assert html.count('<li class="card"') == 3
    card = {room.id: html.split(f'id="room-{room.id}"', 1)[1].split("</li>", 1)[0]
            for room in (by_division, hourly, unpriced)}
    assert "30 people" in card[by_division.id] and "Closed" in card[by_division.id]
    assert f'href="/rooms/{by_division.id}/days/{booking_day().isoformat()}#day"' in card[by_division.id]
    assert "¥800" in card[hourly.id] and "per 1 h" in card[hourly.id]
    assert "Not bookable online yet" in card[unpriced.id] and "Not bookable online yet" not in card[hourly.id]
    assert "Tennis court" in card[hourly.id] and "Not published" in card[hourly.id]


def search_statements(client, query: str) -> tuple[list[str], str]:
    db.session.remove()
    with statements() as sent:
        response = client.get(f"/?{query}")
    assert response.status_code == 200
    return [s for s in sent if not s.startswith("BEGIN")], response.get_data(as_text=True)


def test_the_search_reads_the_catalog_once_and_then_only_the_token(client, english, make_room):
    for name in ("音楽室", "会議室", "和室"):
        make_room(name)
    day = booking_day().isoformat()
    first, html = search_statements(client, f"date={day}")
    again, html_again = search_statements(client, f"date={day}")
    filtered, _ = search_statements(client, f"date={day}&capacity=10&kind=music_room")
    undated, _ = search_statements(client, "")
    # The token, then buildings, rooms, divisions, closures and equipment; then the day's bookings and rounds.
    assert len(first) == 8, first
    assert len(again) == 3 and len(filtered) == 3, again
    assert "catalog_version" in again[0]
    assert len(undated) == 1, undated  # the token
    assert html_again == html and html.count('<li class="card"') == 3


# Changes made by hand in SQL, as an operator might, each seen by the next search.
CHANGES = {
    "a room's capacity": ("UPDATE rooms SET capacity = 5 WHERE id = :room", "capacity=10",
                          lambda html, room: f'id="room-{room}"' not in html),
    "a room's equipment": ("INSERT INTO room_equipment (room_id, code) VALUES (:room, 'piano')", "equipment=piano",
                           lambda html, room: f'id="room-{room}"' in html),
    "a building's name": ("UPDATE buildings SET name_en = 'Renamed Hall' WHERE id = (SELECT building_id FROM rooms "
                          "WHERE id = :room)", "", lambda html, room: "Renamed Hall" in html),
    "a division's fee": ("UPDATE divisions SET weekday_fee = 90, holiday_fee = 90 WHERE room_id = :room", "",
                         lambda html, room: "¥90" in html),
    "a room withdrawn": ("UPDATE rooms SET active = false WHERE id = :room", "",
                         lambda html, room: f'id="room-{room}"' not in html),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_search_sees_every_change_to_the_catalog_at_once(client, english, make_room, change):
    room = make_room()
    room_id = room.id
    statement, query, seen = CHANGES[change]
    _, before = search_statements(client, query)
    assert not seen(before, room_id)
    db.session.execute(text(statement), {"room": room_id})
    db.session.commit()
    _, after = search_statements(client, query)
    assert seen(after, room_id), change


def test_a_memoised_label_is_said_in_the_language_of_each_page(app):
    with app.test_request_context("/"):
        with force_locale("ja"):
            japanese = (labels.kind_label("hall"), labels.mark_symbol("休"), labels.division_label("MORNING"))
        with force_locale("en"):
            english = (labels.kind_label("hall"), labels.mark_symbol("休"), labels.division_label("MORNING"))
        with force_locale("ja"):
            again = (labels.kind_label("hall"), labels.mark_symbol("休"), labels.division_label("MORNING"))
    assert english == ("Hall", "Closed", "Morning")
    assert japanese == again and japanese != english
    assert japanese[1] == "休"
