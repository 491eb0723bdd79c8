"""RT objects: RTDOSE as a dose `Volume` in Gy, RTSTRUCT contours, and contour rasterization.

RTDOSE geometry (DOSIMETRY.md §7.1): frame k lies at IPP + g_k·n̂, n̂ = row cosines x column
cosines; GridFrameOffsetVector g is relative when g_0 = 0 and absolute z when g_0 equals IPP z
(identity orientation only). Dose = stored pixel x DoseGridScaling (3004,000E), refused unless
DoseUnits (3004,0002) is GY, or RELATIVE with a prescription to scale it to.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import numpy as np
from matplotlib.path import Path as PolygonPath

from abscopal.errors import GeometryError, IngestError, IngestWarning
from abscopal.geometry import Grid, require_same_frame
from abscopal.io.dicom import orientation_axes, read_dataset, series_date
from abscopal.model import Volume

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

RTDOSE_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.481.2"
RTSTRUCT_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.481.3"
RTPLAN_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.481.5"
_OFFSET_TOL_MM: Final = 0.01  # GridFrameOffsetVector values that agree within this are equal
_PLANE_TOL_MM: Final = 0.01  # contour points within this along the normal share a plane


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RtDose:
    """An RTDOSE: the dose `Volume` (Gy) with its DoseSummationType and DoseType."""

    volume: Volume
    summation_type: str  # PLAN, MULTI_PLAN, FRACTION, BEAM, ... (3004,000A)
    dose_type: str  # PHYSICAL, EFFECTIVE or ERROR (3004,0004)

    def __post_init__(self) -> None:
        if self.volume.units != "GY":
            msg = f"an RtDose volume must be in GY, got {self.volume.units!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RtStruct:
    """Closed planar contours ((n, 3) LPS mm arrays) and RTROIInterpretedType by ROI name."""

    frame_of_reference_uid: str | None
    rois: Mapping[str, tuple[NDArray[np.float64], ...]] = field(default_factory=dict)
    roi_types: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rois", MappingProxyType(dict(self.rois)))
        object.__setattr__(self, "roi_types", MappingProxyType(dict(self.roi_types)))


def _require_sop(ds: Dataset, path: Path, sop_class: str, what: str) -> None:
    if str(ds.get("SOPClassUID", "")) != sop_class:
        found = ds.get("SOPClassUID", "none")
        msg = f"{path.name}: SOPClassUID (0008,0016) is {found}, expected {what} ({sop_class})"
        raise IngestError(msg)


def read_rtdose(path: Path, *, prescription_gy: float | None = None) -> RtDose:
    """Read an RTDOSE as dose in Gy (float64) on its grid.

    DoseUnits GY is used as stored; RELATIVE needs `prescription_gy` (1.0 = the prescription).
    Raises `IngestError` for other units, a missing DoseGridScaling, a GridFrameOffsetVector that
    is neither relative nor absolute, or non-uniform frame offsets.
    """
    ds = read_dataset(path)
    _require_sop(ds, path, RTDOSE_SOP_CLASS, "RT Dose Storage")
    units = str(ds.get("DoseUnits", "")).strip().upper()
    if units == "RELATIVE" and prescription_gy is not None:
        if not prescription_gy > 0:
            msg = f"prescription_gy must be > 0 to scale RELATIVE dose, got {prescription_gy}"
            raise ValueError(msg)
        to_gy = float(prescription_gy)
    elif units == "GY":
        to_gy = 1.0
        if prescription_gy is not None:
            warnings.warn(
                f"{path.name}: DoseUnits is GY; prescription_gy={prescription_gy} ignored",
                IngestWarning,
                stacklevel=2,
            )
    else:
        msg = (
            f"{path.name}: DoseUnits (3004,0002) is {units!r}, expected 'GY'; "
            "for RELATIVE dose pass prescription_gy=... so it can be scaled to Gy"
        )
        raise IngestError(msg)
    scaling = ds.get("DoseGridScaling")
    if scaling is None or not float(scaling) > 0:
        msg = f"{path.name}: DoseGridScaling (3004,000E) is {scaling!r}, expected a positive number"
        raise IngestError(msg)
    grid = _dose_grid(ds, path)
    pixels = np.asarray(ds.pixel_array, dtype=np.float64).reshape(grid.shape)
    if not np.all(np.isfinite(pixels)):
        msg = (
            f"{path.name}: PixelData (7FE0,0010) holds NaN or infinite dose values; "
            "re-export the RTDOSE from the planning system"
        )
        raise IngestError(msg)
    dose = pixels * float(scaling) * to_gy
    logger.info("RTDOSE grid %s voxels of %.1f x %.1f x %.1f mm", grid.shape, *grid.spacing_mm)
    volume = Volume(
        array=dose,
        grid=grid,
        modality="RTDOSE",
        units="GY",
        acquisition_date=series_date(ds),
        series_uid=str(ds.get("SeriesInstanceUID", "")) or None,
    )
    return RtDose(
        volume=volume,
        summation_type=str(ds.get("DoseSummationType", "")).strip().upper(),
        dose_type=str(ds.get("DoseType", "")).strip().upper(),
    )


def _dose_grid(ds: Dataset, path: Path) -> Grid:
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if keyword not in ds:
            msg = f"{path.name}: {keyword} missing; the dose grid cannot be placed in space"
            raise IngestError(msg)
    row, col, normal = orientation_axes(ds.ImageOrientationPatient, where=path.name)
    origin = np.array([float(v) for v in ds.ImagePositionPatient])
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    offsets = np.array([float(v) for v in ds.get("GridFrameOffsetVector", None) or [0.0]])
    if offsets.size != frames:
        msg = (
            f"{path.name}: GridFrameOffsetVector (3004,000C) has {offsets.size} values for "
            f"{frames} frames; the file is inconsistent, re-export it"
        )
        raise IngestError(msg)
    if abs(offsets[0]) > _OFFSET_TOL_MM:
        identity = np.allclose(np.stack([row, col, normal]), np.eye(3), atol=1e-4)
        if not (identity and abs(offsets[0] - origin[2]) <= _OFFSET_TOL_MM):
            msg = (
                f"{path.name}: GridFrameOffsetVector (3004,000C) starts at {offsets[0]} mm, "
                f"neither 0 (relative) nor the IPP z {origin[2]} mm with identity orientation "
                "(absolute); the dose grid cannot be placed, re-export the RTDOSE"
            )
            raise IngestError(msg)
        offsets = offsets - offsets[0]  # absolute z values; frame 0 lies at IPP
    spacing, axis0 = _frame_spacing(offsets, normal, ds, path)
    pixel = [float(v) for v in ds.PixelSpacing]
    return Grid(
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        spacing_mm=(spacing, pixel[0], pixel[1]),
        axes=(_vec(axis0), _vec(col), _vec(row)),
        shape=(frames, int(ds.Rows), int(ds.Columns)),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None,
    )


def _frame_spacing(
    offsets: NDArray[np.float64], normal: NDArray[np.float64], ds: Dataset, path: Path
) -> tuple[float, NDArray[np.float64]]:
    if offsets.size == 1:
        thickness = ds.get("SliceThickness")
        return (abs(float(thickness)) if thickness else 1.0), normal
    gaps = np.diff(offsets)
    step = float(offsets[-1] - offsets[0]) / (offsets.size - 1)
    regular = offsets[0] + step * np.arange(offsets.size)
    if step == 0 or np.abs(offsets - regular).max() > max(_OFFSET_TOL_MM, 1e-3 * abs(step)):
        msg = (
            f"{path.name}: GridFrameOffsetVector (3004,000C) is not uniform (steps "
            f"{sorted({round(float(g), 3) for g in gaps})} mm); resample the dose to a regular "
            "grid in the planning system and export it again"
        )
        raise IngestError(msg)
    return abs(step), (normal if step > 0 else -normal)


def _vec(values: NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def read_rtstruct(path: Path) -> RtStruct:
    """Closed planar contours and interpreted types of every ROI in an RTSTRUCT.

    ROIs without closed planar contours (points, empty ROIs) appear with no contours. A repeated
    ROI name gets its ROI number appended, with an IngestWarning.
    """
    ds = read_dataset(path)
    _require_sop(ds, path, RTSTRUCT_SOP_CLASS, "RT Structure Set Storage")
    names: dict[int, str] = {}
    frames: set[str] = set()
    for item in ds.get("StructureSetROISequence", []):
        number, name = int(item.ROINumber), str(item.get("ROIName", "") or f"ROI {item.ROINumber}")
        if name in names.values():
            warnings.warn(
                f"{path.name}: ROI name {name!r} repeated; ROI {number} is '{name} [{number}]'",
                IngestWarning,
                stacklevel=2,
            )
            name = f"{name} [{number}]"
        names[number] = name
        if item.get("ReferencedFrameOfReferenceUID"):
            frames.add(str(item.ReferencedFrameOfReferenceUID))
    if not frames:
        for item in ds.get("ReferencedFrameOfReferenceSequence", []):
            if item.get("FrameOfReferenceUID"):
                frames.add(str(item.FrameOfReferenceUID))
    if len(frames) > 1:
        msg = (
            f"{path.name}: ROIs refer to several frames of reference {sorted(frames)}; "
            "split the structure set by frame of reference"
        )
        raise IngestError(msg)
    contours: dict[str, list[NDArray[np.float64]]] = {name: [] for name in names.values()}
    for item in ds.get("ROIContourSequence", []):
        found_name = names.get(int(item.ReferencedROINumber))
        if found_name is None:
            msg = (
                f"{path.name}: ROIContourSequence refers to ROI {item.ReferencedROINumber}, "
                "which StructureSetROISequence (3006,0020) does not define"
            )
            raise IngestError(msg)
        name = found_name
        for contour in item.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            points = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64)
            if points.size < 9 or points.size % 3:
                msg = (
                    f"{path.name}: ROI {name!r} has a closed planar contour with {points.size} "
                    "ContourData (3006,0050) values; expected 3 per point and at least 3 points"
                )
                raise IngestError(msg)
            contours[name].append(points.reshape(-1, 3))
    types = {
        names[int(o.ReferencedROINumber)]: str(o.get("RTROIInterpretedType", "") or "")
        for o in ds.get("RTROIObservationsSequence", [])
        if int(o.ReferencedROINumber) in names
    }
    return RtStruct(
        frame_of_reference_uid=frames.pop() if frames else None,
        rois={name: tuple(found) for name, found in contours.items()},
        roi_types=types,
    )


def rasterize(
    contours: Sequence[NDArray[np.float64]],
    grid: Grid,
    *,
    frame_of_reference_uid: str | None,
) -> NDArray[np.bool_]:
    """Boolean mask on `grid` of the voxels whose centres lie inside the contours.

    Each contour plane goes to the nearest grid slice within half a slice spacing (one plane per
    slice: the nearest); contours of one plane combine by even-odd (XOR), so holes work.
    Contours outside the grid are ignored. Raises `GeometryError` when the frames of reference
    differ or a contour is not parallel to the grid's slices.
    """
    require_same_frame(
        replace(grid, frame_of_reference_uid=frame_of_reference_uid),
        grid,
        what="RTSTRUCT contours on the grid",
    )
    step = _PLANE_TOL_MM / grid.spacing_mm[0]  # plane keys: multiples of 0.01 mm along axis 0
    planes: dict[int, list[NDArray[np.float64]]] = {}
    for contour in contours:
        index = grid.lps_to_index(np.asarray(contour, dtype=float).reshape(-1, 3))
        spread_mm = float(np.ptp(index[:, 0])) * grid.spacing_mm[0]
        if spread_mm > max(_PLANE_TOL_MM, 0.1 * grid.spacing_mm[0]):
            msg = (
                f"a contour spans {spread_mm:.2f} mm across the grid's slices; it is not parallel "
                "to them (sagittal or coronal contours): rasterize on a grid in the contour's plane"
            )
            raise GeometryError(msg)
        planes.setdefault(round(float(index[:, 0].mean()) / step), []).append(index[:, 1:])
    nearest: dict[int, int] = {}  # slice -> key of the plane closest to it
    for key in planes:
        s = round(key * step)
        inside = 0 <= s < grid.shape[0] and abs(key * step - s) <= 0.5
        if inside and (s not in nearest or abs(key * step - s) < abs(nearest[s] * step - s)):
            nearest[s] = key
    mask = np.zeros(grid.shape, dtype=bool)
    for s, key in nearest.items():
        for polygon in planes[key]:
            mask[s] ^= _inside(polygon, grid.shape[1:])
    return mask


def _inside(polygon: NDArray[np.float64], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Voxel centres (j, i) of a slice inside `polygon` given in continuous (j, i) indices."""
    out = np.zeros(shape, dtype=bool)
    lo = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return out
    jj, ii = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    centres = np.column_stack([jj.ravel(), ii.ravel()]).astype(float)
    inside = PolygonPath(polygon, closed=False).contains_points(centres)
    out[lo[0] : hi[0], lo[1] : hi[1]] = inside.reshape(jj.shape)
    return out


# ---- RTPLAN and dose summation ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RtPlan:
    """Prescription and fractionation of an RTPLAN (first fraction group)."""

    prescription_gy: float | None  # TargetPrescriptionDose (300A,0026) of a TARGET reference
    fractions: int | None  # NumberOfFractionsPlanned (300A,0078)
    beam_dose_gy: Mapping[int, float] = field(default_factory=dict)  # per fraction, by beam
    frame_of_reference_uid: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "beam_dose_gy", MappingProxyType(dict(self.beam_dose_gy)))


def read_rtplan(path: Path) -> RtPlan:
    """Prescription dose, planned fractions and per-beam dose (where present) of an RTPLAN."""
    ds = read_dataset(path)
    _require_sop(ds, path, RTPLAN_SOP_CLASS, "RT Plan Storage")
    prescription = None
    for item in ds.get("DoseReferenceSequence", []):
        value = item.get("TargetPrescriptionDose")
        if value is not None and str(item.get("DoseReferenceType", "TARGET")).upper() == "TARGET":
            prescription = max(prescription or 0.0, float(value))
    fractions = None
    beams: dict[int, float] = {}
    groups = ds.get("FractionGroupSequence", [])
    if groups:
        planned = groups[0].get("NumberOfFractionsPlanned")
        fractions = int(planned) if planned not in (None, "") else None
        for beam in groups[0].get("ReferencedBeamSequence", []):
            if beam.get("BeamDose") not in (None, ""):
                beams[int(beam.ReferencedBeamNumber)] = float(beam.BeamDose)
    if prescription is not None and not prescription > 0:
        msg = f"{path.name}: TargetPrescriptionDose (300A,0026) is {prescription}; expected > 0"
        raise IngestError(msg)
    return RtPlan(
        prescription_gy=prescription,
        fractions=fractions,
        beam_dose_gy=beams,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None,
        label=str(ds.get("RTPlanLabel", "")),
    )


def sum_rtdoses(doses: Sequence[RtDose], *, fractions: int | None = None) -> RtDose:
    """Sum RTDOSE grids of one frame of reference onto the first grid (trilinear, 0 outside).

    FRACTION doses are multiplied by `fractions` (the plan's NumberOfFractionsPlanned) first;
    mixing FRACTION and other summation types without it raises.
    """
    from abscopal.geometry import resample

    if not doses:
        msg = "sum_rtdoses needs at least one RTDOSE"
        raise ValueError(msg)
    target = doses[0].volume.grid
    total = np.zeros(target.shape)
    for dose in doses:
        require_same_frame(target, dose.volume.grid, what="summing RTDOSE grids")
        scale = 1.0
        if dose.summation_type == "FRACTION":
            if fractions is None:
                msg = (
                    "an RTDOSE has DoseSummationType (3004,000A) FRACTION; pass fractions= "
                    "(NumberOfFractionsPlanned of the RTPLAN) to sum it with plan doses"
                )
                raise IngestError(msg)
            scale = float(fractions)
        grid = dose.volume.grid
        values = (
            dose.volume.array
            if grid.same_geometry(target, tol_mm=1e-6)
            else resample(dose.volume.array, grid, target, order=1, outside=0.0)
        )
        total += scale * values
    first = doses[0].volume
    volume = Volume(
        array=total,
        grid=target,
        modality="RTDOSE",
        units="GY",
        acquisition_date=first.acquisition_date,
        series_uid=first.series_uid,
    )
    kinds = {d.summation_type for d in doses}
    summation = "PLAN" if len(doses) > 1 and kinds <= {"FRACTION", "BEAM"} else "MULTI_PLAN"
    if len(doses) == 1:
        summation = "PLAN" if kinds == {"FRACTION"} else doses[0].summation_type
    return RtDose(volume=volume, summation_type=summation, dose_type=doses[0].dose_type)


# Identity of the patient and study: copied from the source image so the dose joins its study.
_PATIENT_STUDY: Final = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientIdentityRemoved",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
)  # fmt: skip
_UINT32_MAX: Final = 2**32 - 1


def write_rtdose(
    dose: Volume,
    out: Path,
    *,
    like: Path | None = None,
    summation_type: str = "PLAN",
    description: str = "abscopal dose",
) -> None:
    """Write a dose map in Gy as a multi-frame RTDOSE (uint32 with DoseGridScaling), atomically.

    `like` (a DICOM file of the image the dose was computed from) supplies the patient, the study
    and the frame of reference, so viewers overlay the dose on that image; without it the RTDOSE
    gets a new study and frame of reference. A dose computed without a plan (Y-90 from a PET)
    has no RTPLAN to reference, so ReferencedRTPlanSequence is omitted.
    """
    import tempfile
    from pathlib import Path

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    values = np.asarray(dose.array, dtype=np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0:
        msg = f"{out.name}: the dose map holds NaN, infinite or negative values; nothing written"
        raise ValueError(msg)
    ds = Dataset()
    source = read_dataset(like, stop_before_pixels=True) if like is not None else None
    for keyword in _PATIENT_STUDY:
        if source is not None and keyword in source:
            setattr(ds, keyword, source.data_element(keyword).value)  # type: ignore[union-attr]
    ds.StudyInstanceUID = ds.get("StudyInstanceUID") or generate_uid()
    ds.SOPClassUID = RTDOSE_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "RTDOSE"
    ds.SeriesDescription = description
    ds.Manufacturer = "abscopal"
    frame = source.get("FrameOfReferenceUID") if source is not None else None
    ds.FrameOfReferenceUID = frame or generate_uid()
    _write_dose_geometry(ds, dose.grid)
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", summation_type
    scaling = max(float(values.max()), 1e-9) / _UINT32_MAX
    ds.DoseGridScaling = f"{scaling:.10e}"[:16]
    scaling = float(ds.DoseGridScaling)  # the value as stored, so rounding cannot overflow
    stored = np.minimum(np.rint(values / scaling), _UINT32_MAX).astype("<u4")
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / out.name
        ds.save_as(staged, enforce_file_format=True)
        staged.replace(out)


def _write_dose_geometry(ds: Dataset, grid: Grid) -> None:
    """Image plane, multi-frame pointers and relative GridFrameOffsetVector of `grid`."""
    from pydicom.tag import Tag

    row_dir, col_dir, slice_dir = (
        np.asarray(a) for a in (grid.axes[2], grid.axes[1], grid.axes[0])
    )
    normal = np.cross(row_dir, col_dir)
    sign = float(np.sign(slice_dir @ normal)) or 1.0  # slices may run against the normal
    ds.ImagePositionPatient = [f"{v:.6f}" for v in grid.origin_mm]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
    ds.PixelSpacing = [f"{grid.spacing_mm[1]:.6f}", f"{grid.spacing_mm[2]:.6f}"]
    ds.SliceThickness = f"{grid.spacing_mm[0]:.6f}"
    ds.NumberOfFrames = grid.shape[0]
    ds.FrameIncrementPointer = Tag(0x3004, 0x000C)  # GridFrameOffsetVector
    ds.GridFrameOffsetVector = [
        f"{sign * k * grid.spacing_mm[0]:.6f}"[:16] for k in range(grid.shape[0])
    ]
    ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
