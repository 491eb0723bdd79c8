"""One patient from folder to verdict: load (io), measure, dose, field, abscopal, outputs.

`load_patient` is the only step that reads files; `analyze` is pure; `run_patient` writes
`results.json` and `report.html` into an output folder, each atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abscopal import DISCLAIMER
from abscopal.abscopal import (
    AbscopalSettings,
    LesionFinding,
    PatientFinding,
    assess_lesion,
    assess_patient,
)
from abscopal.criteria.lesion import best_response, lesion_categories
from abscopal.dose.ebrt import dose_in_mask
from abscopal.dose.field import (
    FieldSettings,
    LesionField,
    activity_reaches_margin,
    classify_ebrt,
    classify_y90,
    distance_to_ptv_mm,
    mask_on_grid,
    min_distance_mm,
    noise_floor_bq_ml,
    ptv_overlap_voxels,
    worst,
)
from abscopal.dose.y90 import Y90DoseSettings, ldm_dose
from abscopal.errors import IngestError
from abscopal.measure import absent, measure_lesion
from abscopal.model import (
    FieldStatus,
    Lesion,
    LesionMask,
    Measurement,
    Patient,
    RadiationCourse,
    Radioembolization,
    Volume,
)
from abscopal.readings import BoneSign, LesionReading, LesionStatus, PatientSeries
from abscopal.units import pct_change

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    from numpy.typing import NDArray

    from abscopal.geometry import Grid
    from abscopal.io.refs import TimepointRefs

logger = logging.getLogger(__name__)
LIBRARIES = ("numpy", "scipy", "scikit-image", "pydicom", "highdicom", "SimpleITK", "matplotlib")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every option that can change a number; stored in provenance."""

    field_rules: FieldSettings = field(default_factory=FieldSettings)
    abscopal: AbscopalSettings = field(default_factory=AbscopalSettings)
    y90: Y90DoseSettings = field(default_factory=Y90DoseSettings)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Timepoint:
    """A CT timepoint with its lesion masks (by lesion_id)."""

    date: date
    ct: Volume
    masks: Mapping[str, LesionMask]
    refs: TimepointRefs | None = None  # DICOM identity, for the SR


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RadiationInputs:
    """An EBRT course with its dose grid (Gy) and its PTV rasterized on the planning CT grid."""

    course: RadiationCourse
    dose: Volume
    ptv: NDArray[np.bool_]
    ptv_grid: Grid


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Y90Inputs:
    """A Y-90 treatment with its activity at administration (Bq/mL), when imaged."""

    therapy: Radioembolization
    activity_at_admin: Volume | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PatientInputs:
    """Everything read from one patient folder."""

    patient: Patient
    timepoints: tuple[Timepoint, ...]
    radiation: tuple[RadiationInputs, ...] = ()
    y90: tuple[Y90Inputs, ...] = ()
    input_sha256: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientAnalysis:
    """The pure result of `analyze`."""

    patient: Patient
    measurements: Mapping[str, tuple[Measurement, ...]]
    fields: Mapping[str, LesionField]
    findings: tuple[LesionFinding, ...]
    verdict: PatientFinding
    settings: Settings


# ---------------------------------------------------------------- loading (the only file access)


def load_patient(path: Path) -> PatientInputs:
    """Read a patient folder (or its manifest): manifest, CT series, SEGs, RTDOSE/RTSTRUCT, PET."""
    from abscopal.io.dicom import index_folder, load_series
    from abscopal.io.manifest import find_manifest, read_manifest
    from abscopal.io.refs import timepoint_refs
    from abscopal.io.seg import read_seg

    manifest_path = find_manifest(path)
    folder = manifest_path.parent
    manifest = read_manifest(manifest_path)
    series = index_folder(folder)
    cts = {s.series_uid: s for s in series if s.modality == "CT"}
    if not cts:
        msg = f"{folder}: no CT series found; a patient folder needs its CT timepoints as DICOM"
        raise IngestError(msg)
    volumes = {uid: load_series(s) for uid, s in cts.items()}
    masks: dict[str, dict[str, LesionMask]] = {uid: {} for uid in volumes}
    seg_files: dict[str, Path] = {}
    for seg in (s for s in series if s.modality == "SEG"):
        for file in seg.files:
            target = _seg_target(file, seg.frame_of_reference_uid, volumes)
            result = read_seg(file, reference=volumes[target].grid)
            masks[target].update({m.lesion_id: m for m in result.masks})
            seg_files[target] = file
    timepoints = tuple(
        sorted(
            (
                Timepoint(
                    date=_volume_date(v, cts[uid].files[0]),
                    ct=v,
                    masks=masks[uid],
                    refs=timepoint_refs(cts[uid].files, seg_files.get(uid)),
                )
                for uid, v in volumes.items()
            ),
            key=lambda t: t.date,
        )
    )
    try:
        patient = manifest.to_patient(tuple(t.date for t in timepoints))
    except ValueError as exc:  # a record refused the manifest's dates
        msg = f"{manifest_path.name}: {exc} (see the README, 'Inputs')"
        raise IngestError(msg) from exc
    patient = _with_seg_lesions(patient, timepoints, manifest_path.name)
    therapies: dict[str, Any] = {t.therapy_id: t for t in patient.timeline.local_therapies}
    radiation = tuple(
        _load_radiation(folder, entry, therapies[entry.therapy_id], series, timepoints)
        for entry in _radiation_entries(manifest)
    )
    y90 = tuple(
        _load_y90(folder, entry, therapies[entry.therapy_id], series)
        for entry in _y90_entries(manifest)
    )
    files = [manifest_path, *(f for s in series for f in s.files)]
    return PatientInputs(
        patient=patient,
        timepoints=timepoints,
        radiation=radiation,
        y90=y90,
        input_sha256={str(f.relative_to(folder)): _sha256(f) for f in files},
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _volume_date(volume: Volume, first_file: Path) -> date:
    if volume.acquisition_date is None:
        msg = (
            f"{first_file}: no AcquisitionDate, SeriesDate or StudyDate; the timepoint needs a date"
        )
        raise IngestError(msg)
    return volume.acquisition_date


def _seg_target(file: Path, frame_uid: str | None, volumes: Mapping[str, Volume]) -> str:
    """The CT series a SEG was drawn on: the referenced series, else the one on its frame."""
    from abscopal.io.seg import referenced_series_uid

    referenced = referenced_series_uid(file)
    if referenced is not None and referenced in volumes:
        return referenced
    same_frame = [uid for uid, v in volumes.items() if v.grid.frame_of_reference_uid == frame_uid]
    if len(same_frame) == 1:
        return same_frame[0]
    msg = (
        f"{file.name}: the SEG references series {referenced} (ReferencedSeriesSequence), which is "
        "not among the CT series of this patient folder; add that CT series or remove the SEG"
    )
    raise IngestError(msg)


def _with_seg_lesions(
    patient: Patient, timepoints: Sequence[Timepoint], manifest_name: str
) -> Patient:
    """Add lesions seen in a SEG but not listed in the manifest (unknown organ, soft tissue).

    A manifest lesion that no SEG segments is an error: an override of a lesion that is not there.
    """
    from dataclasses import replace

    known = {lesion.lesion_id for lesion in patient.lesions}
    segmented = {lid for t in timepoints for lid in t.masks}
    for i, lesion in enumerate(patient.lesions):
        if lesion.lesion_id not in segmented:
            msg = (
                f"{manifest_name}: lesions.{i}.lesion_id {lesion.lesion_id!r} matches no segment "
                f"(TrackingID or SegmentLabel) in any SEG; found {sorted(segmented)}"
            )
            raise IngestError(msg)
    seen = sorted(segmented - known)
    if seen:
        logger.warning(
            "lesions %s are not in the manifest; organ and kind unknown", ", ".join(seen)
        )
    return replace(patient, lesions=(*patient.lesions, *(Lesion(lesion_id=lid) for lid in seen)))


def _radiation_entries(manifest: Any) -> list[Any]:
    return [e for e in manifest.local_therapies if e.type == "radiation"]


def _y90_entries(manifest: Any) -> list[Any]:
    return [e for e in manifest.local_therapies if e.type == "radioembolization"]


def _resolve(
    folder: Path, relative: str | None, series: Sequence[Any], modality: str, what: str
) -> Path:
    if relative is not None:
        path = folder / relative
        if not path.exists():
            msg = f"manifest: {what} {relative!r} does not exist under {folder}; fix the path"
            raise IngestError(msg)
        return path
    found = [f for s in series if s.modality == modality for f in s.files]
    if len(found) != 1:
        msg = f"{folder}: expected one {modality} file for {what}, found {len(found)}; name it in the manifest"
        raise IngestError(msg)
    only: Path = found[0]
    return only


def _load_radiation(
    folder: Path,
    entry: Any,
    course: RadiationCourse,
    series: Sequence[Any],
    timepoints: Sequence[Timepoint],
) -> RadiationInputs:
    from abscopal.io.rt import rasterize, read_rtdose, read_rtstruct

    dose = read_rtdose(_resolve(folder, entry.rtdose, series, "RTDOSE", "rtdose"))
    struct_path = _resolve(folder, entry.rtstruct, series, "RTSTRUCT", "rtstruct")
    struct = read_rtstruct(struct_path)
    if entry.target not in struct.rois:
        msg = (
            f"{struct_path.name}: no ROI named {entry.target!r} (StructureSetROISequence); "
            f"found {sorted(struct.rois)}; set 'target' in the manifest"
        )
        raise IngestError(msg)
    planning = [
        t for t in timepoints if t.ct.grid.frame_of_reference_uid == struct.frame_of_reference_uid
    ]
    if not planning:
        msg = (
            f"{struct_path.name}: no CT series on the structure set's FrameOfReferenceUID "
            f"{struct.frame_of_reference_uid}; add the planning CT to the patient folder"
        )
        raise IngestError(msg)
    grid = planning[-1].ct.grid
    ptv = rasterize(
        struct.rois[entry.target], grid, frame_of_reference_uid=struct.frame_of_reference_uid
    )
    return RadiationInputs(course=course, dose=dose.volume, ptv=ptv, ptv_grid=grid)


def _load_y90(
    folder: Path, entry: Any, therapy: Radioembolization, series: Sequence[Any]
) -> Y90Inputs:
    from abscopal.io.pet import y90_activity_at_admin

    if entry.post_treatment_imaging is None:
        return Y90Inputs(therapy=therapy, activity_at_admin=None)
    root = (folder / entry.post_treatment_imaging).resolve()
    pets = [
        s
        for s in series
        if s.modality == "PT" and all(f.resolve().is_relative_to(root) for f in s.files)
    ]
    if len(pets) != 1:
        msg = (
            f"manifest: post_treatment_imaging {entry.post_treatment_imaging!r} holds {len(pets)} PET "
            "series; point it at the folder of exactly one quantitative Y-90 PET series"
        )
        raise IngestError(msg)
    activity, _ = y90_activity_at_admin(pets[0])
    return Y90Inputs(therapy=therapy, activity_at_admin=activity)


# ---------------------------------------------------------------- analysis (pure)


def analyze(inputs: PatientInputs, settings: Settings | None = None) -> PatientAnalysis:
    """Measure, classify and assess every lesion of one patient."""
    s = settings or Settings()
    patient = inputs.patient
    measurements = _measure_all(patient, inputs.timepoints)
    fields = {lesion.lesion_id: _field(lesion, inputs, s) for lesion in patient.lesions}
    findings: list[LesionFinding] = []
    therapies = patient.timeline.local_therapies
    for lesion in patient.lesions:
        per_therapy = [
            assess_lesion(
                lesion,
                measurements[lesion.lesion_id],
                fields[lesion.lesion_id]
                if len(therapies) == 1
                else _field_for(lesion, t.therapy_id, inputs, s),
                t,
                systemic=patient.timeline.systemic_therapies,
                other_local=patient.timeline.other_local_therapies,
                settings=s.abscopal,
            )
            for t in therapies
        ]
        if per_therapy:
            findings.append(min(per_therapy, key=_finding_rank))
    verdict = assess_patient(findings)
    return PatientAnalysis(
        patient=patient,
        measurements=measurements,
        fields=fields,
        findings=tuple(findings),
        verdict=verdict,
        settings=s,
    )


def _finding_rank(f: LesionFinding) -> tuple[int, str]:
    order = {"A": 0, "B": 1, "C": 2}
    return (order.get(f.grade.value, 3) if f.grade else 3, f.therapy_id)


def _measure_all(
    patient: Patient, timepoints: Sequence[Timepoint]
) -> dict[str, tuple[Measurement, ...]]:
    out: dict[str, tuple[Measurement, ...]] = {}
    for lesion in patient.lesions:
        series = []
        for t in timepoints:
            mask = t.masks.get(lesion.lesion_id)
            m = (
                measure_lesion(mask, t.ct, date=t.date)
                if mask is not None
                else absent(lesion.lesion_id, date=t.date)
            )
            series.append(m)
        out[lesion.lesion_id] = tuple(series)
    return out


def _planning_mask(
    lesion_id: str, frame_uid: str | None, inputs: PatientInputs, before: date
) -> LesionMask | None:
    """The lesion's latest mask on `frame_uid` dated before the therapy (else the latest at all)."""
    on_frame = [
        t
        for t in inputs.timepoints
        if t.ct.grid.frame_of_reference_uid == frame_uid and lesion_id in t.masks
    ]
    earlier = [t for t in on_frame if t.date <= before] or on_frame
    return earlier[-1].masks[lesion_id] if earlier else None


def _field(lesion: Lesion, inputs: PatientInputs, s: Settings) -> LesionField:
    fields = [
        _field_for(lesion, t.therapy_id, inputs, s) for t in inputs.patient.timeline.local_therapies
    ]
    if not fields:
        return LesionField(
            lesion_id=lesion.lesion_id,
            therapy_id="",
            field=FieldStatus.OUT_OF_FIELD,
            rule="-",
            reason="no local therapy in the manifest",
        )
    return worst(fields)


def _field_for(lesion: Lesion, therapy_id: str, inputs: PatientInputs, s: Settings) -> LesionField:
    aimed = [
        o
        for o in inputs.patient.timeline.other_local_therapies
        if lesion.lesion_id in o.target_lesion_ids
    ]
    if aimed:  # CLINICAL §8.1: surgery, ablation, TACE… aimed at the lesion make it in field
        o = aimed[0]
        return LesionField(
            lesion_id=lesion.lesion_id,
            therapy_id=therapy_id,
            field=FieldStatus.IN_FIELD,
            rule="L1",
            reason=f"L1: {o.kind} {o.therapy_id} on {o.date} aimed at the lesion (CLINICAL §8.1)",
        )
    for rt in inputs.radiation:
        if rt.course.therapy_id == therapy_id:
            return _ebrt_field(lesion, rt, inputs, s)
    for y in inputs.y90:
        if y.therapy.therapy_id == therapy_id:
            return _y90_field(lesion, y, inputs, s)
    msg = f"local therapy {therapy_id!r} has no loaded inputs"
    raise IngestError(msg)


def _ebrt_field(
    lesion: Lesion, rt: RadiationInputs, inputs: PatientInputs, s: Settings
) -> LesionField:
    frame = rt.dose.grid.frame_of_reference_uid
    mask = _planning_mask(lesion.lesion_id, frame, inputs, rt.course.start_date)
    if mask is None:
        return LesionField(
            lesion_id=lesion.lesion_id,
            therapy_id=rt.course.therapy_id,
            field=FieldStatus.UNCERTAIN,
            rule="-",
            reason="no mask of the lesion on the dose grid's frame of reference (register the follow-up CT)",
        )
    dose = dose_in_mask(rt.dose, mask)
    distance = distance_to_ptv_mm(rt.ptv, rt.ptv_grid)
    return classify_ebrt(
        lesion_id=lesion.lesion_id,
        therapy_id=rt.course.therapy_id,
        prescription_gy=rt.course.prescription_gy,
        overlap_voxels=ptv_overlap_voxels(mask, rt.ptv, rt.ptv_grid),
        fraction_in_grid=dose.fraction_in_grid,
        dose_mean_gy=dose.dose_mean_gy,
        dose_max_gy=dose.dose_max_gy,
        min_distance_to_ptv_mm=min_distance_mm(mask, distance, rt.ptv_grid),
        settings=s.field_rules,
    )


def _y90_field(lesion: Lesion, y: Y90Inputs, inputs: PatientInputs, s: Settings) -> LesionField:
    dose_mean = dose_max = near = None
    unknown = "the lesion has no mask on the post-treatment image's frame of reference"
    if y.activity_at_admin is not None:
        frame = y.activity_at_admin.grid.frame_of_reference_uid
        mask = _planning_mask(lesion.lesion_id, frame, inputs, y.therapy.date)
        if mask is not None:
            stats = dose_in_mask(ldm_dose(y.activity_at_admin, s.y90), mask)
            unknown = "the lesion lies outside the post-treatment image's field of view"
            if stats.fraction_in_grid > 0:  # the imaged part of the lesion shows what was deposited
                dose_mean = stats.dose_mean_gy or stats.dose_mean_in_grid_gy
                dose_max = stats.dose_max_gy
                act = y.activity_at_admin
                near = activity_reaches_margin(
                    mask_on_grid(mask, act.grid),
                    act.array,
                    act.grid,
                    noise_floor=noise_floor_bq_ml(act.array, act.grid),
                    margin_mm=s.field_rules.y90_margin_mm,
                )
    return classify_y90(
        lesion_id=lesion.lesion_id,
        therapy_id=y.therapy.therapy_id,
        organ=lesion.organ,
        imaging_available=y.activity_at_admin is not None,
        dose_mean_gy=dose_mean,
        dose_max_gy=dose_max,
        activity_near=near,
        unknown_reason=unknown,
        settings=s.field_rules,
    )


# ---------------------------------------------------------------- outputs


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
        "provenance": provenance(inputs, analysis.settings),
    }


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
            _planning_mask(x.lesion_id, frame, inputs, before) for x in analysis.patient.lesions
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
