"""On SQLite only units of work that write take the write lock at BEGIN; page views never wait on a writer.

SQLite only: PostgreSQL has no database-wide write lock, and every
transaction there begins the same way.
"""
import sqlite3
import threading
from contextlib import contextmanager

import pytest
from sqlalchemy import select, text

from reservations.db_mode import READ, WRITE, WriteInReadTransaction, unit_of_work_mode
from reservations.extensions import db
from reservations.models import AuditEntry


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:
    return request.param


def other_connection(app) -> sqlite3.Connection:
    """A second connection to the same file, as another process would have; it never waits."""
    return sqlite3.connect(db.engine.url.database, timeout=0, isolation_level=None)


@contextmanager
def another_writer(app):
    """Another connection in the middle of a write: BEGIN IMMEDIATE and an insert, not committed."""
    conn = other_connection(app)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO audit_entries (at, subject, subject_id, action, data) "
                 "VALUES ('2027-01-01 00:00:00.000000', 'test', 1, 'writing', '{}')")
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def write_lock_is_free(app) -> bool:
    conn = other_connection(app)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    else:
        conn.rollback()
        return True
    finally:
        conn.close()


def get_in_another_thread(app, paths: list[str], *, timeout: float = 10) -> dict[str, int]:
    """GET each path from a thread of its own (own app context, session and connection), bounded in time."""
    statuses: dict[str, int] = {}

    def run():
        client = app.test_client()
        for path in paths:
            statuses[path] = client.get(path).status_code

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    return statuses if not thread.is_alive() else {**statuses, "timed out": True}


def test_page_views_answer_while_another_connection_holds_the_write_lock(app, room):
    paths = ["/", f"/rooms/{room.id}"]
    db.session.rollback()  # the test's own transaction would hold the write lock (read nothing after this)

    with another_writer(app):
        statuses = get_in_another_thread(app, paths)

    assert statuses == {path: 200 for path in paths}


def test_a_write_request_takes_the_write_lock_at_begin_and_a_page_view_does_not(app, room):
    units = (("POST", f"/rooms/{room.id}/book", WRITE), ("GET", f"/rooms/{room.id}", READ),
             ("HEAD", "/", READ), ("GET", "/bookings/1/pay", WRITE))  # the pay page is marked @writes
    db.session.rollback()
    for method, path, mode in units:
        with app.test_request_context(path, method=method):
            assert unit_of_work_mode() == mode, (method, path)
            db.session.execute(select(1))  # begins the transaction
            assert write_lock_is_free(app) == (mode == READ), (method, path)
            db.session.rollback()


def test_commands_jobs_and_code_outside_a_request_write(app):
    db.session.rollback()
    assert unit_of_work_mode() == WRITE
    db.session.execute(select(1))
    assert not write_lock_is_free(app)
    db.session.rollback()
    assert write_lock_is_free(app)


def test_a_write_in_a_page_view_fails_loudly_in_tests(app, room):
    path = f"/rooms/{room.id}"
    db.session.rollback()
    with app.test_request_context(path, method="GET"):
        db.session.add(AuditEntry(subject="test", subject_id=1, action="written by a page view"))
        with pytest.raises(WriteInReadTransaction, match="mark the view with"):
            db.session.flush()
        db.session.rollback()
        with pytest.raises(WriteInReadTransaction):
            db.session.execute(text("UPDATE rooms SET name = name"))
        db.session.rollback()
    assert db.session.scalar(select(AuditEntry.id)) is None


def test_a_request_leaves_no_read_transaction_behind_for_the_code_after_it(app, client, room):
    path = f"/rooms/{room.id}"
    db.session.rollback()
    assert client.get(path).status_code == 200
    # The test client shares this app context (and session) with the test: its
    # read transaction ended with the request, so this write begins a write transaction.
    db.session.add(AuditEntry(subject="test", subject_id=1, action="written after a page view"))
    db.session.commit()
    assert db.session.scalar(select(AuditEntry.action)) == "written after a page view"
