"""A transaction that only read ends with COMMIT on PostgreSQL, so that psycopg keeps the statements the server
has prepared (reservations/prepared.py); anything that may have written is still rolled back, on both
databases."""
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from reservations.extensions import db
from reservations.models import Building
from reservations.prepared import is_read

PREPARE_THRESHOLD = 5  # psycopg's default: a statement is prepared on its 5th run on a connection


def prepared_on_this_connection() -> list[str]:
    """The statements the server has prepared for the connection the session is on (PostgreSQL)."""
    return list(db.session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars())


def buildings_named(name: str) -> int:
    db.session.rollback()
    return len(db.session.execute(select(Building.id).where(Building.name == name)).all())


@pytest.mark.parametrize("statement, read", [
    ("SELECT 1", True), ("  select id FROM rooms FOR UPDATE", True), ("\nSELECT pg_advisory_xact_lock(1, 2)", True),
    ("INSERT INTO rooms VALUES (1)", False), ("UPDATE rooms SET name = 'x'", False), ("DELETE FROM rooms", False),
    ("WITH moved AS (UPDATE rooms SET name = 'x' RETURNING id) SELECT * FROM moved", False),
    ("SAVEPOINT sa_savepoint_1", False), ("SELECTED", False), ("", False),
])
def test_only_a_select_counts_as_a_read(statement, read):
    assert is_read(statement, None) is read


def test_pages_that_only_read_keep_their_prepared_statements(app, client, auth, resident, room,
                                                             fresh_session_per_request):
    room_id = room.id
    auth.login()
    for _ in range(PREPARE_THRESHOLD + 2):
        assert client.get(f"/rooms/{room_id}").status_code == 200
        assert client.get("/account/profile").status_code == 200
    if db.engine.dialect.name != "postgresql":
        return  # pysqlite has no server-side prepared statements, and forgets nothing at a rollback
    db.session.remove()  # the connection the requests used, back in the pool and taken again by the next line
    prepared = prepared_on_this_connection()
    # The room page's SELECT of the room, run by each of its seven views: prepared, and still there after fourteen
    # requests that each ended their transaction (a ROLLBACK would have made psycopg forget it, and DEALLOCATE ALL).
    assert any(s.startswith("SELECT rooms.id") and "FROM rooms" in s for s in prepared), prepared


def test_a_transaction_that_wrote_is_rolled_back(app):
    db.session.add(Building(name="書きかけ館", name_kana="カキカケ", name_en="Unfinished hall", address="中央区"))
    db.session.flush()  # an ORM INSERT
    db.session.rollback()
    assert buildings_named("書きかけ館") == 0

    db.session.execute(text("INSERT INTO buildings (name, name_kana, name_en, address, website_url) "
                            "VALUES ('生SQL館', 'ナマ', 'Raw hall', '中央区', '')"))
    db.session.rollback()
    assert buildings_named("生SQL館") == 0


def test_a_write_hidden_behind_a_select_is_rolled_back(app):
    """The first statement only read; the second wrote, so the end is still a rollback."""
    db.session.execute(select(Building.id)).all()
    db.session.add(Building(name="後から館", name_kana="アトカラ", name_en="Later hall", address="中央区"))
    db.session.flush()
    db.session.execute(select(Building.id)).all()
    db.session.rollback()
    assert buildings_named("後から館") == 0


def test_a_savepoint_counts_as_a_write(app):
    db.session.execute(select(Building.id)).all()
    with db.session.begin_nested():
        db.session.add(Building(name="入れ子館", name_kana="イレコ", name_en="Nested hall", address="中央区"))
    db.session.rollback()
    assert buildings_named("入れ子館") == 0


def test_a_failed_statement_is_rolled_back_and_the_session_goes_on(app):
    db.session.execute(select(Building.id)).all()
    with pytest.raises(DBAPIError):
        db.session.execute(text("SELECT no_such_column FROM buildings"))
    db.session.rollback()
    assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_the_commit_that_ends_a_read_releases_its_locks(app):
    """A hold's advisory locks are taken by a SELECT: ending that transaction by COMMIT releases them as the
    rollback did, so another connection can take them at once."""
    if db.engine.dialect.name != "postgresql":
        return  # SQLite's write lock is BEGIN IMMEDIATE's, released by the rollback itself
    db.session.execute(text("SELECT pg_advisory_xact_lock(4201, 987654)"))
    with db.engine.connect() as other:
        assert other.execute(text("SELECT pg_try_advisory_xact_lock(4201, 987654)")).scalar() is False
        other.rollback()
        db.session.rollback()
        assert other.execute(text("SELECT pg_try_advisory_xact_lock(4201, 987654)")).scalar() is True


def test_a_losing_reserve_keeps_the_prepared_statements(app, client, auth, resident, room, make_user,
                                                         fresh_session_per_request):
    """The opening rush's common case: the slot is taken, nothing is written, and the connection keeps its
    prepared statements (the user loader's, the locks', the standing's) for the next resident."""
    from tests.helpers import booking_day

    day, room_id, fee = booking_day().isoformat(), room.id, str(room.divisions[0].weekday_fee)
    winner = make_user(email="winner@example.com")
    with client.session_transaction() as sess:
        sess["_user_id"] = winner.get_id()
    won = client.post(f"/rooms/{room_id}/book", data={"date": day, "divisions": "MORNING", "expected_price": fee})
    assert won.status_code == 302 and "/bookings/" in won.headers["Location"]
    auth.logout()
    auth.login()
    for _ in range(PREPARE_THRESHOLD + 2):
        lost = client.post(f"/rooms/{room_id}/book",
                           data={"date": day, "divisions": "MORNING", "expected_price": fee})
        assert lost.status_code == 302 and f"/rooms/{room_id}" in lost.headers["Location"]
    db.session.remove()
    assert db.session.execute(text("SELECT count(*) FROM bookings")).scalar() == 1
    if db.engine.dialect.name != "postgresql":
        return
    prepared = prepared_on_this_connection()
    assert any("pg_advisory_xact_lock" in s for s in prepared), prepared
