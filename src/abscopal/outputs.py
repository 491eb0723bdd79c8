"""What one analysed patient becomes: the result dictionary and the files `analyze` writes.

`result_dict` turns a `PatientAnalysis` into the JSON of `abscopal analyze --json`; `run_patient`
loads, analyses and writes `results.json`, the HTML/PDF report, the SR, CSV and Parquet.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from abscopal import DISCLAIMER
from abscopal.criteria.lesion import best_response, lesion_categories
from abscopal.dose.y90 import ldm_dose
from abscopal.model import (
    FieldStatus,
    Lesion,
    LesionMask,
    Measurement,
    RadiationCourse,
    Radioembolization,
    Volume,
)
from abscopal.pipeline import (
    PatientAnalysis,
    PatientInputs,
    Settings,
    analyze,
    load_patient,
    planning_mask,
)
from abscopal.readings import BoneSign, LesionReading, LesionStatus, PatientSeries
from abscopal.units import pct_change

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from abscopal.abscopal import LesionFinding
    from abscopal.dose.field import LesionField
    from abscopal.tracking import TrackedTimepoint

LIBRARIES = ("numpy", "scipy", "scikit-image", "pydicom", "highdicom", "SimpleITK", "matplotlib")


def provenance(inputs: PatientInputs, settings: Settings) -> dict[str, Any]:
    """Versions, input hashes and every setting that can change a number."""
    return {
        "abscopal": version("abscopal"),
        "libraries": {name: version(name) for name in LIBRARIES},
        "input_sha256": dict(inputs.input_sha256),
        "criteria": "lesion-level RECIST 1.1 thresholds; abscopal rules CLINICAL.md §8",
        "settings": json.loads(json.dumps(asdict(settings), default=_jsonable)),
    }


def _jsonable(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


CRITERIA_IN_RESULTS = ("recist11", "mda")  # size-based for all lesions; MD Anderson for bone


def patient_series(analysis: PatientAnalysis) -> PatientSeries | None:
    """The measured lesions as criteria readings, from the last scan before the first therapy.

    A lytic or mixed lesion's segmented long axis stands for its soft-tissue component (the SEG
    does not separate them), its short axis for the MD Anderson perpendicular diameter, and a rise
    of its sclerotic fraction (CLINICAL §7: fill-in or sclerosis) for the MDA fill-in sign.
    """
    therapies = analysis.patient.timeline.local_therapies
    if not therapies:
        return None
    t0 = min(t.t0 for t in therapies)
    dates = sorted({m.date for ms in analysis.measurements.values() for m in ms})
    before = [d for d in dates if d < t0]
    if not before:
        return None
    baseline = before[-1]
    s = analysis.settings.abscopal
    readings = []
    for lesion in analysis.patient.lesions:
        series = {m.date: m for m in analysis.measurements[lesion.lesion_id]}
        base = series.get(baseline)
        for day in (d for d in dates if d >= baseline):
            m = series[day]
            if not m.present and (base is None or not base.present) and day == baseline:
                continue  # not there yet: it enters as a new lesion when it appears
            signs: frozenset[BoneSign] = frozenset()
            if base is not None and base.present and lesion.kind.value in {"lytic", "mixed"}:
                rise = (m.sclerotic_fraction or 0.0) - (base.sclerotic_fraction or 0.0)
                if (
                    m.present
                    and rise >= s.sclerosis_increase
                    and (m.sclerotic_fraction or 0) >= s.sclerosis_min
                ):
                    signs = frozenset({BoneSign.FILL_IN})
            ld = Decimal(f"{m.diameter_long_mm:.1f}")
            readings.append(
                LesionReading(
                    lesion_id=lesion.lesion_id,
                    date=day,
                    organ=lesion.organ,
                    kind=lesion.kind,
                    status=LesionStatus.PRESENT if m.present else LesionStatus.ABSENT,
                    diameter_long_mm=ld if m.present else None,
                    diameter_short_mm=Decimal(f"{m.diameter_short_mm:.1f}") if m.present else None,
                    diameter_perp_mm=Decimal(f"{m.diameter_short_mm:.1f}") if m.present else None,
                    soft_tissue_long_mm=ld
                    if m.present and lesion.kind.value in {"lytic", "mixed"}
                    else None,
                    bone_signs=signs,
                )
            )
    return PatientSeries(
        patient_id=analysis.patient.patient_id,
        readings=tuple(readings),
        baseline_date=baseline,
        therapy_start=t0,
    )


def criteria_results(analysis: PatientAnalysis) -> dict[str, Any]:
    """RECIST 1.1 and MD Anderson on all lesions and on the out-of-field ones only (§8.2)."""
    from abscopal.criteria import CRITERIA

    series = patient_series(analysis)
    if series is None:
        return {}
    outside = [i for i, f in analysis.fields.items() if f.field is not FieldStatus.IN_FIELD]
    out: dict[str, Any] = {}
    for key in CRITERIA_IN_RESULTS:
        criterion = CRITERIA[key]
        out[key] = {}
        for subset, ids in (("all_lesions", None), ("out_of_field", outside)):
            assessed = criterion.assess(series, lesion_ids=ids)
            out[key][subset] = {
                "best_response": assessed.best_response.category.value,
                "timepoints": [
                    {
                        "date": a.date.isoformat(),
                        "category": a.category.value,
                        "rules": list(a.rules),
                        "ne_reason": a.ne_reason,
                    }
                    for a in assessed.timepoints
                ],
            }
    return out


def result_dict(analysis: PatientAnalysis, inputs: PatientInputs) -> dict[str, Any]:
    """The JSON result of one patient: the keys of `abscopal analyze --json` and more."""
    findings = {f.lesion_id: f for f in analysis.findings}
    verdict = analysis.verdict
    criteria = criteria_results(analysis)
    timeline = analysis.patient.timeline
    return {
        "patient_id": analysis.patient.patient_id,
        "primary_cancer": analysis.patient.primary_cancer,
        "disclaimer": DISCLAIMER,
        "lesions": [
            _lesion_dict(
                lesion,
                analysis.measurements[lesion.lesion_id],
                analysis.fields[lesion.lesion_id],
                findings.get(lesion.lesion_id),
                timeline,
            )
            for lesion in analysis.patient.lesions
        ],
        "abscopal": {
            "status": verdict.status,
            "certainty": verdict.certainty.value if verdict.certainty else None,
            "lesions": list(verdict.lesions),
            "reasons": list(verdict.reasons),
            "abscopal_response": verdict.abscopal_response,
            "out_of_field_response_rate": verdict.out_of_field_response_rate,
            "out_of_field_best_response": {
                key: value["out_of_field"]["best_response"] for key, value in criteria.items()
            },
        },
        "criteria": criteria,
        "timeline": {
            "local_therapies": [_therapy_dict(t) for t in timeline.local_therapies],
            "systemic_therapies": [
                {
                    "agent": s.agent,
                    "drug_class": s.drug_class.value,
                    "start_date": s.start_date.isoformat(),
                    "stop_date": s.stop_date.isoformat() if s.stop_date else None,
                }
                for s in timeline.systemic_therapies
            ],
            "scan_dates": [d.isoformat() for d in timeline.scan_dates],
        },
        "tracking": [_tracking_dict(t) for t in inputs.tracking],
        "provenance": provenance(inputs, analysis.settings),
    }


def _tracking_dict(t: TrackedTimepoint) -> dict[str, Any]:
    """How each segment of one timepoint got its lesion id, with the evidence."""
    reg = t.registration
    return {
        "date": t.date.isoformat(),
        "segments": [
            {"segment": name, "lesion_id": lesion_id, "rule": t.rules[name].value}
            for name, lesion_id in t.lesion_ids.items()
        ],
        "links": [
            {
                "kind": link.kind.value,
                "lesion_id": link.lesion_id,
                "baseline_ids": list(link.baseline_ids),
                "follow_up_ids": list(link.follow_up_ids),
                "distance_mm": link.distance_mm,
                "overlap": link.overlap,
                "evidence": link.evidence,
            }
            for link in t.links
        ],
        "registration": None
        if reg is None
        else {
            "kind": reg.kind,
            "rotation_deg": reg.rotation_deg,
            "translation_mm": [float(v) for v in reg.offset_mm],
            "bone_weighted": reg.bone_weighted,
        },
    }


_FIELD_KEYS_SHOWN = frozenset({"lesion_id", "field", "rule", "reason", "flags"})


def _field_evidence(lesion_field: LesionField) -> dict[str, Any]:
    """The deciding therapy, every dose and distance behind the field status, and its settings."""
    return {k: v for k, v in lesion_field.to_dict().items() if k not in _FIELD_KEYS_SHOWN}


def _therapy_dict(t: RadiationCourse | Radioembolization) -> dict[str, Any]:
    if isinstance(t, RadiationCourse):
        label = f"{t.technique.upper()} {t.prescription_gy:g} Gy / {t.fractions} fx to {t.target}"
        kind = "radiation"
    else:
        label = f"Y-90 {t.device} {t.activity_bq / 1e9:.2f} GBq, {t.territory}"
        kind = "radioembolization"
    return {
        "therapy_id": t.therapy_id,
        "kind": kind,
        "start_date": t.t0.isoformat(),
        "end_date": t.t_end.isoformat(),
        "label": label,
    }


def _lesion_dict(
    lesion: Lesion,
    series: Sequence[Measurement],
    lesion_field: LesionField,
    finding: LesionFinding | None,
    timeline: Any,
) -> dict[str, Any]:
    first_t0 = min((t.t0 for t in timeline.local_therapies), default=None)
    pre = [m for m in series if m.present and (first_t0 is None or m.date < first_t0)]
    baseline = pre[-1] if pre else None
    follow = [m for m in series if baseline is not None and m.date > baseline.date]
    categories = lesion_categories(baseline, follow) if baseline else []
    changes = (
        [pct_change(m.diameter_long_mm, baseline.diameter_long_mm) for m in follow]
        if baseline
        else []
    )
    return {
        "lesion_id": lesion.lesion_id,
        "organ": lesion.organ,
        "kind": lesion.kind.value,
        "field": lesion_field.field.value,
        "dose_mean_gy": lesion_field.dose_mean_gy,
        "dose_max_gy": lesion_field.dose_max_gy,
        "field_rule": lesion_field.rule,
        "field_reasons": [lesion_field.reason],
        "field_flags": list(lesion_field.flags),
        "min_distance_to_ptv_mm": lesion_field.min_distance_to_ptv_mm,
        "field_evidence": _field_evidence(lesion_field),
        "best_response": best_response(categories).value,
        "best_pct_change": min(changes) if changes else None,
        "finding": None
        if finding is None
        else {
            "therapy_id": finding.therapy_id,
            "grade": finding.grade.value if finding.grade else None,
            "outcome": finding.outcome.value,
            "t1": finding.t1.isoformat() if finding.t1 else None,
            "t2": finding.t2.isoformat() if finding.t2 else None,
            "metric": finding.metric,
            "pct_change": finding.pct_change,
            "confirmation": finding.confirmation,
            "reasons": list(finding.reasons),
            "flags": list(finding.flags),
        },
        "measurements": [_measurement_dict(m, baseline, series) for m in series],
    }


def _measurement_dict(
    m: Measurement, baseline: Measurement | None, series: Sequence[Measurement]
) -> dict[str, Any]:
    earlier = [
        x.diameter_long_mm
        for x in series
        if baseline is not None and baseline.date <= x.date < m.date
    ]
    nadir = min(earlier) if earlier else None
    return {
        "date": m.date.isoformat(),
        "present": m.present,
        "voxel_count": m.voxel_count,
        "volume_ml": m.volume_ml,
        "diameter_long_mm": m.diameter_long_mm,
        "diameter_short_mm": m.diameter_short_mm,
        "hu_mean": m.hu_mean,
        "sclerotic_fraction": m.sclerotic_fraction,
        "pct_change_baseline": pct_change(m.diameter_long_mm, baseline.diameter_long_mm)
        if baseline
        else None,
        "pct_change_nadir": pct_change(m.diameter_long_mm, nadir) if nadir else None,
    }


def key_images(analysis: PatientAnalysis, inputs: PatientInputs) -> list[Any]:
    """Baseline, best-response and last follow-up images of every lesion, for the report."""
    from abscopal.report.html import KeyImage

    out: list[KeyImage] = []
    for lesion in analysis.patient.lesions:
        seen = [t for t in inputs.timepoints if lesion.lesion_id in t.masks]
        if not seen:
            continue
        series = {m.date: m for m in analysis.measurements[lesion.lesion_id]}
        best = min(seen, key=lambda t: series[t.date].diameter_long_mm)
        picks = {"baseline": seen[0], "best response": best, "last follow-up": seen[-1]}
        chosen: dict[date, str] = {}
        for label, t in picks.items():
            chosen.setdefault(t.date, label)
        by_date = {t.date: t for t in seen}
        out.extend(
            KeyImage(
                lesion_id=lesion.lesion_id,
                date=d,
                label=label,
                image=by_date[d].ct,
                mask=by_date[d].masks[lesion.lesion_id],
            )
            for d, label in sorted(chosen.items())
        )
    return out


def dose_maps(analysis: PatientAnalysis, inputs: PatientInputs) -> list[Any]:
    """The dose of every course and the Y-90 LDM dose, with the lesions on each frame."""
    from abscopal.report.html import DoseMap

    def masks_on(volume: Volume, before: date) -> list[LesionMask]:
        frame = volume.grid.frame_of_reference_uid
        found = (
            planning_mask(x.lesion_id, frame, inputs, before) for x in analysis.patient.lesions
        )
        return [m for m in found if m is not None]

    out = []
    for rt in inputs.radiation:
        course = rt.course
        label = f"{course.therapy_id}: planned dose, {course.prescription_gy:g} Gy in {course.fractions} fx"
        out.append(DoseMap(label=label, volume=rt.dose, masks=masks_on(rt.dose, course.start_date)))
    for y in inputs.y90:
        if y.activity_at_admin is not None:
            dose = ldm_dose(y.activity_at_admin, analysis.settings.y90)
            label = f"{y.therapy.therapy_id}: Y-90 absorbed dose, local deposition from the post-treatment PET"
            out.append(DoseMap(label=label, volume=dose, masks=masks_on(dose, y.therapy.date)))
    return out


def run_patient(
    path: Path,
    out_dir: Path,
    settings: Settings | None = None,
    *,
    pdf: bool = True,
    deidentify: bool = False,
    date_shift_days: int | None = None,
) -> dict[str, Any]:
    """Analyze one patient folder and write its outputs into `out_dir`.

    `results.json`, `report.html` (and `report.pdf`), `lesions.csv` and `lesions.parquet`, and one
    DICOM SR TID 1500 per timepoint in `sr/`. With `deidentify`, every output carries a pseudonym
    and shifted dates instead of the patient's identity (see `abscopal.deid`). The folder appears
    whole or not at all: it is built beside `out_dir` and renamed into place.
    """
    from dataclasses import replace

    from abscopal.atomic import atomic_dir
    from abscopal.deid import METHOD, deidentifier
    from abscopal.report.html import write_patient_report
    from abscopal.report.pdf import write_pdf
    from abscopal.report.sr import write_timepoint_sr
    from abscopal.report.tables import write_lesion_tables

    inputs = load_patient(path)
    analysis = analyze(inputs, settings)
    result = result_dict(analysis, inputs)
    images = key_images(analysis, inputs)
    deid = deidentifier(result["patient_id"], shift_days=date_shift_days) if deidentify else None
    if deid is not None:
        result = deid.result(result)
        images = [replace(k, date=deid.day(k.date)) for k in images]
    with atomic_dir(out_dir) as tmp:
        html = write_patient_report(tmp, result, images, dose_maps(analysis, inputs))
        if pdf:
            write_pdf(html, tmp / "report.pdf")
        write_lesion_tables(tmp, result)
        for t in inputs.timepoints:
            if t.refs is None:
                continue
            day = t.date if deid is None else deid.day(t.date)
            refs = t.refs if deid is None else deid.refs(t.refs)
            method = None if deid is None else METHOD
            sr_path = tmp / "sr" / f"{day:%Y%m%d}.dcm"
            write_timepoint_sr(sr_path, result, day, refs, deidentification_method=method)
        text = json.dumps(result, indent=2, default=_jsonable) + "\n"
        (tmp / "results.json").write_text(text, encoding="utf-8")
    return result
