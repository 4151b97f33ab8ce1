"""room equipment joins the catalog version: its writes give the catalog a new token too

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 08:30:00

The search keeps the ward's rooms with their buildings, divisions, closures and equipment while the catalog's
token (0014) stays the same (public/search.py), and filters by equipment: a room given a piano must be found
with a piano at once. The same triggers as 0014's, on room_equipment.
"""
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

TABLE = "room_equipment"
SQLITE_EVENTS = ("INSERT", "UPDATE", "DELETE")
PG_TRIGGER = ("CREATE TRIGGER {table}_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
              " FOR EACH STATEMENT EXECUTE FUNCTION new_catalog_version()")
SQLITE_TRIGGER = ("CREATE TRIGGER {table}_catalog_version_{name} AFTER {event} ON {table} BEGIN"
                  " INSERT INTO catalog_version (id, token) VALUES (1, lower(hex(randomblob(16))))"
                  " ON CONFLICT (id) DO UPDATE SET token = excluded.token; END")


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER.format(table=TABLE))
    else:
        for event in SQLITE_EVENTS:
            op.execute(SQLITE_TRIGGER.format(table=TABLE, name=event.lower(), event=event))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {TABLE}_catalog_version ON {TABLE}")
    else:
        for event in SQLITE_EVENTS:
            op.execute(f"DROP TRIGGER {TABLE}_catalog_version_{event.lower()}")
