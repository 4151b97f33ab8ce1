"""indexes for the hot queries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:20:00

"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


# Plain op.create_index / op.drop_index, not batch_alter_table: on SQLite an index
# needs no table copy, and a copy would drop the bookings overlap trigger.

def upgrade():
    # The expiry job: held rows past hold_expires_at, oldest first.
    op.create_index('ix_bookings_state_hold_expires_at', 'bookings', ['state', 'hold_expires_at'], unique=False)
    # Availability and the overlap check ask "room = ? AND start_at < :end AND end_at > :start".
    # Led by end_at, the range scan reads only bookings that have not ended yet, where (room_id,
    # start_at) read a room's whole history; start_at beside it answers the other half from the index.
    op.create_index('ix_bookings_room_end_start', 'bookings', ['room_id', 'end_at', 'start_at'], unique=False)
    op.drop_index('ix_bookings_room_start', table_name='bookings')


def downgrade():
    op.create_index('ix_bookings_room_start', 'bookings', ['room_id', 'start_at'], unique=False)
    op.drop_index('ix_bookings_room_end_start', table_name='bookings')
    op.drop_index('ix_bookings_state_hold_expires_at', table_name='bookings')
