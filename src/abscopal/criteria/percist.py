"""PERCIST 1.0, with the iPERCIST option (CLINICAL.md §4).

Sources: Wahl RL et al., J Nucl Med 2009;50(Suppl 1):122S–150S, doi:10.2967/jnumed.108.057307;
O JH, Lodge MA, Wahl RL, Radiology 2016 (practical PERCIST); iPERCIST: Goldfarb 2019.
The single hottest lesion's SULpeak on each scan (it may be another lesion) against baseline.
P0 NE (liver reference drift > 20 % or > 0.3 SUL; baseline below 1.5 × liver mean + 2 SD) →
P1 PMD (> +30 % and > +0.8 SUL, TLG > +75 %, or a new FDG-avid lesion) → P2 CMR → P3 PMR
(≤ −30 % and a drop ≥ 0.8 SUL, no new lesion, no lesion up > 30 %) → P4 SMD.
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
    best_by_rank,
    coerce_params,
    group_timepoints,
    params_dict,
    pct_change,
)
from abscopal.criteria.recist import no_follow_up
from abscopal.readings import (
    NewLesion,
    PatientSeries,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

C = ResponseCategory
PERCIST_SOURCE = "PERCIST 1.0 (Wahl RL et al., J Nucl Med 2009;50 Suppl 1:122S–150S)"
_RANK = (C.CMR, C.PMR, C.SMD, C.UPMD, C.PMD, C.CPMD)


@dataclass(frozen=True, slots=True, kw_only=True)
class PercistParams:
    """PERCIST 1.0 parameters (CLINICAL.md §4), with the spec's defaults."""

    liver_mean_factor: Decimal = Decimal("1.5")
    blood_mean_factor: Decimal = Decimal("2.0")
    sd_factor: Decimal = Decimal(2)
    drift_max_fraction: Decimal = Decimal("0.20")
    drift_max_sul: Decimal = Decimal("0.3")
    change_fraction: Decimal = Decimal("0.30")  # PMD > +30 %, PMR ≤ −30 %
    change_min_sul: Decimal = Decimal("0.8")  # PMD > +0.8, PMR drop ≥ 0.8
    tlg_pmd_fraction: Decimal = Decimal("0.75")
    max_lesions: int = 5  # secondary sum and TLG: ≤ 5 hottest (project default)
    pmd_reference: str = "baseline"  # project default; only "baseline" is implemented
    immune: bool = False  # iPERCIST: PMD becomes UPMD until confirmed
    confirm_min_days: int = 28
    confirm_max_days: int = 56


@dataclass(frozen=True, slots=True)
class _Pet:
    hottest: Decimal | None
    reference: Decimal | None
    threshold: Decimal | None


def _reference(tp: Timepoint, params: PercistParams) -> tuple[Decimal | None, Decimal | None]:
    """Reference mean and measurability threshold: liver, else blood pool."""
    for prefix, factor in (
        ("liver", params.liver_mean_factor),
        ("blood", params.blood_mean_factor),
    ):
        mean = tp.scan_value(f"{prefix}_sul_mean")
        if mean is not None:
            sd = tp.scan_value(f"{prefix}_sul_sd")
            return mean, (factor * mean + params.sd_factor * sd) if sd is not None else None
    return None, None


def _pet(tp: Timepoint, params: PercistParams) -> _Pet:
    values = [r.sulpeak for r in tp.readings.values() if r.present and r.sulpeak is not None]
    if not values and tp.readings and not any(r.present for r in tp.readings.values()):
        values = [Decimal(0)]
    reference, threshold = _reference(tp, params)
    return _Pet(max(values) if values else None, reference, threshold)


def _new_lesions(tp: Timepoint, baseline: Timepoint) -> list[str]:
    return [
        lid
        for lid, r in tp.readings.items()
        if r.present
        and r.new_lesion is not NewLesion.EQUIVOCAL
        and not (lid in baseline.readings and baseline.readings[lid].present)
    ]


def _drifted(before: Decimal, after: Decimal, params: PercistParams) -> bool:
    """Liver (or blood-pool) reference moved by > 20 % or > 0.3 SUL (P0)."""
    delta = abs(after - before)
    return delta > params.drift_max_fraction * before or delta > params.drift_max_sul


def _tlg(tp: Timepoint, ids: Sequence[str]) -> Decimal | None:
    values = [tp.readings[i].tlg_g for i in ids if i in tp.readings]
    return (
        sum((v for v in values if v is not None), Decimal(0))
        if values and None not in values
        else None
    )


def _category(  # noqa: PLR0911  (one return per rule, in the spec's order)
    base_tp: Timepoint, tp: Timepoint, params: PercistParams
) -> tuple[ResponseCategory, list[str], str | None]:
    """P0–P4 for one follow-up scan: (category, rules, NE reason)."""
    base, fu = _pet(base_tp, params), _pet(tp, params)
    new = _new_lesions(tp, base_tp)
    if base.reference is None or fu.reference is None:
        return C.NE, ["P0 reference region"], "no_reference_region"
    if _drifted(base.reference, fu.reference, params):
        return C.NE, ["P0 comparability"], "reference_drift"
    if base.hottest is None or base.threshold is None or base.hottest < base.threshold:
        if new:
            return C.PMD, ["P0", "P1 new lesion"], None
        return C.NE, ["P0 measurability"], "no_measurable_baseline"
    if fu.hottest is None:
        return (C.PMD, ["P1 new lesion"], None) if new else (C.NE, ["P0"], "missing_sulpeak")
    pmd = _pmd_reasons(base_tp, tp, base.hottest, fu.hottest, new, params)
    if pmd:
        return C.PMD, pmd, None
    if not new and _complete(tp, fu):
        return C.CMR, ["P2"], None
    drop = base.hottest - fu.hottest
    if (
        fu.hottest <= (1 - params.change_fraction) * base.hottest
        and drop >= params.change_min_sul
        and not new
        and not _any_lesion_up(base_tp, tp, params)
    ):
        return C.PMR, ["P3"], None
    return C.SMD, ["P4"], None


def _pmd_reasons(  # noqa: PLR0917  (two scans, their two values, new lesions, params)
    base_tp: Timepoint,
    tp: Timepoint,
    base: Decimal,
    now: Decimal,
    new: Sequence[str],
    params: PercistParams,
) -> list[str]:
    out = []
    if now > (1 + params.change_fraction) * base and now - base > params.change_min_sul:
        out.append("P1 SULpeak > +30 % and > +0.8")
    hottest = sorted(
        (r for r in base_tp.readings.values() if r.sulpeak is not None),
        key=lambda r: (-r.sulpeak, r.lesion_id),  # type: ignore[operator]
    )[: params.max_lesions]
    ids = [r.lesion_id for r in hottest]
    tlg_base, tlg_now = _tlg(base_tp, ids), _tlg(tp, ids)
    if tlg_base and tlg_now is not None and tlg_now > (1 + params.tlg_pmd_fraction) * tlg_base:
        out.append("P1 TLG > +75 %")
    if new:
        out.append("P1 new FDG-avid lesion")
    return out


def _complete(tp: Timepoint, fu: _Pet) -> bool:
    if fu.reference is None:
        return False
    for r in tp.readings.values():
        if not r.present:
            continue
        if (
            r.sulpeak is None
            or r.sulpeak >= fu.reference
            or r.background_indistinguishable is False
        ):
            return False
    return True


def _any_lesion_up(base_tp: Timepoint, tp: Timepoint, params: PercistParams) -> bool:
    for lid, r in tp.readings.items():
        before = base_tp.readings.get(lid)
        if before is None or before.sulpeak is None or r.sulpeak is None:
            continue
        if r.sulpeak > (1 + params.change_fraction) * before.sulpeak:
            return True
    return False


def _immune(
    cats: list[tuple[Timepoint, ResponseCategory, list[str], str | None]], params: PercistParams
) -> list[tuple[ResponseCategory, list[str], bool]]:
    """iPERCIST: PMD → UPMD; CPMD when PMD holds again 28–56 d later; otherwise reset."""
    out: list[tuple[ResponseCategory, list[str], bool]] = []
    open_since = None
    confirmed = False
    for tp, cat, rules, _ in cats:
        if confirmed:
            out.append((C.CPMD, ["iPERCIST CPMD"], False))
            continue
        if open_since is not None:
            days = (tp.date - open_since).days
            if days < params.confirm_min_days:
                out.append((C.UPMD, [*rules, "iPERCIST too early"], True))
                continue
            if cat is C.PMD and days <= params.confirm_max_days:
                confirmed = True
                out.append((C.CPMD, [*rules, "iPERCIST CPMD"], False))
                continue
            open_since = None
        if cat is C.PMD:
            open_since = tp.date
            out.append((C.UPMD, [*rules, "iPERCIST UPMD"], True))
        else:
            out.append((cat, rules, False))
    return out


def run_percist(series: PatientSeries, params: PercistParams, *, name: str) -> SeriesAssessment:
    """PERCIST per follow-up scan and the best response up to the first PMD."""
    timepoints = group_timepoints(series)
    if len(timepoints) < 2:
        return no_follow_up(name, "1.0", series, "no_follow_up")
    base_tp = timepoints[0]
    cats = [(tp, *_category(base_tp, tp, params)) for tp in timepoints[1:]]
    immune = _immune(cats, params) if params.immune else [(c, r, False) for _, c, r, _ in cats]
    base = _pet(base_tp, params).hottest
    out = []
    for (tp, _, _, reason), (cat, rules, provisional) in zip(cats, immune, strict=True):
        now = _pet(tp, params).hottest
        out.append(
            Assessment(
                criterion=name,
                version="1.0",
                date=tp.date,
                category=cat,
                baseline_value=base,
                nadir_value=base,  # the PMD reference is the baseline (pmd_reference)
                current_value=now,
                pct_change_baseline=pct_change(now, base),
                pct_change_nadir=pct_change(now, base),
                abs_change_nadir=now - base if now is not None and base is not None else None,
                rules=tuple(f"{r} {PERCIST_SOURCE}" for r in dict.fromkeys(rules)),
                ne_reason=reason if cat is C.NE else None,
                provisional=provisional,
            )
        )
    return SeriesAssessment(
        criterion=name,
        patient_id=series.patient_id,
        timepoints=tuple(out),
        best_response=best_metabolic(out),
        params=params_dict(params),
    )


def best_metabolic(out: Sequence[Assessment]) -> Assessment:
    """Best category up to and including the first PMD/CPMD; NE when none is ranked."""
    upto = []
    for a in out:
        upto.append(a)
        if a.category in {C.PMD, C.CPMD}:
            break
    best = best_by_rank(upto, _RANK)
    if best is None:
        return dataclasses.replace(
            upto[-1], ne_reason=upto[-1].ne_reason or "no_evaluable_timepoint"
        )
    return best


@dataclass(frozen=True, slots=True)
class Percist:
    """PERCIST 1.0 (Wahl 2009; CLINICAL.md §4, rules P0–P4; iPERCIST with `immune=True`).

    SULpeak of the hottest lesion against baseline; PMD needs > +30 % and > +0.8 SUL (strict),
    PMR ≤ −30 % and a drop ≥ 0.8 SUL; liver reference drift > 20 % or > 0.3 SUL → NE.
    """

    params: PercistParams = field(default_factory=PercistParams)
    key: str = "percist"
    name: str = "PERCIST 1.0"
    version: str = "1.0"
    citation: str = PERCIST_SOURCE
    categories: frozenset[ResponseCategory] = frozenset(
        {C.CMR, C.PMR, C.SMD, C.PMD, C.UPMD, C.CPMD, C.NE}
    )

    def with_params(self, **changes: object) -> Percist:
        """The same criterion with some parameters changed (strings are converted)."""
        return dataclasses.replace(self, params=coerce_params(self.params, changes))

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-scan categories and best response, on all lesions or only `lesion_ids`."""
        return run_percist(series.restricted(lesion_ids), self.params, name=self.name)


PERCIST_1_0 = Percist()
