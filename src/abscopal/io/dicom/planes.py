"""Where each 2-D image of a DICOM image file lies: one `Plane` per frame, read from the header.

Single-frame images carry their own position, orientation, spacing and rescale; Enhanced
multi-frame images carry them per frame or shared in Functional Groups; reconstructed NM
tomography (SPECT) places only its first frame and stacks the others along the slice normal.
`header_planes` checks a file's header and returns its planes; `check_same` refuses a series whose
files disagree (orientation, spacing, matrix size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from abscopal.errors import IngestError
from abscopal.io.checks import require_valid_image
from abscopal.io.dicom.index import DEFER_BYTES, PIXEL_DATA, orientation_axes, read_dataset

if TYPE_CHECKING:
    from pathlib import Path

    from pydicom.dataset import Dataset

_ORIENTATION_TOL: Final = 1e-4  # direction cosines that agree within this are the same


@dataclass(frozen=True, slots=True, kw_only=True)
class Plane:
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


def check_same(values: list[Any], names: list[str], what: str, series_uid: str) -> None:
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


def header_planes(path: Path, file_index: int, ds: Dataset | None) -> tuple[Dataset, list[Plane]]:
    """The checked header of `path` (read now unless given; pixel data deferred), its planes."""
    if ds is None or PIXEL_DATA not in ds:  # a header read without its (deferred) pixel data
        ds = read_dataset(path, defer_size=DEFER_BYTES)
    require_valid_image(ds, path)
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


def _single_plane(ds: Dataset, path: Path, file_index: int) -> Plane:
    where = path.name
    slope, intercept = _rescale(ds, where)
    return Plane(
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


def _enhanced_planes(ds: Dataset, path: Path, frames: int, file_index: int) -> list[Plane]:
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
            Plane(
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


def _nm_planes(ds: Dataset, path: Path, frames: int, file_index: int) -> list[Plane]:
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
        Plane(
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
