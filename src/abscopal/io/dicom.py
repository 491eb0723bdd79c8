"""DICOM folders: index the series in a tree, load a CT, MR, PET or SPECT series as a Volume.

`index_folder` reads headers only and groups files by SeriesInstanceUID; `load_series` reads the
pixels of one series (single-frame files, Enhanced multi-frame or NM tomography), applies
RescaleSlope/Intercept per slice, sorts the slices along the slice normal and returns a `Volume`
on a `Grid` (voxel-centre origin, LPS mm, (slice, row, column)).
The small helpers here (`read_dataset`, `orientation_axes`, `series_date`) serve the other readers
in `abscopal.io`.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import iter_pixels
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import DA

from abscopal.errors import IngestError, IngestWarning
from abscopal.geometry import Grid, sitk_image
from abscopal.io.checks import pixel_data_problem, require_valid_image
from abscopal.model import Volume

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

# Files that are clearly not DICOM: skipped silently by `index_folder`.
NON_DICOM_SUFFIXES: Final = (
    ".yaml", ".yml", ".json", ".html", ".htm", ".csv", ".tsv", ".txt", ".md", ".png", ".jpg",
    ".jpeg", ".pdf", ".nii", ".nii.gz", ".nrrd", ".parquet", ".xml", ".log", ".zip",
)  # fmt: skip
NON_DICOM_NAMES: Final = frozenset({"license", "readme", "copying", "thumbs.db"})
_DICOM_SUFFIXES: Final = frozenset({"", ".dcm", ".dicom", ".ima"})
MEDIA_STORAGE_DIRECTORY: Final = "1.2.840.10008.1.3.10"  # DICOMDIR: an index, not a series
IMAGE_MODALITIES: Final = frozenset({"CT", "MR", "PT"})
VOLUME_MODALITIES: Final = IMAGE_MODALITIES | {"NM"}  # what `load_series` reads (NM: SPECT)
_POSITION_TOL_MM: Final = 0.01  # two slices closer than this along the normal are duplicates
_ORIENTATION_TOL: Final = 1e-4  # direction cosines that agree within this are the same
_NATIVE_SYNTAXES: Final = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
)
_PIXEL_DATA: Final = 0x7FE00010
_DEFER_BYTES: Final = 16384  # larger values (the pixels) stay in the file until read on purpose
_READERS: Final = 1  # one pixel reader beside the header parser: more only fight for the GIL


@dataclass(frozen=True, slots=True, kw_only=True)
class DicomSeries:
    """One series found by `index_folder`: identifiers from its headers and its files (sorted).

    `headers` are the datasets `index_folder` parsed for a CT, MR, PET or NM series (pixel data
    left in the files), so that `load_series` does not parse them again; empty when the record is
    made by hand or for other modalities.
    """

    patient_id: str
    study_uid: str
    series_uid: str
    modality: str
    sop_class_uid: str
    frame_of_reference_uid: str | None
    study_date: date | None
    series_description: str
    files: tuple[Path, ...]
    headers: tuple[Dataset, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.files:
            msg = f"series {self.series_uid}: a DicomSeries needs at least one file"
            raise ValueError(msg)


def read_dataset(
    path: Path, *, stop_before_pixels: bool = False, defer_size: int | None = None
) -> Dataset:
    """Read one DICOM file; a file without a File Meta header is read raw, with an IngestWarning.

    Values longer than `defer_size` bytes are left in the file until accessed (pydicom's
    `defer_size`). Raises `IngestError` naming the file when it is not DICOM at all.
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
    except InvalidDicomError as exc:
        reason = str(exc).split(". ")[0]
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc}); check that the file exists and is readable"
        raise IngestError(msg) from exc
    except (EOFError, ValueError) as exc:
        msg = f"{path}: not a DICOM file ({exc}); remove it or move it out of the patient folder"
        raise IngestError(msg) from exc
    try:  # DICOM written without preamble and File Meta header (old exports, some TPS)
        ds = pydicom.dcmread(
            path, stop_before_pixels=stop_before_pixels, defer_size=defer_size, force=True
        )
        ok = "SOPClassUID" in ds and "SOPInstanceUID" in ds
    except Exception:  # a forced parse of arbitrary bytes may raise anything
        ok = False
    if not ok:
        msg = f"{path}: not a DICOM file ({reason}); remove it or move it out of the patient folder"
        raise IngestError(msg)
    warnings.warn(
        f"{path.name}: no DICOM preamble or File Meta header; read as a raw dataset",
        IngestWarning,
        stacklevel=2,
    )
    return ds


def parse_date(value: object) -> date | None:
    """A DICOM DA (or the date part of a DT) as `date`; None when empty or malformed."""
    text = str(value or "").strip()[:8]
    if not text:
        return None
    try:
        parsed = DA(text)
    except ValueError:
        return None
    return date(parsed.year, parsed.month, parsed.day) if parsed is not None else None


def series_date(ds: Dataset) -> date | None:
    """AcquisitionDate, else AcquisitionDateTime, SeriesDate, StudyDate; None if none is usable."""
    for keyword in ("AcquisitionDate", "AcquisitionDateTime", "SeriesDate", "StudyDate"):
        found = parse_date(ds.get(keyword))
        if found is not None:
            return found
    return None


def orientation_axes(
    orientation: Iterable[Any], *, where: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Row cosines, column cosines and their cross product (slice normal) from IOP, orthonormalized.

    Raises `IngestError` (naming `where`) unless the six values are two orthogonal unit vectors.
    """
    values = np.asarray([float(v) for v in orientation], dtype=float)
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        msg = f"{where}: ImageOrientationPatient (0020,0037) must hold 6 numbers, got {values}"
        raise IngestError(msg)
    row, col = values[:3], values[3:]
    norms_ok = abs(np.linalg.norm(row) - 1) < 1e-3 and abs(np.linalg.norm(col) - 1) < 1e-3
    if not norms_ok or abs(float(row @ col)) > 1e-3:
        msg = (
            f"{where}: ImageOrientationPatient (0020,0037) {values.tolist()} is not two orthogonal "
            "unit vectors; the file's geometry is corrupt, re-export it"
        )
        raise IngestError(msg)
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _skipped_silently(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(".") or name in NON_DICOM_NAMES or name.endswith(NON_DICOM_SUFFIXES)


def _read_header(path: Path) -> Dataset | None:
    """Header of `path`, None for a non-DICOM file of an unusual suffix (with a warning)."""
    if path.suffix.lower() in _DICOM_SUFFIXES or path.suffix[1:].isdigit():  # "1.2.840...3"
        return read_dataset(path, defer_size=_DEFER_BYTES)
    try:
        return read_dataset(path, defer_size=_DEFER_BYTES)
    except IngestError:
        warnings.warn(f"{path}: not DICOM, skipped", IngestWarning, stacklevel=3)
        return None


def _is_dicomdir(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop_class = meta.get("MediaStorageSOPClassUID", "") if meta is not None else ""
    return str(sop_class or ds.get("SOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


@dataclass(frozen=True, slots=True, kw_only=True)
class BadFile:
    """A file `scan_folder` set aside, with the reason (file, tag and fix)."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderScan:
    """The good series under a folder and the files that could not be used."""

    series: tuple[DicomSeries, ...]
    bad_files: tuple[BadFile, ...]


def index_folder(root: Path) -> list[DicomSeries]:
    """Every DICOM series under `root` (any depth), read from headers only.

    Files with a clearly non-DICOM suffix (YAML, JSON, CSV, NIfTI, ...) and hidden files are
    skipped; a `.dcm` or suffix-less file that is not DICOM raises `IngestError`. Localizers are
    skipped with an `IngestWarning`. Series are sorted by study date, study and series UID.
    `scan_folder` is the tolerant variant that sets bad files aside.
    """
    return list(_scan(Path(root), tolerant=False).series)


def scan_folder(root: Path) -> FolderScan:
    """Like `index_folder`, but a bad file is set aside with its reason instead of raising.

    Bad: not DICOM, truncated, an image header that cannot be placed, zero or negative spacing, a
    NaN slope, pixel data of the wrong size. Pixel data is checked by length, not decoded.
    """
    return _scan(Path(root), tolerant=True)


def _scan(root: Path, *, tolerant: bool) -> FolderScan:
    if not root.is_dir():
        msg = f"{root}: not a folder; pass the patient folder that holds the DICOM files"
        raise IngestError(msg)
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    localizers: dict[str, int] = defaultdict(int)
    bad: list[BadFile] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if _skipped_silently(path):
            continue
        try:
            ds = _read_header(path) if not tolerant else _checked_header(path)
        except IngestError as exc:
            if not tolerant:
                raise
            bad.append(BadFile(path=path, reason=str(exc)))
            continue
        if ds is None:
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            if not _is_dicomdir(ds):
                warnings.warn(
                    f"{path}: no SeriesInstanceUID (0020,000E); skipped",
                    IngestWarning,
                    stacklevel=3,
                )
            continue
        if "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]:
            localizers[uid] += 1
            continue
        groups[uid].append((path, ds))
    for uid, count in localizers.items():
        warnings.warn(
            f"series {uid}: {count} localizer image(s) (ImageType LOCALIZER) skipped",
            IngestWarning,
            stacklevel=3,
        )
    if not groups and not (tolerant and bad):
        msg = (
            f"{root}: no DICOM series found; check that the folder holds the patient's DICOM files"
        )
        raise IngestError(msg)
    series = [_series_record(uid, members) for uid, members in groups.items()]
    series.sort(key=lambda s: (s.study_date or date.min, s.study_uid, s.series_uid))
    logger.info("indexed %d series under %s (%d bad files)", len(series), root.name, len(bad))
    return FolderScan(series=tuple(series), bad_files=tuple(bad))


def _checked_header(path: Path) -> Dataset | None:
    """All elements with large values deferred; image files are checked (header, pixel length)."""
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
    except Exception as exc:  # a damaged file may raise anything while parsing
        msg = f"{path.name}: cannot be parsed as DICOM ({exc}); copy the file again or remove it"
        raise IngestError(msg) from exc
    if "SOPClassUID" not in ds:
        return _read_header(path)
    if str(ds.get("Modality", "")) in IMAGE_MODALITIES:
        _require_valid_image(ds, path)
    return ds


class _KeepDeferred:
    """`ds` as `pixel_data_problem` reads it, deferred PixelData left in the file.

    Indexing hands out a deferred element (offset, length) as it is, where `Dataset.__getitem__`
    would read the whole value from the file.
    """

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def __getitem__(self, key: str) -> Any:
        return self._ds.get_item(key, keep_deferred=True)

    def __contains__(self, key: str) -> bool:
        return key in self._ds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ds, name)


def _require_valid_image(ds: Dataset, path: Path) -> None:
    """`require_valid_image` that checks deferred pixel data by its length in the file, unread."""
    require_valid_image(ds, path, pixels=False)
    problem = pixel_data_problem(cast("Dataset", _KeepDeferred(ds)), path)
    if problem is not None:
        raise IngestError(problem)


def _series_record(uid: str, members: list[tuple[Path, Dataset]]) -> DicomSeries:
    first = members[0][1]
    frame = first.get("FrameOfReferenceUID")
    if frame is None and "ReferencedFrameOfReferenceSequence" in first:  # RTSTRUCT
        frame = first.ReferencedFrameOfReferenceSequence[0].get("FrameOfReferenceUID")
    return DicomSeries(
        patient_id=str(first.get("PatientID", "")),
        study_uid=str(first.get("StudyInstanceUID", "")),
        series_uid=uid,
        modality=str(first.get("Modality", "")),
        sop_class_uid=str(first.get("SOPClassUID", "")),
        frame_of_reference_uid=str(frame) if frame else None,
        study_date=parse_date(first.get("StudyDate")) or series_date(first),
        series_description=str(first.get("SeriesDescription", "")),
        files=tuple(path for path, _ in members),
        headers=tuple(ds for _, ds in members)
        if first.get("Modality") in VOLUME_MODALITIES
        else (),
    )


def _units(ds: Dataset, modality: str, where: str) -> str:
    if modality == "CT":
        return "HU"
    if modality == "PT":
        units = str(ds.get("Units", "")).strip().upper()
        if not units:
            msg = (
                f"{where}: PET without Units (0054,1001); cannot tell Bq/mL from counts. "
                "Re-export the series with its Units attribute"
            )
            raise IngestError(msg)
        return units
    if modality == "NM":  # quantitative SPECT carries Units; otherwise reconstructed counts
        return str(ds.get("Units", "")).strip().upper() or "COUNTS"
    return "AU"  # MR: arbitrary units


def _check_same(values: list[Any], names: list[str], what: str, series_uid: str) -> None:
    """Raise `IngestError` naming the first value (and its file) that differs from the first."""
    try:
        table = np.asarray(values, dtype=float).reshape(len(values), -1)
        differs = np.any(np.abs(table - table[0]) > _ORIENTATION_TOL, axis=1)
    except ValueError:  # values of different lengths
        differs = np.array([np.size(v) != np.size(values[0]) for v in values])
    if differs.any():
        n = int(np.argmax(differs))
        msg = (
            f"series {series_uid}: mixed {what} ({names[0]}: {list(values[0])}, "
            f"{names[n]}: {list(values[n])}); split the series or re-export it"
        )
        raise IngestError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plane:
    """One 2-D image of a series (a file, or one frame of a multi-frame file) and where it lies."""

    name: str  # "CT0001.dcm" or "mf.dcm frame 3", for messages
    file_index: int
    position_mm: tuple[float, ...]
    orientation: tuple[float, ...]
    pixel_spacing_mm: tuple[float, ...]  # (between rows, between columns)
    thickness_mm: float | None
    slope: float
    intercept: float
    order: tuple[int, int]  # (InstanceNumber, frame): breaks ties between equal positions


def load_series(series: DicomSeries) -> Volume:
    """A CT, MR, PET or SPECT series as a float32 `Volume` (HU, PET/NM Units, "AU" for MR).

    Single-frame files, Enhanced multi-frame files (Per-frame and Shared Functional Groups) and
    reconstructed NM tomography (RECON TOMO) are read, native or compressed. Slices are sorted along
    the normal (row cosines x column cosines); duplicated positions keep the first (IngestWarning).
    A constant in-plane shift along the stack (gantry tilt) is resampled onto an orthogonal grid
    (IngestWarning naming the angle). Missing slices, irregular in-plane shifts, mixed orientation
    or matrix size raise `IngestError`.
    """
    uid = series.series_uid
    if series.modality not in VOLUME_MODALITIES:
        msg = (
            f"series {uid}: modality {series.modality!r} is not an image series (CT, MR, PT, NM); "
            "use read_rtdose, read_rtstruct or read_seg for RT and SEG objects"
        )
        raise IngestError(msg)
    datasets, planes, array = _read_stack(list(series.files), _indexed_headers(series), uid)
    names = [p.name for p in planes]
    _check_same([p.orientation for p in planes], names, "orientation", uid)
    _check_same([p.pixel_spacing_mm for p in planes], names, "PixelSpacing", uid)
    frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in datasets}
    if len(frames) > 1:
        msg = f"series {uid}: slices with different FrameOfReferenceUID {sorted(frames)}"
        raise IngestError(msg)
    row, col, normal = orientation_axes(planes[0].orientation, where=names[0])
    positions = np.array([p.position_mm for p in planes])
    along = positions @ normal
    order = sorted(range(len(planes)), key=lambda n: (along[n], planes[n].order))
    kept = _drop_duplicates(order, along, names, uid)
    spacing, uneven = _slice_spacing(kept, along=along, planes=planes, uid=uid)
    pixel = planes[kept[0]].pixel_spacing_mm
    shear = _shear_per_mm(
        kept, along=along, positions=positions, normal=normal, pixel=pixel, uid=uid
    )
    array = _in_order(array, kept)
    if uneven:
        array = _onto_regular_slices(array, along[kept], spacing)
    grid = Grid(
        origin_mm=_vec(positions[kept[0]]),
        spacing_mm=(spacing, pixel[0], pixel[1]),
        axes=(_vec(normal), _vec(col), _vec(row)),
        shape=(len(kept), array.shape[1], array.shape[2]),
        frame_of_reference_uid=frames.pop() or None,
    )
    if shear is not None:
        array, grid = _unsheared(array, grid, shear, uid)
    kept_files = {planes[n].file_index for n in kept}
    dates = [d for d in (series_date(datasets[f]) for f in kept_files) if d is not None]
    logger.info(
        "%s series: %d slices of %.2f x %.2f x %.2f mm",
        series.modality,
        grid.shape[0],
        *grid.spacing_mm,
    )
    return Volume(
        array=array,
        grid=grid,
        modality=series.modality,
        units=_units(datasets[0], series.modality, f"series {uid}"),
        acquisition_date=min(dates) if dates else None,
        series_uid=uid,
    )


def _vec(values: NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _drop_duplicates(
    order: list[int], along: NDArray[np.float64], names: list[str], uid: str
) -> list[int]:
    kept = [order[0]]
    dropped: list[str] = []
    for n in order[1:]:
        if abs(along[n] - along[kept[-1]]) < _POSITION_TOL_MM:
            dropped.append(f"{names[n]} (same position as {names[kept[-1]]})")
        else:
            kept.append(n)
    if dropped:
        warnings.warn(
            f"series {uid}: duplicate slice positions, kept the first file: {', '.join(dropped)}",
            IngestWarning,
            stacklevel=3,
        )
    return kept


def _slice_spacing(
    kept: list[int], *, along: NDArray[np.float64], planes: list[_Plane], uid: str
) -> tuple[float, bool]:
    """Regular slice spacing (mm) and whether the slices must be resampled onto it.

    Within min(0.1 mm, 10 %) of a regular grid the positions are taken as regular; up to a quarter
    of the spacing off, too, with a warning; further off, the stack is resampled (warning). Gaps
    over 1.5 × the median spacing (missing slices) raise.
    """
    if len(kept) == 1:
        return planes[kept[0]].thickness_mm or 1.0, False
    d = along[kept]
    gaps = np.diff(d)
    median = float(np.median(gaps))
    missing = np.flatnonzero(gaps > 1.5 * median)
    if missing.size:
        where = ", ".join(f"{d[m]:.2f} mm to {d[m + 1]:.2f} mm" for m in missing)
        msg = (
            f"series {uid}: missing slices between positions {where} along the slice normal "
            f"(median spacing {median:.3f} mm); re-export the complete series"
        )
        raise IngestError(msg)
    spacing = float(d[-1] - d[0]) / (len(kept) - 1)
    deviation = np.abs(d - (d[0] + spacing * np.arange(len(kept))))
    uneven = bool(deviation.max() > min(0.1, 0.1 * spacing))
    if uneven:
        worst = planes[kept[int(deviation.argmax())]].name
        off = f"{worst} lies {deviation.max():.3f} mm off a regular {spacing:.3f} mm grid"
        uneven = bool(deviation.max() > 0.25 * spacing)
        what = (
            "resampled onto it by linear interpolation" if uneven else "positions taken as regular"
        )
        warnings.warn(
            f"series {uid}: uneven slice spacing ({off}); {what}", IngestWarning, stacklevel=3
        )
    return spacing, uneven


def _shear_per_mm(
    kept: list[int],
    *,
    along: NDArray[np.float64],
    positions: NDArray[np.float64],
    normal: NDArray[np.float64],
    pixel: tuple[float, ...],
    uid: str,
) -> NDArray[np.float64] | None:
    """In-plane shift of the slices per mm along the normal (gantry tilt), None when there is none.

    A shift that grows linearly along the stack is a tilted (sheared) acquisition; anything else
    (shifts that jump about) has no single geometry and raises `IngestError`.
    """
    d = along[kept] - along[kept[0]]
    shift = positions[kept] - positions[kept[0]] - np.outer(d, normal)
    tolerance_mm = 0.1 * min(pixel)
    if len(kept) < 2 or np.linalg.norm(shift, axis=1).max() <= tolerance_mm:
        return None
    shear: NDArray[np.float64] = (d @ shift) / float(d @ d)  # least squares through the first
    if np.linalg.norm(shift - np.outer(d, shear), axis=1).max() > tolerance_mm:
        msg = (
            f"series {uid}: slices are shifted in-plane along the stack by irregular amounts "
            "(ImagePositionPatient (0020,0032) is neither along the slice normal nor a constant "
            "gantry tilt); re-export or reconstruct the series on a regular grid"
        )
        raise IngestError(msg)
    return shear


def _unsheared(
    array: NDArray[np.float32], grid: Grid, shear_per_mm: NDArray[np.float64], uid: str
) -> tuple[NDArray[np.float32], Grid]:
    """A sheared stack resampled (SimpleITK, linear) onto an orthogonal grid that holds it all.

    `grid` places the slices as if unsheared; slice k truly lies shifted in-plane by
    k·spacing·`shear_per_mm`. The new grid keeps the spacing and axes and grows in-plane to cover
    every slice; voxels outside the scanned stack get the stack's minimum (air for CT).
    """
    import SimpleITK

    sitk: Any = SimpleITK  # its partial stubs leave most calls untyped
    axes = np.asarray(grid.axes, dtype=float)
    origin = np.asarray(grid.origin_mm, dtype=float)
    tilt_deg = float(np.degrees(np.arctan(np.linalg.norm(shear_per_mm))))
    span_mm = shear_per_mm * grid.spacing_mm[0] * (grid.shape[0] - 1)  # last slice's shift
    lo, hi = [0, 0, 0], list(grid.shape)
    for axis in (1, 2):
        pixels = float(span_mm @ axes[axis]) / grid.spacing_mm[axis]
        lo[axis] = min(0, int(np.floor(pixels + 1e-6)))
        hi[axis] = grid.shape[axis] + max(0, int(np.ceil(pixels - 1e-6)))
    onto = replace(
        grid,
        origin_mm=_vec(grid.index_to_lps(np.asarray(lo, dtype=float))),
        shape=(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]),
    )
    # true point p lies where the unsheared image holds p − ((p − origin)·normal)·shear
    transform = sitk.AffineTransform(3)
    matrix = np.eye(3) - np.outer(shear_per_mm, axes[0])
    transform.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    transform.SetTranslation(tuple(float(v) for v in shear_per_mm * float(origin @ axes[0])))
    resampled = sitk.Resample(
        sitk_image(array, grid),
        [int(n) for n in onto.shape[::-1]],  # SimpleITK orders x, y, z = column, row, slice
        transform,
        sitk.sitkLinear,
        onto.origin_mm,
        onto.spacing_mm[::-1],
        tuple(float(v) for v in axes[::-1].T.ravel()),
        float(array.min()),
        sitk.sitkFloat32,
    )
    warnings.warn(
        f"series {uid}: gantry tilt of {tilt_deg:.1f} degrees (slices shifted in-plane along the "
        f"stack); resampled by linear interpolation onto an orthogonal {onto.shape} grid",
        IngestWarning,
        stacklevel=3,
    )
    out: NDArray[np.float32] = sitk.GetArrayFromImage(resampled)
    return out, onto


def _onto_regular_slices(
    array: NDArray[np.float32], along: NDArray[np.float64], spacing: float
) -> NDArray[np.float32]:
    """Slices at positions `along` (mm, increasing) interpolated onto d0 + k·spacing."""
    targets = along[0] + spacing * np.arange(len(along))
    upper = np.clip(np.searchsorted(along, targets, side="right"), 1, len(along) - 1)
    weight = (targets - along[upper - 1]) / (along[upper] - along[upper - 1])
    out = np.empty_like(array)
    for k, (j, w) in enumerate(zip(upper, np.clip(weight, 0.0, 1.0), strict=True)):
        out[k] = (1.0 - w) * array[j - 1] + w * array[j]
    return out


def _in_order(array: NDArray[np.float32], kept: list[int]) -> NDArray[np.float32]:
    """Rows `kept` of `array`, in that order, permuted in place (no second copy of the series)."""
    order = list(kept) + [n for n in range(len(array)) if n not in set(kept)]
    done = [False] * len(order)
    for start in range(len(order)):  # follow each cycle of the permutation with one spare slice
        if done[start] or order[start] == start:
            done[start] = True
            continue
        spare = array[start].copy()
        i = start
        while True:
            done[i] = True
            j = order[i]
            if j == start:
                array[i] = spare
                break
            array[i] = array[j]
            i = j
    return array[: len(kept)]


# ---- reading: headers first, then the pixels of every file straight into one array ------------


def _indexed_headers(series: DicomSeries) -> list[Dataset | None]:
    """The headers `index_folder` kept for `series.files`, None for each file to be parsed."""
    headers = series.headers
    if len(headers) == len(series.files) and all(
        str(getattr(ds, "filename", "")) == str(path)
        for ds, path in zip(headers, series.files, strict=True)
    ):
        return list(headers)
    return [None] * len(series.files)


def _read_stack(
    files: list[Path], headers_read: list[Dataset | None], uid: str
) -> tuple[list[Dataset], list[_Plane], NDArray[np.float32]]:
    """Headers, planes and rescaled pixels (float32, one slice per plane, file order) of `files`.

    Each file is read once: its header is parsed with the pixel data left in the file
    (`defer_size`), then a reader thread puts the pixels straight into one preallocated array
    while the next header is parsed (file I/O and numpy release the GIL). Peak memory is the final
    array plus one frame. The array is sized from the first file; when later files hold
    another number of frames, the pixels are read again into an array of the right size.
    """
    headers: list[tuple[Dataset, list[_Plane]]] = []
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        jobs: list[Future[None]] = []
        array = np.empty((0, 0, 0), dtype=np.float32)
        for n, path in enumerate(files):
            ds, planes = _header_planes(path, n, headers_read[n])
            headers.append((ds, planes))
            shape = (int(ds.Rows), int(ds.Columns))
            if n == 0:
                array = np.empty((len(files) * len(planes), *shape), dtype=np.float32)
            _check_same([array.shape[1:], shape], [files[0].name, path.name], "matrix size", uid)
            if len(jobs) == n and len(planes) * len(files) == len(array):  # all fit so far
                out = array[n * len(planes) : (n + 1) * len(planes)]
                jobs.append(pool.submit(_read_pixels, path, ds, planes, out))
        if len(jobs) < len(files):  # files with different numbers of frames
            _finish(jobs)
            array = np.empty((sum(len(p) for _, p in headers), *shape), dtype=np.float32)
            starts = np.cumsum([0] + [len(p) for _, p in headers])
            jobs = [
                pool.submit(_read_pixels, path, ds, planes, array[starts[n] : starts[n + 1]])
                for n, (path, (ds, planes)) in enumerate(zip(files, headers, strict=True))
            ]
        _finish(jobs)
    planes = [plane for _, file_planes in headers for plane in file_planes]
    return [ds for ds, _ in headers], planes, array


def _finish(jobs: list[Future[None]]) -> None:
    """Wait for every job; raise the error of the first file that failed, in file order."""
    for job in jobs:
        job.result()


def _header_planes(path: Path, file_index: int, ds: Dataset | None) -> tuple[Dataset, list[_Plane]]:
    """The checked header of `path` (read now unless given; pixel data deferred), its planes."""
    if ds is None or _PIXEL_DATA not in ds:  # a header read without its (deferred) pixel data
        ds = read_dataset(path, defer_size=_DEFER_BYTES)
    _require_valid_image(ds, path)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        msg = (
            f"{path.name}: SamplesPerPixel (0028,0002) is {ds.SamplesPerPixel}, expected 1 "
            "(a colour image is not a CT, MR, PET or SPECT volume); export the greyscale series"
        )
        raise IngestError(msg)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return ds, _enhanced_planes(ds, path, frames, file_index)
    if str(ds.get("Modality", "")) == "NM":
        return ds, _nm_planes(ds, path, frames, file_index)
    if frames > 1:
        msg = (
            f"{path.name}: multi-frame image (NumberOfFrames (0028,0008) {frames}) without "
            "Per-frame Functional Groups (5200,9230) to place its frames; export the series as "
            "single-frame or Enhanced images"
        )
        raise IngestError(msg)
    return ds, [_single_plane(ds, path, file_index)]


def _numbers(value: Any, count: int, where: str, tag: str) -> tuple[float, ...]:
    """`count` finite numbers from a DICOM multi-value, or IngestError naming `where` and `tag`."""
    try:
        numbers = tuple(float(v) for v in (value if isinstance(value, Sequence) else [value]))
    except (TypeError, ValueError):
        numbers = ()
    if value is None or len(numbers) != count or not all(np.isfinite(numbers)):
        msg = (
            f"{where}: {tag} is {value!r}, expected {count} number(s); the image cannot be placed "
            "in space: re-export the series with its geometry"
        )
        raise IngestError(msg)
    return numbers


def _spacing(value: Any, where: str) -> tuple[float, ...]:
    spacing = _numbers(value, 2, where, "PixelSpacing (0028,0030)")
    if not all(s > 0 for s in spacing):
        msg = f"{where}: PixelSpacing (0028,0030) is {list(spacing)}, expected positive mm"
        raise IngestError(msg)
    return spacing


def _thickness(source: Dataset) -> float | None:
    value = source.get("SpacingBetweenSlices") or source.get("SliceThickness")
    return abs(float(value)) or None if value not in (None, "") else None


def _rescale(source: Dataset, where: str) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept of `source` (1 and 0 when absent), checked finite."""
    slope = float(source.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(source.get("RescaleIntercept", 0.0) or 0.0)
    if not (np.isfinite(slope) and slope != 0 and np.isfinite(intercept)):
        msg = (
            f"{where}: RescaleSlope (0028,1053) {slope} / RescaleIntercept (0028,1052) "
            f"{intercept} cannot convert stored values; re-export with a finite, non-zero slope"
        )
        raise IngestError(msg)
    return slope, intercept


def _single_plane(ds: Dataset, path: Path, file_index: int) -> _Plane:
    where = path.name
    slope, intercept = _rescale(ds, where)
    return _Plane(
        name=where,
        file_index=file_index,
        position_mm=_numbers(ds.ImagePositionPatient, 3, where, "ImagePositionPatient (0020,0032)"),
        orientation=_numbers(
            ds.ImageOrientationPatient, 6, where, "ImageOrientationPatient (0020,0037)"
        ),
        pixel_spacing_mm=_spacing(ds.PixelSpacing, where),
        thickness_mm=_thickness(ds),
        slope=slope,
        intercept=intercept,
        order=(int(ds.get("InstanceNumber") or 0), 0),
    )


_FUNCTIONAL_GROUPS: Final = {  # the macros that place and scale a frame, with their tags
    "PlanePositionSequence": "(0020,9113)",
    "PlaneOrientationSequence": "(0020,9116)",
    "PixelMeasuresSequence": "(0028,9110)",
    "PixelValueTransformationSequence": "(0028,9145)",
}


def _functional_group(ds: Dataset, n: int, keyword: str, where: str) -> Dataset:
    """Frame `n`'s item of functional group `keyword`: per-frame first, else shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for groups in (per_frame[n : n + 1], shared[:1]):
        for group in groups:
            if group.get(keyword):
                item: Dataset = group[keyword][0]
                return item
    msg = (
        f"{where}: {keyword} {_FUNCTIONAL_GROUPS[keyword]} is in neither the Per-frame (5200,9230) "
        "nor the Shared (5200,9229) Functional Groups; the frame cannot be placed in space. "
        "Re-export the series from the scanner or PACS"
    )
    raise IngestError(msg)


def _enhanced_planes(ds: Dataset, path: Path, frames: int, file_index: int) -> list[_Plane]:
    """Planes of an Enhanced (functional-group) multi-frame image, e.g. Enhanced CT, MR or PET."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) not in (0, frames):
        msg = (
            f"{path.name}: PerFrameFunctionalGroupsSequence (5200,9230) holds {len(per_frame)} "
            f"items for NumberOfFrames (0028,0008) {frames}; the file is corrupt, re-export it"
        )
        raise IngestError(msg)
    instance = int(ds.get("InstanceNumber") or 0)
    scaled = _has_group(ds, "PixelValueTransformationSequence")
    planes = []
    for n in range(frames):
        where = f"{path.name} frame {n + 1}"
        position = _functional_group(ds, n, "PlanePositionSequence", where)
        orientation = _functional_group(ds, n, "PlaneOrientationSequence", where)
        measures = _functional_group(ds, n, "PixelMeasuresSequence", where)
        transform = (
            _functional_group(ds, n, "PixelValueTransformationSequence", where) if scaled else ds
        )
        slope, intercept = _rescale(transform, where)
        planes.append(
            _Plane(
                name=where,
                file_index=file_index,
                position_mm=_numbers(
                    position.get("ImagePositionPatient"),
                    3,
                    where,
                    "ImagePositionPatient (0020,0032)",
                ),
                orientation=_numbers(
                    orientation.get("ImageOrientationPatient"),
                    6,
                    where,
                    "ImageOrientationPatient (0020,0037)",
                ),
                pixel_spacing_mm=_spacing(measures.get("PixelSpacing"), where),
                thickness_mm=_thickness(measures),
                slope=slope,
                intercept=intercept,
                order=(instance, n),
            )
        )
    return planes


def _has_group(ds: Dataset, keyword: str) -> bool:
    groups = [*(ds.get("SharedFunctionalGroupsSequence") or [])]
    groups += [*(ds.get("PerFrameFunctionalGroupsSequence") or [])[:1]]
    return any(group.get(keyword) for group in groups)


def _nm_planes(ds: Dataset, path: Path, frames: int, file_index: int) -> list[_Plane]:
    """Planes of reconstructed NM tomography (SPECT): frame n at IPP + n·spacing·normal.

    The NM Image IOD places only the first frame (DetectorInformationSequence); the others follow
    along row cosines x column cosines every SpacingBetweenSlices (else SliceThickness) mm.
    """
    name = path.name
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    if len(image_type) < 3 or image_type[2] != "RECON TOMO":
        msg = (
            f"{name}: NM ImageType (0008,0008) is {image_type}; only reconstructed tomography "
            "('RECON TOMO') is a volume. Planar, whole-body, dynamic and gated NM images are not "
            "loaded: export the reconstructed SPECT"
        )
        raise IngestError(msg)
    detectors = ds.get("DetectorInformationSequence") or []
    if len(detectors) != 1:
        msg = (
            f"{name}: DetectorInformationSequence (0054,0022) holds {len(detectors)} items, "
            "expected 1 for a reconstructed volume; re-export the reconstructed SPECT"
        )
        raise IngestError(msg)
    detector = detectors[0]
    first = _numbers(
        detector.get("ImagePositionPatient"), 3, name, "ImagePositionPatient (0020,0032)"
    )
    orientation = _numbers(
        detector.get("ImageOrientationPatient"), 6, name, "ImageOrientationPatient (0020,0037)"
    )
    step_mm = _thickness(ds)
    if step_mm is None:
        msg = (
            f"{name}: neither SpacingBetweenSlices (0018,0088) nor SliceThickness (0018,0050); "
            "the frames cannot be stacked. Re-export the reconstructed SPECT with them"
        )
        raise IngestError(msg)
    _, _, normal = orientation_axes(orientation, where=name)
    spacing = _spacing(ds.get("PixelSpacing"), name)
    slope, intercept = _rescale(ds, name)
    instance = int(ds.get("InstanceNumber") or 0)
    return [
        _Plane(
            name=f"{name} frame {n + 1}",
            file_index=file_index,
            position_mm=tuple(float(v) for v in np.asarray(first) + n * step_mm * normal),
            orientation=orientation,
            pixel_spacing_mm=spacing,
            thickness_mm=step_mm,
            slope=slope,
            intercept=intercept,
            order=(instance, n),
        )
        for n in range(frames)
    ]


def _read_pixels(path: Path, ds: Dataset, planes: list[_Plane], out: NDArray[np.float32]) -> None:
    """Rescaled pixels of every frame of `path` into `out` (frames, rows, columns)."""
    frames = _native_frames(path, ds, out.shape)
    if frames is None:  # compressed (or unusual) pixel data: pydicom's decoders
        frames = _decoded_frames(path)
    count = 0
    for n, frame in enumerate(frames):
        if n >= len(planes) or frame.shape != out.shape[1:]:
            count = -1
            break
        _rescale_into(out[n], frame, planes[n].slope, planes[n].intercept)
        count += 1
    if count != len(planes):
        msg = (
            f"{path.name}: pixel data does not decode to NumberOfFrames (0028,0008) "
            f"{len(planes)} x Rows x Columns {out.shape[1:]}; the file is corrupt, re-export it"
        )
        raise IngestError(msg)


def _native_dtype(ds: Dataset) -> np.dtype[Any] | None:
    """The numpy type of uncompressed integer PixelData, None when pydicom must decode it."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if (syntax is not None and syntax not in _NATIVE_SYNTAXES) or "PixelData" not in ds:
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    little = syntax.is_little_endian if syntax is not None else ds.original_encoding[1]
    if bits not in (8, 16, 32) or (bits == 8 and not little):  # 8-bit OW big endian: swapped
        return None
    kind = "i" if int(ds.get("PixelRepresentation", 0) or 0) == 1 else "u"
    return np.dtype(f"{'<' if little else '>'}{kind}{bits // 8}")


def _native_frames(
    path: Path, ds: Dataset, shape: tuple[int, ...]
) -> Iterator[NDArray[Any]] | None:
    """Frames of uncompressed pixel data as stored (what `pixel_array` gives), None if compressed."""
    dtype = _native_dtype(ds)
    if dtype is None:
        return None
    element: Any = ds.get_item(_PIXEL_DATA, keep_deferred=True)  # a RawDataElement when deferred
    if element.value is not None:  # small enough to have been read with the header
        values = np.frombuffer(element.value, dtype=dtype, count=int(np.prod(shape)))
        return iter(values.reshape(shape))
    return _frames_in_file(path, int(element.value_tell), dtype, shape)


def _frames_in_file(
    path: Path, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...]
) -> Iterator[NDArray[Any]]:
    """Each frame read from `offset` into one reused buffer (valid until the next frame)."""
    buffer = np.empty(shape[1:], dtype=dtype)
    with path.open("rb") as fp:
        fp.seek(offset)
        for _ in range(shape[0]):
            if fp.readinto(buffer) != buffer.nbytes:  # type: ignore[arg-type]
                return  # truncated: the caller counts the frames
            yield buffer


def _decoded_frames(path: Path) -> Iterator[NDArray[Any]]:
    """Frames decoded by pydicom's pixel handlers (RLE, JPEG, JPEG-LS, JPEG 2000, deflate)."""
    try:
        yield from iter_pixels(path)
    except Exception as exc:  # any decoder failure means the same thing here
        msg = f"{path.name}: pixel data cannot be decoded ({exc}); re-export it uncompressed"
        raise IngestError(msg) from exc


def _rescale_into(
    out: NDArray[np.float32], stored: NDArray[Any], slope: float, intercept: float
) -> None:
    """`out` = stored · slope + intercept, in float32 when that is exact, else via float64."""
    if _exact_in_float32(stored.dtype, slope, intercept):
        if slope == 1:
            out[...] = stored
        else:
            np.multiply(stored, np.float32(slope), out=out, dtype=np.float32)
        if intercept:
            out += np.float32(intercept)
    else:
        out[...] = stored.astype(np.float64) * slope + intercept


def _exact_in_float32(dtype: np.dtype[Any], slope: float, intercept: float) -> bool:
    """True when integer stored values, slope and intercept keep every result below 2**24."""
    if dtype.kind not in "iu" or not (slope.is_integer() and intercept.is_integer()):
        return False
    info = np.iinfo(dtype)
    largest = max(abs(int(info.min)), int(info.max)) * abs(slope) + abs(intercept)
    return bool(largest < 2**24)
