"""The abscopal engine: out-of-field response, confounders and certainty grade (CLINICAL.md §8).

For each lesion that is not in the field of a local therapy, `assess_lesion` follows §8.2–§8.5:
a recent baseline b(ℓ), a response threshold met at t1 inside the plausibility window, its
confirmation at t2, and the confounders in W_sys = [t0 − 56 d, t1]. The grade is the proposal of
§8.5: G0 no grade, G1 not abscopal, then caps C (indeterminate) and B (possible); A (probable) when
nothing caps it. `assess_patient` combines the lesions. Every reason cites its rule ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING

from abscopal.criteria._base import at_least_fraction, at_most_fraction, exact
from abscopal.model import DrugClass, FieldStatus, LesionKind
from abscopal.units import DAYS_PER_MONTH, pct_change

if TYPE_CHECKING:
    from collections.abc import Sequence

    from abscopal.dose.field import LesionField
    from abscopal.model import (
        Lesion,
        LocalTherapy,
        Measurement,
        OtherLocalTherapy,
        SystemicTherapy,
    )

SPONTANEOUS = "Spontaneous regression cannot be excluded (CLINICAL §8.4)."


class Grade(StrEnum):
    """Certainty grade of §8.5: A probable, B possible, C indeterminate."""

    A = "A"
    B = "B"
    C = "C"


class Outcome(StrEnum):
    """How a lesion's assessment ended (§8.5 G0/G1, or graded)."""

    GRADED = "graded"
    NO_RESPONSE = "no_response"
    NOT_EVALUABLE = "not_evaluable"
    OUTSIDE_WINDOW = "outside_window"
    NOT_ABSCOPAL = "not_abscopal"
    IN_FIELD = "in_field"


@dataclass(frozen=True, slots=True, kw_only=True)
class AbscopalSettings:
    """Every threshold and window of §8, with its default (stored in provenance)."""

    min_baseline_ld_mm: float = 10.0  # §8.2
    response_fraction: str = "0.70"  # LD ≤ −30 % (Golden 2015)
    strict_gt: bool = False  # True: Powerski's "> 30 %"
    pd_fraction: str = "1.20"  # ≥ +20 % against the nadir
    pd_min_abs_mm: float = 5.0
    window_start_months: float = 0.5  # §8.3, Hatten 2022
    window_end_months: float = 24.0
    typical_months: tuple[float, float] = (1.0, 6.0)
    late_months: float = 12.0
    baseline_max_days: int = 56
    confirm_min_days: int = 28
    w_sys_before_days: int = 56  # §8.4
    ct_flare_months: float = 3.0  # Messiou 2011
    qualitative_early_months: float = 3.0  # §8.5 G2/G3
    sclerosis_increase: float = 0.3  # project default: rise of the sclerotic fraction = MDA sign
    sclerosis_min: float = 0.5
    exclude_concurrent_cytotoxic: bool = True  # Reynders 2015
    response_capable_classes: frozenset[DrugClass] = frozenset(
        {
            DrugClass.IMMUNOTHERAPY,
            DrugClass.CHEMOTHERAPY,
            DrugClass.TARGETED,
            DrugClass.HORMONAL,
            DrugClass.OTHER,
        }
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionFinding:
    """The abscopal assessment of one lesion for one local therapy."""

    lesion_id: str
    therapy_id: str
    field: FieldStatus
    outcome: Outcome
    grade: Grade | None = None
    t1: date | None = None
    t2: date | None = None
    metric: str | None = None
    pct_change: float | None = None
    best_pct_change: float | None = None
    confirmation: str | None = None
    reasons: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def responded(self) -> bool:
        """True when a response threshold was met in the window."""
        return self.t1 is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientFinding:
    """The patient-level verdict (§8.5, "Patient level")."""

    status: str
    certainty: Grade | None
    lesions: tuple[str, ...]
    reasons: tuple[str, ...]
    abscopal_response: str
    out_of_field_response_rate: float | None
    findings: tuple[LesionFinding, ...] = field(default_factory=tuple)


@dataclass(slots=True)
class _Caps:
    """Grade caps collected along the way, each with its reason."""

    items: list[tuple[Grade, str]] = field(default_factory=list)

    def add(self, grade: Grade, reason: str) -> None:
        self.items.append((grade, reason))

    def grade(self) -> Grade:
        order = [Grade.C, Grade.B]
        return next((g for g in order if any(c == g for c, _ in self.items)), Grade.A)


def _days(start: date, end: date) -> int:
    return (end - start).days


def _responds(m: Measurement, b: Measurement, s: AbscopalSettings) -> bool:
    if not m.present:
        return True
    if s.strict_gt:
        return exact(m.diameter_long_mm) < exact(float(s.response_fraction)) * exact(
            b.diameter_long_mm
        )
    return at_most_fraction(m.diameter_long_mm, s.response_fraction, b.diameter_long_mm)


def _progresses(m: Measurement, nadir_mm: float, s: AbscopalSettings) -> bool:
    ld = m.diameter_long_mm
    return at_least_fraction(ld, s.pd_fraction, nadir_mm) and exact(ld) - exact(nadir_mm) >= exact(
        s.pd_min_abs_mm
    )


def _sclerosis_sign(m: Measurement, b: Measurement, s: AbscopalSettings) -> bool:
    if not m.present or m.sclerotic_fraction is None or b.sclerotic_fraction is None:
        return False
    rise = m.sclerotic_fraction - b.sclerotic_fraction
    return rise >= s.sclerosis_increase and m.sclerotic_fraction >= s.sclerosis_min


@dataclass(slots=True)
class _Response:
    """What the follow-up scans show against b(ℓ) (§8.2)."""

    t1: Measurement | None = None
    metric: str | None = None
    early: bool = False
    best_pct: float = 0.0
    progression: list[date] = field(default_factory=list)
    conflicts: list[date] = field(default_factory=list)


def assess_lesion(  # noqa: PLR0911, PLR0912, PLR0915  (the rules of §8.3–§8.5, one guard each, in order)
    lesion: Lesion,
    measurements: Sequence[Measurement],
    lesion_field: LesionField,
    therapy: LocalTherapy,
    *,
    systemic: Sequence[SystemicTherapy] = (),
    other_local: Sequence[OtherLocalTherapy] = (),
    settings: AbscopalSettings | None = None,
) -> LesionFinding:
    """§8.2–§8.5 for one lesion and one local therapy.

    `other_local` (surgery, ablation, TACE…) aimed elsewhere during W_sys is flagged; one aimed at
    the lesion makes it in field, which the caller states in `lesion_field`.
    """
    s = settings or AbscopalSettings()
    make = partial(
        LesionFinding,
        lesion_id=lesion.lesion_id,
        therapy_id=therapy.therapy_id,
        field=lesion_field.field,
    )
    if lesion_field.field is FieldStatus.IN_FIELD:
        reason = f"G1: in_field for {therapy.therapy_id} ({lesion_field.reason})"
        return make(outcome=Outcome.IN_FIELD, reasons=(reason,))
    series = sorted(measurements, key=lambda m: m.date)
    t0, t_end = therapy.t0, therapy.t_end
    pre = [m for m in series if m.date < t0 and m.present]
    if not pre or _days(pre[-1].date, t0) > s.baseline_max_days:
        reason = (
            f"G0 not_evaluable: no_recent_baseline (none ≤ {s.baseline_max_days} d before t0 {t0})"
        )
        return make(outcome=Outcome.NOT_EVALUABLE, reasons=(lesion_field.reason, reason))
    b = pre[-1]
    reasons = [lesion_field.reason, f"b(ℓ) {b.date}: LD {b.diameter_long_mm:.1f} mm"]
    window = (
        t_end + timedelta(days=s.window_start_months * DAYS_PER_MONTH),
        t_end + timedelta(days=s.window_end_months * DAYS_PER_MONTH),
    )
    after = [m for m in series if m.date > t_end]
    if not any(window[0] <= m.date <= window[1] for m in after):
        reason = f"G0 not_evaluable: no follow-up between {window[0]} and {window[1]} (§8.3)"
        return make(outcome=Outcome.NOT_EVALUABLE, reasons=(*reasons, reason))
    caps = _Caps()
    growing = False
    if len(pre) >= 2:  # trend before treatment (§8.3)
        prev = pre[-2]
        if _responds(b, prev, s):
            reason = f"G1 not_abscopal: response_precedes_therapy ({prev.date} → {b.date})"
            return make(outcome=Outcome.NOT_ABSCOPAL, reasons=(*reasons, reason))
        growing = b.diameter_long_mm > prev.diameter_long_mm
        reasons.append(
            f"§8.3 trend before treatment: {'growing' if growing else 'stable'} since {prev.date}"
        )
    else:
        caps.add(Grade.B, "G3: only one pre-treatment measurement; trend unknown (§8.3)")
    flags = list(lesion_field.flags)
    response = _scan_follow_ups(lesion, b, after, window, s)
    for day in response.conflicts:
        flags.append("metric_conflict")
        caps.add(Grade.C, f"G2: metric_conflict on {day}: LD progression with sclerosis")
    if response.t1 is None:
        what = "outside_window" if response.early else "no_response"
        detail = f"best LD change {response.best_pct:+.1f} %"
        if response.progression:
            detail += f"; progression (≥ +20 % and ≥ +5 mm against the nadir) on {response.progression[0]}"
        return make(
            outcome=Outcome.OUTSIDE_WINDOW if response.early else Outcome.NO_RESPONSE,
            best_pct_change=response.best_pct,
            reasons=(*reasons, f"G0 {what}: {detail} (§8.2)"),
            flags=tuple(dict.fromkeys(flags)),
        )
    t1_m, metric = response.t1, response.metric
    t1 = t1_m.date
    change = pct_change(t1_m.diameter_long_mm, b.diameter_long_mm)
    months_after = _days(t_end, t1) / DAYS_PER_MONTH
    reasons.append(_response_text(t1_m, b, metric, change, months_after))
    if response.early:
        flags.append("early_onset")
        caps.add(
            Grade.C,
            "G2: early_onset: threshold met before t_end + 0.5 months and persisting (§8.3)",
        )
    flags.append(_timing_flag(months_after, s))
    if months_after > s.late_months:
        flags.append("late")
    t2_m, confirmation = _confirmation(
        after, t1_m, metric=metric, b=b, systemic=systemic, caps=caps, reasons=reasons, s=s
    )
    flags.append(confirmation)
    if metric == "mda_sclerosis":  # qualitative evidence (§8.5 G2/G3)
        if _days(t0, t1) <= s.qualitative_early_months * DAYS_PER_MONTH:
            caps.add(Grade.C, "G2: only qualitative evidence with t1 ≤ t0 + 3 months")
        else:
            caps.add(Grade.B, "G3: only qualitative evidence (MDA sign) with t1 > t0 + 3 months")
    starts = [t0, *(x.start_date for x in systemic if x.start_date <= t1)]
    if _in_flare(t1, starts, s) and (t2_m is None or _in_flare(t2_m.date, starts, s)):
        caps.add(
            Grade.B,
            "G3: t1 and t2 both inside the CT flare window (≤ 3 months after a therapy start)",
        )
    _field_caps(lesion_field, caps)
    w_sys = (t0 - timedelta(days=s.w_sys_before_days), t1)
    cytotoxic = _systemic_caps(
        systemic,
        w_sys,
        caps=caps,
        reasons=reasons,
        flags=flags,
        s=s,
        growing=growing,
        quantitative=metric == "diameter_long_mm",
    )
    for o in other_local:
        if lesion.lesion_id not in o.target_lesion_ids and w_sys[0] <= o.date <= t1:
            flags.append("other_local_therapy_in_window")
            reasons.append(
                f"§8.4 recorded: {o.kind} {o.therapy_id} on {o.date}, aimed elsewhere, in W_sys"
            )
    found = partial(
        make,
        t1=t1,
        metric=metric,
        pct_change=change,
        best_pct_change=response.best_pct,
        confirmation=confirmation,
    )
    if cytotoxic is not None:
        return found(
            outcome=Outcome.NOT_ABSCOPAL,
            reasons=(*reasons, cytotoxic),
            flags=tuple(dict.fromkeys(flags)),
        )
    grade = caps.grade()
    reasons.extend(reason for _, reason in caps.items)
    if grade is Grade.A:
        reasons.append("G4: nothing caps the grade: probable abscopal response (A)")
    reasons.append(SPONTANEOUS)
    return found(
        outcome=Outcome.GRADED,
        grade=grade,
        t2=t2_m.date if t2_m else None,
        reasons=tuple(reasons),
        flags=tuple(dict.fromkeys(flags)),
    )


def _scan_follow_ups(
    lesion: Lesion,
    b: Measurement,
    after: Sequence[Measurement],
    window: tuple[date, date],
    s: AbscopalSettings,
) -> _Response:
    """First in-window response (LD before the MDA sclerosis sign), early responses, progression."""
    out = _Response()
    quantitative = b.diameter_long_mm >= s.min_baseline_ld_mm
    may_sclerose = lesion.kind in {LesionKind.LYTIC, LesionKind.MIXED}
    nadir = b.diameter_long_mm
    for m in after:
        out.best_pct = min(out.best_pct, pct_change(m.diameter_long_mm, b.diameter_long_mm))
        ld_response = quantitative and _responds(m, b, s)
        sclerosis = may_sclerose and _sclerosis_sign(m, b, s)
        if m.present and _progresses(m, nadir, s):
            out.progression.append(m.date)
            if sclerosis:
                out.conflicts.append(m.date)
        nadir = min(nadir, m.diameter_long_mm)
        if m.date < window[0]:
            out.early = out.early or ld_response or sclerosis
        elif out.t1 is None and m.date <= window[1]:
            if ld_response or sclerosis:
                out.t1, out.metric = m, "diameter_long_mm" if ld_response else "mda_sclerosis"
            else:
                out.early = False  # an early response that did not persist into the window
    return out


def _response_text(
    t1: Measurement, b: Measurement, metric: str | None, change: float, months: float
) -> str:
    if metric == "diameter_long_mm":
        return (
            f"§8.2 response at t1 {t1.date}: LD {t1.diameter_long_mm:.1f} mm, {change:+.1f} % against "
            f"b(ℓ) (threshold −30 %), {months:.1f} months after t_end"
        )
    return (
        f"§8.2/§7 MDA sign at t1 {t1.date}: sclerosis of a lytic lesion (sclerotic fraction "
        f"{b.sclerotic_fraction:.2f} → {t1.sclerotic_fraction:.2f}), {months:.1f} months after t_end"
    )


def _confirmation(
    after: Sequence[Measurement],
    t1: Measurement,
    *,
    metric: str | None,
    b: Measurement,
    systemic: Sequence[SystemicTherapy],
    caps: _Caps,
    reasons: list[str],
    s: AbscopalSettings,
) -> tuple[Measurement | None, str]:
    """The first scan ≥ 28 d after t1: confirmed, refuted or unconfirmed (§8.3)."""
    t2 = next((m for m in after if _days(t1.date, m.date) >= s.confirm_min_days), None)
    if t2 is None:
        caps.add(Grade.B, "G3: unconfirmed: no scan ≥ 28 d after t1 (§8.3)")
        return None, "unconfirmed"
    if _systemic_event_between(systemic, t1.date, t2.date):
        reasons.append(
            f"§8.3: a systemic therapy started or changed between t1 and t2 {t2.date}; confirmation void"
        )
        caps.add(Grade.B, "G3: unconfirmed (§8.3)")
        return t2, "unconfirmed"
    still = _responds(t2, b, s) if metric == "diameter_long_mm" else _sclerosis_sign(t2, b, s)
    if not still:
        caps.add(Grade.C, f"G2: refuted at {t2.date}: the threshold no longer holds (§8.3)")
        return t2, "refuted"
    reasons.append(f"§8.3 confirmed at t2 {t2.date}")
    return t2, "confirmed"


def _timing_flag(months_after: float, s: AbscopalSettings) -> str:
    low, high = s.typical_months
    return "typical_timing" if low <= months_after <= high else "atypical_timing"


def _in_flare(day: date, starts: Sequence[date], s: AbscopalSettings) -> bool:
    limit = s.ct_flare_months * DAYS_PER_MONTH
    return any(0 <= _days(start, day) <= limit for start in starts)


def _events(therapy: SystemicTherapy) -> list[tuple[str, date]]:
    out = [("started", therapy.start_date)]
    if therapy.stop_date is not None:
        out.append(("stopped", therapy.stop_date))
    out.extend(("changed", d) for d in therapy.dose_change_dates)
    return out


def _systemic_event_between(systemic: Sequence[SystemicTherapy], start: date, end: date) -> bool:
    return any(
        start < when <= end
        for therapy in systemic
        for kind, when in _events(therapy)
        if kind != "stopped"
    )


def _field_caps(lesion_field: LesionField, caps: _Caps) -> None:
    if lesion_field.field is FieldStatus.LOW_DOSE:
        if "above_low_dose_range" in lesion_field.flags:
            caps.add(Grade.C, "G2: above_low_dose_range (Dmean > 20 Gy)")
        else:
            caps.add(Grade.B, "G3: low_dose (1–20 Gy; Menon 2019)")
    elif lesion_field.field is FieldStatus.OUTSIDE_GRID:
        caps.add(Grade.C, "G2: outside_grid: dose unknown")
    elif lesion_field.field is FieldStatus.UNCERTAIN:
        caps.add(Grade.C, "G2: field uncertain (e.g. Y-90 deposition not excluded)")


def _systemic_caps(
    systemic: Sequence[SystemicTherapy],
    w_sys: tuple[date, date],
    *,
    caps: _Caps,
    reasons: list[str],
    flags: list[str],
    s: AbscopalSettings,
    growing: bool,
    quantitative: bool,
) -> str | None:
    """Apply §8.4; return a G1 reason when a cytotoxic start makes the lesion not abscopal."""
    lo, hi = w_sys
    for therapy in systemic:
        events = [(kind, when) for kind, when in _events(therapy) if lo <= when <= hi]
        name = f"{therapy.agent} ({therapy.drug_class.value})"
        active = therapy.start_date < lo and (therapy.stop_date is None or therapy.stop_date >= lo)
        if therapy.drug_class is DrugClass.CHEMOTHERAPY and any(k == "started" for k, _ in events):
            when = therapy.start_date
            if s.exclude_concurrent_cytotoxic:
                return f"G1 not_abscopal: cytotoxic {name} started {when} in W_sys [{lo}, {hi}] (§8.4, Reynders 2015)"
            caps.add(Grade.C, f"G2: cytotoxic {name} started {when} in W_sys")
        elif therapy.drug_class in s.response_capable_classes and events:
            what = ", ".join(f"{k} {d}" for k, d in events)
            caps.add(Grade.C, f"G2: response-capable {name} {what} in W_sys [{lo}, {hi}] (§8.4)")
        elif therapy.drug_class in s.response_capable_classes and active:
            caps.add(Grade.B, f"G3: {name} continued at a stable dose through W_sys (§8.4)")
            if therapy.drug_class is DrugClass.IMMUNOTHERAPY and growing:
                flags.append("possible_pseudoprogression")
        elif therapy.drug_class is DrugClass.BONE_ACTIVE and any(k == "started" for k, _ in events):
            grade = Grade.B if quantitative else Grade.C
            caps.add(
                grade, f"G{'3' if grade is Grade.B else '2'}: bone-active {name} started in W_sys"
            )
        elif events or active:
            reasons.append(f"§8.4 recorded: {name} during W_sys")
    return None


def assess_patient(findings: Sequence[LesionFinding]) -> PatientFinding:
    """Patient-level status, certainty and CIDC-style `abscopal_response` (§8.5)."""
    candidates = [f for f in findings if f.outcome is not Outcome.IN_FIELD]
    evaluable = [f for f in candidates if f.outcome is not Outcome.NOT_EVALUABLE]
    graded = [f for f in candidates if f.grade is not None]
    best = min((f.grade for f in graded if f.grade), key="ABC".index, default=None)
    if best in {Grade.A, Grade.B}:
        status = "abscopal"
    elif best is Grade.C or not evaluable:
        status = "indeterminate"
    else:
        status = "not_abscopal"
    carrying = [Grade.A, Grade.B] if status == "abscopal" else [Grade.C]
    lesions = tuple(sorted({f.lesion_id for f in graded if f.grade in carrying})) if best else ()
    responded = {f.lesion_id for f in evaluable if f.responded}
    evaluable_ids = {f.lesion_id for f in evaluable}
    rate = len(responded) / len(evaluable_ids) if evaluable_ids else None
    reasons = [_summary(status, best, lesions, len(candidates), len(evaluable_ids))]
    reasons.extend(
        f"{f.lesion_id}: {f.reasons[-2] if f.grade else f.reasons[-1]}" for f in candidates
    )
    answer = {"abscopal": "Y", "indeterminate": "UNK"}.get(status, "N")
    return PatientFinding(
        status=status,
        certainty=best,
        lesions=lesions,
        reasons=tuple(reasons),
        abscopal_response=answer,
        out_of_field_response_rate=rate,
        findings=tuple(findings),
    )


def _summary(status: str, best: Grade | None, lesions: Sequence[str], n: int, n_eval: int) -> str:
    if status == "abscopal":
        return f"Abscopal response, grade {best}, in {', '.join(lesions)} ({n_eval} of {n} non-in-field lesions evaluable)."
    if status == "indeterminate" and best is None:
        return f"Indeterminate: no out-of-field lesion is evaluable ({n} candidates)."
    if status == "indeterminate":
        return f"Indeterminate (grade C) in {', '.join(lesions)}: a confounder prevents a call."
    return f"Not abscopal: {n_eval} evaluable out-of-field lesion(s), none with a graded response."
