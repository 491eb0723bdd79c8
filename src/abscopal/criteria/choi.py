"""Choi criteria (CLINICAL.md §6), with the modified (RCC) variant.

Source: Choi H et al., J Clin Oncol 2007;25:1753–1759, doi:10.1200/JCO.2006.07.3049, PMID 17470865.
Size is the RECIST-type LD sum of targets selected as in RECIST 1.1; density is the mean HU on
portal-venous CT over the non-osseous targets. Order: CR → PD (size ≥ +10 % against the nadir with
an HU decrease < 15 %, new lesions, unequivocal non-target progression) → PR (size ≤ −10 % or
HU ≤ −15 % against baseline; modified Choi needs both) → SD. Choi is not validated in bone: osseous
targets are left out of the HU rule, and a patient without any target is NE.
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
from abscopal.criteria._targets import Selection, Tracked, select
from abscopal.criteria.recist import (
    Facts,
    RecistParams,
    assessment_values,
    best_overall,
    follow_up_facts,
    no_follow_up,
)
from abscopal.readings import (
    CtPhase,
    PatientSeries,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

C = ResponseCategory
CHOI_SOURCE = "Choi (Choi H et al., J Clin Oncol 2007;25:1753–1759)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChoiParams(RecistParams):
    """Choi parameters (CLINICAL.md §6); target selection and BOR as RECIST 1.1."""

    size_fraction: Decimal = Decimal("0.10")  # PD ≥ +10 % (vs nadir), PR ≤ −10 % (vs baseline)
    hu_fraction: Decimal = Decimal("0.15")  # PR: HU ≤ −15 %; PD only with an HU decrease < 15 %
    variant: str = "original"  # or "modified" (RCC): PR needs size and HU
    pd_reference: str = "nadir"  # project default; "baseline" is the alternative

    def __post_init__(self) -> None:
        if self.variant not in {"original", "modified"}:
            msg = f"variant must be 'original' or 'modified', got {self.variant!r}"
            raise ValueError(msg)
        if self.pd_reference not in {"nadir", "baseline"}:
            msg = f"pd_reference must be 'nadir' or 'baseline', got {self.pd_reference!r}"
            raise ValueError(msg)


def mean_hu(tp: Timepoint, targets: Sequence[Tracked]) -> Decimal | None:
    """Mean HU over the non-osseous targets on portal-venous CT; `None` when not evaluable."""
    values = []
    for t in targets:
        r = tp.readings.get(t.lesion_id)
        if t.kind.is_bone or r is None or not r.present:
            continue
        if r.hu_mean is None or r.ct_phase is not CtPhase.PORTAL_VENOUS:
            return None
        values.append(r.hu_mean)
    return sum(values, Decimal(0)) / len(values) if values else None


def _hu(base: Timepoint, tp: Timepoint, selection: Selection) -> tuple[Decimal | None, list[str]]:
    if all(t.kind.is_bone for t in selection.targets):
        return None, ["choi_hu_excluded_bone"]
    before, now = mean_hu(base, selection.targets), mean_hu(tp, selection.targets)
    if before is None or now is None or before <= 0:
        return None, ["choi_hu_ne"]
    return pct_change(now, before), []


def _category(  # noqa: PLR0911  (one return per rule, in the spec's order)
    f: Facts, hu_pct: Decimal | None, params: ChoiParams
) -> tuple[ResponseCategory, list[str], str | None]:
    """CR → PD → PR → SD for one follow-up (CLINICAL.md §6)."""
    new = bool(f.new.unequivocal)
    if f.nt == "PD" or new:
        return C.PD, ["Choi PD: " + ("new lesion" if new else "non-target progression")], None
    sums = f.sums
    if sums is None or f.baseline_sod is None or f.nadir is None:
        return C.NE, ["Choi size"], "no_measurable_target"
    if sums.missing:
        return C.NE, ["Choi size"], "missing_target"
    if sums.all_gone and f.nt in {None, "CR"}:
        return C.CR, ["Choi CR"], None
    limit = Decimal(100) * params.size_fraction
    hu_limit = Decimal(-100) * params.hu_fraction
    ref = f.nadir if params.pd_reference == "nadir" else f.baseline_sod
    size_ref = pct_change(sums.sod, ref)
    size_base = pct_change(sums.sod, f.baseline_sod)
    hu_fell = hu_pct is not None and hu_pct <= hu_limit
    if size_ref is not None and size_ref >= limit and not hu_fell:
        return C.PD, ["Choi PD: size ≥ +10 % with HU decrease < 15 %"], None
    size_ok = size_base is not None and size_base <= -limit
    if params.variant == "modified" and hu_pct is not None:
        met = size_ok and hu_fell
    else:
        met = size_ok or hu_fell
    if met:
        return C.PR, [f"Choi PR ({params.variant})"], None
    return C.SD, ["Choi SD"], None


def run_choi(series: PatientSeries, params: ChoiParams, *, name: str) -> SeriesAssessment:
    """Choi per timepoint and the best response (R-BOR of RECIST 1.1)."""
    timepoints = group_timepoints(series)
    if len(timepoints) < 2:
        return no_follow_up(name, "2007", series, "no_follow_up")
    selection = select(timepoints[0], params)
    start = series.therapy_start or timepoints[0].date
    out = []
    for f in follow_up_facts(timepoints, selection, params, start):
        hu_pct, flags = _hu(timepoints[0], f.tp, selection) if selection.targets else (None, [])
        cat, rules, reason = _category(f, hu_pct, params)
        if (
            cat is C.NE
            and not selection.targets
            and all(r.kind.is_bone for r in timepoints[0].readings.values())
        ):
            reason = "bone_only: Choi is not validated in bone and no soft-tissue target exists"
        out.append(
            Assessment(
                criterion=name,
                version=params.variant,
                date=f.tp.date,
                category=cat,
                rules=tuple(f"{r} {CHOI_SOURCE}" for r in rules),
                flags=(
                    *f.new.flags,
                    *flags,
                    *([f"hu_change_pct={hu_pct:.1f}"] if hu_pct is not None else []),
                ),
                ne_reason=reason if cat is C.NE else None,
                **assessment_values(f),
            )
        )
    best = best_overall(out, timepoints[0].date, params, source=CHOI_SOURCE)
    return SeriesAssessment(
        criterion=name,
        patient_id=series.patient_id,
        timepoints=tuple(out),
        best_response=best,
        selection=selection.reasons,
        params=params_dict(params),
    )


@dataclass(frozen=True, slots=True)
class Choi:
    """Choi criteria (Choi 2007; CLINICAL.md §6), `variant='modified'` for modified Choi (RCC).

    PD: size ≥ +10 % against the nadir unless HU fell ≥ 15 %; PR: size ≤ −10 % or HU ≤ −15 %
    against baseline (modified: both). Osseous targets never enter the HU rule.
    """

    params: ChoiParams = field(default_factory=ChoiParams)
    key: str = "choi"
    name: str = "Choi"
    version: str = "2007"
    citation: str = CHOI_SOURCE
    categories: frozenset[ResponseCategory] = frozenset({C.CR, C.PR, C.SD, C.PD, C.NE})

    def with_params(self, **changes: object) -> Choi:
        """The same criterion with some parameters changed (strings are converted)."""
        return dataclasses.replace(self, params=coerce_params(self.params, changes))

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-timepoint categories and BOR, on all lesions or only `lesion_ids`."""
        return run_choi(series.restricted(lesion_ids), self.params, name=self.name)


CHOI = Choi()
