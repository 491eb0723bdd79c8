"""Dose–volume statistics per structure from weighted dose samples (DOSIMETRY.md §7.3).

A structure becomes samples: LPS points with a volume weight (mL). Voxel masks give their voxel
centres; RTSTRUCT contours give the voxel centres of the dose grid's in-plane lattice (same spacing
and phase, extended to the contour's bounding box so that parts beyond the grid become
out-of-grid samples) inside each polygon (even-odd: holes work), at the contour plane's height,
each carrying a slab of the smallest plane spacing. Statistics come from the samples without
binning; the part outside the dose grid is reported separately and never rescaled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
from scipy import ndimage

from abscopal.dose.ebrt import max_boundary_dose_gy
from abscopal.errors import GeometryError
from abscopal.geometry import Grid, require_same_frame, sample
from abscopal.units import mm3_to_ml

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from abscopal.model import Volume

END_CAPS: Final = ("none", "half")
_REL_TOL: Final = 1e-9
_PLANE_TOL_MM: Final = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class DvhOptions:
    """DVH options, echoed in every result."""

    supersample: int = 1  # s per in-plane axis for contours (s per axis for masks)
    end_cap: str = "none"  # "none": every plane a full slab (dicompyler parity); "half"
    vx_thresholds_gy: tuple[float, ...] = ()
    dx_percent: tuple[float, ...] = (98.0, 95.0, 50.0, 2.0)

    def __post_init__(self) -> None:
        if self.supersample < 1:
            msg = f"supersample must be >= 1, got {self.supersample}"
            raise ValueError(msg)
        if self.end_cap not in END_CAPS:
            msg = f"end_cap must be one of {', '.join(END_CAPS)}, got {self.end_cap!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DoseSamples:
    """Sample points as continuous (k, j, i) indices on `grid`, with volume weights (mL)."""

    index: NDArray[np.float64]
    grid: Grid
    weights_ml: NDArray[np.float64]

    @property
    def volume_ml(self) -> float:
        """Σ weights: the structure's volume."""
        return float(self.weights_ml.sum())

    @property
    def points_mm(self) -> NDArray[np.float64]:
        """LPS mm of every sample."""
        return self.grid.index_to_lps(self.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class StructureDvh:
    """DVH statistics of one structure; in-grid statistics are None when nothing is covered."""

    name: str
    volume_ml: float
    volume_in_grid_ml: float
    volume_out_of_grid_ml: float
    grid_coverage: float
    dose_min_gy: float | None
    dose_mean_gy: float | None
    dose_max_gy: float | None
    d98_gy: float | None
    d95_gy: float | None
    d50_gy: float | None
    d2_gy: float | None
    vx_ml: dict[float, float]
    dose_mean_lower_gy: float | None
    dose_mean_upper_gy: float | None
    max_boundary_dose_gy: float
    reason: str | None
    options: DvhOptions = field(default_factory=DvhOptions)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (threshold keys as strings, options under `settings`)."""
        out = asdict(self)
        out["vx_ml"] = {f"{k:g}": v for k, v in self.vx_ml.items()}
        out["settings"] = out.pop("options")
        return out


# ---------------------------------------------------------------- samples


def mask_samples(mask: NDArray[np.bool_], grid: Grid, *, supersample: int = 1) -> DoseSamples:
    """Voxel centres of `mask` (or s³ sub-voxel centres each), weight = their share of the voxel."""
    if mask.shape != grid.shape or mask.dtype != np.bool_:
        msg = f"mask must be boolean with the grid's shape {grid.shape}"
        raise ValueError(msg)
    index = np.argwhere(mask).astype(np.float64)
    offsets = _sub_offsets(supersample, dims=3)
    points = (index[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    weight = grid.voxel_volume_ml / supersample**3
    return DoseSamples(index=points, grid=grid, weights_ml=np.full(points.shape[0], weight))


def _sub_offsets(s: int, *, dims: int) -> NDArray[np.float64]:
    """Sub-voxel centre offsets in index units: (m + 0.5)/s − 0.5 per axis."""
    axis = (np.arange(s) + 0.5) / s - 0.5
    grids = np.meshgrid(*([axis] * dims), indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=-1)


def contour_samples(
    contours: Sequence[NDArray[np.float64]],
    dose_grid: Grid,
    *,
    frame_of_reference_uid: str | None,
    supersample: int = 1,
    end_cap: str = "none",
) -> DoseSamples:
    """Samples of closed planar contours on the dose grid's in-plane lattice (see module doc)."""
    require_same_frame(
        Grid(
            origin_mm=dose_grid.origin_mm,
            spacing_mm=dose_grid.spacing_mm,
            axes=dose_grid.axes,
            shape=dose_grid.shape,
            frame_of_reference_uid=frame_of_reference_uid,
        ),
        dose_grid,
        what="RTSTRUCT contours on the dose grid",
    )
    DvhOptions(supersample=supersample, end_cap=end_cap)  # validates both
    planes: dict[int, list[NDArray[np.float64]]] = {}
    heights: dict[int, float] = {}
    s0 = dose_grid.spacing_mm[0]
    for contour in contours:
        index = dose_grid.lps_to_index(np.asarray(contour, dtype=np.float64).reshape(-1, 3))
        spread_mm = float(np.ptp(index[:, 0])) * s0
        if spread_mm > max(_PLANE_TOL_MM, 0.1 * s0):
            msg = (
                f"a contour spans {spread_mm:.2f} mm across the dose grid's frames; only contours "
                "parallel to the dose frames are supported (resample the dose or the structure)"
            )
            raise GeometryError(msg)
        height = float(index[:, 0].mean())
        key = round(height * s0 / _PLANE_TOL_MM)
        planes.setdefault(key, []).append(index[:, 1:])
        heights.setdefault(key, height)
    if not planes:
        return DoseSamples(index=np.zeros((0, 3)), grid=dose_grid, weights_ml=np.zeros(0))
    keys = sorted(planes)
    z_mm = np.array([heights[k] * s0 for k in keys])
    gaps = np.diff(z_mm)
    thickness_mm = float(gaps.min()) if gaps.size else s0
    area_mm2 = dose_grid.spacing_mm[1] * dose_grid.spacing_mm[2] / supersample**2
    offsets = _sub_offsets(supersample, dims=2)
    points: list[NDArray[np.float64]] = []
    weights: list[NDArray[np.float64]] = []
    for n, key in enumerate(keys):
        j, i = _plane_points(planes[key], offsets)
        if j.size == 0:
            continue
        slab = thickness_mm
        if end_cap == "half" and len(keys) > 1 and n in (0, len(keys) - 1):
            slab = 0.5 * thickness_mm
        idx = np.empty((j.size, 3))
        idx[:, 0], idx[:, 1], idx[:, 2] = heights[key], j, i
        points.append(idx)
        weights.append(np.full(j.size, mm3_to_ml(area_mm2 * slab)))
    if not points:
        return DoseSamples(index=np.zeros((0, 3)), grid=dose_grid, weights_ml=np.zeros(0))
    return DoseSamples(
        index=np.concatenate(points), grid=dose_grid, weights_ml=np.concatenate(weights)
    )


def _plane_points(
    polygons: Sequence[NDArray[np.float64]], offsets: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Row (j) and column (i) indices of the lattice points inside the polygons, even-odd.

    Scanline parity fill: a point is inside when an odd number of polygon edges (all polygons of
    the plane together, so holes cancel) cross its row to its left. Edges are half-open in j, the
    usual crossing rule; each edge visits only the rows it spans (work ∝ crossings, not
    rows × edges).
    """
    stacked = np.concatenate(polygons)
    lo = np.floor(stacked.min(axis=0)).astype(int) - 1
    hi = np.ceil(stacked.max(axis=0)).astype(int) + 1
    sub = np.unique(offsets[:, 0])
    sub_i = np.unique(offsets[:, 1])
    rows = (np.arange(lo[0], hi[0] + 1)[:, None] + sub[None, :]).ravel()
    cols = (np.arange(lo[1], hi[1] + 1)[:, None] + sub_i[None, :]).ravel()
    starts = stacked
    ends = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    j0, i0, j1, i1 = starts[:, 0], starts[:, 1], ends[:, 0], ends[:, 1]
    r, e = _edge_rows(rows, j0, j1)
    x = i0[e] + (rows[r] - j0[e]) * (i1[e] - i0[e]) / (j1[e] - j0[e])
    column = np.searchsorted(cols, x, side="right")  # first column right of the crossing
    width = cols.size + 1
    toggles = np.bincount(r * width + column, minlength=rows.size * width).reshape(-1, width)
    inside = (np.cumsum(toggles[:, :-1], axis=1, dtype=np.int32) & 1).astype(bool)
    rr, cc = np.nonzero(inside)
    return rows[rr], cols[cc]


def _edge_rows(
    rows: NDArray[np.float64], j0: NDArray[np.float64], j1: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(row, edge) pairs with min(j0, j1) <= row < max(j0, j1), rows sorted ascending."""
    first = np.searchsorted(rows, np.minimum(j0, j1), side="left")
    count = np.searchsorted(rows, np.maximum(j0, j1), side="left") - first
    edge = np.repeat(np.arange(j0.size), count)
    offset = np.arange(edge.size) - np.repeat(np.cumsum(count) - count, count)
    return first[edge] + offset, edge


# ---------------------------------------------------------------- statistics


def sample_dose(
    dose: Volume, samples: DoseSamples
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Trilinear dose (Gy) at every sample and whether it lies in the grid's footprint.

    Footprint: index in [−0.5, n − 0.5] per axis; the half-voxel skirt takes edge values.
    Samples on the dose grid's own lattice skip the coordinate round trip, and those at integer
    in-plane indices interpolate between frames only (exact and fast). Only the dose the samples
    read is checked for NaN: the whole grid would cost more than a small structure.
    """
    if samples.index.shape[0] == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    if not samples.grid.same_geometry(dose.grid, tol_mm=1e-6):
        values, inside = sample(dose.array, dose.grid, samples.points_mm, order=1)
    else:
        values, inside = _sample_on_lattice(dose, samples.index)
    if not np.all(np.isfinite(values[inside])):
        msg = "the dose grid holds NaN or infinite values; re-export the RTDOSE"
        raise ValueError(msg)
    return values, inside


def _sample_on_lattice(
    dose: Volume, idx: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """`sample_dose` for index coordinates on the dose grid (contiguous columns, flat gathers)."""
    shape = dose.grid.shape
    k, j, i = np.array(idx.T, order="C")  # a copy: clipped in place below
    inside = (k >= -0.5) & (k <= shape[0] - 0.5)
    inside &= (j >= -0.5) & (j <= shape[1] - 0.5)
    inside &= (i >= -0.5) & (i <= shape[2] - 0.5)
    np.clip(k, 0.0, shape[0] - 1.0, out=k)  # the half-voxel skirt takes edge values
    if not inside.all():
        np.clip(j, 0.0, shape[1] - 1.0, out=j)
        np.clip(i, 0.0, shape[2] - 1.0, out=i)
    if not (np.array_equal(j, np.round(j)) and np.array_equal(i, np.round(i))):
        np.clip(j, 0.0, shape[1] - 1.0, out=j)
        np.clip(i, 0.0, shape[2] - 1.0, out=i)
        values = ndimage.map_coordinates(
            np.asarray(dose.array, dtype=np.float64), np.stack([k, j, i]), order=1, mode="nearest"
        )
        return np.where(inside, values, np.nan), inside
    flat = np.asarray(dose.array, dtype=np.float64).reshape(-1)
    frame = shape[1] * shape[2]
    k0 = k.astype(np.intp)  # floor: k >= 0 after the clip
    at0 = k0 * frame
    at0 += j.astype(np.intp) * shape[2]
    at0 += i.astype(np.intp)
    at1 = at0 + frame
    np.putmask(at1, k0 >= shape[0] - 1, at0)  # the last frame has no frame above
    k -= k0  # the fraction between frames
    values = flat.take(at0)
    values += (flat.take(at1) - values) * k
    values[~inside] = np.nan
    return values, inside


def dose_at_volume_gy(
    doses: NDArray[np.float64], weights: NDArray[np.float64], volume_ml: float
) -> float:
    """The largest d such that the volume with dose ≥ d is at least `volume_ml`."""
    return doses_at_volumes_gy(doses, weights, [volume_ml])[0]


def doses_at_volumes_gy(
    doses: NDArray[np.float64], weights: NDArray[np.float64], volumes_ml: Sequence[float]
) -> list[float]:
    """`dose_at_volume_gy` for several volumes with one sort (a partition for equal weights)."""
    targets = np.asarray(volumes_ml, dtype=np.float64) * (1.0 - _REL_TOL)
    n = doses.size
    if n and np.all(weights == weights[0]):
        ranks = np.clip(np.ceil(targets / weights[0] - _REL_TOL).astype(int) - 1, 0, n - 1)
        kth = n - 1 - ranks  # rank r from the top is element n-1-r ascending
        part = np.partition(doses, np.unique(kth))
        return [float(part[k]) for k in kth]
    order = np.argsort(doses, kind="stable")[::-1]
    cumulative = np.cumsum(weights[order])
    index = np.minimum(np.searchsorted(cumulative, targets, side="left"), n - 1)
    return [float(doses[order[i]]) for i in index]


def structure_dvh(
    name: str, dose: Volume, samples: DoseSamples, options: DvhOptions | None = None
) -> StructureDvh:
    """Statistics of one structure from its samples (coverage explicit, no binning)."""
    opts = options or DvhOptions()
    values, inside = sample_dose(dose, samples)
    boundary = max_boundary_dose_gy(dose)
    total = samples.volume_ml
    whole = bool(inside.all())  # the usual case: no copies
    w_in = samples.weights_ml if whole else samples.weights_ml[inside]
    d_in = values if whole else values[inside]
    covered = float(w_in.sum())
    coverage = covered / total if total > 0 else 0.0
    common = {
        "name": name,
        "volume_ml": total,
        "volume_in_grid_ml": covered,
        "volume_out_of_grid_ml": total - covered,
        "grid_coverage": coverage,
        "max_boundary_dose_gy": boundary,
        "options": opts,
    }
    if covered <= 0:
        reason = "no contours or empty mask" if total <= 0 else "outside dose grid"
        return StructureDvh(
            **common,  # type: ignore[arg-type]
            d98_gy=None,
            d95_gy=None,
            d50_gy=None,
            d2_gy=None,
            dose_min_gy=None,
            dose_mean_gy=None,
            dose_max_gy=None,
            vx_ml=dict.fromkeys(opts.vx_thresholds_gy, 0.0),
            dose_mean_lower_gy=0.0 if total > 0 else None,
            dose_mean_upper_gy=boundary if total > 0 else None,
            reason=reason,
        )
    mean = float(np.dot(w_in, d_in) / covered)
    percents = (98, 95, 50, 2)
    at = doses_at_volumes_gy(d_in, w_in, [p / 100 * covered for p in percents])
    d98, d95, d50, d2 = at
    f_in, f_out = coverage, 1.0 - coverage
    return StructureDvh(
        **common,  # type: ignore[arg-type]
        d98_gy=d98,
        d95_gy=d95,
        d50_gy=d50,
        d2_gy=d2,
        dose_min_gy=float(d_in.min()),
        dose_mean_gy=mean,
        dose_max_gy=float(d_in.max()),
        vx_ml={x: float(w_in[d_in >= x].sum()) for x in opts.vx_thresholds_gy},
        dose_mean_lower_gy=f_in * mean,
        dose_mean_upper_gy=f_in * mean + f_out * boundary,
        reason=None if coverage >= 1.0 else f"{100 * f_out:.1f} % of the volume outside dose grid",
    )


def structure_dvh_from_contours(
    name: str,
    dose: Volume,
    contours: Sequence[NDArray[np.float64]],
    *,
    frame_of_reference_uid: str | None,
    options: DvhOptions | None = None,
) -> StructureDvh:
    """`structure_dvh` of RTSTRUCT contours sampled on the dose grid's lattice."""
    opts = options or DvhOptions()
    samples = contour_samples(
        contours,
        dose.grid,
        frame_of_reference_uid=frame_of_reference_uid,
        supersample=opts.supersample,
        end_cap=opts.end_cap,
    )
    return structure_dvh(name, dose, samples, opts)


def structure_dvh_from_mask(
    name: str, dose: Volume, mask: NDArray[np.bool_], grid: Grid, options: DvhOptions | None = None
) -> StructureDvh:
    """`structure_dvh` of a voxel mask on any grid of the dose's frame of reference."""
    require_same_frame(dose.grid, grid, what=f"dose on structure {name}")
    opts = options or DvhOptions()
    if not mask.any():
        msg = f"structure {name}: the mask is empty; check the label or the segmentation"
        raise ValueError(msg)
    return structure_dvh(name, dose, mask_samples(mask, grid, supersample=opts.supersample), opts)


# ---------------------------------------------------------------- histograms (figures, export)


def cumulative_histogram(
    doses: NDArray[np.float64], weights: NDArray[np.float64], *, bin_width_gy: float = 0.01
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(dose bin lower edges, volume in mL receiving at least that dose)."""
    edges, differential = differential_histogram(doses, weights, bin_width_gy=bin_width_gy)
    return edges[:-1], np.cumsum(differential[::-1])[::-1]


def differential_histogram(
    doses: NDArray[np.float64], weights: NDArray[np.float64], *, bin_width_gy: float = 0.01
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(bin edges, volume in mL per bin) from 0 to the maximum dose."""
    if not bin_width_gy > 0:
        msg = f"bin_width_gy must be > 0, got {bin_width_gy}"
        raise ValueError(msg)
    top = float(doses.max()) if doses.size else 0.0
    n = max(1, math.ceil(top / bin_width_gy + _REL_TOL) + (1 if doses.size else 0))
    edges = np.arange(n + 1) * bin_width_gy
    counts, _ = np.histogram(doses, bins=edges, weights=weights)
    return edges.astype(np.float64), counts.astype(np.float64)
