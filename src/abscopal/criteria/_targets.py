"""RECIST-family building blocks: measurability, selection, sums, non-targets and new lesions.

Shared by RECIST 1.1, iRECIST, mRECIST and Choi (CLINICAL.md §1 R-M, R-S, R-SUM, R-T, R-NT,
R-NEW; §2 NLT/NLNT; §3 viable diameters; §6 size). Every threshold comes from `TargetParams`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from abscopal.criteria._base import (
    MONTH_DAYS,
    Selected,
    Timepoint,
)
from abscopal.model import LesionKind
from abscopal.readings import (
    BoneSign,
    LesionReading,
    LesionStatus,
    NewLesion,
    Role,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Mapping, Sequence

RECIST_SOURCE = "RECIST 1.1 (Eisenhauer EA et al., Eur J Cancer 2009;45:228–247)"


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetParams:
    """Thresholds of R-M, R-S, R-SUM and R-T (CLINICAL.md §1), with the defaults given there."""

    max_targets: int = 5
    max_targets_per_organ: int = 2
    min_measurable_mm: Decimal = Decimal(10)
    thin_slice_max_mm: Decimal = Decimal(5)  # thicker slices: minimum 2 × slice (partly verified)
    node_measurable_sa_mm: Decimal = Decimal(15)
    node_pathological_sa_mm: Decimal = Decimal(10)
    porta_hepatis_node_sa_mm: Decimal | None = None  # mRECIST: 20 mm
    bone_soft_tissue_min_mm: Decimal = Decimal(10)
    irradiated_lesions_measurable: bool = False
    too_small_mm: Decimal = Decimal(5)  # partly verified
    pd_fraction: Decimal = Decimal("1.20")
    pd_min_abs_mm: Decimal = Decimal(5)
    pr_fraction: Decimal = Decimal("0.70")
    bone_flare_days: Decimal = 3 * MONTH_DAYS  # R-NEW bone, project default
    viable_hcc: bool = False  # mRECIST: HCC targets by their enhancing diameter


@dataclass(frozen=True, slots=True)
class Tracked:
    """A lesion followed from baseline as a target or a non-target."""

    lesion_id: str
    organ: str
    kind: LesionKind
    size_mm: Decimal | None = None

    @property
    def nodal(self) -> bool:
        """Nodes are measured by their short axis."""
        return self.kind is LesionKind.NODAL


@dataclass(frozen=True, slots=True)
class Selection:
    """Targets and non-targets chosen at baseline, and why (R-S)."""

    targets: tuple[Tracked, ...]
    non_targets: tuple[Tracked, ...]
    baseline_ids: frozenset[str]
    reasons: tuple[Selected, ...] = ()


@dataclass(frozen=True, slots=True)
class TargetSum:
    """SOD of the targets at one timepoint (R-SUM)."""

    sod: Decimal  # over the evaluated targets
    missing: tuple[str, ...]
    all_gone: bool  # R-T1: non-nodal absent, nodes < 10 mm


@dataclass(frozen=True, slots=True)
class NewLesions:
    """New lesions seen at one timepoint (R-NEW; iRECIST NLT/NLNT)."""

    unequivocal: tuple[str, ...] = ()
    equivocal: tuple[str, ...] = ()
    nlt_sum: Decimal = Decimal(0)
    nlnt: tuple[str, ...] = ()
    nlnt_increase: bool = False
    flags: tuple[str, ...] = field(default=())


def _node_limit(reading: LesionReading, params: TargetParams) -> Decimal:
    porta = params.porta_hepatis_node_sa_mm
    if porta is not None and "porta" in reading.organ.lower():
        return porta
    return params.node_measurable_sa_mm


def _min_ld(reading: LesionReading, params: TargetParams) -> Decimal:
    slice_mm = reading.slice_thickness_mm
    if slice_mm is not None and slice_mm > params.thin_slice_max_mm:
        return max(params.min_measurable_mm, 2 * slice_mm)
    return params.min_measurable_mm


def measurability(  # noqa: PLR0911  (one return per rule, in the spec's order)
    reading: LesionReading, params: TargetParams
) -> tuple[str, Decimal | None, str]:
    """("target" | "non_target" | "untracked", size, reason) at baseline (R-M)."""
    if not reading.present:
        return "untracked", None, "not present at baseline"
    kind = reading.kind
    if kind is LesionKind.NODAL:
        sa = reading.diameter_short_mm
        if sa is None:
            return "non_target", None, "node without short axis"
        if sa >= _node_limit(reading, params):
            return "target", sa, f"R-M node SA {sa} mm ≥ {_node_limit(reading, params)} mm"
        if sa >= params.node_pathological_sa_mm:
            return "non_target", None, f"R-M pathological node SA {sa} mm"
        return "untracked", None, f"R-M normal node SA {sa} mm < 10 mm"
    if reading.irradiated and not params.irradiated_lesions_measurable:
        return "non_target", None, "R-M previously irradiated lesion"
    if kind is LesionKind.BLASTIC:
        return "non_target", None, "R-M blastic bone lesion is non-measurable"
    if kind.is_bone:
        st = reading.soft_tissue_long_mm
        if st is not None and st >= params.bone_soft_tissue_min_mm:
            return "target", st, f"R-M bone with soft-tissue component {st} mm"
        return "non_target", None, "R-M bone lesion without soft-tissue component ≥ 10 mm"
    return _soft_tissue_measurability(reading, params)


def _soft_tissue_measurability(
    reading: LesionReading, params: TargetParams
) -> tuple[str, Decimal | None, str]:
    ld = reading.diameter_long_mm
    if ld is None:
        return "non_target", None, "no long diameter"
    if ld < _min_ld(reading, params):
        return "non_target", None, f"R-M LD {ld} mm < {_min_ld(reading, params)} mm"
    if params.viable_hcc and reading.kind is LesionKind.HCC:
        viable = reading.diameter_viable_mm
        if reading.aphe is False or viable is None or viable == 0:
            return "non_target", None, "mRECIST: no arterial-phase enhancement"
        return "target", viable, f"mRECIST enhancing HCC, viable LD {viable} mm"
    return "target", ld, f"R-M LD {ld} mm"


def select(baseline: Timepoint, params: TargetParams) -> Selection:
    """User roles first; otherwise R-S: largest first, ≤2 per organ, ≤5 in total."""
    assessed = {lid: measurability(r, params) for lid, r in sorted(baseline.readings.items())}
    readings = baseline.readings
    user_targets = [lid for lid, r in readings.items() if r.role is Role.TARGET]
    targets: list[str] = []
    reasons: list[Selected] = []
    if user_targets:
        targets = sorted(user_targets)
        reasons = [
            Selected(lesion_id=t, role="target", reason="role set by the user") for t in targets
        ]
    else:
        targets, reasons = _auto_targets(readings, assessed, params)
    non_targets = []
    for lid, (verdict, _, why) in assessed.items():
        if lid in targets or verdict == "untracked" or readings[lid].role is Role.NEW:
            continue
        non_targets.append(lid)
        reason = "role set by the user" if readings[lid].role is Role.NON_TARGET else why
        if verdict == "target" and readings[lid].role is None:
            reason = "R-S measurable but not selected (per-organ or total limit, or user targets)"
        reasons.append(Selected(lesion_id=lid, role="non_target", reason=reason))
    return Selection(
        targets=tuple(_tracked(readings[t], assessed[t][1]) for t in targets),
        non_targets=tuple(_tracked(readings[n], None) for n in non_targets),
        baseline_ids=frozenset(
            lid for lid, r in readings.items() if r.present and r.role is not Role.NEW
        ),
        reasons=tuple(reasons),
    )


def _tracked(reading: LesionReading, size: Decimal | None) -> Tracked:
    return Tracked(reading.lesion_id, reading.organ, reading.kind, size)


def _auto_targets(
    rd: Mapping[str, LesionReading],
    assessed: dict[str, tuple[str, Decimal | None, str]],
    params: TargetParams,
) -> tuple[list[str], list[Selected]]:
    candidates = [
        (size, lid)
        for lid, (verdict, size, _) in assessed.items()
        if verdict == "target" and size is not None and rd[lid].role is not Role.NON_TARGET
    ]
    candidates.sort(key=lambda c: (-c[0], c[1]))
    chosen: list[str] = []
    per_organ: dict[str, int] = {}
    reasons: list[Selected] = []
    for _, lid in candidates:
        organ = rd[lid].organ
        if (
            len(chosen) >= params.max_targets
            or per_organ.get(organ, 0) >= params.max_targets_per_organ
        ):
            continue
        chosen.append(lid)
        per_organ[organ] = per_organ.get(organ, 0) + 1
        reasons.append(
            Selected(lesion_id=lid, role="target", reason=f"R-S auto-selected, {assessed[lid][2]}")
        )
    return chosen, reasons


def target_size(  # noqa: PLR0911  (one return per rule, in the spec's order)
    reading: LesionReading | None, lesion: Tracked, params: TargetParams
) -> Decimal | None:
    """A target's contribution to the SOD; `None` when not evaluated (R-SUM)."""
    if reading is None or reading.status is LesionStatus.NOT_EVALUATED:
        return None
    if reading.status is LesionStatus.ABSENT:
        return Decimal(0)
    if lesion.nodal:
        if reading.diameter_short_mm is not None:
            return reading.diameter_short_mm
        return params.too_small_mm if reading.status is LesionStatus.TOO_SMALL else None
    if reading.status is LesionStatus.TOO_SMALL:
        return params.too_small_mm
    if params.viable_hcc and lesion.kind is LesionKind.HCC:
        return Decimal(0) if reading.aphe is False else reading.diameter_viable_mm
    if lesion.kind.is_bone:
        return reading.soft_tissue_long_mm
    return reading.diameter_long_mm


def target_sum(tp: Timepoint, targets: Sequence[Tracked], params: TargetParams) -> TargetSum:
    """SOD over the evaluated targets, the missing ones, and whether R-T1 holds."""
    sod = Decimal(0)
    missing: list[str] = []
    gone = True
    for lesion in targets:
        size = target_size(tp.readings.get(lesion.lesion_id), lesion, params)
        if size is None:
            missing.append(lesion.lesion_id)
            gone = False
            continue
        sod += size
        limit = params.node_pathological_sa_mm if lesion.nodal else Decimal(0)
        gone = gone and (size < limit if lesion.nodal else size == limit)
    return TargetSum(sod=sod, missing=tuple(missing), all_gone=gone)


def meets_pd(sod: Decimal, nadir: Decimal, params: TargetParams) -> bool:
    """R-T2: SOD ≥ 1.20 × nadir and SOD − nadir ≥ 5 mm (exact)."""
    return sod >= params.pd_fraction * nadir and sod - nadir >= params.pd_min_abs_mm


def non_target_status(tp: Timepoint, non_targets: Sequence[Tracked]) -> str | None:
    """R-NT: "PD", "CR", "NE", "NON_CR_NON_PD", or `None` without non-targets."""
    if not non_targets:
        return None
    states = [_nt_state(tp.readings.get(t.lesion_id), t) for t in non_targets]
    if "pd" in states:
        return "PD"
    if "ne" in states:
        return "NE"
    return "CR" if all(s == "gone" for s in states) else "NON_CR_NON_PD"


def _nt_state(reading: LesionReading | None, lesion: Tracked) -> str:
    if reading is None or reading.status is LesionStatus.NOT_EVALUATED:
        return "ne"
    if reading.status in {LesionStatus.UNEQUIVOCAL_PROGRESSION, LesionStatus.FURTHER_INCREASE}:
        return "pd"
    if reading.status is LesionStatus.ABSENT:
        return "gone"
    sa = reading.diameter_short_mm
    if lesion.nodal and sa is not None and sa < Decimal(10):
        return "gone"
    return "present"


def further_increase(tp: Timepoint, non_targets: Sequence[Tracked]) -> bool:
    """IRECIST I4: any non-target read as `further_increase` (or unequivocal progression)."""
    return any(_nt_state(tp.readings.get(t.lesion_id), t) == "pd" for t in non_targets)


def new_lesions(
    tp: Timepoint,
    selection: Selection,
    first_seen: dict[str, dt.date],
    therapy_start: dt.date,
    params: TargetParams,
) -> NewLesions:
    """R-NEW at one timepoint, with iRECIST's NLT sum (≤5, ≤2 per organ) and NLNT."""
    unequivocal: list[str] = []
    equivocal: list[str] = []
    flags: list[str] = []
    measurable: list[tuple[Decimal, str, str]] = []
    nlnt: list[str] = []
    increase = False
    for lid, r in sorted(tp.readings.items()):
        if lid in selection.baseline_ids or not r.present:
            continue
        verdict = _new_verdict(r, first_seen.get(lid, tp.date), therapy_start, params, flags)
        (unequivocal if verdict is NewLesion.UNEQUIVOCAL else equivocal).append(lid)
        kind, size, _ = measurability(r, params)
        if kind == "target" and size is not None:
            measurable.append((size, lid, r.organ))
        else:
            nlnt.append(lid)
            increase = increase or r.status in {
                LesionStatus.FURTHER_INCREASE,
                LesionStatus.UNEQUIVOCAL_PROGRESSION,
            }
    nlt_sum, rest = _nlt(measurable, params)
    if equivocal:
        flags.append("equivocal_new_lesion")
    return NewLesions(
        unequivocal=tuple(unequivocal),
        equivocal=tuple(equivocal),
        nlt_sum=nlt_sum,
        nlnt=tuple(nlnt + rest),
        nlnt_increase=increase,
        flags=tuple(dict.fromkeys(flags)),
    )


def _nlt(
    measurable: list[tuple[Decimal, str, str]], params: TargetParams
) -> tuple[Decimal, list[str]]:
    total = Decimal(0)
    rest: list[str] = []
    per_organ: dict[str, int] = {}
    count = 0
    for size, lid, organ in sorted(measurable, key=lambda m: (-m[0], m[1])):
        if count < params.max_targets and per_organ.get(organ, 0) < params.max_targets_per_organ:
            total += size
            count += 1
            per_organ[organ] = per_organ.get(organ, 0) + 1
        else:
            rest.append(lid)
    return total, rest


def _new_verdict(
    reading: LesionReading,
    first_seen: dt.date,
    therapy_start: dt.date,
    params: TargetParams,
    flags: list[str],
) -> NewLesion:
    if reading.new_lesion is not None and reading.new_lesion is not NewLesion.NONE:
        return reading.new_lesion
    sclerotic = reading.kind is LesionKind.BLASTIC or BoneSign.NEW_SCLEROSIS in reading.bone_signs
    no_soft = not reading.soft_tissue_long_mm
    if sclerotic and no_soft and (first_seen - therapy_start).days <= params.bone_flare_days:
        flags.append("possible_osteoblastic_flare")
        return NewLesion.EQUIVOCAL
    if params.viable_hcc and reading.kind is LesionKind.HCC:
        typical = reading.aphe is True and reading.washout is True
        ld = reading.diameter_long_mm
        if not (typical and ld is not None and ld >= params.min_measurable_mm):
            flags.append("atypical_new_hcc_lesion")
            return NewLesion.EQUIVOCAL
    return NewLesion.UNEQUIVOCAL


def first_seen_dates(timepoints: Iterable[Timepoint]) -> dict[str, dt.date]:
    """Date of each lesion's first present reading."""
    seen: dict[str, dt.date] = {}
    for tp in timepoints:
        for lid, r in tp.readings.items():
            if r.present and lid not in seen:
                seen[lid] = tp.date
    return seen


def reappeared(
    tp: Timepoint, previous: Sequence[Timepoint], selection: Selection
) -> tuple[str, ...]:
    """Tracked lesions absent at their last earlier reading and present now (R-NEW)."""
    out = []
    for lesion in (*selection.targets, *selection.non_targets):
        now = tp.readings.get(lesion.lesion_id)
        if now is None or not now.present or now.status is LesionStatus.TOO_SMALL:
            continue
        for earlier in reversed(previous):
            before = earlier.readings.get(lesion.lesion_id)
            if before is not None and before.status is not LesionStatus.NOT_EVALUATED:
                if before.status is LesionStatus.ABSENT:
                    out.append(lesion.lesion_id)
                break
    return tuple(out)
