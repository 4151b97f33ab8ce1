"""a secret iCal feed address per room

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 13:45:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


# add_column and a unique index, not batch_alter_table: on SQLite neither copies the table.

def upgrade():
    op.add_column('rooms', sa.Column('feed_token', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_rooms_feed_token'), 'rooms', ['feed_token'], unique=True)


def downgrade():
    op.drop_index(op.f('ix_rooms_feed_token'), table_name='rooms')
    with op.batch_alter_table('rooms') as batch:
        batch.drop_column('feed_token')
