"""The schema is built only by migrations, and the models never drift from them."""

from sqlalchemy import inspect

from reservations import create_app
from reservations.extensions import db


def test_upgrade_builds_an_empty_database_and_check_reports_no_drift(empty_database):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "TESTING": True})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {"bookings", "rooms", "divisions", "users", "audit_entries"} <= tables
        # The hot queries' indexes: the expiry scan, availability by room and end, the refund retry.
        indexes = {table: {i["name"] for i in inspect(db.engine).get_indexes(table)}
                   for table in ("bookings", "refunds")}
        assert {"ix_bookings_state_hold_expires_at", "ix_bookings_room_end_start"} <= indexes["bookings"]
        assert "ix_refunds_state_next_attempt_at" in indexes["refunds"]
    # And back down to nothing, and up again.
    assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
    with app.app_context():
        assert "bookings" not in inspect(db.engine).get_table_names()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        db.engine.dispose()


def _fill_at_0002(conn) -> None:
    """Rows as a deployment of revision 0002 holds them, written with that revision's columns."""
    conn.exec_driver_sql(
        "INSERT INTO users (id, email, name, password_hash, residency, role, created_at) VALUES "
        "(1, 'Hanako@Example.com', 'h', 'x', 'resident', 'resident', '2026-11-01 00:00:00')")
    conn.exec_driver_sql(
        "INSERT INTO buildings (id, name, name_kana, name_en, address, website_url) VALUES (1, 'b', '', '', '', '')")
    conn.exec_driver_sql(
        "INSERT INTO rooms (id, building_id, name, name_kana, name_en, kind, accessibility_notes, website_url, note,"
        " lottery_note, active, letting, step_minutes, hourly_unit_minutes, nonresident_multiplier_pct,"
        " window_months, window_open_day, window_open_time, close_hours_before, closes_year_end) VALUES"
        " (1, 1, 'r', '', '', 'hall', '', '', '', '', true, 'division', 60, 60, 150, 2, 1, '09:00:00', 24, true)")
    conn.exec_driver_sql(
        "INSERT INTO divisions (id, room_id, code, position, start_time, end_time, weekday_fee, holiday_fee)"
        " VALUES (1, 1, 'MORNING', 0, '09:00:00', '12:00:00', 1000, 1000)")
    conn.exec_driver_sql(
        "INSERT INTO bookings (id, user_id, room_id, start_at, end_at, state, price, price_detail, residency,"
        " channel, created_at, updated_at) VALUES (1, 1, 1, '2026-12-20 00:00:00', '2026-12-20 03:00:00',"
        " 'cancelled', 1000, '{}', 'resident', 'online', '2026-11-01 00:00:00', '2026-11-01 00:00:00')")
    conn.exec_driver_sql(
        "INSERT INTO payments (id, booking_id, provider, intent_id, amount, currency, state, captured_amount,"
        " refunded_amount, failure_message, created_at, updated_at) VALUES (1, 1, 'stripe', 'pi_1', 1000, 'jpy',"
        " 'canceled', 0, 0, '', '2026-11-01 00:00:00', '2026-11-01 00:00:00')")
    conn.exec_driver_sql(
        "INSERT INTO audit_entries (id, at, actor_id, subject, subject_id, action, data) VALUES"
        " (1, '2026-11-01 00:00:00', 1, 'booking', 1, 'held', '{}')")


def test_upgrading_a_filled_database_keeps_every_row_and_the_overlap_guard(empty_database):
    """SQLite rebuilds a table to alter it; with foreign keys on, that drop would cascade into other tables."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "TESTING": True})
    with app.app_context():
        upgrade(revision="0002")
        with db.engine.begin() as conn:
            _fill_at_0002(conn)
        upgrade()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT email, session_version FROM users")).one() == ("hanako@example.com", 1)
            assert conn.execute(text("SELECT actor_id FROM audit_entries WHERE id = 1")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM divisions WHERE room_id = 1")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM bookings")).scalar() == 1
            assert conn.execute(text("SELECT state FROM payments WHERE id = 1")).scalar() == "cancelled"
            if db.engine.dialect.name == "sqlite":
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                triggers = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars()
                assert {"bookings_no_overlap_INSERT", "bookings_no_overlap_UPDATE"} <= set(triggers)
            else:
                assert conn.execute(text(
                    "SELECT count(*) FROM pg_constraint WHERE conname = 'ex_bookings_no_overlap'")).scalar() == 1
        db.engine.dispose()
