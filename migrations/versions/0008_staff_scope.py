"""staff building scope: the buildings each staff member runs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'staff_buildings',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('building_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['building_id'], ['buildings.id'], name=op.f('fk_staff_buildings_building_id_buildings'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_buildings_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'building_id', name=op.f('pk_staff_buildings')),
    )
    op.create_index(op.f('ix_staff_buildings_building_id'), 'staff_buildings', ['building_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_staff_buildings_building_id'), table_name='staff_buildings')
    op.drop_table('staff_buildings')
