"""Shared vocabulary of the criteria: response categories and exact comparisons (CLINICAL.md §0)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class ResponseCategory(StrEnum):
    """Categories of every criterion; values are the abbreviations printed by `--json`."""

    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NON_CR_NON_PD = "NON_CR_NON_PD"
    NE = "NE"
    iCR = "iCR"  # noqa: N815  (the criterion's own spelling)
    iPR = "iPR"  # noqa: N815
    iSD = "iSD"  # noqa: N815
    iUPD = "iUPD"  # noqa: N815
    iCPD = "iCPD"  # noqa: N815
    CMR = "CMR"
    PMR = "PMR"
    SMD = "SMD"
    PMD = "PMD"
    UPMD = "UPMD"
    CPMD = "CPMD"


def exact(value: float) -> Decimal:
    """`value` as the decimal it was written as, so `63 <= 0.7 * 90` holds (CLINICAL.md §0)."""
    return Decimal(str(value))


def at_most_fraction(value: float, fraction: str, reference: float) -> bool:
    """Value ≤ fraction × reference, in exact decimal arithmetic."""
    return exact(value) <= Decimal(fraction) * exact(reference)


def at_least_fraction(value: float, fraction: str, reference: float) -> bool:
    """Value ≥ fraction × reference, in exact decimal arithmetic."""
    return exact(value) >= Decimal(fraction) * exact(reference)
