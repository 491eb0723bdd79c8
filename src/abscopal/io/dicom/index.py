"""DICOM headers and folders: find the series in a tree without reading their pixels.

`index_folder` reads headers only (pixel data left in the files) and groups files by
SeriesInstanceUID into `DicomSeries`; `scan_folder` is its tolerant variant, which sets bad files
aside as `BadFile`. The small helpers here (`read_dataset`, `parse_date`, `series_date`,
`orientation_axes`) serve the other readers in `abscopal.io`.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DA

from abscopal.errors import IngestError, IngestWarning
from abscopal.io.checks import require_valid_image

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
VOLUME_MODALITIES: Final = IMAGE_MODALITIES | {"NM"}  # what `load_series` reads (NM: SPECT)
PIXEL_DATA: Final = 0x7FE00010
DEFER_BYTES: Final = 16384  # larger values (the pixels) stay in the file until read on purpose


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
        return read_dataset(path, defer_size=DEFER_BYTES)
    try:
        return read_dataset(path, defer_size=DEFER_BYTES)
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
        ds = pydicom.dcmread(path, defer_size=DEFER_BYTES)
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
        headers=tuple(ds for _, ds in members)
        if first.get("Modality") in VOLUME_MODALITIES
        else (),
    )
