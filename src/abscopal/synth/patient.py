"""Assemble a synthetic patient folder: CT and SEG per timepoint, RT or PET, manifest and truth.

Layout (paths relative to the patient folder)::

    manifest.yaml, truth.json
    ct/<YYYYMMDD>/CT_0001.dcm …     one study, series and FrameOfReferenceUID per timepoint
    seg/<YYYYMMDD>.dcm              BINARY SEG of that CT, one segment per lesion present
    rt/rtstruct.dcm, rt/rtdose.dcm  EBRT: on the planning CT's study and frame of reference
    pet/PT_0001.dcm …               Y-90: post-treatment PET on the planning CT's frame

The truth comes from construction: the lesion ellipsoids, their scale factors and the analytic
dose, never from the analysis code.

Two options test lesion tracking (`abscopal.tracking`); both off, the files are those of every
earlier version. `untracked` names the segments of a lesion seen before by a per-date label in a
shuffled order ("20240305-2"), with a TrackingUID of that date only, so only geometry can tell
who is who; a lesion keeps its id as label where it first appears. `motion` moves the patient
rigidly between timepoints (`Motion`): the same voxels written under other ImagePositionPatient
and ImageOrientationPatient, so every measurement in the image stays what it was.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import date, datetime
from datetime import time as clock
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import yaml

from abscopal import DISCLAIMER
from abscopal.atomic import atomic_dir
from abscopal.io.manifest import MANIFEST_NAME, Manifest
from abscopal.model import FieldStatus, LesionKind
from abscopal.synth import phantom
from abscopal.synth.dicom import (
    PatientInfo,
    SeriesInfo,
    StudyInfo,
    Uids,
    write_ct_series,
    write_seg,
)
from abscopal.synth.lesions import paint_lesions
from abscopal.synth.pet import pet_grid, write_pet_series, y90_activity
from abscopal.synth.placement import LOW_DOSE_MAX_FRACTION, LOW_DOSE_MIN_GY
from abscopal.synth.rt import DOSE_PIXEL_MM, DOSE_SLICE_MM, write_rtdose, write_rtstruct
from abscopal.synth.scenarios import (
    OUT_OF_FIELD_MAX_GY,
    PLANNING,
    SCENARIOS,
    EbrtPlan,
    PatientPlan,
    Y90Plan,
    plan_patient,
)
from abscopal.units import BQ_PER_GBQ

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

    from abscopal.geometry import Grid
    from abscopal.synth.lesions import Ellipsoid

logger = logging.getLogger(__name__)

TRUTH_NAME: Final = "truth.json"
NOISE_SD_HU: Final = 10.0
CT_TIME: Final = clock(9, 30)
SEG_TIME: Final = clock(10, 0)
RT_TIME: Final = clock(14, 0)
SEG_SERIES_NUMBER: Final = 100
RTSTRUCT_SERIES_NUMBER: Final = 200
RTDOSE_SERIES_NUMBER: Final = 201
MOTION_SCALE: Final = (-1.0, 0.0, 1.0, -0.5, 0.5)  # per CT date; the planning CT stays put


@dataclass(frozen=True, slots=True, kw_only=True)
class Motion:
    """A rigid patient motion: rotation about the S axis through L = P = 0, then a shift (LPS mm).

    CT i moves by `MOTION_SCALE[i]` times it: the planning CT (with the RT or PET on its frame)
    stays, the others each stand elsewhere, at most twice the motion apart.
    """

    degrees: float = 4.0
    shift_mm: tuple[float, float, float] = (6.0, 0.0, 8.0)  # 10 mm

    def moved(self, grid: Grid, scale: float) -> Grid:
        """`grid` after `scale` times the motion: every point p goes to R p + t."""
        angle = np.deg2rad(self.degrees * scale)
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        origin = rotation @ np.asarray(grid.origin_mm) + scale * np.asarray(self.shift_mm)
        axes = np.asarray(grid.axes, dtype=float) @ rotation.T
        return replace(
            grid,
            origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
            axes=tuple((float(a[0]), float(a[1]), float(a[2])) for a in axes),  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Options:
    """How one patient is written (beyond its plan)."""

    seed: int
    index: int
    size: phantom.Size
    untracked: bool = False
    motion: Motion | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Planning:
    """What the RT and PET writers need from the planning CT."""

    grid: Grid
    images: list[Dataset]
    study: StudyInfo
    masks: dict[str, NDArray[np.bool_]]


def synthesize_patient(
    out_dir: Path,
    *,
    scenario: str,
    seed: int,
    index: int = 0,
    size: Literal["small", "full"] = "small",
    untracked: bool = False,
    motion: Motion | None = None,
) -> Path:
    """Write one synthetic patient to ``out_dir/<patient_id>/`` atomically; return that folder.

    `scenario` is one of `SCENARIOS`; the same (scenario, seed, index, size) always writes the
    same truth, UIDs and pixels. `size` "small" is 128 × 128 × 64 CT voxels of 3 × 3 × 5 mm,
    "full" 512 × 512 × 128 of 0.75 × 0.75 × 2.5 mm, with the same anatomy in mm.
    `untracked` and `motion` (see the module docstring) change the SEG labels and the CT
    geometry, and the UIDs with them, never the truth.
    """
    if size not in phantom.CT_SIZES:
        msg = f"size must be 'small' or 'full', got {size!r}"
        raise ValueError(msg)
    started = time.perf_counter()
    plan = plan_patient(scenario=scenario, seed=seed, index=index)
    variant = (("untracked",) if untracked else ()) + ((repr(motion),) if motion else ())
    uids = Uids(("abscopal.synth", plan.patient_id, scenario, size, *variant))
    folder = Path(out_dir) / plan.patient_id
    options = _Options(seed=seed, index=index, size=size, untracked=untracked, motion=motion)
    with atomic_dir(folder) as tmp:
        _write_patient(tmp, plan, options, uids=uids)
    logger.info(
        "synthetic patient of scenario %s (%s) written in %.1f s",
        scenario,
        size,
        time.perf_counter() - started,
    )
    return folder


def synthesize(
    out: Path,
    *,
    patients: int,
    seed: int,
    scenario: str | None = None,
    size: Literal["small", "full"] = "small",
    untracked: bool = False,
    motion: Motion | None = None,
) -> list[Path]:
    """Write `patients` patients under `out`; patient i gets SCENARIOS[(seed + i) % 7].

    `untracked` and `motion` are passed to `synthesize_patient` (tracking test material).
    """
    if patients < 0:
        msg = f"patients must be >= 0, got {patients}"
        raise ValueError(msg)
    if scenario is not None and scenario not in SCENARIOS:
        msg = f"scenario must be one of {', '.join(SCENARIOS)} or None (all in turn), got {scenario!r}"
        raise ValueError(msg)
    return [
        synthesize_patient(
            out,
            scenario=scenario or SCENARIOS[(seed + i) % len(SCENARIOS)],
            seed=seed,
            index=i,
            size=size,
            untracked=untracked,
            motion=motion,
        )
        for i in range(patients)
    ]


def _write_patient(folder: Path, plan: PatientPlan, options: _Options, *, uids: Uids) -> None:
    seed, index = options.seed, options.index
    patient = PatientInfo(
        patient_id=plan.patient_id,
        patient_name=f"Synthetic^P{index}",
        birth_date=plan.birth_date,
        sex=plan.sex,
        weight_kg=plan.weight_kg,
        height_m=plan.height_m,
    )
    planning = _write_ct_and_seg(folder, plan, patient, options, uids=uids)
    dose_means: dict[str, float | None] = {}
    if isinstance(plan.therapy, EbrtPlan):
        dose_means = _write_rt(folder, plan, patient, planning, uids)
    else:
        _write_pet(folder, plan, plan.therapy, patient, planning, seed=seed, index=index, uids=uids)
    (folder / MANIFEST_NAME).write_text(_manifest_text(plan), encoding="utf-8")
    truth = truth_record(plan, dose_means=dose_means)
    (folder / TRUTH_NAME).write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")


def _write_ct_and_seg(
    folder: Path, plan: PatientPlan, patient: PatientInfo, options: _Options, *, uids: Uids
) -> _Planning:
    seed, index, size = options.seed, options.index, options.size
    base_grid = phantom.ct_grid(size)
    labels = phantom.label_volume(base_grid)
    base_hu = phantom.hu_volume(labels)
    tracking = {p.lesion_id: uids("tracking", p.lesion_id) for p in plan.lesions}
    organs = {p.lesion_id: p.organ for p in plan.lesions}
    scenario_number = SCENARIOS.index(plan.scenario)
    planning: _Planning | None = None
    seen: set[str] = set()  # lesions segmented at an earlier date
    for i, when in enumerate(plan.ct_dates):
        grid = phantom.ct_grid(size, frame_of_reference_uid=uids("frame", i))
        hu = base_hu.copy()
        masks = paint_lesions(hu, grid, plan.lesions, i)
        _check_placement(plan, labels, masks)
        rng = np.random.default_rng([seed, index, scenario_number, 100 + i])
        noisy = hu + rng.normal(0.0, NOISE_SD_HU, size=hu.shape).astype(np.float32)
        stored = np.clip(np.rint(noisy) + 1024.0, 0, 4095).astype(np.int16)
        study = StudyInfo(
            study_uid=uids("study", i),
            when=datetime.combine(when, CT_TIME),
            study_id=f"{i + 1}",
            accession=f"S{seed % 10000:04d}{index % 1000:03d}{i}",
            description="CT abdomen pelvis (synthetic)",
        )
        ct_series = SeriesInfo(
            series_uid=uids("series", i),
            number=1,
            modality="CT",
            when=study.when,
            description="CT 5 mm" if size == "small" else "CT 2.5 mm",
        )
        written = options.motion.moved(grid, MOTION_SCALE[i]) if options.motion else grid
        images = write_ct_series(
            folder / "ct" / when.strftime("%Y%m%d"),
            stored=stored,
            grid=written,
            patient=patient,
            study=study,
            series=ct_series,
            uids=uids,
        )
        seg_series = SeriesInfo(
            series_uid=uids("seg-series", i),
            number=SEG_SERIES_NUMBER,
            modality="SEG",
            when=datetime.combine(when, SEG_TIME),
            description="Lesions (synthetic truth)",
        )
        names = {lesion: lesion for lesion in masks}
        if options.untracked:
            rng = np.random.default_rng([seed, index, scenario_number, 300 + i])
            names = _untracked_names(list(masks), seen, when, rng)
        seen |= set(masks)
        write_seg(
            folder / "seg" / f"{when.strftime('%Y%m%d')}.dcm",
            source_images=images,
            masks={names[lesion]: masks[lesion] for lesion in names},
            organs={names[lesion]: organs[lesion] for lesion in names},
            tracking_uids={
                name: tracking[lesion] if name == lesion else uids("tracking", i, name)
                for lesion, name in names.items()
            },
            series=seg_series,
            sop_instance_uid=uids("seg", i),
        )
        if i == PLANNING:
            planning = _Planning(grid=grid, images=images, study=study, masks=masks)
    if planning is None:
        msg = f"no planning CT at timepoint {PLANNING}; CT dates are {plan.ct_dates}"
        raise ValueError(msg)
    return planning


def _untracked_names(
    present: list[str], seen: set[str], when: date, rng: np.random.Generator
) -> dict[str, str]:
    """Lesion id -> segment name, in a shuffled order: a per-date label for a lesion seen before."""
    order = [present[k] for k in rng.permutation(len(present))]
    return {
        lesion: f"{when.strftime('%Y%m%d')}-{n}" if lesion in seen else lesion
        for n, lesion in enumerate(order, start=1)
    }


def _check_placement(
    plan: PatientPlan, labels: NDArray[np.uint8], masks: dict[str, NDArray[np.bool_]]
) -> None:
    """Every lesion inside the body, bone lesions centred in bone, the HCC in the right lobe."""
    for lesion in plan.lesions:
        mask = masks.get(lesion.lesion_id)
        if mask is None:
            continue
        if np.any(labels[mask] == phantom.Tissue.AIR):
            msg = f"{lesion.lesion_id} reaches outside the body; move it inwards or shrink it"
            raise ValueError(msg)
        centre = np.argwhere(mask).mean(axis=0).round().astype(int)
        tissue = phantom.Tissue(int(labels[tuple(centre)]))
        if lesion.kind.is_bone and tissue not in phantom.BONE:
            msg = f"{lesion.lesion_id} is a bone lesion centred in {tissue.name}"
            raise ValueError(msg)
        if lesion.kind is LesionKind.HCC and tissue is not phantom.Tissue.LIVER_RIGHT:
            msg = f"{lesion.lesion_id} is an HCC centred in {tissue.name}, not the right lobe"
            raise ValueError(msg)


def _write_rt(
    folder: Path, plan: PatientPlan, patient: PatientInfo, planning: _Planning, uids: Uids
) -> dict[str, float | None]:
    """RTSTRUCT and RTDOSE; returns each lesion's analytic Dmean at planning-CT voxel centres."""
    therapy = plan.therapy
    dose = plan.dose
    if not isinstance(therapy, EbrtPlan) or dose is None:
        msg = "RT objects are written for EBRT plans only"
        raise ValueError(msg)
    ct_grid = planning.grid
    when = datetime.combine(plan.ct_dates[PLANNING], RT_TIME)
    contours = []
    for k in range(ct_grid.shape[0]):
        s_mm = float(ct_grid.index_to_lps(np.array([float(k), 0.0, 0.0]))[2])
        polygon = dose.ptv_contour_mm(s_mm)
        if polygon is not None:
            contours.append((k, polygon))
    write_rtstruct(
        folder / "rt" / "rtstruct.dcm",
        contours=contours,
        ct_images=planning.images,
        roi_name="PTV",
        label=therapy.therapy_id,
        patient=patient,
        study=planning.study,
        series=SeriesInfo(
            series_uid=uids("rtstruct-series"),
            number=RTSTRUCT_SERIES_NUMBER,
            modality="RTSTRUCT",
            when=when,
            description="Structure set (synthetic plan)",
        ),
        sop_instance_uid=uids("rtstruct"),
    )
    slices = round(phantom.SLAB_MM / DOSE_SLICE_MM)
    dose_grid = phantom.axial_grid(
        pixel_mm=DOSE_PIXEL_MM,
        slice_mm=DOSE_SLICE_MM,
        slices=slices,
        frame_of_reference_uid=ct_grid.frame_of_reference_uid,
    )
    write_rtdose(
        folder / "rt" / "rtdose.dcm",
        dose_gy=dose.dose_on_grid(dose_grid),
        grid=dose_grid,
        patient=patient,
        study=planning.study,
        series=SeriesInfo(
            series_uid=uids("rtdose-series"),
            number=RTDOSE_SERIES_NUMBER,
            modality="RTDOSE",
            when=when,
            description=f"Dose {therapy.prescription_gy:g} Gy / {therapy.fractions} fx (synthetic)",
        ),
        sop_instance_uid=uids("rtdose"),
        plan_sop_instance_uid=uids("rtplan"),
    )
    means: dict[str, float | None] = {}
    for lesion in plan.lesions:
        mask = planning.masks.get(lesion.lesion_id)
        if mask is None:
            means[lesion.lesion_id] = None  # absent from the planning CT
            continue
        points = ct_grid.voxel_centres_lps(np.argwhere(mask))
        mean_gy = float(dose.dose_gy(points).mean())
        _check_dose_class(lesion.lesion_id, lesion.field, mean_gy, therapy.prescription_gy)
        means[lesion.lesion_id] = round(mean_gy, 3)
    return means


def _check_dose_class(lesion_id: str, field: FieldStatus, mean_gy: float, rx_gy: float) -> None:
    ok = {
        FieldStatus.IN_FIELD: mean_gy >= 0.5 * rx_gy,
        FieldStatus.LOW_DOSE: LOW_DOSE_MIN_GY <= mean_gy <= LOW_DOSE_MAX_FRACTION * rx_gy,
        FieldStatus.OUT_OF_FIELD: mean_gy < OUT_OF_FIELD_MAX_GY,
    }.get(field, True)
    if not ok:
        msg = f"{lesion_id}: expected Dmean {mean_gy:.2f} Gy does not fit its class {field.value}"
        raise ValueError(msg)


def _write_pet(
    folder: Path,
    plan: PatientPlan,
    therapy: Y90Plan,
    patient: PatientInfo,
    planning: _Planning,
    *,
    seed: int,
    index: int,
    uids: Uids,
) -> None:
    tumour = next(p for p in plan.lesions if p.kind is LesionKind.HCC).shape_at(PLANNING)
    if tumour is None:
        msg = "the in-field HCC must be present on the planning CT"
        raise ValueError(msg)
    grid = pet_grid(planning.grid.frame_of_reference_uid)
    rng = np.random.default_rng([seed, index, SCENARIOS.index(plan.scenario), 200])
    study = StudyInfo(
        study_uid=uids("pet-study"),
        when=therapy.pet_start,
        study_id="90",
        accession=f"P{seed % 10000:04d}{index % 1000:03d}",
        description="Y-90 PET/CT post radioembolization (synthetic)",
    )
    write_pet_series(
        folder / "pet",
        activity_bqml=y90_activity(therapy, tumour=tumour, grid=grid, rng=rng),
        grid=grid,
        plan=therapy,
        patient=patient,
        study=study,
        series=SeriesInfo(
            series_uid=uids("pet-series"),
            number=1,
            modality="PT",
            when=therapy.pet_start,
            description="Y-90 PET QUANT (registered to planning CT)",
        ),
        uids=uids,
    )


def _manifest_text(plan: PatientPlan) -> str:
    therapy = plan.therapy
    local: dict[str, Any]
    if isinstance(therapy, EbrtPlan):
        local = {
            "type": "radiation",
            "therapy_id": therapy.therapy_id,
            "start_date": therapy.start_date,
            "end_date": therapy.end_date,
            "prescription_gy": therapy.prescription_gy,
            "fractions": therapy.fractions,
            "technique": therapy.technique,
            "target": "PTV",
            "rtdose": "rt/rtdose.dcm",
            "rtstruct": "rt/rtstruct.dcm",
        }
    else:
        local = {
            "type": "radioembolization",
            "therapy_id": therapy.therapy_id,
            "date": therapy.administered.date(),
            "activity_gbq": round(therapy.activity_bq / BQ_PER_GBQ, 6),
            "device": therapy.device,
            "territory": therapy.territory,
            "post_treatment_imaging": "pet",
        }
    manifest = Manifest.model_validate(
        {
            "patient_id": plan.patient_id,
            "primary_cancer": plan.primary_cancer,
            "local_therapies": [local],
            "systemic_therapies": [
                {
                    "agent": s.agent,
                    "drug_class": s.drug_class,
                    "start_date": s.start_date,
                    "stop_date": s.stop_date,
                    "dose_change_dates": [],
                }
                for s in plan.systemic
            ],
            "lesions": [
                {"lesion_id": p.lesion_id, "organ": p.organ, "kind": p.kind} for p in plan.lesions
            ],
        }
    )
    dump = manifest.model_dump(exclude={"matches"})  # none written; omitted as before it existed
    body = yaml.safe_dump(_plain(dump), sort_keys=False, allow_unicode=False)
    header = f"# Synthetic patient, scenario {plan.scenario}. {DISCLAIMER}\n"
    return header + body


def _plain(value: Any) -> Any:
    """Enums to their strings, recursively, so `yaml.safe_dump` can write the dump."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def truth_record(plan: PatientPlan, *, dose_means: dict[str, float | None]) -> dict[str, Any]:
    """The truth.json document: the keys of `abscopal analyze --json` plus diameters by date."""
    lesions = []
    for lesion in plan.lesions:
        entry: dict[str, Any] = {
            "lesion_id": lesion.lesion_id,
            "organ": lesion.organ,
            "kind": lesion.kind.value,
            "field": lesion.field.value,
        }
        if isinstance(plan.therapy, EbrtPlan):
            entry["dose_mean_gy_expected"] = dose_means.get(lesion.lesion_id)
        entry["diameters"] = [
            _diameter(lesion.shape_at(i), when, lesion.hu[i])
            for i, when in enumerate(plan.ct_dates)
        ]
        lesions.append(entry)
    return {
        "patient_id": plan.patient_id,
        "scenario": plan.scenario,
        "primary_cancer": plan.primary_cancer,
        "t0": plan.t0.isoformat(),
        "t_end": plan.t_end.isoformat(),
        "baseline_date": plan.ct_dates[PLANNING].isoformat(),
        "lesions": lesions,
        "abscopal": {
            "status": plan.abscopal.status,
            "certainty": plan.abscopal.certainty,
            "lesions": list(plan.abscopal.lesions),
        },
    }


def _diameter(shape: Ellipsoid | None, when: date, hu: float) -> dict[str, Any]:
    if shape is None:
        return {
            "date": when.isoformat(),
            "present": False,
            "diameter_long_mm": 0.0,
            "diameter_short_mm": 0.0,
            "volume_ml": 0.0,
        }
    return {
        "date": when.isoformat(),
        "present": True,
        "diameter_long_mm": round(shape.diameter_long_mm, 2),
        "diameter_short_mm": round(shape.diameter_short_mm, 2),
        "volume_ml": round(shape.volume_ml, 3),
        "hu_nominal": hu,
    }
