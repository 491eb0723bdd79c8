"""DICOM folders: index the series in a tree, load a single-frame CT, MR or PET series as a Volume.

`index_folder` reads headers only and groups files by SeriesInstanceUID; `load_series` reads the
pixels of one series, applies RescaleSlope/Intercept per slice, sorts the slices along the slice
normal and returns a `Volume` on a `Grid` (voxel-centre origin, LPS mm, (slice, row, column)).
The small helpers here (`read_dataset`, `orientation_axes`, `series_date`) serve the other readers
in `abscopal.io`.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DA

from abscopal.errors import IngestError, IngestWarning
from abscopal.geometry import Grid
from abscopal.io.checks import require_valid_image
from abscopal.model import Volume

if TYPE_CHECKING:
    from collections.abc import Iterable

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
_POSITION_TOL_MM: Final = 0.01  # two slices closer than this along the normal are duplicates
_ORIENTATION_TOL: Final = 1e-4  # direction cosines that agree within this are the same


@dataclass(frozen=True, slots=True, kw_only=True)
class DicomSeries:
    """One series found by `index_folder`: identifiers from its headers and its files (sorted)."""

    patient_id: str
    study_uid: str
    series_uid: str
    modality: str
    sop_class_uid: str
    frame_of_reference_uid: str | None
    study_date: date | None
    series_description: str
    files: tuple[Path, ...]

    def __post_init__(self) -> None:
        if not self.files:
            msg = f"series {self.series_uid}: a DicomSeries needs at least one file"
            raise ValueError(msg)


def read_dataset(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read one DICOM file; a file without a File Meta header is read raw, with an IngestWarning.

    Raises `IngestError` naming the file when it is not DICOM at all.
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        reason = str(exc).split(". ")[0]
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc}); check that the file exists and is readable"
        raise IngestError(msg) from exc
    except (EOFError, ValueError) as exc:
        msg = f"{path}: not a DICOM file ({exc}); remove it or move it out of the patient folder"
        raise IngestError(msg) from exc
    try:  # DICOM written without preamble and File Meta header (old exports, some TPS)
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
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
        return read_dataset(path, stop_before_pixels=True)
    try:
        return read_dataset(path, stop_before_pixels=True)
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
        ds = pydicom.dcmread(path, defer_size=1024)
    except Exception as exc:  # a damaged file may raise anything while parsing
        msg = f"{path.name}: cannot be parsed as DICOM ({exc}); copy the file again or remove it"
        raise IngestError(msg) from exc
    if "SOPClassUID" not in ds:
        return _read_header(path)
    if str(ds.get("Modality", "")) in IMAGE_MODALITIES:
        require_valid_image(ds, path)
    return ds


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
    return "AU"  # MR: arbitrary units


def _check_same(values: list[Any], files: list[Path], what: str, series_uid: str) -> None:
    first = np.asarray(values[0], dtype=float)
    for value, path in zip(values[1:], files[1:], strict=True):
        other = np.asarray(value, dtype=float)
        if other.shape != first.shape or not np.allclose(other, first, atol=_ORIENTATION_TOL):
            msg = (
                f"series {series_uid}: mixed {what} ({files[0].name}: {first.tolist()}, "
                f"{path.name}: {other.tolist()}); split the series or re-export it"
            )
            raise IngestError(msg)


def load_series(series: DicomSeries) -> Volume:
    """A single-frame CT, MR or PET series as a float32 `Volume` (HU, PET Units, or "AU" for MR).

    Slices are sorted along the normal (row cosines x column cosines); duplicated positions keep the
    first file (IngestWarning). Missing slices, irregular spacing, in-plane shifts between slices
    (gantry tilt), mixed orientation or matrix size raise `IngestError`.
    """
    uid = series.series_uid
    if series.modality not in IMAGE_MODALITIES:
        msg = (
            f"series {uid}: modality {series.modality!r} is not an image series (CT, MR, PT); "
            "use read_rtdose, read_rtstruct or read_seg for RT and SEG objects"
        )
        raise IngestError(msg)
    files = list(series.files)
    datasets, array = _read_slices(files)
    _check_same([ds.ImageOrientationPatient for ds in datasets], files, "orientation", uid)
    _check_same([(ds.Rows, ds.Columns) for ds in datasets], files, "matrix size", uid)
    _check_same([ds.PixelSpacing for ds in datasets], files, "PixelSpacing", uid)
    frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in datasets}
    if len(frames) > 1:
        msg = f"series {uid}: slices with different FrameOfReferenceUID {sorted(frames)}"
        raise IngestError(msg)
    row, col, normal = orientation_axes(datasets[0].ImageOrientationPatient, where=files[0].name)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    along = positions @ normal
    order = sorted(
        range(len(files)), key=lambda n: (along[n], int(datasets[n].get("InstanceNumber") or 0))
    )
    kept = _drop_duplicates(order, along, files, uid)
    spacing, uneven = _slice_spacing(
        kept,
        along=along,
        positions=positions,
        normal=normal,
        datasets=datasets,
        files=files,
        uid=uid,
    )
    array = _in_order(array, kept)
    if uneven:
        array = _onto_regular_slices(array, along[kept], spacing)
    first = datasets[kept[0]]
    pixel = [float(v) for v in first.PixelSpacing]
    frame = frames.pop() or None
    grid = Grid(
        origin_mm=_vec(positions[kept[0]]),
        spacing_mm=(spacing, pixel[0], pixel[1]),
        axes=(_vec(normal), _vec(col), _vec(row)),
        shape=(len(kept), int(first.Rows), int(first.Columns)),
        frame_of_reference_uid=frame,
    )
    dates = [d for d in (series_date(datasets[n]) for n in kept) if d is not None]
    logger.info(
        "%s series: %d slices of %.2f x %.2f x %.2f mm",
        series.modality,
        len(kept),
        *grid.spacing_mm,
    )
    return Volume(
        array=array,
        grid=grid,
        modality=series.modality,
        units=_units(first, series.modality, f"series {uid}"),
        acquisition_date=min(dates) if dates else None,
        series_uid=uid,
    )


def _vec(values: NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _drop_duplicates(
    order: list[int], along: NDArray[np.float64], files: list[Path], uid: str
) -> list[int]:
    kept = [order[0]]
    dropped: list[str] = []
    for n in order[1:]:
        if abs(along[n] - along[kept[-1]]) < _POSITION_TOL_MM:
            dropped.append(f"{files[n].name} (same position as {files[kept[-1]].name})")
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
    kept: list[int],
    *,
    along: NDArray[np.float64],
    positions: NDArray[np.float64],
    normal: NDArray[np.float64],
    datasets: list[Dataset],
    files: list[Path],
    uid: str,
) -> tuple[float, bool]:
    """Regular slice spacing (mm) and whether the slices must be resampled onto it.

    Within min(0.1 mm, 10 %) of a regular grid the positions are taken as regular; up to a quarter
    of the spacing off, too, with a warning; further off, the stack is resampled (warning). Gaps
    over 1.5 × the median spacing (missing slices) and in-plane shifts (gantry tilt) raise.
    """
    if len(kept) == 1:
        ds = datasets[kept[0]]
        value = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        return abs(float(value)) or 1.0, False
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
        worst = files[kept[int(deviation.argmax())]].name
        off = f"{worst} lies {deviation.max():.3f} mm off a regular {spacing:.3f} mm grid"
        uneven = bool(deviation.max() > 0.25 * spacing)
        what = (
            "resampled onto it by linear interpolation" if uneven else "positions taken as regular"
        )
        warnings.warn(
            f"series {uid}: uneven slice spacing ({off}); {what}", IngestWarning, stacklevel=3
        )
    shift = positions[kept] - positions[kept[0]] - np.outer(d - d[0], normal)
    pixel = min(float(v) for v in datasets[kept[0]].PixelSpacing)
    if np.linalg.norm(shift, axis=1).max() > 0.1 * pixel:
        msg = (
            f"series {uid}: slices are shifted in-plane along the stack (gantry tilt or a sheared "
            "acquisition, ImagePositionPatient (0020,0032)); resample the series to an orthogonal "
            "grid first"
        )
        raise IngestError(msg)
    return spacing, uneven


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


def _read_slices(files: list[Path]) -> tuple[list[Dataset], NDArray[np.float32]]:
    """Headers and rescaled pixels of every file, each file read once.

    Pixels go straight into one float32 array (file order) and leave the dataset, so the peak
    memory is the final array plus one slice.
    """
    datasets: list[Dataset] = []
    array: NDArray[np.float32] | None = None
    for n, path in enumerate(files):
        ds = read_dataset(path)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            msg = (
                f"{path.name}: multi-frame image (NumberOfFrames {ds.NumberOfFrames}); only "
                "single-frame series are supported, export the series as single-frame images"
            )
            raise IngestError(msg)
        require_valid_image(ds, path)
        if array is None:
            array = np.empty((len(files), int(ds.Rows), int(ds.Columns)), dtype=np.float32)
        if (int(ds.Rows), int(ds.Columns)) != array.shape[1:]:
            _check_same(
                [(d.Rows, d.Columns) for d in (*datasets, ds)], files[: n + 1], "matrix size", ""
            )
        array[n] = _rescaled(ds, path)
        del ds.PixelData  # the pixels live in `array` now
        datasets.append(ds)
    assert array is not None  # files is never empty for an indexed series
    return datasets, array


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


def _rescaled(ds: Dataset, path: Path) -> NDArray[np.float64]:
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        msg = f"{path.name}: SamplesPerPixel (0028,0002) is {ds.SamplesPerPixel}, expected 1"
        raise IngestError(msg)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # any decoder failure means the same thing here
        msg = f"{path.name}: pixel data cannot be decoded ({exc}); re-export it uncompressed"
        raise IngestError(msg) from exc
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return np.asarray(pixels, dtype=np.float64) * slope + intercept
