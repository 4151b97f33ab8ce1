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
