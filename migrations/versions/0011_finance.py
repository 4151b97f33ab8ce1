# ruff: noqa: E501 (the generated table definitions)
"""finance: a ledger row that carries what the ward's books need, closed days, payouts, reconciliation

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:00:00

ledger_entries becomes the finance ledger (models.payment.LedgerEntry): amounts are signed (a refund
is negative; the database checks each kind's sign), and each row carries the booking, payer, building
and room, the revenue account, 納付日 (paid_on), the 日計表 day it is counted on (business_date),
the fiscal year, the method, 現年度戻出 / 過年度支出 and the refund number of a refund, and the
provider's ids. Existing rows are filled in from what they refer to, by the same rules as
services/ledger.py.

New append-only tables: day_closes (a close is never undone) and ledger_settlements (入金日: a
ledger row's payout, recorded beside it because the row itself never changes). And the database
refuses a ledger row for a closed day (ledger_entries_closed_day).

On SQLite the ledger is copied into a new table (a CHECK cannot be changed in place); every trigger
on it is made again. On PostgreSQL it is altered in place.
"""
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

import reservations.models.types

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

TOKYO = ZoneInfo("Asia/Tokyo")
APPEND_ONLY_TABLES = ("day_closes", "ledger_settlements")
OLD_APPEND_ONLY = ("ledger_entries",)

SIGNS = {"capture": 1, "refund": -1, "refund_reversal": 1, "dispute_withdrawal": -1,
         "dispute_reinstatement": 1, "fee": -1, "fee_refund": 1}
KIND_CHECK = "kind IN ({})".format(",".join(f"'{k}'" for k in SIGNS))
SIGN_CHECK = ("(kind IN ('capture','refund_reversal','dispute_reinstatement','fee_refund') AND amount > 0)"
              " OR (kind IN ('refund','dispute_withdrawal','fee') AND amount < 0)")
CHECKS = {
    "kind": KIND_CHECK,
    "amount_sign": SIGN_CHECK,
    "method": "method IN ('card','cash','terminal')",
    "refund_kind": "(kind = 'refund') = (refund_kind IS NOT NULL)",
    "refund_kind_value": "refund_kind IS NULL OR refund_kind IN ('current','prior')",
    "refund_serial": "(kind = 'refund') = (refund_serial IS NOT NULL)",
    "business_date": "business_date >= paid_on",
}
NEW_COLUMNS = [
    # name, type, nullable at the end
    ("booking_id", sa.Integer(), False),
    ("payer_id", sa.Integer(), False),
    ("payer_name", sa.String(length=100), False),
    ("building_id", sa.Integer(), False),
    ("room_id", sa.Integer(), False),
    ("account_code", sa.String(length=32), False),
    ("paid_on", sa.Date(), False),
    ("business_date", sa.Date(), False),
    ("fiscal_year", sa.Integer(), False),
    ("method", sa.String(length=16), False),
    ("refund_kind", sa.String(length=16), True),
    ("refund_serial", sa.Integer(), True),
    ("intent_id", sa.String(length=64), True),
    ("charge_id", sa.String(length=64), True),
    ("provider_refund_id", sa.String(length=64), True),
    ("balance_transaction_id", sa.String(length=64), True),
]
FOREIGN_KEYS = [("booking_id", "bookings"), ("payer_id", "users"), ("building_id", "buildings"),
                ("room_id", "rooms")]
INDEXES = [("ix_ledger_entries_payment_id", ["payment_id"]), ("ix_ledger_entries_booking_id", ["booking_id"]),
           ("ix_ledger_entries_building_id", ["building_id"]),
           ("ix_ledger_entries_business_date", ["business_date"]), ("ix_ledger_entries_paid_on", ["paid_on"])]

PG_CLOSED_DAY = """
CREATE FUNCTION refuse_closed_day() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM day_closes WHERE business_date = NEW.business_date) THEN
        RAISE EXCEPTION 'day_closed: % is closed', NEW.business_date USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$
"""
PG_CLOSED_DAY_TRIGGER = ("CREATE TRIGGER ledger_entries_closed_day BEFORE INSERT ON ledger_entries"
                         " FOR EACH ROW EXECUTE FUNCTION refuse_closed_day()")
SQLITE_CLOSED_DAY_TRIGGER = """
CREATE TRIGGER ledger_entries_closed_day BEFORE INSERT ON ledger_entries
WHEN EXISTS (SELECT 1 FROM day_closes WHERE business_date = NEW.business_date)
BEGIN
    SELECT RAISE(ABORT, 'day_closed');
END
"""
PG_APPEND_ONLY = (
    "CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
    " FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()",
    "CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
    " FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()",
)
SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN SELECT RAISE(ABORT, 'append_only'); END",
    "CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} BEGIN SELECT RAISE(ABORT, 'append_only'); END",
)


def _append_only(execute, dialect: str, tables, *, create: bool) -> None:
    for table in tables:
        if create:
            for sql in PG_APPEND_ONLY if dialect == "postgresql" else SQLITE_APPEND_ONLY:
                execute(sql.format(table=table))
        elif dialect == "postgresql":
            execute(f"DROP TRIGGER {table}_append_only ON {table}")
            execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        else:
            execute(f"DROP TRIGGER {table}_no_update")
            execute(f"DROP TRIGGER {table}_no_delete")


def create_triggers(execute, dialect: str) -> None:
    """This revision's triggers on its own tables; also used by the test suite, which empties the tables
    between tests with the triggers lifted (the closed-day trigger on ledger_entries stays: it only refuses
    inserts)."""
    _append_only(execute, dialect, APPEND_ONLY_TABLES, create=True)


def drop_triggers(execute, dialect: str) -> None:
    _append_only(execute, dialect, APPEND_ONLY_TABLES, create=False)


def _fiscal_year(day: date) -> int:
    return day.year if day.month >= 4 else day.year - 1


def _accounts() -> tuple[dict, str, str]:
    try:
        from flask import current_app

        return current_app.config["REVENUE_ACCOUNTS"], current_app.config["PRIOR_YEAR_REFUND_ACCOUNT"], \
            current_app.config["PRIOR_YEAR_INCOME_ACCOUNT"]
    except (RuntimeError, KeyError):
        return {"default": "13-01-02-01"}, "02-01-01-22", "21-05-04-01"


def _as_utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _filled_rows(conn) -> list[dict]:
    """Every existing ledger row with its new columns, by services/ledger.py's rules."""
    accounts, prior_out, prior_in = _accounts()
    rows = conn.execute(sa.text(
        "SELECT l.id, l.at, l.payment_id, l.kind, l.amount, l.reference, p.booking_id, p.provider, p.intent_id,"
        " b.user_id, u.name, r.building_id, b.room_id, r.kind AS room_kind, bu.revenue_account"
        " FROM ledger_entries l JOIN payments p ON p.id = l.payment_id JOIN bookings b ON b.id = p.booking_id"
        " JOIN users u ON u.id = b.user_id JOIN rooms r ON r.id = b.room_id"
        " JOIN buildings bu ON bu.id = r.building_id ORDER BY l.id")).mappings().all()
    first_paid: dict[int, date] = {}
    serials: dict[int, int] = {}
    filled = []
    for row in rows:
        paid_on = _as_utc(row["at"]).astimezone(TOKYO).date()
        if row["kind"] == "capture":
            first_paid.setdefault(row["payment_id"], paid_on)
            year, current = _fiscal_year(paid_on), True
        else:
            own = _fiscal_year(first_paid.get(row["payment_id"], paid_on))
            current = paid_on <= date(own + 1, 5, 31)
            year = own if current else _fiscal_year(paid_on)
        revenue = row["revenue_account"] or accounts.get(row["room_kind"]) or accounts["default"]
        values = {
            "id": row["id"], "amount": SIGNS[row["kind"]] * abs(row["amount"]), "booking_id": row["booking_id"],
            "payer_id": row["user_id"], "payer_name": row["name"][:100], "building_id": row["building_id"],
            "room_id": row["room_id"], "account_code": revenue if current else prior_out if SIGNS[row["kind"]] < 0 else prior_in,
            "paid_on": paid_on, "business_date": paid_on, "fiscal_year": year,
            "method": {"stripe": "card"}.get(row["provider"], row["provider"]), "refund_kind": None,
            "refund_serial": None, "intent_id": row["intent_id"], "charge_id": None, "provider_refund_id": None,
            "balance_transaction_id": None,
        }
        if row["kind"] == "capture" and row["reference"].startswith(("ch_", "py_")):
            values["charge_id"] = row["reference"]
        if row["kind"] in ("refund", "refund_reversal") and row["reference"].startswith(("re_", "pyr_")):
            values["provider_refund_id"] = row["reference"]
        if row["kind"] == "refund":
            values["refund_kind"] = "current" if current else "prior"
            serials[year] = serials.get(year, 0) + 1
            values["refund_serial"] = serials[year]
        filled.append(values)
    return filled


def _new_tables() -> None:
    op.create_table('payouts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('arrival_date', sa.Date(), nullable=True),
    sa.Column('gross', sa.Integer(), nullable=False),
    sa.Column('fees', sa.Integer(), nullable=False),
    sa.Column('refunds', sa.Integer(), nullable=False),
    sa.Column('other', sa.Integer(), nullable=False),
    sa.Column('net', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('recorded_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('gross - fees - refunds + other = net', name=op.f('ck_payouts_sum')),
    sa.CheckConstraint('gross >= 0 AND fees >= 0 AND refunds >= 0', name=op.f('ck_payouts_parts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts'))
    )
    op.create_table('day_closes',
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('closed_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('net', sa.Integer(), nullable=False),
    sa.Column('totals', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_day_closes_closed_by_id_users')),
    sa.PrimaryKeyConstraint('business_date', name=op.f('pk_day_closes'))
    )
    op.create_table('provider_transactions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('reporting_category', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('fee', sa.Integer(), nullable=False),
    sa.Column('net', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=True),
    sa.Column('intent_id', sa.String(length=64), nullable=True),
    sa.Column('payout_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_via', sa.String(length=16), nullable=False),
    sa.Column('updated_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('net = amount - fee', name=op.f('ck_provider_transactions_net')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_provider_transactions_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_transactions'))
    )
    with op.batch_alter_table('provider_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_provider_transactions_created_at', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_provider_transactions_payout_id'), ['payout_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_provider_transactions_source_id'), ['source_id'], unique=False)

    op.create_table('reconciliation_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('date_from', sa.Date(), nullable=False),
    sa.Column('date_to', sa.Date(), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('only_in_stripe', sa.Integer(), nullable=False),
    sa.Column('only_in_ledger', sa.Integer(), nullable=False),
    sa.Column('mismatched', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_reconciliation_runs_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_runs'))
    )
    op.create_table('ledger_settlements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ledger_entry_id', sa.Integer(), nullable=False),
    sa.Column('balance_transaction_id', sa.String(length=64), nullable=False),
    sa.Column('payout_id', sa.String(length=64), nullable=False),
    sa.Column('arrival_date', sa.Date(), nullable=False),
    sa.Column('recorded_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ledger_entry_id'], ['ledger_entries.id'], name=op.f('fk_ledger_settlements_ledger_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_ledger_settlements_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_settlements')),
    sa.UniqueConstraint('ledger_entry_id', name=op.f('uq_ledger_settlements_ledger_entry_id'))
    )
    with op.batch_alter_table('ledger_settlements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_settlements_payout_id'), ['payout_id'], unique=False)

    op.create_table('reconciliation_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('balance_transaction_id', sa.String(length=64), nullable=True),
    sa.Column('ledger_entry_id', sa.Integer(), nullable=True),
    sa.Column('stripe_amount', sa.Integer(), nullable=True),
    sa.Column('ledger_amount', sa.Integer(), nullable=True),
    sa.Column('payout_id', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.CheckConstraint("status IN ('matched','only_in_stripe','only_in_ledger','mismatch')", name=op.f('ck_reconciliation_items_status')),
    sa.ForeignKeyConstraint(['ledger_entry_id'], ['ledger_entries.id'], name=op.f('fk_reconciliation_items_ledger_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['run_id'], ['reconciliation_runs.id'], name=op.f('fk_reconciliation_items_run_id_reconciliation_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_items'))
    )
    with op.batch_alter_table('reconciliation_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reconciliation_items_run_id'), ['run_id'], unique=False)



def _ledger_table_sqlite(name: str) -> None:
    op.create_table(
        name,
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('payment_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('amount', sa.Integer(), nullable=False),
        sa.Column('reference', sa.String(length=64), nullable=False),
        *[sa.Column(column, type_, nullable=nullable) for column, type_, nullable in NEW_COLUMNS],
        *[sa.CheckConstraint(check, name=op.f(f"ck_ledger_entries_{check_name}")) for check_name, check in CHECKS.items()],
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_ledger_entries_payment_id_payments')),
        *[sa.ForeignKeyConstraint([column], [f'{table}.id'], name=op.f(f'fk_ledger_entries_{column}_{table}'))
          for column, table in FOREIGN_KEYS],
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries')),
        sa.UniqueConstraint('kind', 'reference', name=op.f('uq_ledger_entries_kind_reference')),
        sa.UniqueConstraint('fiscal_year', 'refund_serial', name=op.f('uq_ledger_entries_fiscal_year_refund_serial')),
    )


def upgrade():
    conn = op.get_bind()
    dialect = conn.dialect.name
    op.add_column('buildings', sa.Column('revenue_account', sa.String(length=32), nullable=True))
    _append_only(op.execute, dialect, OLD_APPEND_ONLY, create=False)
    filled = _filled_rows(conn)
    if dialect == "sqlite":
        old = conn.execute(sa.text("SELECT id, at, payment_id, kind, reference FROM ledger_entries")).mappings().all()
        by_id = {row["id"]: row for row in old}
        op.execute("DROP INDEX ix_ledger_entries_payment_id")
        op.execute("ALTER TABLE ledger_entries RENAME TO ledger_entries_old")
        _ledger_table_sqlite("ledger_entries")
        if filled:
            table = sa.table("ledger_entries", sa.column("id"), sa.column("at"), sa.column("payment_id"),
                             sa.column("kind"), sa.column("reference"),
                             *[sa.column(c) for c in filled[0] if c != "id"])
            op.bulk_insert(table, [{**{k: by_id[v["id"]][k] for k in ("at", "payment_id", "kind", "reference")}, **v}
                                   for v in filled])
        op.execute("DROP TABLE ledger_entries_old")
    else:
        for column, type_, _nullable in NEW_COLUMNS:
            op.add_column('ledger_entries', sa.Column(column, type_, nullable=True))
        # 0010's checks go first: the rows about to be written have signs and new kinds.
        op.drop_constraint(op.f('ck_ledger_entries_amount_positive'), 'ledger_entries', type_='check')
        op.drop_constraint(op.f('ck_ledger_entries_kind'), 'ledger_entries', type_='check')
        for values in filled:
            conn.execute(sa.text("UPDATE ledger_entries SET " + ", ".join(f"{k} = :{k}" for k in values if k != "id")
                                 + " WHERE id = :id"), values)
        for column, type_, nullable in NEW_COLUMNS:
            if not nullable:
                op.alter_column('ledger_entries', column, existing_type=type_, nullable=False)
        for check_name, check in CHECKS.items():
            op.create_check_constraint(op.f(f"ck_ledger_entries_{check_name}"), 'ledger_entries', check)
        for column, table in FOREIGN_KEYS:
            op.create_foreign_key(op.f(f'fk_ledger_entries_{column}_{table}'), 'ledger_entries', table, [column], ['id'])
        op.create_unique_constraint(op.f('uq_ledger_entries_fiscal_year_refund_serial'), 'ledger_entries',
                                    ['fiscal_year', 'refund_serial'])
    # After the copy: on SQLite a table that refers to ledger_entries would follow its rename.
    _new_tables()
    for index, columns in INDEXES:
        if dialect == "postgresql" and index == "ix_ledger_entries_payment_id":
            continue  # kept by the ALTER
        op.create_index(index, 'ledger_entries', columns, unique=False)
    _append_only(op.execute, dialect, OLD_APPEND_ONLY + APPEND_ONLY_TABLES, create=True)
    if dialect == "postgresql":
        op.execute(PG_CLOSED_DAY)
        op.execute(PG_CLOSED_DAY_TRIGGER)
    else:
        op.execute(SQLITE_CLOSED_DAY_TRIGGER)


def downgrade():
    conn = op.get_bind()
    dialect = conn.dialect.name
    _append_only(op.execute, dialect, OLD_APPEND_ONLY + APPEND_ONLY_TABLES, create=False)
    if dialect == "postgresql":
        op.execute("DROP TRIGGER ledger_entries_closed_day ON ledger_entries")
        op.execute("DROP FUNCTION refuse_closed_day()")
    else:
        op.execute("DROP TRIGGER ledger_entries_closed_day")
    for table in ("reconciliation_items", "ledger_settlements"):
        op.drop_table(table)
    op.execute("DELETE FROM ledger_entries WHERE kind IN ('fee', 'fee_refund')")  # revision 0010 has no fee rows
    for index, _columns in INDEXES:
        if index != "ix_ledger_entries_payment_id":
            op.drop_index(index, table_name='ledger_entries')
    if dialect == "postgresql":
        for check_name in CHECKS:
            op.drop_constraint(op.f(f"ck_ledger_entries_{check_name}"), 'ledger_entries', type_='check')
        op.drop_constraint(op.f('uq_ledger_entries_fiscal_year_refund_serial'), 'ledger_entries', type_='unique')
        for column, table in FOREIGN_KEYS:
            op.drop_constraint(op.f(f'fk_ledger_entries_{column}_{table}'), 'ledger_entries', type_='foreignkey')
        for column, _type, _nullable in NEW_COLUMNS:
            op.drop_column('ledger_entries', column)
        op.execute("UPDATE ledger_entries SET amount = abs(amount)")
        op.create_check_constraint(op.f('ck_ledger_entries_amount_positive'), 'ledger_entries', 'amount > 0')
        op.create_check_constraint(op.f('ck_ledger_entries_kind'), 'ledger_entries',
                                   "kind IN ('capture','refund','refund_reversal','dispute_withdrawal',"
                                   "'dispute_reinstatement')")
    else:
        for index, _columns in INDEXES[:1]:
            op.drop_index(index, table_name='ledger_entries')
        op.execute("ALTER TABLE ledger_entries RENAME TO ledger_entries_new")
        op.create_table(
            'ledger_entries',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
            sa.Column('payment_id', sa.Integer(), nullable=False),
            sa.Column('kind', sa.String(length=32), nullable=False),
            sa.Column('amount', sa.Integer(), nullable=False),
            sa.Column('reference', sa.String(length=64), nullable=False),
            sa.CheckConstraint('amount > 0', name=op.f('ck_ledger_entries_amount_positive')),
            sa.CheckConstraint("kind IN ('capture','refund','refund_reversal','dispute_withdrawal',"
                               "'dispute_reinstatement')", name=op.f('ck_ledger_entries_kind')),
            sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_ledger_entries_payment_id_payments')),
            sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries')),
            sa.UniqueConstraint('kind', 'reference', name=op.f('uq_ledger_entries_kind_reference')),
        )
        op.execute("INSERT INTO ledger_entries (id, at, payment_id, kind, amount, reference)"
                   " SELECT id, at, payment_id, kind, abs(amount), reference FROM ledger_entries_new")
        op.execute("DROP TABLE ledger_entries_new")
        op.create_index('ix_ledger_entries_payment_id', 'ledger_entries', ['payment_id'], unique=False)
    _append_only(op.execute, dialect, OLD_APPEND_ONLY, create=True)
    for table in ("reconciliation_runs", "provider_transactions", "day_closes", "payouts"):
        op.drop_table(table)
    op.drop_column('buildings', 'revenue_account')
