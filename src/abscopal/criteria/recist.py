"""RECIST 1.1 for a whole patient (CLINICAL.md §1).

Source: Eisenhauer EA et al., Eur J Cancer 2009;45:228–247, doi:10.1016/j.ejca.2008.10.026, with
the EORTC RECIST FAQ. Rules: R-M measurability, R-S selection, R-SUM sum of diameters, R-T target
response (T0 → T1 CR → T2 PD → T3 PR → T4 SD), R-NT non-targets, R-NEW new lesions, R-OV overall
timepoint response, R-BOR best overall response with optional confirmation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

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
from abscopal.criteria._targets import (
    RECIST_SOURCE,
    NewLesions,
    Selection,
    TargetParams,
    TargetSum,
    first_seen_dates,
    meets_pd,
    new_lesions,
    non_target_status,
    reappeared,
    select,
    target_sum,
)
from abscopal.readings import (
    PatientSeries,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Collection, Sequence

C = ResponseCategory


@dataclass(frozen=True, slots=True, kw_only=True)
class RecistParams(TargetParams):
    """RECIST 1.1 parameters (CLINICAL.md §1); every default is the spec's."""

    sd_min_days: int = 42  # R-BOR, partly verified
    confirm_response: bool = False  # R-BOR confirmation, off by default
    confirm_min_days: int = 28
    reappearance_requires_confirmed_cr: bool = False  # R-NEW


@dataclass(frozen=True, slots=True)
class Facts:
    """What R-T, R-NT and R-NEW found at one follow-up timepoint."""

    tp: Timepoint
    sums: TargetSum | None
    baseline_sod: Decimal | None
    nadir: Decimal | None
    target: str | None
    target_rules: tuple[str, ...]
    nt: str | None
    new: NewLesions
    reappeared: tuple[str, ...]


def follow_up_facts(
    timepoints: Sequence[Timepoint],
    selection: Selection,
    params: TargetParams,
    therapy_start: dt.date,
) -> list[Facts]:
    """R-T, R-NT and R-NEW at every follow-up; the nadir excludes the current timepoint."""
    baseline = timepoints[0]
    base = target_sum(baseline, selection.targets, params) if selection.targets else None
    nadir = base.sod if base is not None else None
    seen = first_seen_dates(timepoints)
    out = []
    for i, tp in enumerate(timepoints[1:], start=1):
        sums = target_sum(tp, selection.targets, params) if selection.targets else None
        target: str | None = None
        rules: tuple[str, ...] = ()
        if sums is not None and base is not None and nadir is not None:
            target, rules = target_category(sums, base.sod, nadir, params)
        out.append(
            Facts(
                tp=tp,
                sums=sums,
                baseline_sod=base.sod if base else None,
                nadir=nadir,
                target=target,
                target_rules=rules,
                nt=non_target_status(tp, selection.non_targets),
                new=new_lesions(tp, selection, seen, therapy_start, params),
                reappeared=reappeared(tp, timepoints[:i], selection),
            )
        )
        if sums is not None and not sums.missing and nadir is not None:
            nadir = min(nadir, sums.sod)
    return out


def target_category(
    sums: TargetSum, baseline: Decimal, nadir: Decimal, params: TargetParams
) -> tuple[str, tuple[str, ...]]:
    """R-T in order: T0 missing target, T1 CR, T2 PD (vs nadir), T3 PR (vs baseline), T4 SD."""
    if sums.missing:
        if meets_pd(sums.sod, nadir, params):
            return "PD", ("R-T0", "R-T2")
        return "NE", ("R-T0",)
    if sums.all_gone:
        return "CR", ("R-T1",)
    if meets_pd(sums.sod, nadir, params):
        return "PD", ("R-T2",)
    if sums.sod <= params.pr_fraction * baseline:
        return "PR", ("R-T3",)
    return "SD", ("R-T4",)


def overall(facts: Facts, *, cr_before: bool) -> tuple[ResponseCategory, list[str], str | None]:
    """R-OV: (category, rules, NE reason)."""
    rules = list(facts.target_rules)
    pd = []
    if facts.target == "PD":
        pd.append("R-T2")
    if facts.nt == "PD":
        pd.append("R-NT")
    if facts.new.unequivocal or (facts.reappeared and cr_before):
        pd.append("R-NEW")
    if pd:
        return C.PD, [*rules, *pd, "R-OV"], None
    if facts.target is None:
        if facts.nt is None:
            return C.NE, [*rules, "R-OV"], "no_tracked_disease"
        reason = "non_target_not_evaluated" if facts.nt == "NE" else None
        return C(facts.nt), [*rules, "R-NT", "R-OV"], reason
    if facts.target == "CR":
        cat = C.CR if facts.nt in {None, "CR"} else C.PR
        return cat, [*rules, "R-NT", "R-OV"], None
    if facts.target == "NE":
        return C.NE, [*rules, "R-OV"], "missing_target"
    return C(facts.target), [*rules, "R-OV"], None


class Values(TypedDict):
    """The numbers of an `Assessment` (SOD in mm)."""

    baseline_value: Decimal | None
    nadir_value: Decimal | None
    current_value: Decimal | None
    pct_change_baseline: Decimal | None
    pct_change_nadir: Decimal | None
    abs_change_nadir: Decimal | None


def assessment_values(facts: Facts) -> Values:
    """Baseline, nadir and current SOD with their changes (for `Assessment`)."""
    current = facts.sums.sod if facts.sums is not None and not facts.sums.missing else None
    nadir = facts.nadir
    return {
        "baseline_value": facts.baseline_sod,
        "nadir_value": nadir,
        "current_value": current,
        "pct_change_baseline": pct_change(current, facts.baseline_sod),
        "pct_change_nadir": pct_change(current, nadir),
        "abs_change_nadir": current - nadir if current is not None and nadir is not None else None,
    }


def cite(rules: Sequence[str], source: str) -> tuple[str, ...]:
    """Rule IDs with their citation, without repeats."""
    return tuple(f"{rule} {source}" for rule in dict.fromkeys(rules))


_LEVEL = {
    C.CR: "CR",
    C.PR: "PR",
    C.SD: "SD",
    C.NON_CR_NON_PD: "SD",
    C.PD: "PD",
    C.NE: "NE",
}


def best_overall(
    timepoints: Sequence[Assessment],
    baseline_date: dt.date,
    params: RecistParams,
    *,
    source: str = RECIST_SOURCE,
    level: dict[ResponseCategory, str] | None = None,
) -> Assessment:
    """R-BOR: best up to the first PD; SD needs ≥ `sd_min_days`; optional confirmation."""
    levels = level or _LEVEL
    upto: list[Assessment] = []
    for a in timepoints:
        upto.append(a)
        if levels.get(a.category) == "PD":
            break
    lv = [levels.get(a.category, "NE") for a in upto]
    flags: list[str] = []
    if params.confirm_response:
        lv = _confirm(upto, lv, params.confirm_min_days, flags)
    for wanted in ("CR", "PR"):
        if wanted in lv:
            return _bor(upto[lv.index(wanted)], C(wanted), source, flags)
    return _bor_stable(upto, lv, baseline_date, params, source=source, flags=flags)


def _bor_stable(
    upto: Sequence[Assessment],
    lv: Sequence[str],
    baseline_date: dt.date,
    params: RecistParams,
    *,
    source: str,
    flags: list[str],
) -> Assessment:
    stable = [i for i, x in enumerate(lv) if x == "SD"]
    for i in stable:
        if (upto[i].date - baseline_date).days >= params.sd_min_days:
            cat = upto[i].category if upto[i].category in {C.SD, C.NON_CR_NON_PD} else C.SD
            return _bor(upto[i], cat, source, flags)
    if stable:
        nxt = stable[-1] + 1
        if nxt < len(upto) and lv[nxt] == "PD":
            return _bor(upto[nxt], C.PD, source, flags)
        return _bor(upto[stable[-1]], C.NE, source, flags, reason="sd_too_early")
    if "PD" in lv:
        return _bor(upto[lv.index("PD")], C.PD, source, flags)
    if upto:
        return _bor(upto[-1], C.NE, source, flags, reason="no_evaluable_timepoint")
    msg = "best_overall needs at least one timepoint"
    raise ValueError(msg)


def _confirm(upto: Sequence[Assessment], lv: list[str], days: int, flags: list[str]) -> list[str]:
    out = list(lv)
    for i, x in enumerate(lv):
        if x not in {"CR", "PR"}:
            continue
        later = [lv[j] for j in range(i + 1, len(lv)) if (upto[j].date - upto[i].date).days >= days]
        if not later:
            flags.append("awaiting_confirmation")
        if x == "CR" and "CR" in later:
            continue
        if any(y in {"CR", "PR"} for y in later):
            out[i] = "PR"
            continue
        out[i] = "SD"
        flags.append(f"unconfirmed_{x.lower()}")
    return out


def _bor(
    a: Assessment,
    category: ResponseCategory,
    source: str,
    flags: Sequence[str],
    reason: str | None = None,
) -> Assessment:
    return dataclasses.replace(
        a,
        category=category,
        rules=(*a.rules, f"R-BOR {source}"),
        flags=tuple(dict.fromkeys((*a.flags, *flags))),
        ne_reason=reason if category is C.NE else None,
        provisional="awaiting_confirmation" in flags,
    )


def no_follow_up(name: str, version: str, series: PatientSeries, reason: str) -> SeriesAssessment:
    """NE best response for a series without baseline or follow-up."""
    dates = [r.date for r in series.readings]
    day = max(dates) if dates else series.baseline_date
    if day is None:
        import datetime as _dt

        day = _dt.date.min
    ne = Assessment(criterion=name, version=version, date=day, category=C.NE, ne_reason=reason)
    return SeriesAssessment(
        criterion=name, patient_id=series.patient_id, timepoints=(), best_response=ne
    )


def run_recist(
    series: PatientSeries, params: RecistParams, *, name: str, version: str, source: str
) -> SeriesAssessment:
    """The RECIST engine shared by RECIST 1.1 and mRECIST."""
    timepoints = group_timepoints(series)
    if len(timepoints) < 2:
        return no_follow_up(name, version, series, "no_follow_up")
    selection = select(timepoints[0], params)
    start = series.therapy_start or timepoints[0].date
    facts = follow_up_facts(timepoints, selection, params, start)
    out: list[Assessment] = []
    cr_dates: list[dt.date] = []
    for f in facts:
        cr_before = _cr_before(cr_dates, params)
        cat, rules, reason = overall(f, cr_before=cr_before)
        out.append(
            Assessment(
                criterion=name,
                version=version,
                date=f.tp.date,
                category=cat,
                rules=cite(rules, source),
                flags=f.new.flags,
                ne_reason=reason if cat is C.NE else None,
                **assessment_values(f),
            )
        )
        if cat is C.CR:
            cr_dates.append(f.tp.date)
    best = best_overall(out, timepoints[0].date, params, source=source)
    return SeriesAssessment(
        criterion=name,
        patient_id=series.patient_id,
        timepoints=tuple(out),
        best_response=best,
        selection=selection.reasons,
        params=params_dict(params),
    )


def _cr_before(cr_dates: Sequence[dt.date], params: RecistParams) -> bool:
    if not params.reappearance_requires_confirmed_cr:
        return bool(cr_dates)
    return any((b - a).days >= params.confirm_min_days for a in cr_dates for b in cr_dates)


@dataclass(frozen=True, slots=True)
class Recist11:
    """RECIST 1.1 (Eisenhauer 2009; CLINICAL.md §1, rules R-M, R-S, R-SUM, R-T, R-NT, R-NEW, R-OV, R-BOR).

    PD (R-T2: ≥ +20 % and ≥ +5 mm against the nadir) is checked before PR (R-T3: ≤ −30 %
    against baseline); confirmation of CR/PR (≥ 28 d) is off by default.
    """

    params: RecistParams = field(default_factory=RecistParams)
    key: str = "recist11"
    name: str = "RECIST 1.1"
    version: str = "1.1"
    citation: str = RECIST_SOURCE
    categories: frozenset[ResponseCategory] = frozenset(
        {C.CR, C.PR, C.SD, C.PD, C.NON_CR_NON_PD, C.NE}
    )

    def with_params(self, **changes: object) -> Recist11:
        """The same criterion with some parameters changed (strings are converted)."""
        return dataclasses.replace(self, params=coerce_params(self.params, changes))

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-timepoint R-OV and R-BOR, on all lesions or only `lesion_ids`."""
        return run_recist(
            series.restricted(lesion_ids),
            self.params,
            name=self.name,
            version=self.version,
            source=self.citation,
        )


RECIST_1_1 = Recist11()
