"""the audit trail and the ledger are append-only, refused by the database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:00:00

An UPDATE or DELETE (and on PostgreSQL a TRUNCATE) of audit_entries or
ledger_entries fails with "append_only", whoever sends it: the app, a script,
a person at psql. A correction is a new row (a refund_reversal, a later audit
entry), never an edit. A user with audit entries cannot be deleted either (the
actor's ON DELETE SET NULL is an UPDATE): accounts are closed, not erased.

On SQLite a later batch_alter_table of either table copies it and loses these
triggers: such a migration must create them again.
"""
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = ("audit_entries", "ledger_entries")

PG_FUNCTION = """
CREATE FUNCTION refuse_append_only_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append_only: % rows are never changed or removed', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
    " FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()",
    "CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
    " FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN SELECT RAISE(ABORT, 'append_only'); END",
    "CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} BEGIN SELECT RAISE(ABORT, 'append_only'); END",
)


def create_triggers(execute, dialect: str) -> None:
    """Also used by the test suite, which empties the tables between tests with the triggers lifted."""
    for table in TABLES:
        for sql in PG_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
            execute(sql.format(table=table))


def drop_triggers(execute, dialect: str) -> None:
    for table in TABLES:
        if dialect == "postgresql":
            execute(f"DROP TRIGGER {table}_append_only ON {table}")
            execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        else:
            execute(f"DROP TRIGGER {table}_no_update")
            execute(f"DROP TRIGGER {table}_no_delete")


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
    create_triggers(op.execute, dialect)


def downgrade():
    dialect = op.get_bind().dialect.name
    drop_triggers(op.execute, dialect)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION refuse_append_only_change()")
