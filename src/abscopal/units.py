"""Canonical units (mm, mL, Gy, Bq, kg, days) and the few converters between them."""

from __future__ import annotations

from datetime import date
from typing import Final

DAYS_PER_MONTH: Final = 365.25 / 12  # CLINICAL.md §0: 1 month = 30.4375 d
MM3_PER_ML: Final = 1000.0
BQ_PER_GBQ: Final = 1e9
BQ_PER_MBQ: Final = 1e6

# UCUM codes for DICOM SR measurements.
UCUM: Final = {
    "mm": "mm",
    "ml": "ml",
    "gy": "Gy",
    "bq": "Bq",
    "hu": "[hnsf'U]",
    "suv": "{SUVbw}g/ml",
}


def mm3_to_ml(volume_mm3: float) -> float:
    """Convert cubic millimetres to millilitres."""
    return volume_mm3 / MM3_PER_ML


def days_between(start: date, end: date) -> int:
    """Whole calendar days from `start` to `end` (negative when `end` is earlier)."""
    return (end - start).days


def months(days: float) -> float:
    """Days to months of 30.4375 d (CLINICAL.md §0)."""
    return days / DAYS_PER_MONTH


def pct_change(value: float, reference: float) -> float:
    """Percentage change 100·(value − reference)/reference; `reference` must be positive."""
    if not reference > 0:
        msg = f"reference must be > 0 for a percentage change, got {reference}"
        raise ValueError(msg)
    return 100.0 * (value - reference) / reference
