"""DICOM SEG: one `LesionMask` per segment, on the reference image's grid when it shares it.

Each frame is placed by its ImagePositionPatient. With a `reference` grid in the same frame of
reference whose voxels the SEG's frames coincide with (the SEG was drawn on that image), the masks
are sub-grids of the reference; otherwise they stand on a grid built from the SEG's own plane
positions, orientation and pixel spacing. Every mask is cropped to its bounding box padded by one
voxel (clamped to that grid).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import highdicom as hd
import numpy as np

from abscopal.errors import GeometryError, IngestError, IngestWarning
from abscopal.geometry import Grid
from abscopal.io.dicom import orientation_axes, parse_date, read_dataset, series_date
from abscopal.model import LesionMask

if TYPE_CHECKING:
    from datetime import date
    from pathlib import Path

    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

SEG_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.66.4"
_ALIGN_TOL_MM: Final = 0.05  # a frame corner within this of a voxel centre lies on the grid


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SegResult:
    """The masks of one SEG and what it was drawn on."""

    masks: tuple[LesionMask, ...]
    frame_of_reference_uid: str | None
    referenced_series_uid: str | None
    date: date | None
    referenced_sop_instance_uids: tuple[str, ...] = ()
    # per mask, in order: (SegmentLabel, TrackingUID or None), the identity tracking uses
    segment_identities: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        ids = [m.lesion_id for m in self.masks]
        if len(ids) != len(set(ids)):
            msg = f"lesion ids of a SEG must be unique, got {ids}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class _Frames:
    positions: NDArray[np.float64]  # (n, 3) ImagePositionPatient of each frame
    segments: tuple[int, ...]  # referenced segment number of each frame (0: all, LABELMAP)
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]  # row spacing, column spacing
    slice_spacing: float | None  # SpacingBetweenSlices
    slice_thickness: float | None


def read_seg(
    path: Path,
    *,
    reference: Grid | None = None,
    fractional_threshold: float = 0.5,
    series_uid: str | None = None,
) -> SegResult:
    """Read a DICOM SEG: one `LesionMask` per segment (lesion_id = TrackingID, else SegmentLabel).

    FRACTIONAL segments keep the voxels whose fraction is >= `fractional_threshold`. A `reference`
    on another FrameOfReferenceUID raises `GeometryError`; a SEG whose frames are not on the
    reference's voxels stays on its own grid (IngestWarning). With `series_uid` (the image it is
    used with), a SEG whose ReferencedSeriesSequence names other series raises `IngestError`.
    """
    if not 0.0 < fractional_threshold <= 1.0:
        msg = f"fractional_threshold must be in (0, 1], got {fractional_threshold}"
        raise ValueError(msg)
    ds = read_dataset(path)
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        msg = (
            f"{path.name}: SOPClassUID (0008,0016) is {ds.get('SOPClassUID', 'none')}, expected "
            f"Segmentation Storage ({SEG_SOP_CLASS}); pass a DICOM SEG file"
        )
        raise IngestError(msg)
    _require_series(ds, path, series_uid)
    frame_uid = str(ds.get("FrameOfReferenceUID", "")) or None
    if reference is not None and frame_uid != reference.frame_of_reference_uid:
        msg = (
            f"{path.name}: the SEG's FrameOfReferenceUID {frame_uid} differs from the reference "
            f"image's {reference.frame_of_reference_uid}; the SEG must be drawn on that image, "
            "or register the two series first (abscopal.register)"
        )
        raise GeometryError(msg)
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        msg = f"{path.name}: not a readable DICOM SEG ({exc}); re-export the segmentation"
        raise IngestError(msg) from exc
    frames = _frames(seg, path)
    pixels = np.asarray(seg.pixel_array)
    pixels = pixels.reshape(len(frames.segments), int(seg.Rows), int(seg.Columns))
    target, places = _target(frames, pixels.shape[1:], reference, frame_uid, path)
    kind = str(seg.SegmentationType).upper()
    maximum = float(seg.get("MaximumFractionalValue", 1) or 1)
    masks = []
    for number, lesion_id, _ in (ids := _lesion_ids(seg, path)):
        chosen = [n for n, s in enumerate(frames.segments) if s in (number, 0)]
        if kind == "FRACTIONAL":
            planes = [pixels[n] / maximum >= fractional_threshold for n in chosen]
        elif kind == "LABELMAP":
            planes = [pixels[n] == number for n in chosen]
        else:
            planes = [pixels[n] > 0 for n in chosen]
        masks.append(_cropped(lesion_id, planes, places[chosen], target, path))
    refs = ds.get("ReferencedSeriesSequence", [])
    sops = tuple(
        str(inst.ReferencedSOPInstanceUID)
        for item in refs
        for inst in item.get("ReferencedInstanceSequence", [])
    )
    logger.info("SEG %s: %d segment(s) on a grid of %s voxels", path.name, len(masks), target.shape)
    return SegResult(
        masks=tuple(masks),
        frame_of_reference_uid=frame_uid,
        referenced_series_uid=str(refs[0].SeriesInstanceUID) if refs else None,
        date=parse_date(ds.get("StudyDate")) or series_date(ds),
        referenced_sop_instance_uids=sops,
        segment_identities=tuple(identity for _, _, identity in ids),
    )


def _require_series(ds: Dataset, path: Path, series_uid: str | None) -> None:
    if series_uid is None:
        return
    refs = [
        str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", [])
    ]
    if refs and series_uid not in refs:
        msg = (
            f"{path.name}: ReferencedSeriesSequence (0008,1115) names series {refs}, not the "
            f"image series {series_uid}; the SEG was drawn on another series: pass that series "
            "as the image, or register the two and resample the mask"
        )
        raise IngestError(msg)


def referenced_series_uid(path: Path) -> str | None:
    """The SeriesInstanceUID a SEG was drawn on (ReferencedSeriesSequence), headers only."""
    refs = read_dataset(path, stop_before_pixels=True).get("ReferencedSeriesSequence", [])
    return str(refs[0].SeriesInstanceUID) if refs else None


def _target(
    frames: _Frames,
    plane: tuple[int, ...],
    reference: Grid | None,
    frame_uid: str | None,
    path: Path,
) -> tuple[Grid, NDArray[np.intp]]:
    """The grid the masks stand on (the reference when the frames lie on its voxels), placements."""
    if reference is not None:
        places = _placement(frames, plane, reference)
        if places is not None:
            return reference, places
        warnings.warn(
            f"{path.name}: SEG frames do not coincide with the reference grid's voxels; "
            "masks stay on the SEG's own grid (same frame of reference)",
            IngestWarning,
            stacklevel=3,
        )
    own = _own_grid(frames, plane, frame_uid, path)
    places = _placement(frames, plane, own)
    if places is None:
        msg = (
            f"{path.name}: SEG frames are not on a regular grid (ImagePositionPatient of the "
            "frames); pass the image it was drawn on as reference, or resample the segmentation"
        )
        raise IngestError(msg)
    return own, places


def _item(seg: Any, frame: Dataset | None, sequence: str, keyword: str) -> Any:
    """`keyword` in the per-frame functional group `sequence`, else in the shared one."""
    for group in (frame, (seg.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if group is not None and sequence in group and keyword in group[sequence][0]:
            return group[sequence][0].get(keyword)
    return None


def _frames(seg: Any, path: Path) -> _Frames:
    per_frame = seg.get("PerFrameFunctionalGroupsSequence")
    count = int(seg.get("NumberOfFrames", 1) or 1)
    if not per_frame or len(per_frame) != count:
        msg = (
            f"{path.name}: PerFrameFunctionalGroupsSequence (5200,9230) missing or not one item "
            "per frame; the frames cannot be placed in space"
        )
        raise IngestError(msg)
    positions: list[list[float]] = []
    segments: list[int] = []
    orientations: list[list[float]] = []
    spacings: list[list[float]] = []
    labelmap = str(seg.SegmentationType).upper() == "LABELMAP"
    for frame in per_frame:
        position = _item(seg, frame, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _item(seg, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _item(seg, frame, "PixelMeasuresSequence", "PixelSpacing")
        if position is None or orientation is None or spacing is None:
            msg = (
                f"{path.name}: a frame lacks ImagePositionPatient, ImageOrientationPatient or "
                "PixelSpacing; only SEGs in patient coordinates can be read"
            )
            raise IngestError(msg)
        positions.append([float(v) for v in position])
        orientations.append([float(v) for v in orientation])
        spacings.append([float(v) for v in spacing])
        ident = _item(seg, frame, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        segments.append(0 if labelmap or ident is None else int(ident))
    same_orientation = np.allclose(orientations, orientations[0], atol=1e-4)
    if not same_orientation or not np.allclose(spacings, spacings[0], atol=1e-4):
        msg = f"{path.name}: frames with different orientation or pixel spacing; resample the SEG"
        raise IngestError(msg)
    between = _item(seg, None, "PixelMeasuresSequence", "SpacingBetweenSlices")
    thickness = _item(seg, None, "PixelMeasuresSequence", "SliceThickness")
    row_mm, col_mm = spacings[0][:2]
    return _Frames(
        positions=np.asarray(positions, dtype=float).reshape(-1, 3),
        segments=tuple(segments),
        orientation=tuple(orientations[0]),
        pixel_spacing=(row_mm, col_mm),
        slice_spacing=abs(float(between)) if between else None,
        slice_thickness=abs(float(thickness)) if thickness else None,
    )


def _own_grid(frames: _Frames, plane: tuple[int, ...], uid: str | None, path: Path) -> Grid:
    row, col, normal = orientation_axes(frames.orientation, where=path.name)
    row_mm, col_mm = frames.pixel_spacing
    i_off = frames.positions @ row / col_mm
    j_off = frames.positions @ col / row_mm
    depth = frames.positions @ normal
    along = np.unique(np.round(depth / 0.01)) * 0.01  # distinct planes, mm
    gaps = np.diff(along)
    between = frames.slice_spacing or 0.0
    if gaps.size == 0:
        spacing = between or frames.slice_thickness or 1.0
    elif between > 0 and np.allclose(gaps / between, np.round(gaps / between), atol=0.01):
        spacing = between  # frames on every n-th slice of the declared spacing
    else:
        spacing = float(gaps.min())
    origin = i_off.min() * col_mm * row + j_off.min() * row_mm * col + depth.min() * normal
    shape = (
        round(float(along[-1] - along[0]) / spacing) + 1,
        int(plane[0]) + round(float(j_off.max() - j_off.min())),
        int(plane[1]) + round(float(i_off.max() - i_off.min())),
    )
    return Grid(
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        spacing_mm=(spacing, row_mm, col_mm),
        axes=(_vec(normal), _vec(col), _vec(row)),
        shape=shape,
        frame_of_reference_uid=uid,
    )


def _vec(values: NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _placement(frames: _Frames, plane: tuple[int, ...], grid: Grid) -> NDArray[np.intp] | None:
    """Integer (k, j, i) of each frame's first pixel on `grid`; None unless all are its voxels."""
    row, col, _ = orientation_axes(frames.orientation, where="SEG")
    axes = np.asarray(grid.axes, dtype=float)
    same_axes = np.allclose(axes[2], row, atol=1e-4) and np.allclose(axes[1], col, atol=1e-4)
    same_pixels = np.allclose(grid.spacing_mm[1:], frames.pixel_spacing, atol=1e-3)
    if not (same_axes and same_pixels):
        return None
    index = grid.lps_to_index(frames.positions)
    rounded = np.round(index)
    if np.any(np.abs(index - rounded) * np.asarray(grid.spacing_mm) > _ALIGN_TOL_MM):
        return None
    places = rounded.astype(np.intp)
    upper = np.asarray(grid.shape) - np.array([1, plane[0], plane[1]])
    if np.any(places < 0) or np.any(places > upper):
        return None
    return places


def _lesion_ids(seg: Any, path: Path) -> list[tuple[int, str, tuple[str, str | None]]]:
    """(SegmentNumber, lesion id, (SegmentLabel, TrackingUID)) of every segment, in order."""
    out: list[tuple[int, str, tuple[str, str | None]]] = []
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        name = str(item.get("TrackingID") or item.get("SegmentLabel") or f"segment {number}")
        if name in {lesion_id for _, lesion_id, _ in out}:
            warnings.warn(
                f"{path.name}: segment {number} repeats the lesion id {name!r}; "
                f"read as '{name} [{number}]'",
                IngestWarning,
                stacklevel=3,
            )
            name = f"{name} [{number}]"
        identity = (str(item.get("SegmentLabel", "")), str(item.get("TrackingUID", "")) or None)
        out.append((number, name, identity))
    return out


def _cropped(
    lesion_id: str,
    planes: list[NDArray[np.bool_]],
    places: NDArray[np.intp],
    grid: Grid,
    path: Path,
) -> LesionMask:
    points = [np.argwhere(plane) + place[1:] for plane, place in zip(planes, places, strict=True)]
    ks = [np.full(len(p), place[0]) for p, place in zip(points, places, strict=True)]
    if not any(len(p) for p in points):
        warnings.warn(
            f"{path.name}: segment {lesion_id!r} is empty; kept as a mask without voxels",
            IngestWarning,
            stacklevel=3,
        )
        return LesionMask(
            lesion_id=lesion_id,
            mask=np.zeros((1, 1, 1), dtype=bool),
            grid=grid.crop((0, 0, 0), (1, 1, 1)),
        )
    voxels = np.column_stack([np.concatenate(ks), np.concatenate(points)])
    start = np.maximum(voxels.min(axis=0) - 1, 0)
    stop = np.minimum(voxels.max(axis=0) + 2, np.asarray(grid.shape))
    mask = np.zeros(tuple(int(n) for n in stop - start), dtype=bool)
    local = voxels - start
    mask[local[:, 0], local[:, 1], local[:, 2]] = True
    box = grid.crop(
        (int(start[0]), int(start[1]), int(start[2])), (int(stop[0]), int(stop[1]), int(stop[2]))
    )
    return LesionMask(lesion_id=lesion_id, mask=mask, grid=box)
