"""Initial cohort schema.

Tables: runs, patients, studies, treatments, lesions, measurements, doses, assessments, findings.
Written out column by column (not `create_all` of the models) so that the schema at 0001 stays
fixed while the models move on; later changes are later revisions.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _patient(*columns: sa.Column[Any], keys: tuple[str, ...]) -> tuple[SchemaItem, ...]:
    """A child table's patient key, its columns, the cascading foreign key and the primary key."""
    return (
        sa.Column("patient_key", sa.String(300), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(["patient_key"], ["patients.patient_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("patient_key", *keys),
    )


def _lesion_id() -> sa.Column[str]:
    return sa.Column("lesion_id", sa.String(100), nullable=False)


def upgrade() -> None:
    """Create the nine tables of the first release."""
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("executor", sa.String(200), nullable=False),
        sa.Column("settings_sha256", sa.String(64), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "patients",
        sa.Column("patient_key", sa.String(300), nullable=False),
        sa.Column("patient_id", sa.String(200), nullable=True),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("settings_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("primary_cancer", sa.String(100), nullable=True),
        sa.Column("abscopal_status", sa.String(20), nullable=True),
        sa.Column("certainty", sa.String(1), nullable=True),
        sa.Column("abscopal_lesions", sa.JSON(), nullable=True),
        sa.Column("abscopal_response", sa.String(3), nullable=True),
        sa.Column("out_of_field_response_rate", sa.Float(), nullable=True),
        sa.Column("result_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"]),
        sa.PrimaryKeyConstraint("patient_key"),
    )
    op.create_table(
        "studies",
        *_patient(sa.Column("study_date", sa.Date(), nullable=False), keys=("study_date",)),
    )
    op.create_table(
        "treatments",
        *_patient(
            sa.Column("treatment_id", sa.String(200), nullable=False),
            sa.Column("category", sa.String(10), nullable=False),
            sa.Column("kind", sa.String(40), nullable=False),
            sa.Column("start_date", sa.Date(), nullable=False),
            sa.Column("end_date", sa.Date(), nullable=True),
            sa.Column("label", sa.Text(), nullable=False),
            keys=("treatment_id",),
        ),
    )
    op.create_table(
        "lesions",
        *_patient(
            _lesion_id(),
            sa.Column("organ", sa.String(100), nullable=True),
            sa.Column("kind", sa.String(40), nullable=False),
            sa.Column("field", sa.String(20), nullable=False),
            keys=("lesion_id",),
        ),
    )
    op.create_table(
        "measurements",
        *_patient(
            _lesion_id(),
            sa.Column("date", sa.Date(), nullable=False),
            sa.Column("present", sa.Boolean(), nullable=False),
            *(
                sa.Column(name, sa.Float(), nullable=True)
                for name in (
                    "volume_ml",
                    "diameter_long_mm",
                    "diameter_short_mm",
                    "hu_mean",
                    "sclerotic_fraction",
                    "pct_change_baseline",
                    "pct_change_nadir",
                )
            ),
            keys=("lesion_id", "date"),
        ),
    )
    op.create_table(
        "doses",
        *_patient(
            _lesion_id(),
            sa.Column("field", sa.String(20), nullable=False),
            sa.Column("dose_mean_gy", sa.Float(), nullable=True),
            sa.Column("dose_max_gy", sa.Float(), nullable=True),
            sa.Column("min_distance_to_ptv_mm", sa.Float(), nullable=True),
            sa.Column("field_rule", sa.String(20), nullable=True),
            sa.Column("reasons", sa.JSON(), nullable=False),
            keys=("lesion_id",),
        ),
    )
    op.create_table(
        "assessments",
        *_patient(
            _lesion_id(),
            sa.Column("best_response", sa.String(10), nullable=False),
            sa.Column("best_pct_change", sa.Float(), nullable=True),
            keys=("lesion_id",),
        ),
    )
    op.create_table(
        "findings",
        *_patient(
            _lesion_id(),
            sa.Column("therapy_id", sa.String(200), nullable=False),
            sa.Column("outcome", sa.String(30), nullable=False),
            sa.Column("grade", sa.String(1), nullable=True),
            sa.Column("t1", sa.Date(), nullable=True),
            sa.Column("t2", sa.Date(), nullable=True),
            sa.Column("metric", sa.String(40), nullable=True),
            sa.Column("pct_change", sa.Float(), nullable=True),
            sa.Column("confirmation", sa.String(40), nullable=True),
            sa.Column("reasons", sa.JSON(), nullable=False),
            sa.Column("flags", sa.JSON(), nullable=False),
            keys=("lesion_id",),
        ),
    )


def downgrade() -> None:
    """Drop every table of 0001, children first."""
    for name in (
        "findings",
        "assessments",
        "doses",
        "measurements",
        "lesions",
        "treatments",
        "studies",
        "patients",
        "runs",
    ):
        op.drop_table(name)
