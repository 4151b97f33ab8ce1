"""payments, refunds, disputes: provider states, idempotency keys, one spelling

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:20:00

"""
import uuid

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

    # Idempotency keys from a UUID kept in the row, not from integer ids that another
    # database sharing the provider account (staging, a restored backup) reuses.
    # Existing rows get a fresh UUID each: their earlier requests used the old keys,
    # which is harmless, as a key only matters within 24 hours of its request.
    for table in ('payments', 'refunds'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('idempotency_key', sa.String(length=36), nullable=True))
        conn = op.get_bind()
        rows = sa.table(table, sa.column('id', sa.Integer), sa.column('idempotency_key', sa.String))
        for (row_id,) in conn.execute(sa.select(rows.c.id)).all():
            conn.execute(rows.update().where(rows.c.id == row_id).values(idempotency_key=str(uuid.uuid4())))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('idempotency_key', existing_type=sa.String(length=36), nullable=False)
            batch_op.create_unique_constraint(batch_op.f(f'uq_{table}_idempotency_key'), ['idempotency_key'])

    # What disputes took from a payment, counted in what it holds.
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('withdrawn_amount', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_check_constraint('withdrawn', 'withdrawn_amount >= 0 AND withdrawn_amount <= captured_amount')

    # Refunds follow the provider's states, and are retried with backoff up to a limit.
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint('state', type_='check')
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=False, server_default=''))
    # Pending refunds are due at once; refunds recorded from the provider are "external".
    op.execute("UPDATE refunds SET next_attempt_at = created_at WHERE state = 'pending'")
    op.execute("UPDATE refunds SET reason = 'external' WHERE reason = 'provider'")
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_check_constraint('state', "state IN ('pending','succeeded','failed','cancelled')")
        batch_op.create_check_constraint('attempts', 'attempts >= 0')
        batch_op.create_index('ix_refunds_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)

    op.create_table('disputes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('provider_dispute_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('withdrawn_amount', sa.Integer(), nullable=False),
    sa.Column('reinstated_amount', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_disputes_amount_positive')),
    sa.CheckConstraint('withdrawn_amount >= 0 AND reinstated_amount >= 0 AND reinstated_amount <= withdrawn_amount',
                       name=op.f('ck_disputes_funds')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_disputes_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes')),
    sa.UniqueConstraint('provider_dispute_id', name=op.f('uq_disputes_provider_dispute_id'))
    )
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disputes_payment_id'), ['payment_id'], unique=False)

    # The ledger knows refunds that failed after succeeding, and disputes' withdrawals and reinstatements.
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint('kind', type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)
        batch_op.create_check_constraint(
            'kind', "kind IN ('capture','refund','refund_reversal','dispute_withdrawal','dispute_reinstatement')")

    # A staff case can name the payment, refund or dispute it is about.
    with op.batch_alter_table('attention_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('refund_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('dispute_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_attention_cases_payment_id_payments'), 'payments',
                                    ['payment_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_attention_cases_refund_id_refunds'), 'refunds',
                                    ['refund_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_attention_cases_dispute_id_disputes'), 'disputes',
                                    ['dispute_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_attention_cases_payment_id'), ['payment_id'], unique=False)

    # The retention job deletes by age.
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_events_received_at'), ['received_at'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_events_received_at'))

    with op.batch_alter_table('attention_cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attention_cases_payment_id'))
        batch_op.drop_constraint(batch_op.f('fk_attention_cases_dispute_id_disputes'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_attention_cases_refund_id_refunds'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_attention_cases_payment_id_payments'), type_='foreignkey')
        batch_op.drop_column('dispute_id')
        batch_op.drop_column('refund_id')
        batch_op.drop_column('payment_id')

    op.execute("DELETE FROM ledger_entries WHERE kind NOT IN ('capture','refund')")
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint('kind', type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.create_check_constraint('kind', "kind IN ('capture','refund')")

    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disputes_payment_id'))
    op.drop_table('disputes')

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_refunds_state_next_attempt_at')
        batch_op.drop_constraint('attempts', type_='check')
        batch_op.drop_constraint('state', type_='check')
    op.execute("UPDATE refunds SET state = 'failed' WHERE state = 'cancelled'")
    op.execute("UPDATE refunds SET reason = 'provider' WHERE reason = 'external'")
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.create_check_constraint('state', "state IN ('pending','succeeded','failed')")

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint('withdrawn', type_='check')
        batch_op.drop_column('withdrawn_amount')
    for table in ('refunds', 'payments'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'uq_{table}_idempotency_key'), type_='unique')
            batch_op.drop_column('idempotency_key')

    # The spelling, last: it was the first thing upgraded.
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint('state', type_='check')
    op.execute("UPDATE payments SET state = 'canceled' WHERE state = 'cancelled'")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_check_constraint(
            'state', "state IN ('new','pending','authorized','captured','failed','canceled')")
