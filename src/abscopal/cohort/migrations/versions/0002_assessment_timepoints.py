"""Per-date response categories and each criterion's best overall response, per patient.

Tables: assessment_timepoints (one row per criterion, lesion scope and follow-up date) and
criteria_responses (one row per criterion and lesion scope). A database at 0001 keeps its rows;
its patients get these rows when they are next analysed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _keys(*extra: sa.Column[Any]) -> tuple[sa.Column[Any], ...]:
    return (
        sa.Column("patient_key", sa.String(300), nullable=False),
        sa.Column("criterion", sa.String(20), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        *extra,
    )


def _constraints(*keys: str) -> tuple[sa.Constraint, ...]:
    return (
        sa.ForeignKeyConstraint(["patient_key"], ["patients.patient_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("patient_key", "criterion", "scope", *keys),
    )


def upgrade() -> None:
    """Create the two tables."""
    op.create_table(
        "criteria_responses",
        *_keys(sa.Column("best_response", sa.String(10), nullable=False)),
        *_constraints(),
    )
    op.create_table(
        "assessment_timepoints",
        *_keys(
            sa.Column("date", sa.Date(), nullable=False),
            sa.Column("category", sa.String(10), nullable=False),
            sa.Column("ne_reason", sa.Text(), nullable=True),
            sa.Column("rules", sa.JSON(), nullable=False),
        ),
        *_constraints("date"),
    )


def downgrade() -> None:
    """Drop the two tables."""
    op.drop_table("assessment_timepoints")
    op.drop_table("criteria_responses")
