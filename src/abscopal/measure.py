"""Lesion size and intensity from a mask: voxel volume, RECIST axes, HU statistics, PET uptake.

RECIST 1.1 (Eisenhauer 2009, §3.1 and Appendix I) measures the longest diameter in the axial plane
and, for the short axis, the longest diameter perpendicular to it on the same slice. Outlines are
taken with marching squares at the 0.5 iso-level (`skimage.measure.find_contours`), as
pyradiomics does for Maximum2DDiameterSlice, so a diameter spans voxel edges, not voxel centres.
"""

from __future__ import annotations

import math
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist, squareform
from skimage.measure import find_contours, marching_cubes

from abscopal.errors import IngestError
from abscopal.geometry import require_same_frame
from abscopal.model import LesionMask, Measurement, Volume

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date

    from numpy.typing import NDArray

SCLEROTIC_HU = 300.0  # project default: above trabecular bone, below cortex; a parameter below
_CHORD_SAMPLES = 256
PEAK_VOLUME_ML = 1.0  # PERCIST 1.0 SULpeak and IBSI intensity peak: a 1 cm³ sphere


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
    mask = mask.cropped()  # work on the lesion's bounding box, not the scan
    return _size(mask, _slice_outlines_mm(mask))


def _size(mask: LesionMask, outlines: Sequence[tuple[int, NDArray[np.float64]]]) -> LesionSize:
    """RECIST axes from per-slice outlines: the short axis only on the slice that wins."""
    count = mask.voxel_count
    best: tuple[float, int, NDArray[np.float64], int, int] | None = None
    for k, outline in outlines:
        hull = _hull(outline)
        long_mm, i, j = _longest(hull)
        if best is None or long_mm > best[0]:
            best = (long_mm, k, hull, i, j)
    if best is None:
        return LesionSize(
            voxel_count=0,
            volume_ml=0.0,
            diameter_long_mm=0.0,
            diameter_short_mm=0.0,
            slice_index=None,
        )
    long_mm, k, hull, i, j = best
    short_mm = _short_mm(hull, i, j, long_mm)
    return LesionSize(
        voxel_count=count,
        volume_ml=count * mask.grid.voxel_volume_ml,
        diameter_long_mm=long_mm,
        diameter_short_mm=min(short_mm, long_mm),
        slice_index=k,
    )


def max_2d_diameter_mesh_mm(mask: LesionMask) -> float:
    """Largest distance between surface-mesh vertices sharing a slice (Maximum2DDiameterSlice).

    This is pyradiomics' definition. A marching-cubes mesh of a binary mask has vertices on the
    slices (the 0.5 outline of each slice) and half-way between slices (the voxel centres where
    two neighbouring slices differ). pyradiomics compares both kinds, so its value can exceed the
    RECIST long axis measured on the images; `measure_size` keeps to the slices, as a reader does.
    """
    mask = mask.cropped()  # work on the lesion's bounding box, not the scan
    return _max_2d_mesh_mm(mask, _slice_outlines_mm(mask))


def _max_2d_mesh_mm(mask: LesionMask, outlines: Sequence[tuple[int, NDArray[np.float64]]]) -> float:
    row_mm, col_mm = mask.grid.spacing_mm[1], mask.grid.spacing_mm[2]
    planes = [outline for _, outline in outlines]
    padded = np.pad(mask.mask, ((1, 1), (0, 0), (0, 0)))
    changed = np.argwhere(padded[:-1] ^ padded[1:])  # (between-slice index, row, column)
    for k in np.unique(changed[:, 0]):
        planes.append(changed[changed[:, 0] == k, 1:] * np.array([row_mm, col_mm]))
    return max((_longest(_hull(points))[0] for points in planes), default=0.0)


def max_3d_diameter_mm(mask: LesionMask) -> float:
    """Largest distance between surface-mesh vertices (pyradiomics' Maximum3DDiameter)."""
    mask = mask.cropped()  # work on the lesion's bounding box, not the scan
    if mask.voxel_count == 0:
        return 0.0
    return _max_3d_mm(_mesh(mask)[0])


def _max_3d_mm(vertices: NDArray[np.float64]) -> float:
    with suppress(QhullError):  # a flat lesion keeps every vertex as a candidate
        vertices = vertices[ConvexHull(vertices).vertices]
    return float(pdist(vertices).max())


def _mesh(mask: LesionMask) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
    """Marching-cubes surface (mm, array axes) of a non-empty mask at the 0.5 level."""
    padded = np.pad(mask.mask.astype(np.float32), 1)
    vertices, faces, *_ = marching_cubes(padded, level=0.5, spacing=mask.grid.spacing_mm)
    return np.asarray(vertices, dtype=np.float64), faces


def _slice_outlines_mm(mask: LesionMask) -> list[tuple[int, NDArray[np.float64]]]:
    """The 0.5 outline (mm) of every slice that holds part of the lesion, with its index."""
    row_mm, col_mm = mask.grid.spacing_mm[1], mask.grid.spacing_mm[2]
    return [
        (int(k), _outline_mm(mask.mask[k], row_mm, col_mm))
        for k in np.flatnonzero(mask.mask.any(axis=(1, 2)))
    ]


def _outline_mm(section: NDArray[np.bool_], row_mm: float, col_mm: float) -> NDArray[np.float64]:
    """Edge points of a 2D mask at the 0.5 iso-level, in mm (row, column)."""
    padded = np.pad(section.astype(float), 1)
    contours = find_contours(padded, 0.5)
    points: NDArray[np.float64] = np.concatenate(contours, axis=0) - 1.0
    scaled: NDArray[np.float64] = points * np.array([row_mm, col_mm])
    return scaled


def _hull(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Convex-hull vertices of 2D points: the longest distance and the chords live on them."""
    try:
        hull: NDArray[np.float64] = points[ConvexHull(points).vertices]
    except QhullError:  # collinear or too few points: the points themselves are the hull
        return points
    return hull


def _longest(hull: NDArray[np.float64]) -> tuple[float, int, int]:
    """Longest distance between hull vertices and the two vertices' indices."""
    if len(hull) < 2:
        return 0.0, 0, 0
    distances = squareform(pdist(hull))
    i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return float(distances[i, j]), int(i), int(j)


def _short_mm(hull: NDArray[np.float64], i: int, j: int, long_mm: float) -> float:
    """Longest chord perpendicular to the long axis from hull vertex i to j."""
    if long_mm == 0.0:
        return 0.0
    along = (hull[j] - hull[i]) / long_mm
    across = np.array([-along[1], along[0]])
    return _max_chord(hull, along, across)


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
    values = values_in_mask(image, mask)
    if values.size == 0:
        return None
    return IntensityStats(
        mean=float(values.mean()),
        min=float(values.min()),
        max=float(values.max()),
        std=float(values.std()),
        values_above_sclerotic_fraction=float(np.mean(values > sclerotic_hu)),
    )


def values_in_mask(image: Volume, mask: LesionMask) -> NDArray[np.float64]:
    """Image values at the mask's voxels: directly when both share a grid, else nearest voxel."""
    offset = mask.grid.offset_in(image.grid, tol_mm=1e-3)
    if offset is not None:  # the mask stands on the image grid or a crop of it
        box = tuple(slice(o, o + n) for o, n in zip(offset, mask.grid.shape, strict=True))
        return np.asarray(image.array[box][mask.mask], dtype=float)
    index = np.rint(image.grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(image.grid.shape)), axis=1)
    return np.asarray(image.array[tuple(index[inside].T)], dtype=float)


def mesh_volume_ml(mask: LesionMask) -> float:
    """Volume enclosed by the marching-cubes surface at the 0.5 level (IBSI "volume (mesh)")."""
    mask = mask.cropped()  # work on the lesion's bounding box, not the scan
    if mask.voxel_count == 0:
        return 0.0
    return _mesh_volume_ml(*_mesh(mask))


def _mesh_volume_ml(vertices: NDArray[np.float64], faces: NDArray[np.int_]) -> float:
    a, b, c = (vertices[faces[:, n]] for n in range(3))
    signed_mm3 = float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0
    return abs(signed_mm3) / 1000.0


def _sphere_kernel(spacing_mm: tuple[float, float, float], volume_ml: float) -> NDArray[np.bool_]:
    """Voxel centres within the radius of a sphere of `volume_ml` around the central voxel."""
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    half = [int(radius // s) for s in spacing_mm]
    k, j, i = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    d2 = (k * spacing_mm[0]) ** 2 + (j * spacing_mm[1]) ** 2 + (i * spacing_mm[2]) ** 2
    kernel: NDArray[np.bool_] = d2 <= radius**2 * (1 + 1e-9)
    return kernel


def intensity_peak(
    image: Volume,
    mask: LesionMask,
    *,
    volume_ml: float = PEAK_VOLUME_ML,
    local: bool = False,
) -> float | None:
    """Highest mean of `image` in a sphere of `volume_ml` centred on a voxel of `mask`.

    PERCIST 1.0 SULpeak (Wahl 2009) and IBSI 1 "global intensity peak" (sphere of 1 cm³, every
    image voxel whose centre lies within 6.2 mm of the centre counts, whether in the mask or
    not). With `local=True`, only centres at the mask's maximum are tried (IBSI "local intensity
    peak"). The mask must stand on the image grid (or a crop of it). None for an empty mask.
    """
    require_same_frame(image.grid, mask.grid, what=f"peak of lesion {mask.lesion_id}")
    if mask.voxel_count == 0:
        return None
    kernel = _sphere_kernel(image.grid.spacing_mm, volume_ml)
    centres = np.rint(image.grid.lps_to_index(mask.points_lps())).astype(int)
    shape = np.asarray(image.grid.shape)
    centres = centres[np.all((centres >= 0) & (centres < shape), axis=1)]
    if centres.size == 0:
        return None
    half = np.asarray(kernel.shape) // 2
    lo = np.maximum(centres.min(axis=0) - half, 0)
    hi = np.minimum(centres.max(axis=0) + half + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    values = np.asarray(image.array[box], dtype=float)
    weights = kernel.astype(float)
    sums = ndimage.correlate(values, weights, mode="constant", cval=0.0)
    counts = ndimage.correlate(np.ones_like(values), weights, mode="constant", cval=0.0)
    local_idx = tuple((centres - lo).T)
    means = sums[local_idx] / counts[local_idx]
    if local:
        at_max = values[local_idx]
        means = means[at_max == at_max.max()]
    return float(means.max())


# ADC maps are stored in 10^-6 mm²/s (= µm²/s) by the major vendors; some tools write mm²/s.
ADC_UNIT_TO_UM2_S = {"um2_s": 1.0, "mm2_s": 1e6}
_ADC_PLAUSIBLE_UM2_S = (1.0, 10_000.0)  # free water at 37 °C is ~3000 µm²/s


def adc_mean_um2_s(adc: Volume, mask: LesionMask, *, unit: str = "um2_s") -> float | None:
    """Mean apparent diffusion coefficient (10⁻⁶ mm²/s) of `mask` on an ADC map in `unit`.

    A mean outside 1-10 000 µm²/s means the map is not an ADC map in the stated unit; that is an
    error, not a guess. None for an empty mask.
    """
    if unit not in ADC_UNIT_TO_UM2_S:
        msg = f"ADC unit {unit!r} is unknown; use one of {sorted(ADC_UNIT_TO_UM2_S)}"
        raise IngestError(msg)
    stats = intensity_stats(adc, mask)
    if stats is None:
        return None
    mean = stats.mean * ADC_UNIT_TO_UM2_S[unit]
    low, high = _ADC_PLAUSIBLE_UM2_S
    if not low <= mean <= high:
        msg = (
            f"mean ADC of lesion {mask.lesion_id} is {mean:g} µm²/s with unit {unit!r}, outside "
            f"{low:g}-{high:g}; pass the ADC map (not the DWI) and its unit (um2_s or mm2_s)"
        )
        raise IngestError(msg)
    return mean


@dataclass(frozen=True, slots=True, kw_only=True)
class PetUptake:
    """Uptake of one lesion on a PET in SUVbw; SULpeak when the lean body mass is known."""

    suvmax: float
    suvmean: float
    suvpeak: float
    sulpeak: float | None


def pet_uptake(suv: Volume, mask: LesionMask, *, sul_per_suv: float | None) -> PetUptake | None:
    """SUVmax, SUVmean, SUVpeak and SULpeak (PERCIST 1.0) of `mask` on an SUVbw image.

    `sul_per_suv` is lean body mass / body weight (SUL = SUVbw x LBM / weight); None leaves
    `sulpeak` None. Returns None for an empty mask.
    """
    stats = intensity_stats(suv, mask)
    peak = intensity_peak(suv, mask)
    if stats is None or peak is None:
        return None
    return PetUptake(
        suvmax=stats.max,
        suvmean=stats.mean,
        suvpeak=peak,
        sulpeak=None if sul_per_suv is None else peak * sul_per_suv,
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


def describe_lesion(mask: LesionMask, image: Volume | None = None) -> dict[str, float | int | None]:
    """The `abscopal measure --json` record: size (voxels, mL, mm) and image statistics.

    Outlines and the surface mesh are computed once and shared by every size metric.
    """
    mask = mask.cropped()  # work on the lesion's bounding box, not the scan
    outlines = _slice_outlines_mm(mask)
    size = _size(mask, outlines)
    stats = None if image is None else intensity_stats(image, mask)
    mesh = _mesh(mask) if size.voxel_count else None
    return {
        "voxel_count": size.voxel_count,
        "volume_ml": size.volume_ml,
        "volume_mesh_ml": 0.0 if mesh is None else _mesh_volume_ml(*mesh),
        "diameter_long_mm": size.diameter_long_mm,
        "diameter_short_mm": size.diameter_short_mm,
        "diameter_max_3d_mm": 0.0 if mesh is None else _max_3d_mm(mesh[0]),
        "diameter_max_2d_mesh_mm": _max_2d_mesh_mm(mask, outlines),
        "mean": None if stats is None else stats.mean,
        "min": None if stats is None else stats.min,
        "max": None if stats is None else stats.max,
        "std": None if stats is None else stats.std,
    }


def pet_summary(
    suv: Volume, mask: LesionMask | None, *, sul_per_suv: float | None
) -> dict[str, float | None]:
    """The `abscopal suv --json` uptake keys; without a mask only `suvmax` (whole image) is set."""
    if mask is None:
        return {
            "suvmax": float(np.nanmax(suv.array)),
            "suvmean": None,
            "suvpeak": None,
            "sulpeak": None,
            "sul_per_suv": sul_per_suv,
        }
    uptake = pet_uptake(suv, mask, sul_per_suv=sul_per_suv)
    return {
        "suvmax": None if uptake is None else uptake.suvmax,
        "suvmean": None if uptake is None else uptake.suvmean,
        "suvpeak": None if uptake is None else uptake.suvpeak,
        "sulpeak": None if uptake is None else uptake.sulpeak,
        "sul_per_suv": sul_per_suv,
    }
