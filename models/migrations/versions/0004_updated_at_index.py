"""an index on downtimes.updated_at: when the public downtimes last changed, read at once

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 17:10:00

The web page's Last-Modified (models/public.py `PublicReader.changed_at`) is the latest
`updated_at` of a public downtime: with this index SQLite walks it from the newest and stops at
the first public row, instead of reading every downtime (17 ms at 100,000 of them).
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('downtimes', schema=None) as batch_op:
        batch_op.create_index('ix_downtimes_updated_at', ['updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('downtimes', schema=None) as batch_op:
        batch_op.drop_index('ix_downtimes_updated_at')
