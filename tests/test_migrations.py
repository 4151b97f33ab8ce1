"""The schema is built only by migrations, and the models never drift from them."""

import pytest
from sqlalchemy import inspect, text

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


# -- 0011: the ledger's rows as a deployment of revision 0010 holds them, filled in and signed ---------------

REVENUE, SPORTS, PRIOR, PRIOR_INCOME = "13-01-02-01", "13-01-06-01", "02-01-01-22", "21-05-04-01"
LEDGER_AT_0010 = [
    # id, payment, kind, amount (0010 keeps magnitudes), reference, at (UTC)
    (1, 1, "capture", 2800, "ch_m1", "2027-03-31 14:59:59"),  # 23:59:59 on 31 March in Tokyo: FY2026
    (2, 2, "capture", 3600, "ch_m2", "2027-03-31 15:00:00"),  # midnight in Tokyo: 1 April, FY2027
    (3, 1, "refund", 1000, "re_m1", "2027-05-31 14:00:00"),  # 23:00 on 31 May: 現年度戻出 of FY2026
    (4, 1, "refund_reversal", 1000, "re_m1", "2027-06-02 01:00:00"),  # after the closing period
    (5, 1, "refund", 500, "re_m2", "2027-06-03 01:00:00"),  # 過年度支出 of FY2027
    (6, 2, "dispute_withdrawal", 3600, "dp_m1", "2027-04-10 01:00:00"),
    (7, 3, "capture", 2800, "cash-3", "2027-04-01 00:30:00"),
    (8, 3, "refund", 2800, "counter-refund-1", "2027-04-02 00:30:00"),
]
# What 0011 makes of them: id: kind, amount, paid_on, fiscal year, method, account, refund kind and number,
# charge, refund and intent ids; and the booking and room each payment is for.
LEDGER_AT_0011 = {
    1: ("capture", 2800, "2027-03-31", 2026, "card", REVENUE, None, None, "ch_m1", None, "pi_m1"),
    2: ("capture", 3600, "2027-04-01", 2027, "card", SPORTS, None, None, "ch_m2", None, "pi_m2"),
    3: ("refund", -1000, "2027-05-31", 2026, "card", REVENUE, "current", 1, None, "re_m1", "pi_m1"),
    4: ("refund_reversal", 1000, "2027-06-02", 2027, "card", PRIOR_INCOME, None, None, None, "re_m1", "pi_m1"),
    5: ("refund", -500, "2027-06-03", 2027, "card", PRIOR, "prior", 1, None, "re_m2", "pi_m1"),
    6: ("dispute_withdrawal", -3600, "2027-04-10", 2027, "card", SPORTS, None, None, None, None, "pi_m2"),
    7: ("capture", 2800, "2027-04-01", 2027, "cash", REVENUE, None, None, None, None, None),
    8: ("refund", -2800, "2027-04-02", 2027, "cash", REVENUE, "current", 2, None, None, None),
}
PLACE = {1: (1, 1), 2: (2, 2), 3: (3, 1)}  # payment: booking, room


def _fill_at_0010(conn) -> None:
    """A resident's card and cash payments with their ledger rows, written with revision 0010's columns."""
    pg = conn.dialect.name == "postgresql"

    def at(value: str) -> str:  # UTC, whatever the server's time zone
        return f"'{value}+00'" if pg else f"'{value}.000000'"

    conn.exec_driver_sql(
        "INSERT INTO users (id, email, name, password_hash, residency, role, created_at, session_version, name_kana,"
        " walk_in) VALUES (1, 'hanako@example.com', '山田 花子', 'x', 'resident', 'resident',"
        f" {at('2026-11-01 00:00:00')}, 1, 'ヤマダ ハナコ', false)")
    conn.exec_driver_sql(
        "INSERT INTO buildings (id, name, name_kana, name_en, address, website_url) VALUES (1, 'b', '', '', '', '')")
    for room_id, kind in ((1, "hall"), (2, "gym")):
        conn.exec_driver_sql(
            "INSERT INTO rooms (id, building_id, name, name_kana, name_en, kind, accessibility_notes, website_url,"
            " note, lottery_note, active, letting, step_minutes, hourly_unit_minutes, nonresident_multiplier_pct,"
            " window_months, window_open_day, window_open_time, close_hours_before, closes_year_end) VALUES"
            f" ({room_id}, 1, 'r{room_id}', '', '', '{kind}', '', '', '', '', true, 'division', 60, 60, 150, 2, 1,"
            " '09:00:00', 24, true)")
    for booking_id, room_id in PLACE.values():
        day = f"2027-04-{19 + booking_id}"
        conn.exec_driver_sql(
            "INSERT INTO bookings (id, user_id, room_id, start_at, end_at, state, price, price_detail, residency,"
            f" channel, created_at, updated_at) VALUES ({booking_id}, 1, {room_id}, {at(day + ' 00:00:00')},"
            f" {at(day + ' 03:00:00')}, 'confirmed', 2800, '{{}}', 'resident', 'online',"
            f" {at('2027-03-01 00:00:00')}, {at('2027-03-01 00:00:00')})")
    for payment_id, provider, intent, captured, refunded, withdrawn in (
            (1, "stripe", "'pi_m1'", 2800, 500, 0), (2, "stripe", "'pi_m2'", 3600, 0, 3600),
            (3, "cash", "NULL", 2800, 2800, 0)):
        conn.exec_driver_sql(
            "INSERT INTO payments (id, booking_id, provider, intent_id, amount, currency, state, captured_amount,"
            " refunded_amount, withdrawn_amount, failure_message, idempotency_key, created_at, updated_at) VALUES"
            f" ({payment_id}, {payment_id}, '{provider}', {intent}, {captured}, 'jpy', 'captured', {captured},"
            f" {refunded}, {withdrawn}, '', 'key-{payment_id}', {at('2027-03-01 00:00:00')},"
            f" {at('2027-03-01 00:00:00')})")
    for entry_id, payment_id, kind, amount, reference, when in LEDGER_AT_0010:
        conn.exec_driver_sql(
            "INSERT INTO ledger_entries (id, at, payment_id, kind, amount, reference) VALUES"
            f" ({entry_id}, {at(when)}, {payment_id}, '{kind}', {amount}, '{reference}')")
    if pg:  # rows written with their ids leave the sequences behind; a live database's are past them
        for table in ("users", "buildings", "rooms", "bookings", "payments", "ledger_entries"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")


def _ledger(conn) -> dict:
    rows = conn.execute(text(
        "SELECT id, kind, amount, paid_on, fiscal_year, method, account_code, refund_kind, refund_serial, charge_id,"
        " provider_refund_id, intent_id, business_date, payment_id, booking_id, room_id, building_id, payer_id,"
        " payer_name, at FROM ledger_entries ORDER BY id")).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_0011_fills_in_signs_and_numbers_the_ledger_of_0010_and_keeps_its_triggers(empty_database):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy.exc import DBAPIError

    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "TESTING": True})
    runner = app.test_cli_runner()
    with app.app_context():
        upgrade(revision="0010")
        with db.engine.begin() as conn:
            _fill_at_0010(conn)
            at_0010 = conn.execute(text("SELECT id, at FROM ledger_entries ORDER BY id")).all()
        upgrade()
        with db.engine.connect() as conn:
            ledger = _ledger(conn)
        assert sorted(ledger) == list(LEDGER_AT_0011)  # every row kept, under its own id
        for entry_id, expected in LEDGER_AT_0011.items():
            row = ledger[entry_id]
            assert (*row[:2], str(row[2]), *row[3:11]) == expected, entry_id
            booking_id, room_id = PLACE[row[12]]
            assert row[11] == row[2]  # business_date: no day was closed then
            assert row[12:18] == (row[12], booking_id, room_id, 1, 1, "山田 花子")
        assert [row[-1] for row in ledger.values()] == [at for _, at in at_0010]  # recorded times untouched

        _refused_after_upgrade(DBAPIError)
        result = runner.invoke(args=["db", "check"])
        assert result.exit_code == 0, result.output
        if db.engine.dialect.name == "sqlite":
            with db.engine.connect() as conn:
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                triggers = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
            assert {"ledger_entries_no_update", "ledger_entries_no_delete", "ledger_entries_closed_day",
                    "day_closes_no_update", "ledger_settlements_no_delete", "audit_entries_no_update",
                    "bookings_no_overlap_INSERT", "payments_provider_INSERT"} <= triggers

        # Down to 0010: the rows are its again (magnitudes, no fee rows), still append-only; and up once more.
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO ledger_entries (at, payment_id, kind, amount, reference, booking_id, payer_id, payer_name,"
                " building_id, room_id, account_code, paid_on, business_date, fiscal_year, method) SELECT at,"
                " payment_id, 'fee', -100, 'txn_fee', booking_id, payer_id, payer_name, building_id, room_id,"
                " '02-01-01-12', paid_on, business_date, fiscal_year, method FROM ledger_entries WHERE id = 1"))
        downgrade(revision="0010")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT id, kind, amount, reference FROM ledger_entries ORDER BY id")).all() == [
                (i, kind, amount, reference) for i, _, kind, amount, reference, _ in LEDGER_AT_0010]
        with pytest.raises(DBAPIError, match="append_only"), db.engine.begin() as conn:
            conn.execute(text("UPDATE ledger_entries SET amount = 1"))
        upgrade()
        with db.engine.connect() as conn:
            assert _ledger(conn) == ledger
        _refused_after_upgrade(DBAPIError)
        assert runner.invoke(args=["db", "check"]).exit_code == 0
        db.engine.dispose()


def _refused_after_upgrade(error) -> None:
    """The upgraded ledger is append-only still (on SQLite the table was copied, its triggers made again), and
    refuses a row for a closed day."""
    for sql in ("UPDATE ledger_entries SET amount = -amount WHERE kind = 'capture'", "DELETE FROM ledger_entries"):
        with pytest.raises(error, match="append_only"), db.engine.begin() as conn:
            conn.execute(text(sql))
    with db.engine.connect() as conn:
        trans = conn.begin()
        conn.execute(text("INSERT INTO day_closes (business_date, closed_at, rows, net, totals)"
                          " VALUES ('2027-04-10', '2027-04-11 00:00:00', 1, 0, '[]')"))
        with pytest.raises(error, match="day_closed"):
            conn.execute(text(
                "INSERT INTO ledger_entries (at, payment_id, kind, amount, reference, booking_id, payer_id,"
                " payer_name, building_id, room_id, account_code, paid_on, business_date, fiscal_year, method)"
                " VALUES ('2027-04-10 01:00:00', 2, 'capture', 1, 'late', 2, 1, 'x', 1, 2, 'a', '2027-04-10',"
                " '2027-04-10', 2027, 'card')"))
        trans.rollback()
