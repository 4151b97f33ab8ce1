"""A new server process's one-time work done before its first request (reservations/warmup.py, called by
deploy/gunicorn.conf.py's post_worker_init): it keeps the rooms residents book, writes nothing, and a database
that does not answer leaves the process cold, not failing."""
import re
from datetime import timedelta

from sqlalchemy import func, select

from reservations import create_app
from reservations.extensions import db
from reservations.models import AuditEntry, Booking
from reservations.services import rules
from reservations.warmup import warm
from tests.helpers import booking_day, closed_port, statements


def test_warm_keeps_every_active_room_and_writes_nothing(app, make_room):
    rooms = [make_room(name=f"集会室{n}") for n in range(3)]
    retired = make_room(name="閉鎖室")
    retired.active = False
    db.session.commit()
    room_ids = {room.id for room in rooms}
    token = rules.catalog_token()
    before = [db.session.scalar(select(func.count()).select_from(model)) for model in (Booking, AuditEntry)]
    db.session.remove()

    done = warm(app)

    kept = app.extensions["kept_rooms"]
    assert done["rooms"] == len(room_ids) and done["templates"] > 50
    assert {room_id for room_id, (kept_token, _room) in kept.items() if kept_token == token} == room_ids
    searched = app.extensions["search_catalog"]
    assert searched.token == token and {room.id for room in searched.rooms} == room_ids
    assert [db.session.scalar(select(func.count()).select_from(model)) for model in (Booking, AuditEntry)] == before
    assert token is not None and rules.catalog_token() == token


def test_after_warm_the_first_review_of_a_room_reads_no_room(app, client, make_user, room, login_as):
    user = make_user(email="first@example.com")
    login_as(user)
    room_id = room.id
    db.session.remove()
    warm(app)

    with statements() as sent:
        page = client.get(f"/rooms/{room_id}/book?date={(booking_day() + timedelta(days=1)).isoformat()}"
                          "&divisions=MORNING")
    assert page.status_code == 200 and re.search(r'name="expected_price" value="\d+"', page.get_data(as_text=True))
    assert not any("FROM rooms" in statement for statement in sent), sent


def test_warm_without_the_database_leaves_the_process_cold_not_down(app_config):
    cold = create_app({**app_config, "SQLALCHEMY_DATABASE_URI":
                       f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nowhere"})
    done = warm(cold)
    assert done["rooms"] is None and done["templates"] > 50
    assert cold.extensions.get("kept_rooms", {}) == {}
