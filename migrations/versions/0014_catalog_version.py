"""catalog version: a token the database changes with every write to a room's rules

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 05:20:00

Triggers on rooms, buildings, divisions, closures and refund_tiers give catalog_version's one row a new
random token after any INSERT, UPDATE or DELETE (and on PostgreSQL TRUNCATE) of them, in the same
transaction. A process that keeps a room with its rules (services/rules.py) keeps it only while the token
is the one it read before reading the room.

On SQLite a later batch_alter_table of one of these tables copies it and loses its triggers: such a
migration must create them again (create_triggers).
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

TABLES = ("rooms", "buildings", "divisions", "closures", "refund_tiers")
SQLITE_EVENTS = ("INSERT", "UPDATE", "DELETE")

PG_FUNCTION = """
CREATE FUNCTION new_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_version (id, token) VALUES (1, md5(random()::text || clock_timestamp()::text))
    ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token;
    RETURN NULL;
END
$$
"""
PG_TRIGGER = ("CREATE TRIGGER {table}_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
              " FOR EACH STATEMENT EXECUTE FUNCTION new_catalog_version()")
SQLITE_TRIGGER = ("CREATE TRIGGER {table}_catalog_version_{name} AFTER {event} ON {table} BEGIN"
                  " INSERT INTO catalog_version (id, token) VALUES (1, lower(hex(randomblob(16))))"
                  " ON CONFLICT (id) DO UPDATE SET token = excluded.token; END")


def create_triggers(execute, dialect: str) -> None:
    for table in TABLES:
        if dialect == "postgresql":
            execute(PG_TRIGGER.format(table=table))
        else:
            for event in SQLITE_EVENTS:
                execute(SQLITE_TRIGGER.format(table=table, name=event.lower(), event=event))


def upgrade():
    op.create_table('catalog_version',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_catalog_version_one_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_version'))
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
    create_triggers(op.execute, dialect)


def downgrade():
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER {table}_catalog_version ON {table}")
        else:
            for event in SQLITE_EVENTS:
                op.execute(f"DROP TRIGGER {table}_catalog_version_{event.lower()}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION new_catalog_version()")
    op.drop_table('catalog_version')
