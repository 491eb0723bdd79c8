"""`load_series`: one CT, MR, PET or SPECT series as a `Volume` on a regular, orthogonal grid.

The planes of the series are sorted along the slice normal; duplicated positions are dropped,
missing slices refused, uneven spacing resampled onto a regular grid and a gantry tilt (slices
shifted in-plane along the stack) resampled onto an orthogonal grid, each with an IngestWarning.
The `Grid` has its origin at a voxel centre, in LPS mm, indexed (slice, row, column).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from abscopal.errors import IngestError, IngestWarning
from abscopal.geometry import Grid, sitk_image
from abscopal.io.dicom.index import VOLUME_MODALITIES, orientation_axes, series_date
from abscopal.io.dicom.pixels import read_stack
from abscopal.io.dicom.planes import check_same
from abscopal.model import Volume

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

    from abscopal.io.dicom.index import DicomSeries
    from abscopal.io.dicom.planes import Plane

logger = logging.getLogger(__name__)

_POSITION_TOL_MM: Final = 0.01  # two slices closer than this along the normal are duplicates


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
    datasets, planes, array = read_stack(list(series.files), _indexed_headers(series), uid)
    names = [p.name for p in planes]
    check_same([p.orientation for p in planes], names, "orientation", uid)
    check_same([p.pixel_spacing_mm for p in planes], names, "PixelSpacing", uid)
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


def _indexed_headers(series: DicomSeries) -> list[Dataset | None]:
    """The headers `index_folder` kept for `series.files`, None for each file to be parsed."""
    headers = series.headers
    if len(headers) == len(series.files) and all(
        str(getattr(ds, "filename", "")) == str(path)
        for ds, path in zip(headers, series.files, strict=True)
    ):
        return list(headers)
    return [None] * len(series.files)


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
    kept: list[int], *, along: NDArray[np.float64], planes: list[Plane], uid: str
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
