"""Alembic migrations of the cohort store; applied by `abscopal.cohort.store.open_store`."""
