"""Alembic revisions of the cohort store, oldest first."""
