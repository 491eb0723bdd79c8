"""Initial cohort schema.

Tables: runs, patients, studies, treatments, lesions, measurements, doses, assessments, findings.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

from alembic import op

from abscopal.cohort.store import Base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create every table of the models as they stand at 0001; later changes get op.* steps."""
    Base.metadata.create_all(bind=op.get_bind())


def downgrade() -> None:
    """Drop every table."""
    Base.metadata.drop_all(bind=op.get_bind())
