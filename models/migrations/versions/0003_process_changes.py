"""process changes: updated notices, pending bug changes, and the database's id token

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 15:00:00

Downtimes made before this migration keep an empty `id_token` when they were announced: the
Message-IDs and calendar UIDs already sent for them must not change (a calendar recognises an
event by its UID). The others take the new token.
"""
import secrets

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bot_meta',
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_bot_meta'))
    )
    with op.batch_alter_table('downtimes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notice_updates', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('id_token', sa.String(length=32), server_default='', nullable=False))
    with op.batch_alter_table('downtime_bugs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending', sa.String(length=10), server_default='', nullable=False))
    token = secrets.token_hex(6)
    meta = sa.table('bot_meta', sa.column('key', sa.String), sa.column('value', sa.Text))
    op.bulk_insert(meta, [{'key': 'id_token', 'value': token}])
    downtimes = sa.table('downtimes', sa.column('id_token', sa.String), sa.column('was_announced', sa.Boolean))
    op.execute(downtimes.update().where(downtimes.c.was_announced == sa.false()).values(id_token=token))


def downgrade() -> None:
    with op.batch_alter_table('downtime_bugs', schema=None) as batch_op:
        batch_op.drop_column('pending')
    with op.batch_alter_table('downtimes', schema=None) as batch_op:
        batch_op.drop_column('id_token')
        batch_op.drop_column('notice_updates')
    op.drop_table('bot_meta')
