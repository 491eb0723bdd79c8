"""iRECIST for immunotherapy (CLINICAL.md §2).

Source: Seymour L et al., Lancet Oncol 2017;18:e143–e152, doi:10.1016/S1470-2045(17)30074-8, with
the EORTC iRECIST FAQ. A RECIST 1.1 progression is unconfirmed (iUPD) until the next assessment
confirms it (iCPD, rule I4: +5 mm against the iUPD snapshot, further non-target increase, NLT sum
+5 mm, NLNT increase, more new lesions, or another category newly meeting its PD test). If every
trigger is gone the bar resets (I5). Scans < 28 d after iUPD cannot confirm (I3). New lesions are
summed separately (NLT ≤ 5, ≤ 2 per organ; the rest NLNT) and never added to the SOD.
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
    best_by_rank,
    coerce_params,
    group_timepoints,
    params_dict,
)
from abscopal.criteria._targets import select
from abscopal.criteria.recist import (
    Facts,
    RecistParams,
    assessment_values,
    cite,
    follow_up_facts,
    no_follow_up,
    overall,
)
from abscopal.readings import (
    LesionStatus,
    PatientSeries,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Collection

    from abscopal.criteria._targets import Selection

C = ResponseCategory
IRECIST_SOURCE = "iRECIST (Seymour L et al., Lancet Oncol 2017;18:e143–e152)"
_RENAME = {C.CR: C.iCR, C.PR: C.iPR, C.SD: C.iSD}
_RANK = (C.iCR, C.iPR, C.iSD, C.NON_CR_NON_PD, C.iUPD, C.iCPD, C.NE)


@dataclass(frozen=True, slots=True, kw_only=True)
class IrecistParams(RecistParams):
    """iRECIST parameters (CLINICAL.md §2); RECIST 1.1 defaults for the rest."""

    confirm_min_days: int = 28  # I3
    confirm_max_days: int = 56  # I6 `confirmation_late`
    cpd_min_abs_mm: Decimal = Decimal(5)  # I4 SOD and NLT increase against the snapshot
    reset_with_persisting_new_lesions: bool = False  # FAQ alternative (project default False)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State at iUPD: date, sums, triggering categories and number of new lesions."""

    date: dt.date
    sod: Decimal | None
    nlt_sum: Decimal
    triggers: frozenset[str]
    new_count: int


def _triggers(f: Facts) -> frozenset[str]:
    out = set()
    if f.target == "PD":
        out.add("targets")
    if f.nt == "PD":
        out.add("non_targets")
    if f.new.unequivocal:
        out.add("new")
    return frozenset(out)


def _snapshot(f: Facts) -> Snapshot:
    sod = f.sums.sod if f.sums is not None else None
    return Snapshot(f.tp.date, sod, f.new.nlt_sum, _triggers(f), len(f.new.unequivocal))


def _confirms(f: Facts, snap: Snapshot, selection: Selection, params: IrecistParams) -> list[str]:
    """I4: the reasons this timepoint confirms progression (empty when it does not)."""
    why = []
    sod = f.sums.sod if f.sums is not None else None
    if sod is not None and snap.sod is not None and sod - snap.sod >= params.cpd_min_abs_mm:
        why.append("I4 SOD ≥ +5 mm against iUPD")
    if any(
        (r := f.tp.readings.get(t.lesion_id)) is not None
        and r.status is LesionStatus.FURTHER_INCREASE
        for t in selection.non_targets
    ):
        why.append("I4 non-target further increase")
    if f.new.nlt_sum - snap.nlt_sum >= params.cpd_min_abs_mm:
        why.append("I4 NLT sum ≥ +5 mm")
    if f.new.nlnt_increase:
        why.append("I4 NLNT increase")
    if len(f.new.unequivocal) > snap.new_count:
        why.append("I4 more new lesions")
    for category in _triggers(f) - snap.triggers - {"new"}:
        why.append(f"I4 {category} newly meet RECIST PD")
    return why


def _reset_allowed(f: Facts, params: IrecistParams) -> bool:
    new_gone = not f.new.unequivocal or params.reset_with_persisting_new_lesions
    return f.target != "PD" and f.nt != "PD" and new_gone


def _renamed(f: Facts, cr_before: bool) -> tuple[ResponseCategory, list[str], str | None]:
    cat, rules, reason = overall(f, cr_before=cr_before)
    if cat is C.CR and (f.new.equivocal or f.new.unequivocal):
        cat = C.PR  # iCR needs every new lesion gone too
    return _RENAME.get(cat, cat), [*rules, "I2"], reason


def _step(  # noqa: PLR0911  (one return per rule, in the spec's order)
    f: Facts, state: Snapshot | str | None, selection: Selection, params: IrecistParams
) -> tuple[ResponseCategory, list[str], list[str], str | None, Snapshot | str | None]:
    """One timepoint of the state machine: category, rules, flags, NE reason, next state."""
    if state == "iCPD":
        return C.iCPD, ["I1"], [], None, state
    if state is None or isinstance(state, str):
        if _triggers(f):
            return C.iUPD, ["I2", "R-OV"], [], None, _snapshot(f)
        cat, rules, reason = _renamed(f, cr_before=False)
        return cat, rules, [], reason, None
    days = (f.tp.date - state.date).days
    if days < params.confirm_min_days:
        return C.iUPD, ["I3"], ["too_early_for_confirmation"], None, state
    flags = ["confirmation_late"] if days > params.confirm_max_days else []
    why = _confirms(f, state, selection, params)
    if why:
        return C.iCPD, ["I4", *why], flags, None, "iCPD"
    if _reset_allowed(f, params):
        cat, rules, reason = _renamed(f, cr_before=False)
        return cat, ["I5", *rules], flags, reason, None
    return C.iUPD, ["I6"], flags, None, state


def run_irecist(series: PatientSeries, params: IrecistParams, *, name: str) -> SeriesAssessment:
    """IRECIST over the whole series (I1–I6), BOR ranked iCR > iPR > iSD > iUPD > iCPD."""
    timepoints = group_timepoints(series)
    if len(timepoints) < 2:
        return no_follow_up(name, "2017", series, "no_follow_up")
    selection = select(timepoints[0], params)
    start = series.therapy_start or timepoints[0].date
    state: Snapshot | str | None = None
    out = []
    for f in follow_up_facts(timepoints, selection, params, start):
        cat, rules, flags, reason, state = _step(f, state, selection, params)
        out.append(
            Assessment(
                criterion=name,
                version="2017",
                date=f.tp.date,
                category=cat,
                rules=cite(rules, IRECIST_SOURCE),
                flags=tuple(dict.fromkeys((*f.new.flags, *flags))),
                ne_reason=reason if cat is C.NE else None,
                provisional=cat is C.iUPD,
                **assessment_values(f),
            )
        )
    best = best_by_rank(out, _RANK) or out[-1]
    best = dataclasses.replace(best, rules=(*best.rules, f"BOR {IRECIST_SOURCE}"))
    return SeriesAssessment(
        criterion=name,
        patient_id=series.patient_id,
        timepoints=tuple(out),
        best_response=best,
        selection=selection.reasons,
        params=params_dict(params),
    )


@dataclass(frozen=True, slots=True)
class Irecist:
    """iRECIST (Seymour 2017; CLINICAL.md §2, rules I1–I6 on top of RECIST 1.1 R-T/R-NT/R-NEW).

    iUPD needs confirmation (iCPD) at the next assessment ≥ 28 d later; increases add up against
    the iUPD snapshot; a resolved progression resets the bar.
    """

    params: IrecistParams = field(default_factory=IrecistParams)
    key: str = "irecist"
    name: str = "iRECIST"
    version: str = "2017"
    citation: str = IRECIST_SOURCE
    categories: frozenset[ResponseCategory] = frozenset(
        {C.iCR, C.iPR, C.iSD, C.NON_CR_NON_PD, C.iUPD, C.iCPD, C.NE}
    )

    def with_params(self, **changes: object) -> Irecist:
        """The same criterion with some parameters changed (strings are converted)."""
        return dataclasses.replace(self, params=coerce_params(self.params, changes))

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-timepoint categories and BOR, on all lesions or only `lesion_ids`."""
        return run_irecist(series.restricted(lesion_ids), self.params, name=self.name)


IRECIST = Irecist()
