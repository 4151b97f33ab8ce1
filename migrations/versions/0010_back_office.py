"""back office: pay by deadline, counter payments, blocks, walk-ins, no-show suspensions, wider attention cases

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 15:00:00

"""
import sqlalchemy as sa
from alembic import op

import reservations.models.types

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# New columns with their checks. On SQLite, ADD COLUMN takes a column CHECK and copies nothing, while
# batch_alter_table would copy bookings and drop its overlap and append-only triggers; so the columns
# are added in plain SQL there, and with add_column plus a named check constraint on PostgreSQL.
CHECKED_COLUMNS = [
    # table, column, PostgreSQL type, SQLite type, default, check name, check
    ("rooms", "payment_mode", "VARCHAR(16)", "VARCHAR(16)", "'now'", "payment_mode",
     "payment_mode IN ('now','deadline')"),
    ("rooms", "deadline_days_before", "INTEGER", "INTEGER", "3", "deadline_days_before",
     "deadline_days_before >= 0"),
    ("rooms", "reminder_days_before", "INTEGER", "INTEGER", "2", "reminder_days_before",
     "reminder_days_before >= 0"),
    ("rooms", "hold_minutes", "INTEGER", "INTEGER", None, "hold_minutes",
     "hold_minutes IS NULL OR hold_minutes BETWEEN 1 AND 120"),
    ("rooms", "max_active_per_user", "INTEGER", "INTEGER", None, "max_active_per_user",
     "max_active_per_user IS NULL OR max_active_per_user >= 1"),
    ("bookings", "kind", "VARCHAR(16)", "VARCHAR(16)", "'booking'", "kind", "kind IN ('booking','block')"),
    ("bookings", "pay_mode", "VARCHAR(16)", "VARCHAR(16)", "'now'", "pay_mode", "pay_mode IN ('now','deadline')"),
    ("bookings", "reminders_sent", "INTEGER", "INTEGER", "0", "reminders_sent", "reminders_sent BETWEEN 0 AND 2"),
]

# Payment.provider had no check; SQLite cannot add one to an existing column without copying the table.
PROVIDER_CHECK = "provider IN ('stripe','cash','terminal')"
SLIP_CHECK = "provider <> 'terminal' OR slip_number IS NOT NULL"
PROVIDER_TRIGGER_SQL = """
CREATE TRIGGER payments_provider_{event}
BEFORE {event} ON payments
WHEN NOT (NEW.provider IN ('stripe','cash','terminal')) OR (NEW.provider = 'terminal' AND NEW.slip_number IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'ck_payments_provider');
END
"""


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, pg_type, sqlite_type, default, check_name, check in CHECKED_COLUMNS:
        null = "NOT NULL" if default is not None else "NULL"
        default_sql = f"DEFAULT {default}" if default is not None else ""
        if sqlite:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sqlite_type} {null} {default_sql} "
                       f"CONSTRAINT ck_{table}_{check_name} CHECK ({check})")
        else:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {pg_type} {null} {default_sql}")
            op.create_check_constraint(f"ck_{table}_{check_name}", table, check)
    op.add_column('rooms', sa.Column('deadline_time', sa.Time(), server_default='23:59:00', nullable=False))
    op.add_column('bookings', sa.Column('note', sa.Text(), server_default='', nullable=False))
    op.add_column('payments', sa.Column('slip_number', sa.String(length=64), nullable=True))
    op.add_column('receipts', sa.Column('method', sa.String(length=16), server_default='card', nullable=False))
    op.add_column('users', sa.Column('name_kana', sa.String(length=100), server_default='', nullable=False))
    op.add_column('users', sa.Column('walk_in', sa.Boolean(), server_default=sa.false(), nullable=False))
    if sqlite:
        for event in ("INSERT", "UPDATE"):
            op.execute(PROVIDER_TRIGGER_SQL.format(event=event))
    else:
        op.create_check_constraint("ck_payments_provider", "payments", PROVIDER_CHECK)
        op.create_check_constraint("ck_payments_terminal_slip", "payments", SLIP_CHECK)

    op.create_table('suspensions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('booking_ids', sa.String(length=200), nullable=False),
    sa.Column('created_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', reservations.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lifted_by_id', sa.Integer(), nullable=True),
    sa.Column('lift_reason', sa.Text(), nullable=False),
    sa.CheckConstraint('(lifted_at IS NULL) = (lifted_by_id IS NULL)', name=op.f('ck_suspensions_lifted')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_suspensions_period')),
    sa.ForeignKeyConstraint(['lifted_by_id'], ['users.id'], name=op.f('fk_suspensions_lifted_by_id_users'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_suspensions_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suspensions'))
    )
    op.create_index(op.f('ix_suspensions_user_id'), 'suspensions', ['user_id'], unique=False)

    # attention_cases has no triggers and nothing refers to it: copying it on SQLite is safe.
    with op.batch_alter_table('attention_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('building_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resolved_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resolution_note', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('webhook_event_id', sa.String(length=64), nullable=True))
        batch_op.alter_column('booking_id', existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(batch_op.f('ix_attention_cases_building_id'), ['building_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_attention_cases_resolved_by_id_users'), 'users',
                                    ['resolved_by_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_attention_cases_building_id_buildings'), 'buildings',
                                    ['building_id'], ['id'])
    # Every existing case is about a booking: it belongs to that booking's building.
    op.execute("UPDATE attention_cases SET building_id = (SELECT r.building_id FROM bookings b "
               "JOIN rooms r ON r.id = b.room_id WHERE b.id = attention_cases.booking_id)")


def downgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute("DELETE FROM attention_cases WHERE booking_id IS NULL")
    with op.batch_alter_table('attention_cases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_attention_cases_building_id_buildings'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_attention_cases_resolved_by_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_attention_cases_building_id'))
        batch_op.alter_column('booking_id', existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column('webhook_event_id')
        batch_op.drop_column('resolution_note')
        batch_op.drop_column('resolved_by_id')
        batch_op.drop_column('building_id')
    op.drop_index(op.f('ix_suspensions_user_id'), table_name='suspensions')
    op.drop_table('suspensions')
    if sqlite:
        for event in ("INSERT", "UPDATE"):
            op.execute(f"DROP TRIGGER payments_provider_{event}")
    else:
        op.drop_constraint("ck_payments_terminal_slip", "payments", type_="check")
        op.drop_constraint("ck_payments_provider", "payments", type_="check")
    # SQLite (3.35+) drops a column in place, without copying the table, when no index or
    # constraint other than its own names it.
    for table, column in [('users', 'walk_in'), ('users', 'name_kana'), ('receipts', 'method'),
                          ('payments', 'slip_number'), ('bookings', 'note'), ('rooms', 'deadline_time')]:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    for table, column, *_rest, check_name, _check in reversed(CHECKED_COLUMNS):
        if not sqlite:
            op.drop_constraint(f"ck_{table}_{check_name}", table, type_="check")
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
