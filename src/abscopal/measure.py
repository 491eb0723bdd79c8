"""Lesion size and intensity from a mask: voxel volume, RECIST axes, HU statistics.

RECIST 1.1 (Eisenhauer 2009, §3.1 and Appendix I) measures the longest diameter in the axial plane
and, for the short axis, the longest diameter perpendicular to it on the same slice. Outlines are
taken with marching squares at the 0.5 iso-level (`skimage.measure.find_contours`), as
pyradiomics does for Maximum2DDiameterSlice, so a diameter spans voxel edges, not voxel centres.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist, squareform
from skimage.measure import find_contours, marching_cubes

from abscopal.geometry import require_same_frame
from abscopal.model import LesionMask, Measurement, Volume

if TYPE_CHECKING:
    from datetime import date

    from numpy.typing import NDArray

SCLEROTIC_HU = 300.0  # project default: above trabecular bone, below cortex; a parameter below
_CHORD_SAMPLES = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionSize:
    """Size of one lesion mask; diameters on the axial slice where the long axis is largest."""

    voxel_count: int
    volume_ml: float
    diameter_long_mm: float
    diameter_short_mm: float
    slice_index: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IntensityStats:
    """Image values inside a mask, in the image's units."""

    mean: float
    min: float
    max: float
    std: float
    values_above_sclerotic_fraction: float


def measure_size(mask: LesionMask) -> LesionSize:
    """Voxel count, volume (mL) and RECIST long/short axes (mm) of `mask`.

    The slice axis of the grid must be the acquisition's slice normal; for an axial series this is
    the axial plane of RECIST.
    """
    count = mask.voxel_count
    volume_ml = count * mask.grid.voxel_volume_ml
    if count == 0:
        return LesionSize(
            voxel_count=0,
            volume_ml=0.0,
            diameter_long_mm=0.0,
            diameter_short_mm=0.0,
            slice_index=None,
        )
    row_mm, col_mm = mask.grid.spacing_mm[1], mask.grid.spacing_mm[2]
    best = (-1.0, 0.0, -1)
    for k in np.flatnonzero(mask.mask.any(axis=(1, 2))):
        outline = _outline_mm(mask.mask[k], row_mm, col_mm)
        long_mm, short_mm = _axes_mm(outline)
        if long_mm > best[0]:
            best = (long_mm, short_mm, int(k))
    return LesionSize(
        voxel_count=count,
        volume_ml=volume_ml,
        diameter_long_mm=best[0],
        diameter_short_mm=min(best[1], best[0]),
        slice_index=best[2],
    )


def max_2d_diameter_mesh_mm(mask: LesionMask) -> float:
    """Largest distance between surface-mesh vertices sharing a slice (Maximum2DDiameterSlice).

    This is pyradiomics' definition. A marching-cubes mesh of a binary mask has vertices on the slices (the 0.5 outline of each
    slice) and half-way between slices (the voxel centres where two neighbouring slices differ).
    pyradiomics compares both kinds, so its value can exceed the RECIST long axis measured on the
    images; `measure_size` keeps to the slices, as a reader does.
    """
    row_mm, col_mm = mask.grid.spacing_mm[1], mask.grid.spacing_mm[2]
    padded = np.pad(mask.mask, ((1, 1), (0, 0), (0, 0)))
    best = 0.0
    for k in range(padded.shape[0] - 1):
        planes = []
        if padded[k + 1].any() and k + 1 < padded.shape[0] - 1:
            planes.append(_outline_mm(padded[k + 1], row_mm, col_mm))
        changed = np.argwhere(padded[k] ^ padded[k + 1])
        if len(changed):
            planes.append(changed * np.array([row_mm, col_mm]))
        for points in planes:
            best = max(best, _axes_mm(points)[0])
    return best


def max_3d_diameter_mm(mask: LesionMask) -> float:
    """Largest distance between surface-mesh vertices (pyradiomics' Maximum3DDiameter)."""
    if mask.voxel_count == 0:
        return 0.0
    padded = np.pad(mask.mask.astype(float), 1)
    vertices, *_ = marching_cubes(padded, level=0.5, spacing=mask.grid.spacing_mm)
    with suppress(QhullError):  # a flat lesion keeps every vertex as a candidate
        vertices = vertices[ConvexHull(vertices).vertices]
    return float(pdist(vertices).max())


def _outline_mm(section: NDArray[np.bool_], row_mm: float, col_mm: float) -> NDArray[np.float64]:
    """Edge points of a 2D mask at the 0.5 iso-level, in mm (row, column)."""
    padded = np.pad(section.astype(float), 1)
    contours = find_contours(padded, 0.5)
    points: NDArray[np.float64] = np.concatenate(contours, axis=0) - 1.0
    scaled: NDArray[np.float64] = points * np.array([row_mm, col_mm])
    return scaled


def _axes_mm(points: NDArray[np.float64]) -> tuple[float, float]:
    """Longest in-plane distance and the longest chord perpendicular to it."""
    try:
        hull = points[ConvexHull(points).vertices]
    except QhullError:  # collinear or too few points: the points themselves are the hull
        hull = points
    distances = squareform(pdist(hull))
    i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
    long_mm = float(distances[i, j])
    if long_mm == 0.0:
        return 0.0, 0.0
    along = (hull[j] - hull[i]) / long_mm
    across = np.array([-along[1], along[0]])
    return long_mm, _max_chord(hull, along, across)


def _max_chord(
    hull: NDArray[np.float64], along: NDArray[np.float64], across: NDArray[np.float64]
) -> float:
    """Longest chord of the convex polygon `hull` along `across`, over positions along `along`."""
    u = hull @ along
    v = hull @ across
    u1, v1 = u, v
    u2, v2 = np.roll(u, -1), np.roll(v, -1)
    samples = np.linspace(u.min(), u.max(), _CHORD_SAMPLES)[:, None]
    lo, hi = np.minimum(u1, u2), np.maximum(u1, u2)
    crosses = (samples >= lo) & (samples <= hi) & (hi > lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (samples - u1) / (u2 - u1)
    at = np.where(crosses, v1 + t * (v2 - v1), np.nan)
    if not np.isfinite(at).any():
        return float(v.max() - v.min())
    chords = np.nanmax(at, axis=1) - np.nanmin(at, axis=1)
    return float(np.nanmax(chords))


def intensity_stats(
    image: Volume, mask: LesionMask, *, sclerotic_hu: float = SCLEROTIC_HU
) -> IntensityStats | None:
    """Statistics of `image` at the mask's voxels (nearest image voxel); None for an empty mask.

    `values_above_sclerotic_fraction` is the share of voxels above `sclerotic_hu`: for CT of a bone
    lesion, the sclerotic fraction used for lytic-to-sclerotic change (MD Anderson criteria).
    """
    require_same_frame(image.grid, mask.grid, what=f"lesion {mask.lesion_id} on its image")
    if mask.voxel_count == 0:
        return None
    index = np.rint(image.grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(image.grid.shape)), axis=1)
    values = image.array[tuple(index[inside].T)].astype(float)
    if values.size == 0:
        return None
    return IntensityStats(
        mean=float(values.mean()),
        min=float(values.min()),
        max=float(values.max()),
        std=float(values.std()),
        values_above_sclerotic_fraction=float(np.mean(values > sclerotic_hu)),
    )


def measure_lesion(
    mask: LesionMask,
    image: Volume | None = None,
    *,
    date: date,
    sclerotic_hu: float = SCLEROTIC_HU,
) -> Measurement:
    """A `Measurement` of one lesion at one date: size, and CT HU statistics when `image` is CT."""
    size = measure_size(mask)
    stats = None
    if image is not None and image.modality == "CT":
        stats = intensity_stats(image, mask, sclerotic_hu=sclerotic_hu)
    return Measurement(
        lesion_id=mask.lesion_id,
        date=date,
        voxel_count=size.voxel_count,
        volume_ml=size.volume_ml,
        diameter_long_mm=size.diameter_long_mm,
        diameter_short_mm=size.diameter_short_mm,
        hu_mean=None if stats is None else stats.mean,
        sclerotic_fraction=None if stats is None else stats.values_above_sclerotic_fraction,
    )


def absent(lesion_id: str, *, date: date) -> Measurement:
    """The measurement of a lesion not seen at `date`."""
    return Measurement(
        lesion_id=lesion_id,
        date=date,
        voxel_count=0,
        volume_ml=0.0,
        diameter_long_mm=0.0,
        diameter_short_mm=0.0,
    )
