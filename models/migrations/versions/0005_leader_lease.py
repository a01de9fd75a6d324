"""the leader's lease and the epoch each delivery was sent under ([ha], adapters/leadership.py)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 19:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'leader_lease',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=100), nullable=False),
        sa.Column('epoch', sa.BigInteger(), nullable=False),
        sa.Column('acquired_at', sa.Float(), nullable=False),
        sa.Column('renewed_at', sa.Float(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_leader_lease')),
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_epoch', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('sent_epoch')
    op.drop_table('leader_lease')
