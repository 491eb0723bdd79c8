"""MD Anderson (MDA) bone criteria (CLINICAL.md §7).

Sources: Hamaoka T et al., J Clin Oncol 2004;22:2942–2953, doi:10.1200/JCO.2004.08.181;
Costelloe CM et al., J Cancer 2010;1:80–92, doi:10.7150/jca.1.80. Order: M1 PD (any PD sign,
SPD ≥ +25 % against the nadir, or one lesion's product ≥ +25 % against its own nadir) → M2 CR
(every lesion shows a CR sign) → M3 PR (any PR sign, SPD ≤ −50 % against baseline) → M4 SD (only
≥ 56 d after therapy start; earlier NE `too_early_for_sd`). A new purely sclerotic focus is the PR
sign "sclerosis of a previously undetected lesion" when the same timepoint has another PR or CR sign
and no PD sign; otherwise it is equivocal until the next CT. Bone-scan flare: new or hotter spots
14 d to 3 months after therapy start are not PD (`possible_flare`, provisional). A PR that persists
≥ 28 d is `confirmed`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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
from abscopal.model import LesionKind
from abscopal.readings import (
    BoneSign,
    LesionReading,
    LesionStatus,
    PatientSeries,
    ScanStatus,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

C = ResponseCategory
MDA_SOURCE = "MDA bone criteria (Hamaoka T et al., J Clin Oncol 2004;22:2942–2953)"
_CR_SIGNS = {BoneSign.COMPLETE_FILL_IN, BoneSign.NORMALISED}
_PR_SIGNS = {BoneSign.SCLEROTIC_RIM, BoneSign.FILL_IN}
_RANK = (C.CR, C.PR, C.SD, C.PD)


@dataclass(frozen=True, slots=True, kw_only=True)
class MdaParams:
    """MDA parameters (CLINICAL.md §7), with the spec's defaults."""

    pr_spd_fraction: Decimal = Decimal("0.50")  # SPD ≤ −50 % against baseline
    pd_fraction: Decimal = Decimal("0.25")  # SPD or one product ≥ +25 % against the nadir
    sd_min_days: int = 56  # M4
    confirm_min_days: int = 28  # WHO ≥ 4 weeks
    ss_flare_min_days: int = 14
    ss_flare_max_days: int = 91  # extendable to 183


@dataclass
class _Signs:
    pd: list[str] = field(default_factory=list)
    pr: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    cr_all: bool = True
    provisional: bool = False
    equivocal: list[str] = field(default_factory=list)


def _product(r: LesionReading | None) -> Decimal | None:
    if r is None or r.status is LesionStatus.NOT_EVALUATED:
        return None
    if not r.present:
        return Decimal(0)
    if r.diameter_long_mm is None or r.diameter_perp_mm is None:
        return None
    return r.diameter_long_mm * r.diameter_perp_mm


def _sclerotic_focus(r: LesionReading) -> bool:
    pure = r.kind is LesionKind.BLASTIC or BoneSign.NEW_SCLEROSIS in r.bone_signs
    return pure and r.kind not in {LesionKind.LYTIC, LesionKind.MIXED} and not r.soft_tissue_long_mm


@dataclass(frozen=True, slots=True)
class _Series:
    base: Timepoint
    timepoints: Sequence[Timepoint]
    bone_ids: tuple[str, ...]
    start: dt.date
    params: MdaParams


def _size_signs(s: _Series, i: int, signs: _Signs) -> tuple[Decimal | None, Decimal | None]:
    """SPD rules; returns (baseline SPD, current SPD)."""
    measurable = [lid for lid in s.bone_ids if _product(s.base.readings.get(lid))]
    if not measurable:
        return None, None
    history = [
        [_product(tp.readings.get(lid)) for lid in measurable] for tp in s.timepoints[: i + 1]
    ]
    now = history[-1]
    base_spd = sum((p for p in history[0] if p is not None), Decimal(0))
    if any(p is None for p in now):
        return base_spd, None
    spd = sum((p for p in now if p is not None), Decimal(0))
    complete = [
        sum((p for p in row if p is not None), Decimal(0))
        for row in history[:-1]
        if None not in row
    ]
    nadir = min(complete)
    if spd >= (1 + s.params.pd_fraction) * nadir and nadir > 0:
        signs.pd.append("M1 SPD ≥ +25 % against the nadir")
    for k, lid in enumerate(measurable):
        own = [p for row in history[:-1] if (p := row[k]) is not None]
        current = now[k]
        if own and current is not None and _grew_by(current, min(own), s.params.pd_fraction):
            signs.pd.append(f"M1 lesion {lid} product ≥ +25 % against its nadir")
    if spd <= (1 - s.params.pr_spd_fraction) * base_spd:
        signs.pr.append("M3 SPD ≤ −50 %")
    return base_spd, spd


def _grew_by(value: Decimal, nadir: Decimal, fraction: Decimal) -> bool:
    return nadir > 0 and value >= (1 + fraction) * nadir


def _lesion_signs(s: _Series, tp: Timepoint, signs: _Signs) -> None:
    days = (tp.date - s.start).days
    in_flare = s.params.ss_flare_min_days <= days <= s.params.ss_flare_max_days
    for lid in s.bone_ids:
        r = tp.readings.get(lid)
        if r is None:
            signs.cr_all = False
            continue
        cr = not r.present or bool(r.bone_signs & _CR_SIGNS) or r.ss_status is ScanStatus.RESOLVED
        signs.cr_all = signs.cr_all and cr
        if r.status in {LesionStatus.UNEQUIVOCAL_PROGRESSION, LesionStatus.FURTHER_INCREASE}:
            signs.pd.append(f"M1 lesion {lid} progression")
        if r.bone_signs & _PR_SIGNS:
            signs.pr.append(f"M3 lesion {lid} {', '.join(sorted(r.bone_signs & _PR_SIGNS))}")
        if r.ss_status is ScanStatus.REGRESSED:
            signs.pr.append(f"M3 lesion {lid} regression on bone scan")
        if r.ss_status in {ScanStatus.INCREASED, ScanStatus.NEW}:
            _scan_increase(lid, in_flare, signs)


def _scan_increase(lid: str, in_flare: bool, signs: _Signs) -> None:
    if in_flare:
        signs.flags.append("possible_flare")
        signs.provisional = True
    else:
        signs.pd.append(f"M1 lesion {lid} more activity on bone scan")


def _new_lesion_signs(s: _Series, i: int, signs: _Signs) -> None:
    tp = s.timepoints[i]
    focus: list[str] = []
    for lid, r in sorted(tp.readings.items()):
        if lid in s.bone_ids or not r.present or not r.kind.is_bone:
            continue
        first = next(
            k for k, t in enumerate(s.timepoints) if lid in t.readings and t.readings[lid].present
        )
        if not _sclerotic_focus(r):
            signs.pd.append(f"M1 new lesion {lid}")
        elif first < i and _grew(s.timepoints[first].readings[lid], r):
            signs.pd.append(
                f"M1 new sclerotic focus {lid} grew or gained a lytic or soft-tissue part"
            )
        elif first < i:
            signs.pr.append(f"M3 sclerosis of a previously undetected lesion {lid} (settled)")
        else:
            focus.append(lid)
    for lid in focus:
        if signs.pr and not signs.pd:
            signs.pr.append(f"M3 sclerosis of a previously undetected lesion {lid}")
        else:
            signs.equivocal.append(lid)
            signs.flags.append("equivocal_new_sclerosis")
            signs.provisional = True
    signs.cr_all = signs.cr_all and not focus and not signs.pd


def _grew(first: LesionReading, now: LesionReading) -> bool:
    before, after = first.diameter_long_mm, now.diameter_long_mm
    grew = before is not None and after is not None and after > before
    return grew or not _sclerotic_focus(now)


def _assess_one(s: _Series, i: int, name: str) -> Assessment:
    tp = s.timepoints[i]
    signs = _Signs()
    base_spd, spd = _size_signs(s, i, signs)
    _lesion_signs(s, tp, signs)
    _new_lesion_signs(s, i, signs)
    days = (tp.date - s.start).days
    reason = None
    if signs.pd:
        cat, rules = C.PD, signs.pd
    elif signs.cr_all and s.bone_ids:
        cat, rules = C.CR, ["M2 every lesion shows a CR sign"]
    elif signs.pr:
        cat, rules = C.PR, signs.pr
    elif days >= s.params.sd_min_days:
        cat, rules = C.SD, ["M4 no change"]
    else:
        cat, rules, reason = C.NE, ["M4 SD needs ≥ 56 d"], "too_early_for_sd"
    return Assessment(
        criterion=name,
        version="2004",
        date=tp.date,
        category=cat,
        baseline_value=base_spd,
        current_value=spd,
        pct_change_baseline=pct_change(spd, base_spd),
        rules=tuple(f"{r} {MDA_SOURCE}" for r in rules),
        flags=tuple(dict.fromkeys(signs.flags)),
        ne_reason=reason,
        provisional=signs.provisional,
    )


def _confirm(out: list[Assessment], days: int) -> list[Assessment]:
    def confirmed(a: Assessment) -> bool:
        return a.category is C.PR and any(
            b.category is C.PR and (a.date - b.date).days >= days for b in out
        )

    return [
        dataclasses.replace(a, flags=(*a.flags, "confirmed")) if confirmed(a) else a for a in out
    ]


def run_mda(series: PatientSeries, params: MdaParams, *, name: str) -> SeriesAssessment:
    """MDA per timepoint (M1–M4) and the best response up to the first PD."""
    timepoints = group_timepoints(series)
    if len(timepoints) < 2:
        return no_follow_up(name, "2004", series, "no_follow_up")
    base = timepoints[0]
    bone = tuple(sorted(lid for lid, r in base.readings.items() if r.present and r.kind.is_bone))
    if not bone and not any(r.kind.is_bone for tp in timepoints for r in tp.readings.values()):
        return no_follow_up(name, "2004", series, "no_bone_lesion")
    s = _Series(base, timepoints, bone, series.therapy_start or base.date, params)
    out = _settle_back([_assess_one(s, i, name) for i in range(1, len(timepoints))])
    out = _confirm(out, params.confirm_min_days)
    upto = []
    for a in out:
        upto.append(a)
        if a.category is C.PD:
            break
    best = best_by_rank(upto, _RANK) or upto[-1]
    return SeriesAssessment(
        criterion=name,
        patient_id=series.patient_id,
        timepoints=tuple(out),
        best_response=dataclasses.replace(best, rules=(*best.rules, f"BOR {MDA_SOURCE}")),
        params=params_dict(params),
    )


def _settle_back(out: list[Assessment]) -> list[Assessment]:
    """A focus found equivocal and settled as PR at the next CT makes the earlier timepoint PR."""
    result = list(out)
    for k in range(len(out) - 1):
        a, nxt = out[k], out[k + 1]
        settled = any("(settled)" in r for r in nxt.rules)
        if "equivocal_new_sclerosis" in a.flags and settled and a.category in {C.SD, C.NE}:
            result[k] = dataclasses.replace(
                a,
                category=C.PR,
                ne_reason=None,
                provisional=False,
                rules=(*a.rules, f"M3 new sclerosis settled at {nxt.date} {MDA_SOURCE}"),
            )
    return result


@dataclass(frozen=True, slots=True)
class Mda:
    """MD Anderson bone criteria (Hamaoka 2004, Costelloe 2010; CLINICAL.md §7, rules M1–M4).

    Bidimensional products (PR: SPD ≤ −50 %; PD: ≥ +25 % against the nadir) and the qualitative
    bone signs; new sclerosis in a responding patient is PR; SD only ≥ 56 d after therapy start.
    """

    params: MdaParams = field(default_factory=MdaParams)
    key: str = "mda"
    name: str = "MDA bone"
    version: str = "2004"
    citation: str = MDA_SOURCE
    categories: frozenset[ResponseCategory] = frozenset({C.CR, C.PR, C.SD, C.PD, C.NE})

    def with_params(self, **changes: object) -> Mda:
        """The same criterion with some parameters changed (strings are converted)."""
        return dataclasses.replace(self, params=coerce_params(self.params, changes))

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-timepoint categories and best response, on all lesions or only `lesion_ids`."""
        return run_mda(series.restricted(lesion_ids), self.params, name=self.name)


MDA_BONE = Mda()
