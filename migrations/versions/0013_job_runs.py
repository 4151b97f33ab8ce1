"""job runs: one run of each job per tick across schedulers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:12:06.992421

"""
import sqlalchemy as sa
from alembic import op

import reservations.models.types

# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('tick', sa.BigInteger(), nullable=True),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('started_at', reservations.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', reservations.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.CheckConstraint("outcome IN ('running', 'ok', 'failed')", name=op.f('ck_job_runs_outcome')),
    sa.CheckConstraint('seconds IS NULL OR seconds >= 0', name=op.f('ck_job_runs_seconds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs'))
    )
    op.create_index('ix_job_runs_started_at', 'job_runs', ['started_at'], unique=False)
    op.create_index('uq_job_runs_job_tick', 'job_runs', ['job_id', 'tick'], unique=True)



def downgrade():
    op.drop_index('uq_job_runs_job_tick', table_name='job_runs')
    op.drop_index('ix_job_runs_started_at', table_name='job_runs')
    op.drop_table('job_runs')
