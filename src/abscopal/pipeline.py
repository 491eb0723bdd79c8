"""One patient from folder to verdict: load (io), measure, dose, field, abscopal, outputs.

`load_patient` is the only step that reads files; `analyze` is pure; `run_patient` writes
`results.json` and `report.html` into an output folder, each atomically.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abscopal.abscopal import (
    AbscopalSettings,
    LesionFinding,
    PatientFinding,
    assess_lesion,
    assess_patient,
)
from abscopal.dose.dvh import structure_dvh_from_mask
from abscopal.dose.field import (
    FieldSettings,
    LesionField,
    RegionDistance,
    classify_ebrt,
    classify_y90,
    distance_to_ptv_mm,
    gap_mm,
    mask_on_grid,
    min_distance_mm,
    noise_floor_bq_ml,
    ptv_overlap_voxels,
    region_distance,
    worst,
    y90_loaded_region,
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

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    from numpy.typing import NDArray

    from abscopal.geometry import Grid
    from abscopal.io.manifest import Manifest
    from abscopal.io.refs import TimepointRefs
    from abscopal.tracking import MatchOverride, Segment, TrackedTimepoint

logger = logging.getLogger(__name__)


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
    tracking: tuple[TrackedTimepoint, ...] = ()  # per timepoint: lesion ids, rules, evidence


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
    """Read a patient folder (or its manifest): manifest, CT series, SEGs, RTDOSE/RTSTRUCT, PET.

    Lesions keep one id across timepoints: the SEG's own tracking where it states it, else
    registration and geometric matching, a manifest `matches` entry over both
    (`abscopal.tracking`); `PatientInputs.tracking` keeps how and the evidence.
    """
    from abscopal.io.dicom import index_folder
    from abscopal.io.manifest import find_manifest, read_manifest

    manifest_path = find_manifest(path)
    folder = manifest_path.parent
    manifest = read_manifest(manifest_path)
    series = index_folder(folder)
    timepoints, tracking = _tracked_timepoints(folder, series, _overrides(manifest, manifest_path))
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
        tracking=tracking,
    )


def _tracked_timepoints(
    folder: Path, series: Sequence[Any], overrides: Sequence[MatchOverride]
) -> tuple[tuple[Timepoint, ...], tuple[TrackedTimepoint, ...]]:
    """The CT timepoints in date order, their masks under the lesion ids tracking gives them."""
    from abscopal.io.dicom import load_series
    from abscopal.io.refs import timepoint_refs
    from abscopal.tracking import Scan, track_lesions

    cts = {s.series_uid: s for s in series if s.modality == "CT"}
    if not cts:
        msg = f"{folder}: no CT series found; a patient folder needs its CT timepoints as DICOM"
        raise IngestError(msg)
    volumes = {uid: load_series(s) for uid, s in cts.items()}
    masks, segments, seg_files = _read_segs(series, volumes)
    scans = sorted(
        (
            (
                Scan(
                    date=_volume_date(v, cts[uid].files[0]),
                    ct=v,
                    masks=masks[uid],
                    segments=segments[uid],
                ),
                uid,
            )
            for uid, v in volumes.items()
        ),
        key=lambda pair: pair[0].date,
    )
    tracking = track_lesions([scan for scan, _ in scans], overrides=overrides)
    timepoints = tuple(
        Timepoint(
            date=scan.date,
            ct=scan.ct,
            masks=record.renamed(scan.masks),
            refs=timepoint_refs(cts[uid].files, seg_files.get(uid)),
        )
        for (scan, uid), record in zip(scans, tracking, strict=True)
    )
    return timepoints, tracking


def _read_segs(
    series: Sequence[Any], volumes: Mapping[str, Volume]
) -> tuple[dict[str, dict[str, LesionMask]], dict[str, dict[str, Segment]], dict[str, Path]]:
    """Every SEG's masks and segment identities by the CT series it was drawn on."""
    from abscopal.io.seg import read_seg
    from abscopal.tracking import Segment

    masks: dict[str, dict[str, LesionMask]] = {uid: {} for uid in volumes}
    segments: dict[str, dict[str, Segment]] = {uid: {} for uid in volumes}
    seg_files: dict[str, Path] = {}
    for seg in (s for s in series if s.modality == "SEG"):
        for file in seg.files:
            target = _seg_target(file, seg.frame_of_reference_uid, volumes)
            result = read_seg(file, reference=volumes[target].grid)
            masks[target].update({m.lesion_id: m for m in result.masks})
            segments[target].update(
                {
                    m.lesion_id: Segment(name=m.lesion_id, label=label, tracking_uid=uid)
                    for m, (label, uid) in zip(result.masks, result.segment_identities, strict=True)
                }
            )
            seg_files[target] = file
    return masks, segments, seg_files


def _overrides(manifest: Manifest, manifest_path: Path) -> list[MatchOverride]:
    """The manifest's `matches`, each with where it stands for error messages."""
    from abscopal.io.manifest import field_line
    from abscopal.tracking import MatchOverride

    out = []
    for i, m in enumerate(manifest.matches):
        line = field_line(manifest_path, ("matches", str(i)))
        at = f" line {line}" if line else ""
        out.append(
            MatchOverride(
                date=m.date,
                segment=m.segment,
                lesion_id=m.lesion_id,
                where=f"{manifest_path.name}{at}: matches.{i}",
            )
        )
    return out


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
                f"(TrackingID or SegmentLabel) in any SEG, nor a lesion tracked to one; found "
                f"{sorted(segmented)}: rename the entry, or add a 'matches' entry"
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
    therapies = patient.timeline.local_therapies
    maps = _therapy_maps(inputs, s)
    per_pair = {
        (lesion.lesion_id, t.therapy_id): _field_for(lesion, t.therapy_id, inputs, s, maps)
        for lesion in patient.lesions
        for t in therapies
    }
    fields = {
        lesion.lesion_id: _worst_field(
            lesion, [per_pair[lesion.lesion_id, t.therapy_id] for t in therapies]
        )
        for lesion in patient.lesions
    }
    findings: list[LesionFinding] = []
    for lesion in patient.lesions:
        per_therapy = [
            assess_lesion(
                lesion,
                measurements[lesion.lesion_id],
                per_pair[lesion.lesion_id, t.therapy_id],
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


def planning_mask(
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


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Maps:
    """What every lesion of one local therapy shares, computed once per therapy."""

    ptv_distance_mm: NDArray[np.float64] | None = None  # EBRT: distance to the PTV on its grid
    y90_dose: Volume | None = None  # Y-90: LDM dose from the post-treatment image
    noise_floor_bq_ml: float | None = None  # Y-90: background mean + 3 SD of that image
    loaded: RegionDistance | None = None  # Y-90: activity above the floor, for every lesion's gap
    reference_dose_gy: float | None = None  # Y-90: mean LDM of the loaded region (D_ref)


def _therapy_maps(inputs: PatientInputs, s: Settings) -> dict[str, _Maps]:
    maps = {
        rt.course.therapy_id: _Maps(ptv_distance_mm=distance_to_ptv_mm(rt.ptv, rt.ptv_grid))
        for rt in inputs.radiation
    }
    for y in inputs.y90:
        act = y.activity_at_admin
        maps[y.therapy.therapy_id] = _Maps() if act is None else _y90_maps(act, s)
    return maps


def _y90_maps(act: Volume, s: Settings) -> _Maps:
    floor = noise_floor_bq_ml(act.array, act.grid, settings=s.field_rules)
    loaded = y90_loaded_region(act.array, noise_floor=floor, settings=s.field_rules)
    dose = ldm_dose(act, s.y90)
    return _Maps(
        y90_dose=dose,
        noise_floor_bq_ml=floor,
        loaded=region_distance(loaded, act.grid),
        reference_dose_gy=float(dose.array[loaded].mean()) if loaded.any() else None,
    )


def _worst_field(lesion: Lesion, fields: Sequence[LesionField]) -> LesionField:
    if not fields:
        return LesionField(
            lesion_id=lesion.lesion_id,
            therapy_id="",
            field=FieldStatus.OUT_OF_FIELD,
            rule="-",
            reason="no local therapy in the manifest",
        )
    return worst(fields)


def _field_for(
    lesion: Lesion, therapy_id: str, inputs: PatientInputs, s: Settings, maps: Mapping[str, _Maps]
) -> LesionField:
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
            return _ebrt_field(lesion, rt, inputs, s, maps[therapy_id])
    for y in inputs.y90:
        if y.therapy.therapy_id == therapy_id:
            return _y90_field(lesion, y, inputs, s, maps[therapy_id])
    msg = f"local therapy {therapy_id!r} has no loaded inputs"
    raise IngestError(msg)


def _ebrt_field(
    lesion: Lesion, rt: RadiationInputs, inputs: PatientInputs, s: Settings, maps: _Maps
) -> LesionField:
    frame = rt.dose.grid.frame_of_reference_uid
    mask = planning_mask(lesion.lesion_id, frame, inputs, rt.course.start_date)
    if mask is None:
        return LesionField(
            lesion_id=lesion.lesion_id,
            therapy_id=rt.course.therapy_id,
            field=FieldStatus.UNCERTAIN,
            rule="-",
            reason="no mask of the lesion on the dose grid's frame of reference (register the follow-up CT)",
        )
    dvh = structure_dvh_from_mask(lesion.lesion_id, rt.dose, mask.mask, mask.grid)
    whole = dvh.grid_coverage >= 1.0  # CLINICAL F2: a partly covered lesion's dose is unknown
    assert maps.ptv_distance_mm is not None  # built for every course by _therapy_maps
    distance = maps.ptv_distance_mm
    return classify_ebrt(
        lesion_id=lesion.lesion_id,
        therapy_id=rt.course.therapy_id,
        prescription_gy=rt.course.prescription_gy,
        overlap_voxels=ptv_overlap_voxels(mask, rt.ptv, rt.ptv_grid),
        fraction_in_grid=dvh.grid_coverage,
        dose_mean_gy=dvh.dose_mean_gy if whole else None,
        dose_max_gy=dvh.dose_max_gy if whole else None,
        min_distance_to_ptv_mm=min_distance_mm(mask, distance, rt.ptv_grid),
        dose_mean_in_grid_gy=dvh.dose_mean_gy,
        max_boundary_dose_gy=dvh.max_boundary_dose_gy,
        settings=s.field_rules,
    )


def _y90_field(
    lesion: Lesion, y: Y90Inputs, inputs: PatientInputs, s: Settings, maps: _Maps
) -> LesionField:
    dose_mean = dose_max = gap = None
    unknown = "the lesion has no mask on the post-treatment image's frame of reference"
    act = y.activity_at_admin
    if act is not None:
        frame = act.grid.frame_of_reference_uid
        mask = planning_mask(lesion.lesion_id, frame, inputs, y.therapy.date)
        if mask is not None:
            assert maps.y90_dose is not None and maps.loaded is not None
            dvh = structure_dvh_from_mask(lesion.lesion_id, maps.y90_dose, mask.mask, mask.grid)
            unknown = "the lesion lies outside the post-treatment image's field of view"
            if dvh.grid_coverage > 0:  # the imaged part of the lesion shows what was deposited
                dose_mean, dose_max = dvh.dose_mean_gy, dvh.dose_max_gy
                gap = gap_mm(mask_on_grid(mask, act.grid), maps.loaded)
    return classify_y90(
        lesion_id=lesion.lesion_id,
        therapy_id=y.therapy.therapy_id,
        organ=lesion.organ,
        imaging_available=act is not None,
        dose_mean_gy=dose_mean,
        dose_max_gy=dose_max,
        distance_to_loaded_mm=gap,
        reference_dose_gy=maps.reference_dose_gy,
        noise_floor_bq_ml=maps.noise_floor_bq_ml,
        unknown_reason=unknown,
        settings=s.field_rules,
    )
