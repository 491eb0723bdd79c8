"""EORTC PET criteria 1999 (CLINICAL.md §5).

Source: Young H et al., Eur J Cancer 1999;35:1773–1782, doi:10.1016/S0959-8049(99)00229-4.
SUV in the baseline ROIs re-applied at follow-up (`suvmax` by default, `suvmean` optional); the
patient value is the sum over the lesions with uptake at baseline (project default). Order:
PMD (SUV > +25 %, longest uptake dimension > +20 %, or a new FDG-avid lesion) → CMR (uptake
resolved) → PMR (after > 1 cycle: decrease > 25 %; after 1 cycle: ≥ 15 %) → SMD. Exactly +25 %
is SMD. A different `suv_type` between the scans is NE (`suv_type_mismatch`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from abscopal.criteria._base import (
    Assessment,
    ResponseCategory,
    SeriesAssessment,
    Timepoint,
    coerce_params,
    group_timepoints,
    params_dict,
    pct_change,
)
from abscopal.criteria.percist import best_metabolic
from abscopal.criteria.recist import no_follow_up
from abscopal.readings import (
    LesionReading,
    NewLesion,
    PatientSeries,
)

if TYPE_CHECKING:
    from collections.abc import Collection

C = ResponseCategory
EORTC_SOURCE = "EORTC PET 1999 (Young H et al., Eur J Cancer 1999;35:1773–1782)"


@dataclass(frozen=True, slots=True, kw_only=True)
class EortcParams:
    """EORTC 1999 parameters (CLINICAL.md §5), with the spec's defaults."""

    metric: str = "suvmax"  # or "suvmean"
    pmd_fraction: Decimal = Decimal("0.25")  # SUV > +25 %
    size_pmd_fraction: Decimal = Decimal("0.20")  # longest dimension of uptake > +20 %
    pmr_one_cycle_pct: Decimal = Decimal(15)  # after 1 cycle: decrease ≥ 15 % (source 15–25 %)
    pmr_fraction: Decimal = Decimal("0.25")  # after > 1 cycle: decrease > 25 %
    cycles: str = ">1"  # ">1" (also after RT, project default) or "1"

    def __post_init__(self) -> None:
        if self.metric not in {"suvmax", "suvmean"} or self.cycles not in {"1", ">1"}:
            msg = f"metric must be suvmax/suvmean and cycles '1'/'>1', got {self.metric}, {self.cycles}"
            raise ValueError(msg)


def _value(r: LesionReading | None, metric: str) -> Decimal | None:
    if r is None:
        return None
    if not r.present:
        return Decimal(0)
    value: Decimal | None = getattr(r, metric)
    return value


def _category(  # noqa: PLR0911  (one return per rule, in the spec's order)
    base: Timepoint, tp: Timepoint, params: EortcParams
) -> tuple[ResponseCategory, list[str], str | None, Decimal | None, Decimal | None]:
    """PMD → CMR → PMR → SMD: (category, rules, NE reason, baseline sum, current sum)."""
    lesions = [lid for lid, r in base.readings.items() if r.present and _value(r, params.metric)]
    new = [
        lid
        for lid, r in tp.readings.items()
        if r.present
        and r.new_lesion is not NewLesion.EQUIVOCAL
        and not (lid in base.readings and base.readings[lid].present)
    ]
    for lid in lesions:
        before, now = base.readings[lid].suv_type, tp.readings.get(lid)
        if now is not None and before and now.suv_type and now.suv_type != before:
            return C.NE, ["EORTC SUV type"], "suv_type_mismatch", None, None
    if not lesions:
        if new:
            return C.PMD, ["EORTC PMD: new FDG-avid lesion"], None, None, None
        return C.NE, ["EORTC metric"], "no_baseline_uptake", None, None
    total_b = sum(
        (_value(base.readings[lid], params.metric) or Decimal(0) for lid in lesions), Decimal(0)
    )
    values = [_value(tp.readings.get(lid), params.metric) for lid in lesions]
    if any(v is None for v in values):
        return C.NE, ["EORTC metric"], "missing_suv", total_b, None
    total = sum((v for v in values if v is not None), Decimal(0))
    if total > (1 + params.pmd_fraction) * total_b or new or _grew(base, tp, lesions, params):
        return C.PMD, ["EORTC PMD"], None, total_b, total
    if all(_resolved(tp.readings.get(lid)) for lid in lesions):
        return C.CMR, ["EORTC CMR"], None, total_b, total
    if params.cycles == "1":
        met = total <= (1 - params.pmr_one_cycle_pct / 100) * total_b
    else:
        met = total < (1 - params.pmr_fraction) * total_b
    if met:
        return C.PMR, [f"EORTC PMR (cycles {params.cycles})"], None, total_b, total
    return C.SMD, ["EORTC SMD"], None, total_b, total


def _grew(base: Timepoint, tp: Timepoint, lesions: list[str], params: EortcParams) -> bool:
    for lid in lesions:
        before, now = base.readings[lid].diameter_long_mm, tp.readings.get(lid)
        after = now.diameter_long_mm if now is not None else None
        if before and after is not None and after > (1 + params.size_pmd_fraction) * before:
            return True
    return False


def _resolved(r: LesionReading | None) -> bool:
    return r is not None and (not r.present or r.background_indistinguishable is True)


def run_eortc(series: PatientSeries, params: EortcParams, *, name: str) -> SeriesAssessment:
    """EORTC per follow-up scan and the best response up to the first PMD."""
    timepoints = group_timepoints(series)
    if len(timepoints) < 2:
        return no_follow_up(name, "1999", series, "no_follow_up")
    out = []
    for tp in timepoints[1:]:
        cat, rules, reason, before, now = _category(timepoints[0], tp, params)
        out.append(
            Assessment(
                criterion=name,
                version="1999",
                date=tp.date,
                category=cat,
                baseline_value=before,
                current_value=now,
                pct_change_baseline=pct_change(now, before),
                rules=tuple(f"{r} {EORTC_SOURCE}" for r in rules),
                ne_reason=reason if cat is C.NE else None,
            )
        )
    return SeriesAssessment(
        criterion=name,
        patient_id=series.patient_id,
        timepoints=tuple(out),
        best_response=best_metabolic(out),
        params=params_dict(params),
    )


@dataclass(frozen=True, slots=True)
class Eortc:
    """EORTC PET criteria (Young 1999; CLINICAL.md §5): PMD → CMR → PMR → SMD.

    PMD: SUV > +25 % (exactly +25 % is SMD), uptake extent > +20 % or a new lesion; PMR after
    > 1 cycle: decrease > 25 %.
    """

    params: EortcParams = field(default_factory=EortcParams)
    key: str = "eortc"
    name: str = "EORTC PET 1999"
    version: str = "1999"
    citation: str = EORTC_SOURCE
    categories: frozenset[ResponseCategory] = frozenset({C.CMR, C.PMR, C.SMD, C.PMD, C.NE})

    def with_params(self, **changes: object) -> Eortc:
        """The same criterion with some parameters changed (strings are converted)."""
        return dataclasses.replace(self, params=coerce_params(self.params, changes))

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-scan categories and best response, on all lesions or only `lesion_ids`."""
        return run_eortc(series.restricted(lesion_ids), self.params, name=self.name)


EORTC_PET = Eortc()
