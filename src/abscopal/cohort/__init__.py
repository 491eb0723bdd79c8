"""Cohort screening: resumable parallel runs (`run`), the results store (`store`), statistics.

>>> from abscopal.cohort import run_cohort, RunOptions
>>> summary = run_cohort(Path("patients"), Path("out"), options=RunOptions(jobs=2))  # doctest: +SKIP
"""

from abscopal.cohort.run import CohortSummary, PatientOutcome, RunOptions, run_cohort
from abscopal.cohort.store import StoreError, open_store, read_tables

__all__ = [
    "CohortSummary",
    "PatientOutcome",
    "RunOptions",
    "StoreError",
    "open_store",
    "read_tables",
    "run_cohort",
]
