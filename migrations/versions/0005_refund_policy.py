"""refund policy tiers by room kind, as calendar-day cut-offs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The defaults by room kind, frozen here as they were when this migration was written (the app may
# change them later through the table, never by editing this file): (unit, count, percent).
OLD_DEFAULT = [('days', 7, 100), ('days', 2, 50)]
KIND_TIERS = {
    'hall': [('months', 2, 100), ('days', 30, 50)],
    'meeting_room': [('days', 5, 50)],
    'japanese_room': [('days', 5, 50)],
    'kitchen': [('days', 5, 50)],
    'music_room': OLD_DEFAULT,
    'studio': OLD_DEFAULT,
    'gym': OLD_DEFAULT,
    'court': OLD_DEFAULT,
    'other': OLD_DEFAULT,
}
# A days_before cut-off, once start − N × 24 h, now lasts until the end of that calendar day in
# Tokyo: the one change of meaning this migration makes, and the reason for it.
NO_REFUND = [('days', 0, 0)]

rooms = sa.table('rooms', sa.column('id', sa.Integer), sa.column('kind', sa.String),
                 sa.column('refund_policy', sa.JSON))
tiers = sa.table('refund_tiers', sa.column('room_kind', sa.String), sa.column('room_id', sa.Integer),
                 sa.column('unit', sa.String), sa.column('count', sa.Integer), sa.column('percent', sa.Integer))


def _tiers_of(policy) -> list[tuple[str, int, int]]:
    """A room's old JSON policy [{days_before, percent}] as tiers, meaning kept.

    The JSON had no checks: a cut-off after the start never applied (a start has passed by then),
    a percentage is held to 0..100 (refunds were capped at what was paid anyway), and of two
    tiers with one cut-off the higher applied. An empty policy refunded nothing.
    """
    best: dict[int, int] = {}
    for tier in policy if isinstance(policy, list) else []:
        try:
            days, percent = int(tier['days_before']), int(tier['percent'])
        except (KeyError, TypeError, ValueError):
            continue
        if days >= 0:
            best[days] = max(best.get(days, 0), min(max(percent, 0), 100))
    return sorted((('days', days, percent) for days, percent in best.items()), key=lambda t: -t[1]) or NO_REFUND


def upgrade():
    op.create_table('refund_tiers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('room_kind', sa.String(length=32), nullable=True),
    sa.Column('room_id', sa.Integer(), nullable=True),
    sa.Column('unit', sa.String(length=8), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.CheckConstraint("unit IN ('days','months')", name=op.f('ck_refund_tiers_unit')),
    sa.CheckConstraint('count >= 0', name=op.f('ck_refund_tiers_count')),
    sa.CheckConstraint('percent BETWEEN 0 AND 100', name=op.f('ck_refund_tiers_percent')),
    sa.CheckConstraint('(room_kind IS NULL) <> (room_id IS NULL)', name=op.f('ck_refund_tiers_owner')),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_refund_tiers_room_id_rooms'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refund_tiers')),
    sa.UniqueConstraint('room_kind', 'unit', 'count', name='uq_refund_tiers_kind_unit_count'),
    sa.UniqueConstraint('room_id', 'unit', 'count', name='uq_refund_tiers_room_unit_count')
    )
    # Every change to `rooms` here is native ALTER TABLE (SQLite ≥ 3.35), never a copy: with foreign
    # keys on, SQLite's DROP TABLE of the old copy would cascade into divisions, closures and tiers.
    with op.batch_alter_table('rooms', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('import_issue', sa.Text(), nullable=True))

    op.bulk_insert(tiers, [{'room_kind': kind, 'room_id': None, 'unit': unit, 'count': count, 'percent': percent}
                           for kind, kind_tiers in KIND_TIERS.items() for unit, count, percent in kind_tiers])
    # Each room keeps what its policy said: where that is its kind's default it simply follows
    # the kind, otherwise it gets the same tiers as its own.
    bind = op.get_bind()
    own = []
    for room_id, kind, policy in bind.execute(sa.select(rooms.c.id, rooms.c.kind, rooms.c.refund_policy)):
        room_tiers = _tiers_of(policy)
        if sorted(room_tiers) != sorted(KIND_TIERS.get(kind, OLD_DEFAULT)):
            own += [{'room_kind': None, 'room_id': room_id, 'unit': unit, 'count': count, 'percent': percent}
                    for unit, count, percent in room_tiers]
    if own:
        op.bulk_insert(tiers, own)

    with op.batch_alter_table('rooms', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('refund_policy')


def _days_policy(room_tiers) -> list[dict]:
    # The old form knows only days before the start: a month is taken as 30 days.
    return [{'days_before': count * 30 if unit == 'months' else count, 'percent': percent}
            for unit, count, percent in sorted(room_tiers, key=lambda t: -(t[1] * 30 if t[0] == 'months' else t[1]))
            if percent > 0]


def downgrade():
    with op.batch_alter_table('rooms', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('refund_policy', sa.JSON(), nullable=False, server_default=sa.text(
            "'[{\"days_before\": 7, \"percent\": 100}, {\"days_before\": 2, \"percent\": 50}]'")))
    bind = op.get_bind()
    by_kind: dict[str, list] = {}
    by_room: dict[int, list] = {}
    for kind, room_id, unit, count, percent in bind.execute(
            sa.select(tiers.c.room_kind, tiers.c.room_id, tiers.c.unit, tiers.c.count, tiers.c.percent)):
        (by_kind.setdefault(kind, []) if room_id is None else by_room.setdefault(room_id, [])).append(
            (unit, count, percent))
    for room_id, kind in bind.execute(sa.select(rooms.c.id, rooms.c.kind)).all():
        room_tiers = by_room.get(room_id) or by_kind.get(kind) or OLD_DEFAULT
        bind.execute(rooms.update().where(rooms.c.id == room_id).values(refund_policy=_days_policy(room_tiers)))

    with op.batch_alter_table('rooms', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('import_issue')
    op.drop_table('refund_tiers')
