"""accounts: e-mail verification, session versions, lowercase e-mail

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    # Addresses were already stored lowercased by the sign-up service; make it a rule.
    op.execute("UPDATE users SET email = lower(email)")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_verified_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='1', nullable=False))
        batch_op.create_check_constraint('email_lowercase', 'email = lower(email)')
        batch_op.create_check_constraint('session_version', 'session_version >= 1')
    # Accounts made before verification existed keep working: their owners already booked with them.
    op.execute("UPDATE users SET email_verified_at = created_at")


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('session_version', type_='check')
        batch_op.drop_constraint('email_lowercase', type_='check')
        batch_op.drop_column('session_version')
        batch_op.drop_column('email_verified_at')
