"""Single-lesion response by the RECIST 1.1 thresholds, for lesion tables and spider plots.

Not a RECIST assessment of the patient (that needs targets, non-targets and new lesions): this
applies R-T's thresholds to one lesion's long diameter. PD (R-T T2: ≥ +20 % and ≥ +5 mm against the
nadir) is checked before PR (R-T T3: ≤ −30 % against baseline); an absent lesion is CR (R-T T1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from abscopal.criteria._base import ResponseCategory, at_least_fraction, at_most_fraction, exact

if TYPE_CHECKING:
    from collections.abc import Sequence

    from abscopal.model import Measurement

_RANK = {
    ResponseCategory.CR: 0,
    ResponseCategory.PR: 1,
    ResponseCategory.SD: 2,
    ResponseCategory.PD: 3,
}
PD_MIN_ABS_MM = 5.0


def lesion_categories(
    baseline: Measurement, follow_ups: Sequence[Measurement]
) -> list[ResponseCategory]:
    """Category of each follow-up of one lesion against `baseline` (R-T thresholds)."""
    nadir = baseline.diameter_long_mm
    out = []
    for m in follow_ups:
        ld = m.diameter_long_mm
        if not m.present:
            category = ResponseCategory.CR
        elif at_least_fraction(ld, "1.20", nadir) and exact(ld) - exact(nadir) >= exact(
            PD_MIN_ABS_MM
        ):
            category = ResponseCategory.PD
        elif at_most_fraction(ld, "0.70", baseline.diameter_long_mm):
            category = ResponseCategory.PR
        else:
            category = ResponseCategory.SD
        out.append(category)
        nadir = min(nadir, ld)
    return out


def best_response(categories: Sequence[ResponseCategory]) -> ResponseCategory:
    """Best category up to and including the first PD (R-BOR); NE without follow-up."""
    best: ResponseCategory | None = None
    for category in categories:
        if best is None or _RANK[category] < _RANK[best]:
            best = category
        if category is ResponseCategory.PD:
            break
    return best if best is not None else ResponseCategory.NE
