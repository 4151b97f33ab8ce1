"""The search page computes every room's mark for a day in a constant number of SQL statements."""
import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from reservations.extensions import db
from reservations.models import Closure, ClosureKind, Room
from reservations.services import booking, rules
from reservations.services.catalog import import_catalog, parse_division_times, read_catalog
from tests.helpers import booking_day, statements

MEGURO = Path(__file__).resolve().parents[1] / "data" / "facilities" / "tokyo-meguro.json"
DIVISIONS = "MORNING=09:00-12:00,AFTERNOON=13:00-17:00,EVENING=18:00-21:00"


def search_statements(client, day) -> tuple[list[str], str]:
    db.session.commit()
    db.session.remove()  # nothing cached in the identity map: every request starts cold
    with statements() as sent:
        response = client.get(f"/?date={day.isoformat()}")
    assert response.status_code == 200
    return sent, response.get_data(as_text=True)


def marks(html: str) -> list[str]:
    return re.findall(r'<span class="mark" aria-hidden="true">(.)</span>', html)


def test_search_marks_1_room_or_the_whole_meguro_catalog_with_the_same_number_of_queries(client, make_user):
    import_catalog(read_catalog(MEGURO), parse_division_times(DIVISIONS))
    db.session.flush()
    rooms = db.session.scalars(select(Room).order_by(Room.id)).all()
    assert len(rooms) == 177
    # Meguro publishes no fees: give every division one, so that every room is bookable and gets a mark.
    for room in rooms:
        for division in room.divisions:
            division.weekday_fee = division.holiday_fee = 1000
    day = booking_day()
    # Some rooms partly taken, some full, some closed that day: all the marks come out of the same statements.
    user = make_user()
    for room in rooms[1:40:3]:
        booking.reserve(user, room, rules.division_slot(room, day, ["MORNING"]))
        db.session.commit()
        user = make_user()  # the per-user cap is not what this test is about
    for room in rooms[2:40:3]:
        booking.reserve(user, room, rules.division_slot(room, day, ["MORNING", "AFTERNOON", "EVENING"]))
        db.session.commit()
        user = make_user()
    for room in rooms[3:40:3]:
        room.closures.append(Closure(kind=ClosureKind.PERIOD, start_date=day, end_date=day + timedelta(days=1),
                                     reason="点検"))
    db.session.commit()

    client.get(f"/?date={day.isoformat()}")  # warm-up: the first request may ask the server for its version
    db.session.execute(update(Room).where(Room.id != rooms[0].id).values(active=False))
    one, one_html = search_statements(client, day)
    db.session.execute(update(Room).values(active=True))
    many, many_html = search_statements(client, day)

    print(f"\nsearch /?date= on {db.engine.dialect.name}: {len(one)} statements for 1 room, "
          f"{len(many)} for {len(rooms)} rooms")
    assert len(re.findall(r'<li class="card"', one_html)) == 1
    assert len(re.findall(r'<li class="card"', many_html)) == 177
    assert set(marks(many_html)) >= {"○", "△", "×", "休"}
    assert len(one) == len(many), "\n".join(many)


def test_a_day_is_taken_by_what_lies_over_it_and_by_nothing_else(app, room, make_user, now):
    """The day and month marks read the live bookings over the span (on PostgreSQL through the overlap guard's
    GiST index, see availability._overlapping_span): a block over three days takes the days it covers and the
    mornings it reaches into; an expired hold, a cancelled booking and a booking that ends as the span begins
    take nothing."""
    from datetime import time

    from reservations.models import Booking, BookingState, Role
    from reservations.services import availability, blocks
    from reservations.timeutil import at_tokyo

    staff = make_user(role=Role.STAFF)
    day = booking_day()
    # From 23:00 the evening before `day` to 10:00 the day after it.
    blocks.place_block(staff, room, start_at=at_tokyo(day, time(0)) - timedelta(hours=1),
                       end_at=at_tokyo(day + timedelta(days=1), time(10)), note="改修工事", now=now)
    later = day + timedelta(days=3)
    at = now + timedelta(minutes=30)

    def add(code_or_span, state, hold_expires_at=None):
        if isinstance(code_or_span, str):
            slot = rules.division_slot(room, later, [code_or_span])
            start_at, end_at = slot.start_at, slot.end_at
        else:
            start_at, end_at = code_or_span
        db.session.add(Booking(user_id=make_user().id, room_id=room.id, start_at=start_at, end_at=end_at,
                               state=state, hold_expires_at=hold_expires_at, price=1000, residency="resident"))
        db.session.flush()

    add("MORNING", BookingState.HELD, at - timedelta(seconds=1))  # ran out, not yet retired by the job
    add("MORNING", BookingState.EXPIRED, at - timedelta(minutes=5))
    add("AFTERNOON", BookingState.CANCELLED)
    add("EVENING", BookingState.HELD, at + timedelta(minutes=10))  # still held
    # Ends at the first instant of `later + 1`: that day is not touched.
    add((at_tokyo(later, time(21)), at_tokyo(later + timedelta(days=1), time(0))), BookingState.CONFIRMED)
    db.session.commit()

    def statuses(d):
        return {u.code: u.status for u in availability.day_availability(room, d, now=at).units}

    assert statuses(day - timedelta(days=1)) == {"MORNING": "free", "AFTERNOON": "free", "EVENING": "free"}
    assert statuses(day) == {"MORNING": "taken", "AFTERNOON": "taken", "EVENING": "taken"}
    assert statuses(day + timedelta(days=1)) == {"MORNING": "taken", "AFTERNOON": "free", "EVENING": "free"}
    assert statuses(later) == {"MORNING": "free", "AFTERNOON": "free", "EVENING": "taken"}
    assert statuses(later + timedelta(days=1)) == {"MORNING": "free", "AFTERNOON": "free", "EVENING": "free"}
    # The month and the search say the same, from their one query each.
    marks_by_day = {d.day: d.mark for m in {day.replace(day=1), later.replace(day=1)}
                    for d in availability.month_availability(room, m.year, m.month, now=at)}
    expected = {day - timedelta(days=1): availability.FREE, day: availability.FULL,
                day + timedelta(days=1): availability.PARTLY, later: availability.PARTLY,
                later + timedelta(days=1): availability.FREE}
    assert {d: marks_by_day[d] for d in expected} == expected
    for d, mark in expected.items():
        assert availability.rooms_day_availability([room], d, now=at)[room.id].mark == mark
