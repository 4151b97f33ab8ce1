"""A process keeps the rooms residents book, with their rules, for as long as the catalog's token stays the
same (services/rules.py cached_room_with_rules, migration 0014; the search keeps the catalog likewise, with the
rooms' equipment, 0015): every write to a room's rules, by the app or by hand, gives the token a new value in
the same transaction, and the next review or reserve reads the room again."""
import re

import pytest
from sqlalchemy import text

from reservations.extensions import db
from reservations.models import Closure, ClosureKind, RefundTier
from reservations.services import booking as booking_service
from reservations.services import rules
from tests.helpers import booking_day

WRITES = {
    "rooms": "UPDATE rooms SET capacity = capacity + 1 WHERE id = :room",
    "buildings": "UPDATE buildings SET address = address || '1' WHERE id = (SELECT building_id FROM rooms "
                 "WHERE id = :room)",
    "divisions": "UPDATE divisions SET weekday_fee = weekday_fee + 100 WHERE room_id = :room",
    "closures": "INSERT INTO closures (room_id, kind, weekday, reason) VALUES (:room, 'weekly', 6, 'x')",
    "refund_tiers (a kind's)": "INSERT INTO refund_tiers (room_kind, unit, count, percent) "
                               "VALUES ('music_room', 'days', 40, 100)",
    "refund_tiers (a room's)": "INSERT INTO refund_tiers (room_id, unit, count, percent) VALUES (:room, 'days', 9, 90)",
    "closures, deleted": "DELETE FROM closures WHERE room_id = :room",
    "room_equipment (0015)": "INSERT INTO room_equipment (room_id, code) VALUES (:room, 'piano')",
}


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_to_a_rooms_rules_gives_the_catalog_a_new_token(app, room, write):
    db.session.execute(text(WRITES["closures"]), {"room": room.id})  # something for the DELETE to remove
    db.session.commit()
    before = rules.catalog_token()

    db.session.execute(text(WRITES[write]), {"room": room.id})
    inside = rules.catalog_token()  # the writing transaction already sees its new token
    db.session.commit()

    assert before is not None and inside != before and rules.catalog_token() == inside


def test_other_writes_leave_the_token_alone(app, room, make_user):
    before = rules.catalog_token()
    make_user(email="someone@example.com")
    db.session.execute(text("UPDATE users SET name = 'x'"))
    db.session.commit()
    assert rules.catalog_token() == before


def review(client, room_id: int, day):
    return client.get(f"/rooms/{room_id}/book?date={day.isoformat()}&divisions=MORNING")


def test_the_review_and_the_reserve_see_a_change_made_after_the_room_was_kept(app, client, room, login_as,
                                                                             make_user):
    login_as(make_user(email="resident@example.com"))
    day = booking_day()
    page = review(client, room.id, day)
    assert page.status_code == 200
    price = int(re.search(r'name="expected_price"[^>]*value="(\d+)"', page.get_data(as_text=True)).group(1))
    kept = app.extensions["kept_rooms"][room.id][1]

    # By hand, as a person at psql would: the fee goes up.
    db.session.execute(text("UPDATE divisions SET weekday_fee = weekday_fee + 500, holiday_fee = holiday_fee + 500 "
                            "WHERE room_id = :room"), {"room": room.id})
    db.session.commit()
    page = review(client, room.id, day)
    html = page.get_data(as_text=True)
    assert int(re.search(r'name="expected_price"[^>]*value="(\d+)"', html).group(1)) == price + 500
    assert app.extensions["kept_rooms"][room.id][1] is not kept  # read again, and kept in its place
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)

    # Through the app, as staff would: the day is closed. The review refuses it, and so does the reserve.
    db.session.add(Closure(room_id=room.id, kind=ClosureKind.PERIOD, start_date=day, end_date=day, reason="点検"))
    db.session.commit()
    refused = review(client, room.id, day)
    assert refused.status_code == 302
    answer = client.post(f"/rooms/{room.id}/book", data={
        "csrf_token": token, "date": day.isoformat(), "divisions": "MORNING", "expected_price": str(price + 500)})
    assert answer.status_code == 302 and "/pay" not in answer.headers["Location"]
    assert db.session.scalar(text("SELECT count(*) FROM bookings")) == 0


def test_a_kept_room_serves_the_next_request_without_reading_the_room(app, client, room, login_as, make_user):
    login_as(make_user(email="resident@example.com"))
    day = booking_day()
    assert review(client, room.id, day).status_code == 200
    kept = app.extensions["kept_rooms"][room.id]
    db.session.add(RefundTier(room_kind="gym", unit="days", count=3, percent=50))  # another kind: still a write
    db.session.commit()
    assert review(client, room.id, day).status_code == 200
    assert app.extensions["kept_rooms"][room.id] is not kept  # any catalog write: read again

    again = app.extensions["kept_rooms"][room.id]
    assert review(client, room.id, day).status_code == 200
    assert app.extensions["kept_rooms"][room.id] is again  # nothing written: the same objects


def test_an_inactive_or_unknown_room_is_a_404_even_once_kept(app, client, room, login_as, make_user):
    login_as(make_user(email="resident@example.com"))
    day = booking_day()
    assert review(client, room.id, day).status_code == 200
    room.active = False
    db.session.commit()
    assert review(client, room.id, day).status_code == 404
    assert review(client, room.id + 1000, day).status_code == 404
    assert client.get(f"/rooms/{2**31}/book?date={day.isoformat()}&divisions=MORNING").status_code == 404


def test_reading_a_room_to_keep_it_leaves_the_holds_transaction_and_locks_alone(app, room, make_user):
    """A reserve whose room is not kept yet reads it in a session of its own on the request's connection: that
    session's end must neither end the request's transaction nor let go of the hold's locks taken before it."""
    user = make_user(email="resident@example.com")
    app.extensions.pop("kept_rooms", None)
    booking_service.lock_for_hold(user.id, room.id)
    connection = db.session.connection()
    transaction = connection.get_transaction()

    kept = rules.cached_room_with_rules(room.id, rules.catalog_token())

    assert kept is not None and kept.id == room.id and app.extensions["kept_rooms"][room.id][1] is kept
    assert db.session.connection() is connection and connection.get_transaction() is transaction
    assert transaction.is_active
    if db.engine.dialect.name == "postgresql":
        assert db.session.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()")) == 2
    db.session.rollback()


def _reserve(client, room_id: int, day, division: str, price: int):
    return client.post(f"/rooms/{room_id}/book", data={"date": day.isoformat(), "divisions": division,
                                                       "expected_price": str(price)})


def test_a_reserve_that_is_first_to_meet_a_change_judges_the_room_as_it_is_now(app, client, room, login_as,
                                                                               make_user):
    """The reserve takes the kept room as it is and learns the catalog's token with its standing, under the
    locks: a fee changed since the room was kept is the price it judges, not the kept one."""
    login_as(make_user(email="resident@example.com"))
    day = booking_day()
    page = review(client, room.id, day)
    price = int(re.search(r'name="expected_price"[^>]*value="(\d+)"', page.get_data(as_text=True)).group(1))
    kept = app.extensions["kept_rooms"][room.id][1]
    db.session.execute(text("UPDATE divisions SET weekday_fee = weekday_fee + 500, holiday_fee = holiday_fee + 500 "
                            "WHERE room_id = :room"), {"room": room.id})
    db.session.commit()

    answer = _reserve(client, room.id, day, "MORNING", price)  # the price the resident saw, now out of date

    assert answer.status_code == 302 and "/book?" in answer.headers["Location"]  # back to the review: new price
    assert db.session.scalar(text("SELECT count(*) FROM bookings")) == 0
    assert app.extensions["kept_rooms"][room.id][1] is not kept
    assert _reserve(client, room.id, day, "MORNING", price + 500).status_code == 302
    assert db.session.scalar(text("SELECT price FROM bookings WHERE state = 'confirmed'")) == price + 500


def test_a_reserve_refused_by_a_kept_room_asks_the_room_as_it_is_now(app, client, room, login_as, make_user):
    """A division added since the room was kept: the kept room does not know it, so before refusing the
    reserve checks the token, reads the room again and books the new division."""
    login_as(make_user(email="resident@example.com"))
    day = booking_day()
    assert review(client, room.id, day).status_code == 200
    db.session.execute(text("INSERT INTO divisions (room_id, code, position, start_time, end_time, weekday_fee, "
                            "holiday_fee) VALUES (:room, 'LATE', 3, '21:00', '22:00', 700, 700)"), {"room": room.id})
    db.session.commit()

    answer = _reserve(client, room.id, day, "LATE", 700)

    assert answer.status_code == 302 and "/bookings/" in answer.headers["Location"], answer.headers["Location"]
    assert db.session.scalar(text("SELECT division_codes FROM bookings WHERE state = 'confirmed'")) == "LATE"
