"""Synthetic patients: valid DICOM, a valid manifest, and truth that matches what was written.

Five small patients are written once for the module (about 3 s each): scenarios a (Y-90) and
b (SBRT with a low-dose lesion) through `synthesize`, scenario f (a new lesion) twice with the
same seed and once with another.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import UID
from scipy.spatial.distance import pdist
from skimage.measure import points_in_poly

from abscopal.io.manifest import Y90Entry, read_manifest
from abscopal.model import FieldStatus, LesionKind
from abscopal.synth import SCENARIOS, phantom, synthesize, synthesize_patient
from abscopal.synth.dose import AnalyticDose
from abscopal.synth.lesions import Ellipsoid
from abscopal.synth.patient import truth_record
from abscopal.synth.scenarios import CT_OFFSETS_DAYS, PLANNING, plan_patient

SEED = 0


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    a, b = synthesize(root / "cohort", patients=2, seed=SEED)  # SCENARIOS[0], SCENARIOS[1]
    f = synthesize_patient(root / "cohort", scenario="f", seed=SEED, index=5)
    f_again = synthesize_patient(root / "again", scenario="f", seed=SEED, index=5)
    f_other = synthesize_patient(root / "other", scenario="f", seed=SEED + 1, index=5)
    return {"a": a, "b": b, "f": f, "f_again": f_again, "f_other": f_other}


def _truth(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    return data


def _ct(folder: Path) -> tuple[list[pydicom.Dataset], np.ndarray]:
    images: list[pydicom.Dataset] = [pydicom.dcmread(p) for p in sorted(folder.glob("CT_*.dcm"))]
    images.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in images]
    )
    return images, hu


def _seg_masks(path: Path) -> dict[str, np.ndarray]:
    seg = hd.seg.segread(path)
    volume = seg.get_volume(combine_segments=False)
    masks = {}
    for i, item in enumerate(seg.SegmentSequence):
        masks[str(item.TrackingID)] = volume.array[..., i] > 0
    return masks


def _seg_on_ct(path: Path, images: list[pydicom.Dataset]) -> dict[str, np.ndarray]:
    """Each segment as a mask on the CT's (slice, row, column) array."""
    seg = hd.seg.segread(path)
    numbers = {int(s.SegmentNumber): str(s.TrackingID) for s in seg.SegmentSequence}
    shape = (len(images), int(images[0].Rows), int(images[0].Columns))
    slice_of = {d.SOPInstanceUID: k for k, d in enumerate(images)}
    out = {lesion_id: np.zeros(shape, dtype=bool) for lesion_id in numbers.values()}
    pixels = seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None]
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        out[numbers[number]][slice_of[source]] |= pixels[frame] > 0
    return out


def _dates(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "ct").iterdir())


# --- the public API --------------------------------------------------------------------------


def test_synthesize_rotates_scenarios_and_names_patients(cohort: dict[str, Path]) -> None:
    assert SCENARIOS == ("a", "b", "c", "d", "e", "f", "g")
    assert cohort["a"].name == "SYN-0000-000"
    assert cohort["b"].name == "SYN-0000-001"
    assert _truth(cohort["a"])["scenario"] == "a"
    assert _truth(cohort["b"])["scenario"] == "b"
    assert not [p for p in cohort["a"].parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_unknown_scenario_and_size_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scenario must be one of a, b, c"):
        synthesize_patient(tmp_path, scenario="z", seed=1)
    with pytest.raises(ValueError, match="size must be 'small' or 'full'"):
        synthesize_patient(tmp_path, scenario="a", seed=1, size="huge")  # type: ignore[arg-type]
    assert synthesize(tmp_path, patients=0, seed=1) == []


def test_same_seed_same_bytes_other_seed_other_patient(cohort: dict[str, Path]) -> None:
    one, again, other = cohort["f"], cohort["f_again"], cohort["f_other"]
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:  # truth, manifest, CT pixels, SEG, RT: every byte
        assert (one / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert _truth(one) != _truth(other)
    ct_one = sorted((one / "ct").rglob("CT_0030.dcm"))[0]
    ct_other = sorted((other / "ct").rglob("CT_0030.dcm"))[0]
    assert pydicom.dcmread(ct_one).PixelData != pydicom.dcmread(ct_other).PixelData


# --- DICOM validity --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "b", "f"])
def test_every_file_is_valid_dicom_with_unique_valid_uids(
    cohort: dict[str, Path], name: str
) -> None:
    folder = cohort[name]
    sop_uids: set[str] = set()
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            assert UID(ds[keyword].value).is_valid, (path, keyword)
        if ds.Modality in {"CT", "PT", "SEG", "RTDOSE"}:
            assert UID(ds.FrameOfReferenceUID).is_valid
        assert ds.PatientID == folder.name
        assert str(ds.PatientName).startswith("Synthetic^P")
        assert ds.PatientSex in {"F", "M"}
        assert ds.PatientBirthDate and ds.StudyDate and ds.SeriesDate
        assert ds.SOPInstanceUID not in sop_uids
        sop_uids.add(ds.SOPInstanceUID)


def test_ct_series_tags_and_geometry(cohort: dict[str, Path]) -> None:
    folder = cohort["b"]
    studies, frames = set(), set()
    for day, offset in zip(_dates(folder), CT_OFFSETS_DAYS, strict=True):
        images, hu = _ct(folder / "ct" / day)
        first = images[0]
        assert hu.shape == (64, 128, 128)
        assert first.SOPClassUID == pydicom.uid.CTImageStorage
        assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in first.PixelSpacing] == [3.0, 3.0]
        assert float(first.SliceThickness) == 5.0
        assert float(first.RescaleIntercept) == -1024.0 and float(first.RescaleSlope) == 1.0
        assert first.StudyDate == first.SeriesDate == first.AcquisitionDate == day
        assert first.AcquisitionTime and first.StudyTime and first.SeriesTime
        z = [float(d.ImagePositionPatient[2]) for d in images]
        assert np.allclose(np.diff(z), 5.0)
        assert len({d.SeriesInstanceUID for d in images}) == 1
        studies.add(first.StudyInstanceUID)
        frames.add(first.FrameOfReferenceUID)
        t0 = date.fromisoformat(_truth(folder)["t0"])
        assert (datetime.strptime(day, "%Y%m%d").date() - t0).days == offset
    assert len(studies) == len(frames) == 5  # own study and frame of reference per timepoint


def test_ct_anatomy_in_hounsfield_units(cohort: dict[str, Path]) -> None:
    images, hu = _ct(cohort["a"] / "ct" / _dates(cohort["a"])[PLANNING])
    grid = phantom.ct_grid("small")
    labels = phantom.label_volume(grid)
    masks = _seg_on_ct(cohort["a"] / "seg" / f"{_dates(cohort['a'])[PLANNING]}.dcm", images)
    lesion = np.any(np.stack(list(masks.values())), axis=0)
    for tissue, expected in [
        (phantom.Tissue.LIVER_RIGHT, 60.0),
        (phantom.Tissue.FAT, -100.0),
        (phantom.Tissue.LUNG, -850.0),
        (phantom.Tissue.CORTICAL_BONE, 1000.0),
        (phantom.Tissue.TRABECULAR_BONE, 250.0),
    ]:
        values = hu[(labels == tissue) & ~lesion]
        assert values.mean() == pytest.approx(expected, abs=2.0), tissue
        assert values.std() == pytest.approx(10.0, abs=1.5)  # the noise SD
    # the liver lies on the patient's right (negative L)
    x = grid.index_to_lps(np.argwhere(labels == phantom.Tissue.LIVER_RIGHT).astype(float))[:, 0]
    assert np.all(x < -15.0)


def test_fast_series_writer_writes_what_pydicom_writes(cohort: dict[str, Path]) -> None:
    """`save_series` shares element encodings; the bytes must be those of `save_as`."""
    for path in [
        *sorted((cohort["a"] / "ct").rglob("CT_0031.dcm")),
        cohort["a"] / "pet" / "PT_0050.dcm",
    ]:
        buffer = BytesIO()
        pydicom.dcmread(path).save_as(buffer, enforce_file_format=True)
        assert buffer.getvalue() == path.read_bytes(), path


# --- SEG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "b", "f"])
def test_seg_has_one_segment_per_present_lesion(cohort: dict[str, Path], name: str) -> None:
    folder = cohort[name]
    truth = _truth(folder)
    tracking_uids: dict[str, set[str]] = {}
    for i, day in enumerate(_dates(folder)):
        seg = hd.seg.segread(folder / "seg" / f"{day}.dcm")
        present = [
            lesion["lesion_id"] for lesion in truth["lesions"] if lesion["diameters"][i]["present"]
        ]
        assert seg.SegmentationType == "BINARY"
        assert [s.SegmentLabel for s in seg.SegmentSequence] == present
        assert [s.TrackingID for s in seg.SegmentSequence] == present
        for item in seg.SegmentSequence:
            assert item.SegmentAlgorithmType == "MANUAL"
            assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
            assert item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
            tracking_uids.setdefault(str(item.TrackingID), set()).add(str(item.TrackingUID))
        images, _ = _ct(folder / "ct" / day)
        assert seg.FrameOfReferenceUID == images[0].FrameOfReferenceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == images[0].SeriesInstanceUID
    assert all(len(uids) == 1 for uids in tracking_uids.values())  # stable across timepoints


@pytest.mark.parametrize("name", ["a", "b", "f"])
def test_mask_volume_matches_the_ellipsoid_at_baseline(cohort: dict[str, Path], name: str) -> None:
    """Voxel count × 45 mm³ against 4/3·π·a·b·c: within 15 % on the 3 × 3 × 5 mm grid."""
    folder = cohort[name]
    day = _dates(folder)[PLANNING]
    masks = _seg_masks(folder / "seg" / f"{day}.dcm")
    for lesion in _truth(folder)["lesions"]:
        entry = lesion["diameters"][PLANNING]
        if not entry["present"]:
            continue
        volume_ml = masks[lesion["lesion_id"]].sum() * 3.0 * 3.0 * 5.0 / 1000.0
        assert volume_ml == pytest.approx(entry["volume_ml"], rel=0.15), lesion["lesion_id"]
        # the long axis spans the mask's widest axial section, give or take one voxel
        assert entry["diameter_long_mm"] >= 18.0


def _long_diameter_mm(mask: np.ndarray) -> float:
    """Largest axial distance between voxel centres of a (slice, row, column) mask, 3 mm pixels."""
    best = 0.0
    for k in np.unique(np.nonzero(mask)[0]):
        rows, cols = np.nonzero(mask[k])
        points = np.c_[rows, cols] * 3.0
        if len(points) > 1:
            best = max(best, float(pdist(points).max()))
    return best


@pytest.mark.parametrize("name", ["a", "b"])
def test_out_of_field_response_reads_from_the_written_masks(
    cohort: dict[str, Path], name: str
) -> None:
    """The masks show what the truth says: ≥ 30 % smaller at +91 d, not yet at +30 d."""
    folder = cohort[name]
    days = _dates(folder)
    truth = {x["lesion_id"]: x for x in _truth(folder)["lesions"]}
    diameters: dict[str, list[float]] = {}
    for day in days:
        for lesion_id, mask in _seg_masks(folder / "seg" / f"{day}.dcm").items():
            diameters.setdefault(lesion_id, []).append(_long_diameter_mm(mask))
    for lesion_id, ld in diameters.items():
        if truth[lesion_id]["field"] != "out_of_field":
            continue
        change = [100.0 * (x - ld[PLANNING]) / ld[PLANNING] for x in ld]
        assert change[2] > -30.0 and change[3] <= -30.0 and change[4] <= -30.0, change
        assert -25.0 < change[0] < 15.0  # stable before therapy


def test_lesion_attenuation_follows_its_kind(cohort: dict[str, Path]) -> None:
    folder = cohort["f"]
    days = _dates(folder)
    images, hu = _ct(folder / "ct" / days[-1])
    masks = _seg_on_ct(folder / "seg" / f"{days[-1]}.dcm", images)
    assert hu[masks["N1"]].mean() == pytest.approx(800.0, abs=5.0)  # blastic
    images, hu = _ct(cohort["b"] / "ct" / _dates(cohort["b"])[PLANNING])
    masks = _seg_on_ct(cohort["b"] / "seg" / f"{_dates(cohort['b'])[PLANNING]}.dcm", images)
    assert hu[masks["B1"]].mean() == pytest.approx(30.0, abs=5.0)  # lytic


# --- EBRT: RTSTRUCT and RTDOSE ---------------------------------------------------------------


def test_rtdose_is_physical_gy_on_the_planning_frame(cohort: dict[str, Path]) -> None:
    folder = cohort["b"]
    planning, _ = _ct(folder / "ct" / _dates(folder)[PLANNING])
    dose = pydicom.dcmread(folder / "rt" / "rtdose.dcm")
    assert dose.Modality == "RTDOSE"
    assert (dose.DoseUnits, dose.DoseType, dose.DoseSummationType) == ("GY", "PHYSICAL", "PLAN")
    assert dose.FrameOfReferenceUID == planning[0].FrameOfReferenceUID
    assert dose.StudyInstanceUID == planning[0].StudyInstanceUID
    offsets = [float(v) for v in dose.GridFrameOffsetVector]
    assert offsets[0] == 0.0 and len(offsets) == int(dose.NumberOfFrames)
    gy = dose.pixel_array * float(dose.DoseGridScaling)
    assert gy.max() == pytest.approx(24.0, rel=0.03)  # 24 Gy / 3 fx SBRT, ±3 % ripple
    assert gy.min() >= 0.0
    # the grid covers the CT's field of view
    rows, cols = int(dose.Rows), int(dose.Columns)
    assert (
        rows * float(dose.PixelSpacing[0]) >= 384.0 and cols * float(dose.PixelSpacing[1]) >= 384.0
    )


def _sample(
    volume: np.ndarray, origin: np.ndarray, spacing: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """Trilinear samples of a (z, y, x) volume at (n, 3) LPS points, as a reader would."""
    from scipy.ndimage import map_coordinates

    idx = (points[:, ::-1] - origin[::-1]) / spacing[::-1]
    return np.asarray(map_coordinates(volume, idx.T, order=1, mode="nearest"))


def test_expected_mean_doses_match_their_classes(cohort: dict[str, Path]) -> None:
    folder = cohort["b"]
    truth = {lesion["lesion_id"]: lesion for lesion in _truth(folder)["lesions"]}
    assert truth["B1"]["dose_mean_gy_expected"] == pytest.approx(24.0, rel=0.03)
    assert 1.5 <= truth["B3"]["dose_mean_gy_expected"] <= 0.4 * 24.0
    assert truth["B2"]["dose_mean_gy_expected"] < 0.5
    # the written grid gives the same classes at the lesions' CT voxel centres
    images, _ = _ct(folder / "ct" / _dates(folder)[PLANNING])
    masks = _seg_on_ct(folder / "seg" / f"{_dates(folder)[PLANNING]}.dcm", images)
    dose = pydicom.dcmread(folder / "rt" / "rtdose.dcm")
    gy = dose.pixel_array * float(dose.DoseGridScaling)
    origin = np.array([float(v) for v in dose.ImagePositionPatient])
    spacing = np.array([float(dose.PixelSpacing[1]), float(dose.PixelSpacing[0]), 5.0])
    grid = phantom.ct_grid("small")
    for lesion_id, mask in masks.items():
        mean_gy = _sample(gy, origin, spacing, grid.voxel_centres_lps(np.argwhere(mask))).mean()
        assert mean_gy == pytest.approx(
            truth[lesion_id]["dose_mean_gy_expected"], rel=0.1, abs=0.05
        )


def test_rtstruct_ptv_contains_the_target_and_spares_the_low_dose_lesion(
    cohort: dict[str, Path],
) -> None:
    folder = cohort["b"]
    images, _ = _ct(folder / "ct" / _dates(folder)[PLANNING])
    masks = _seg_on_ct(folder / "seg" / f"{_dates(folder)[PLANNING]}.dcm", images)
    rs = pydicom.dcmread(folder / "rt" / "rtstruct.dcm")
    assert rs.Modality == "RTSTRUCT" and rs.StudyInstanceUID == images[0].StudyInstanceUID
    assert rs.StructureSetROISequence[0].ROIName == "PTV"
    assert rs.RTROIObservationsSequence[0].RTROIInterpretedType == "PTV"
    frame = rs.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == images[0].FrameOfReferenceUID
    sops = {d.SOPInstanceUID: k for k, d in enumerate(images)}
    ptv = np.zeros_like(masks["B1"])
    grid = phantom.ct_grid("small")
    for contour in rs.ROIContourSequence[0].ContourSequence:
        assert contour.ContourGeometricType == "CLOSED_PLANAR"
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        k = sops[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
        assert np.allclose(points[:, 2], float(images[k].ImagePositionPatient[2]))
        jj, ii = np.indices(ptv.shape[1:])
        centres = grid.index_to_lps(np.stack([np.full(jj.shape, k), jj, ii], -1).astype(float))
        ptv[k] = points_in_poly(centres[..., :2].reshape(-1, 2), points[:, :2]).reshape(jj.shape)
    assert np.all(ptv[masks["B1"]])  # the in-field lesion lies inside the PTV
    assert not np.any(ptv[masks["B3"]])  # the low-dose lesion does not touch it
    assert not np.any(ptv[masks["B2"]])


# --- Y-90: PET -------------------------------------------------------------------------------


def test_y90_pet_total_activity_is_the_decayed_administered_activity(
    cohort: dict[str, Path],
) -> None:
    folder = cohort["a"]
    images = [pydicom.dcmread(p) for p in sorted((folder / "pet").glob("PT_*.dcm"))]
    planning, _ = _ct(folder / "ct" / _dates(folder)[PLANNING])
    first = images[0]
    assert first.Modality == "PT" and first.Units == "BQML" and first.DecayCorrection == "START"
    assert {"ATTN", "DECY"} <= set(first.CorrectedImage)
    assert first.FrameOfReferenceUID == planning[0].FrameOfReferenceUID
    assert first.StudyInstanceUID != planning[0].StudyInstanceUID
    assert float(first.PatientWeight) > 0
    drug = first.RadiopharmaceuticalInformationSequence[0]
    assert drug.Radiopharmaceutical == "Y-90 microspheres"
    assert float(drug.RadionuclideHalfLife) == 230760.0
    administered = datetime.strptime(drug.RadiopharmaceuticalStartDateTime, "%Y%m%d%H%M%S")
    start = datetime.strptime(first.AcquisitionDate + first.AcquisitionTime, "%Y%m%d%H%M%S")
    assert first.SeriesDate + first.SeriesTime == first.AcquisitionDate + first.AcquisitionTime
    t0 = date.fromisoformat(_truth(folder)["t0"])
    assert administered == datetime(t0.year, t0.month, t0.day, 10, 0)
    assert (start.date() - t0).days == 1
    decay = math.exp(-math.log(2) * (start - administered).total_seconds() / 230760.0)
    expected_bq = float(drug.RadionuclideTotalDose) * decay
    voxel_ml = (
        float(first.PixelSpacing[0])
        * float(first.PixelSpacing[1])
        * float(first.SliceThickness)
        / 1e3
    )
    total_bq = (
        sum(float(d.RescaleSlope) * d.pixel_array.astype(float).sum() for d in images) * voxel_ml
    )
    assert total_bq == pytest.approx(expected_bq, rel=0.02)
    therapy = read_manifest(folder / "manifest.yaml").local_therapies[0]
    assert isinstance(therapy, Y90Entry)
    assert therapy.activity_gbq * 1e9 == pytest.approx(float(drug.RadionuclideTotalDose))


def test_y90_activity_is_in_the_right_lobe_and_four_times_higher_in_the_hcc(
    cohort: dict[str, Path],
) -> None:
    folder = cohort["a"]
    images = [pydicom.dcmread(p) for p in sorted((folder / "pet").glob("PT_*.dcm"))]
    images.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    bqml = np.stack([d.pixel_array * float(d.RescaleSlope) for d in images])
    assert bqml.min() >= 0.0
    grid = phantom.axial_grid(
        pixel_mm=4.0, slice_mm=4.0, slices=len(images), frame_of_reference_uid=None
    )
    labels = phantom.label_volume(grid)
    assert np.all(bqml[labels != phantom.Tissue.LIVER_RIGHT] == 0.0)  # zero outside the lobe
    plan = plan_patient(scenario="a", seed=SEED, index=0)
    shapes = {p.lesion_id: p.shape_at(PLANNING) for p in plan.lesions}
    hcc = shapes["H1"].mask(grid)  # type: ignore[union-attr]
    normal = (labels == phantom.Tissue.LIVER_RIGHT) & ~hcc
    assert bqml[hcc].mean() / bqml[normal].mean() == pytest.approx(4.0, rel=0.05)
    for bone in ("B1", "B2"):  # out of field: no activity at the lesion
        assert not np.any(bqml[shapes[bone].mask(grid)])  # type: ignore[union-attr]


# --- manifest and truth ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "b", "f"])
def test_manifest_validates_and_names_the_files(cohort: dict[str, Path], name: str) -> None:
    folder = cohort[name]
    manifest = read_manifest(folder / "manifest.yaml")
    truth = _truth(folder)
    assert manifest.patient_id == truth["patient_id"] == folder.name
    assert [x.lesion_id for x in manifest.lesions] == [x["lesion_id"] for x in truth["lesions"]]
    assert [x.organ for x in manifest.lesions] == [x["organ"] for x in truth["lesions"]]
    therapy = manifest.local_therapies[0]
    if therapy.type == "radiation":
        assert therapy.therapy_id == "RT-1" and therapy.target == "PTV"
        assert (folder / str(therapy.rtdose)).is_file() and (
            folder / str(therapy.rtstruct)
        ).is_file()
        assert therapy.start_date.isoformat() == truth["t0"]
        assert therapy.end_date.isoformat() == truth["t_end"]
    else:
        assert therapy.therapy_id == "Y90-1" and therapy.territory == "right_lobe"
        assert (folder / str(therapy.post_treatment_imaging)).is_dir()
        assert therapy.date.isoformat() == truth["t0"]
    patient = manifest.to_patient()
    assert patient.patient_id == folder.name


EXPECTED = {
    "a": ("abscopal", "A", ["B1", "B2"]),
    "b": ("abscopal", "B", ["B2"]),
    "c": ("not_abscopal", None, []),
    "d": ("indeterminate", "C", ["B2"]),
    "e": ("abscopal", "B", ["B2"]),
    "f": ("not_abscopal", None, []),
    "g": ("not_abscopal", None, []),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("seed", [0, 7, 123])
def test_truth_keys_vocabularies_and_time_courses(scenario: str, seed: int) -> None:
    plan = plan_patient(scenario=scenario, seed=seed, index=2)
    dose = plan.dose
    means = {}
    if dose is not None:
        grid = phantom.ct_grid("small")
        for p in plan.lesions:
            shape = p.shape_at(PLANNING)
            means[p.lesion_id] = (
                None if shape is None else float(dose.dose_gy(shape.voxels(grid).points_mm).mean())
            )
    truth = json.loads(json.dumps(truth_record(plan, dose_means=means)))
    assert {"patient_id", "lesions", "abscopal"} <= set(truth)
    assert (
        truth["abscopal"]["status"],
        truth["abscopal"]["certainty"],
        truth["abscopal"]["lesions"],
    ) == EXPECTED[scenario]
    ids = [x["lesion_id"] for x in truth["lesions"]]
    assert set(truth["abscopal"]["lesions"]) <= set(ids)
    fields = [FieldStatus(x["field"]) for x in truth["lesions"]]
    assert fields.count(FieldStatus.IN_FIELD) == 1
    t0 = date.fromisoformat(truth["t0"])
    for lesion in truth["lesions"]:
        kind = LesionKind(lesion["kind"])
        dates = [(date.fromisoformat(d["date"]) - t0).days for d in lesion["diameters"]]
        assert dates == list(CT_OFFSETS_DAYS)
        ld = [d["diameter_long_mm"] for d in lesion["diameters"]]
        for d in lesion["diameters"]:
            assert d["present"] == (d["diameter_long_mm"] > 0)
            assert 0 <= d["diameter_short_mm"] <= d["diameter_long_mm"]
        if lesion["field"] == "out_of_field":
            assert kind.is_bone
            assert ld[PLANNING] >= 18.0
            assert 0.95 * ld[PLANNING] <= ld[0] <= ld[PLANNING]  # stable or growing before t0
        if dose is not None and lesion["field"] != "uncertain":
            assert "dose_mean_gy_expected" in lesion
        if dose is None:
            assert "dose_mean_gy_expected" not in lesion
    by_id = {x["lesion_id"]: x for x in truth["lesions"]}
    if scenario == "c":
        for lesion_id in ("B2", "B3"):
            ld = [d["diameter_long_mm"] for d in by_id[lesion_id]["diameters"]]
            assert ld[3] - ld[PLANNING] >= 5.0
    if scenario == "e":
        hu = [d["hu_nominal"] for d in by_id["B2"]["diameters"]]
        assert hu[:4] == [30.0] * 4 and hu[4] >= 800.0
        ld = [d["diameter_long_mm"] for d in by_id["B2"]["diameters"]]
        assert all(abs(x / ld[PLANNING] - 1) <= 0.02 for x in ld)
    if scenario == "f":
        n1 = by_id["N1"]
        assert n1["field"] == "uncertain" and n1["dose_mean_gy_expected"] is None
        assert [d["present"] for d in n1["diameters"]] == [False, False, False, True, True]
        assert n1["diameters"][3]["diameter_long_mm"] == pytest.approx(15.0)
        assert n1["diameters"][4]["diameter_long_mm"] == pytest.approx(20.0)
    if scenario == "b":
        assert 1.5 <= by_id["B3"]["dose_mean_gy_expected"] <= 9.6


# --- geometry of the construction ------------------------------------------------------------


def test_distance_to_an_ellipsoid_matches_a_dense_surface_sample() -> None:
    shape = Ellipsoid(centre_mm=(5.0, -3.0, 10.0), semi_axes_mm=(14.0, 8.0, 6.0), angle_deg=30.0)
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(200_000, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    local = unit * np.array(shape.semi_axes_mm)
    cos, sin = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
    surface = np.c_[
        cos * local[:, 0] - sin * local[:, 1], sin * local[:, 0] + cos * local[:, 1], local[:, 2]
    ]
    surface += np.array(shape.centre_mm)
    points = rng.uniform(-150, 150, size=(300, 3))
    brute = np.sqrt(((points[:, None, :] - surface[None, ::20, :]) ** 2).sum(-1)).min(axis=1)
    got = shape.distance_mm(points)
    outside = ~shape.contains(points)
    assert np.all(got[outside] <= brute[outside] + 1e-6)
    assert np.allclose(got[outside], brute[outside], atol=0.5)
    assert np.all(got[~outside] == 0.0)


def test_ptv_contour_lies_five_mm_from_the_lesion() -> None:
    target = Ellipsoid(centre_mm=(0.0, 45.0, 37.5), semi_axes_mm=(12.0, 9.0, 8.75))
    dose = AnalyticDose(target=target, prescription_gy=20.0, sigma_mm=10.0)
    polygon = dose.ptv_contour_mm(37.5)
    assert polygon is not None
    assert np.allclose(target.distance_mm(polygon), 5.0, atol=0.05)
    assert dose.ptv_contour_mm(37.5 + 8.75 + 5.0) is None
    assert float(
        dose.dose_gy(np.array([[0.0, 45.0 + 9.0 + 5.0 + 10.0, 37.5]]))[0]
    ) == pytest.approx(20.0 * math.exp(-1.0))


# --- the tracking variant --------------------------------------------------------------------


def test_untracked_moved_patient_keeps_pixels_and_truth(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    """`untracked` + `Motion()`: same truth and CT pixels as the default patient; the follow-up
    CTs rotated 4° × MOTION_SCALE about S (the planning CT stays); follow-up segments named per
    date with TrackingUIDs of that date only, N1 by its id where it first appears."""
    from abscopal.synth.patient import MOTION_SCALE, Motion

    plain = cohort["f"]
    moved = synthesize_patient(
        tmp_path, scenario="f", seed=SEED, index=5, untracked=True, motion=Motion()
    )
    assert _truth(moved) == _truth(plain)
    uids: list[str] = []
    for i, day in enumerate(_dates(plain)):
        one = pydicom.dcmread(plain / "ct" / day / "CT_0030.dcm")
        two = pydicom.dcmread(moved / "ct" / day / "CT_0030.dcm")
        assert one.PixelData == two.PixelData
        row = np.array([float(v) for v in two.ImageOrientationPatient[:3]])
        degrees = math.degrees(math.atan2(row[1], row[0]))
        assert degrees == pytest.approx(4.0 * MOTION_SCALE[i], abs=1e-4)
        seg = hd.seg.segread(moved / "seg" / f"{day}.dcm")
        labels = sorted(str(s.SegmentLabel) for s in seg.SegmentSequence)
        expected = len(pydicom.dcmread(plain / "seg" / f"{day}.dcm").SegmentSequence)
        named = sorted(label for label in labels if not label.startswith(f"{day}-"))
        assert named == {0: ["B1", "B2"], 3: ["N1"]}.get(i, [])  # where each first appears
        assert len(labels) == expected
        assert set(labels) - set(named) <= {f"{day}-{n}" for n in range(1, expected + 1)}
        uids += [str(s.TrackingUID) for s in seg.SegmentSequence]
    assert len(uids) == len(set(uids))  # no TrackingUID shared between timepoints
    assert MOTION_SCALE[PLANNING] == 0.0
