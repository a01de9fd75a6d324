"""handled messages: chat message ids whose command changed something (replays are ignored)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('handled_messages',
    sa.Column('network', sa.String(length=20), nullable=False),
    sa.Column('msgid', sa.String(length=255), nullable=False),
    sa.Column('handled_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('network', 'msgid', name=op.f('pk_handled_messages'))
    )
    with op.batch_alter_table('handled_messages', schema=None) as batch_op:
        batch_op.create_index('ix_handled_messages_handled_at', ['handled_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('handled_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_handled_messages_handled_at')
    op.drop_table('handled_messages')
