"""Checks of one DICOM image file before its pixels are trusted; each names file, tag and fix.

`image_header_problem` needs the header only (it runs while a folder is scanned);
`pixel_data_problem` also needs the PixelData element (its length, not its decoded values).
Both return the message of the problem, or None; `require_valid_image` raises it as IngestError.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from abscopal.errors import IngestError

if TYPE_CHECKING:
    from pathlib import Path

    from pydicom.dataset import Dataset

_PLACEMENT: Final = (
    ("ImagePositionPatient", "(0020,0032)"),
    ("ImageOrientationPatient", "(0020,0037)"),
    ("PixelSpacing", "(0028,0030)"),
)


def _number(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def image_header_problem(ds: Dataset, path: Path) -> str | None:
    """What makes this single-frame image header unusable (placement, spacing, rescale), or None."""
    name = path.name
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        for keyword, tag in _PLACEMENT:
            if keyword not in ds or ds.get(keyword) in (None, ""):
                return (
                    f"{name}: {keyword} {tag} missing; the slice cannot be placed in space. "
                    "Re-export the series from the scanner or PACS with its geometry"
                )
        spacing = [_number(v) for v in ds.PixelSpacing]
        if len(spacing) != 2 or not all(s > 0 for s in spacing):  # NaN fails too
            return (
                f"{name}: PixelSpacing (0028,0030) is {spacing}, expected two "
                "positive numbers (mm); the header is corrupt: re-export the series"
            )
    for keyword, tag in (
        ("SliceThickness", "(0018,0050)"),
        ("SpacingBetweenSlices", "(0018,0088)"),
    ):
        if ds.get(keyword) not in (None, "") and not _number(ds.get(keyword)) > 0:
            return (
                f"{name}: {keyword} {tag} is {ds.get(keyword)!r}, expected a positive number "
                "(mm); correct or remove the attribute, or re-export the series"
            )
    slope = ds.get("RescaleSlope")
    if slope is not None and slope != "":
        value = _number(slope)
        if not math.isfinite(value) or value == 0:
            return (
                f"{name}: RescaleSlope (0028,1053) is {slope!r}; the stored values cannot be "
                "converted to HU or Bq/mL: re-export the series with a finite, non-zero slope"
            )
    intercept = ds.get("RescaleIntercept")
    if intercept not in (None, "") and not math.isfinite(_number(intercept)):
        return (
            f"{name}: RescaleIntercept (0028,1052) is {intercept!r}; re-export the series with a "
            "finite intercept"
        )
    return None


def pixel_data_problem(ds: Dataset, path: Path) -> str | None:
    """Missing PixelData, or (uncompressed) a length that disagrees with Rows x Columns x frames."""
    name = path.name
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return (
            f"{name}: PixelData (7FE0,0010) missing; the file holds a header only: copy the file "
            "again or re-export the image"
        )
    if "PixelData" not in ds:
        return None
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and syntax.is_compressed:
        return None  # encapsulated: the decoder checks the frames
    element = ds.get_item("PixelData", keep_deferred=True)  # deferred: left unread in the file
    length = int(getattr(element, "length", 0) or 0)
    if getattr(element, "value", None) is not None:
        length = len(element.value)
    tell = getattr(element, "value_tell", None)
    if tell is not None:  # a deferred read: the bytes that are really in the file
        length = min(length, max(path.stat().st_size - int(tell), 0))
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    expected = rows * columns * frames * samples * bits // 8
    if rows < 1 or columns < 1 or length < expected or length > expected + 1:
        return (
            f"{name}: PixelData (7FE0,0010) holds {length} bytes but Rows (0028,0010) {rows} x "
            f"Columns (0028,0011) {columns} x {frames} frame(s) x {bits} bits need {expected}: "
            "the file is truncated (copy it again) or Rows/Columns are wrong (re-export it)"
        )
    return None


def require_valid_image(ds: Dataset, path: Path, *, pixels: bool = True) -> None:
    """Raise `IngestError` with the first problem of `ds` (header, then pixel data)."""
    problem = image_header_problem(ds, path)
    if problem is None and pixels:
        problem = pixel_data_problem(ds, path)
    if problem is not None:
        raise IngestError(problem)
