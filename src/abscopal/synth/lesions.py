"""Lesion shapes and time courses: ellipsoids in LPS mm, scaled and re-coloured per timepoint.

An `Ellipsoid` may turn only about the S axis, and its S semi-axis is never the longest, so its
longest diameter lies in an axial plane. Lesion centres sit on CT slice centres, so the largest
axial section (the one through the centre) holds the true long and short axes:

    diameter_long_mm = 2 · max(a, b) · scale        diameter_short_mm = 2 · min(a, b) · scale
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from abscopal.model import FieldStatus, LesionKind
from abscopal.units import mm3_to_ml

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from abscopal.geometry import Grid

Vec3 = tuple[float, float, float]

HU_LYTIC: Final = 30.0
HU_BLASTIC: Final = 800.0
HU_HCC: Final = 35.0  # hypo-attenuating against liver (60 HU), portal-venous phase
HU_SCLEROTIC_ISLAND_GAIN: Final = 650.0  # a mixed lesion: lytic matrix with sclerotic islands
_NEWTON_STEPS: Final = 60  # distance to an ellipsoid: a bound on Newton steps, usually < 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Ellipsoid:
    """An ellipsoid in LPS mm, turned by `angle_deg` about S (from +L towards +P)."""

    centre_mm: Vec3
    semi_axes_mm: Vec3  # along the turned L axis, the turned P axis, and S
    angle_deg: float = 0.0

    def __post_init__(self) -> None:
        a, b, c = self.semi_axes_mm
        if not (a > 0 and b > 0 and c > 0):
            msg = f"semi_axes_mm must all be > 0, got {self.semi_axes_mm}"
            raise ValueError(msg)
        if c > max(a, b):
            msg = (
                f"the S semi-axis {c} mm exceeds the in-plane semi-axes {a}, {b} mm; "
                "keep the longest diameter axial (swap the axes)"
            )
            raise ValueError(msg)

    def scaled(self, factor: float) -> Ellipsoid:
        """The same ellipsoid, every semi-axis multiplied by `factor` (> 0)."""
        if not factor > 0:
            msg = f"scale factor must be > 0, got {factor}"
            raise ValueError(msg)
        a, b, c = self.semi_axes_mm
        return Ellipsoid(
            centre_mm=self.centre_mm,
            semi_axes_mm=(a * factor, b * factor, c * factor),
            angle_deg=self.angle_deg,
        )

    @property
    def diameter_long_mm(self) -> float:
        """Longest axial diameter: twice the larger in-plane semi-axis."""
        return 2.0 * max(self.semi_axes_mm[0], self.semi_axes_mm[1])

    @property
    def diameter_short_mm(self) -> float:
        """Short axis in the plane of the long axis: twice the smaller in-plane semi-axis."""
        return 2.0 * min(self.semi_axes_mm[0], self.semi_axes_mm[1])

    @property
    def volume_ml(self) -> float:
        """Exact volume, 4/3·π·a·b·c, in mL."""
        a, b, c = self.semi_axes_mm
        return mm3_to_ml(4.0 / 3.0 * math.pi * a * b * c)

    def local(self, points_mm: ArrayLike) -> NDArray[np.float64]:
        """(n, 3) LPS points in the ellipsoid's own frame (centred, turned back by the angle)."""
        d: NDArray[np.float64] = np.asarray(points_mm, dtype=float) - np.asarray(self.centre_mm)
        cos, sin = math.cos(math.radians(self.angle_deg)), math.sin(math.radians(self.angle_deg))
        out: NDArray[np.float64] = np.empty_like(d)
        out[..., 0] = cos * d[..., 0] + sin * d[..., 1]
        out[..., 1] = -sin * d[..., 0] + cos * d[..., 1]
        out[..., 2] = d[..., 2]
        return out

    def normalised(self, points_mm: ArrayLike) -> NDArray[np.float64]:
        """Local coordinates divided by the semi-axes: the ellipsoid is the unit ball."""
        out: NDArray[np.float64] = self.local(points_mm) / np.asarray(self.semi_axes_mm)
        return out

    def contains(self, points_mm: ArrayLike) -> NDArray[np.bool_]:
        """True for points on or inside the surface."""
        u = self.normalised(points_mm)
        return np.asarray(np.einsum("...i,...i->...", u, u) <= 1.0)

    def distance_mm(self, points_mm: ArrayLike) -> NDArray[np.float64]:
        """Euclidean distance (mm) from each point to the ellipsoid; 0 inside.

        Closest point by Newton's method on Eberly's parametrisation: for a point y outside,
        x_i = a_i²·y_i / (t + a_i²) where t > 0 solves Σ (a_i·y_i / (t + a_i²))² = 1. The
        function is convex and decreasing, so Newton from t = 0 climbs to the root monotonically.
        """
        y = np.abs(self.local(points_mm))
        semi = np.asarray(self.semi_axes_mm)
        e2 = semi**2
        inside = np.einsum("...i,...i->...", y / semi, y / semi) <= 1.0
        # f(t) >= 0 for t <= a_min·|y| − a_max², so Newton may start there, left of the root
        norm = np.linalg.norm(y, axis=-1)
        t = np.where(inside, 0.0, np.maximum(semi.min() * norm - e2.max(), 0.0))
        for _ in range(_NEWTON_STEPS):
            denom = t[..., None] + e2
            q = semi * y / denom
            f = np.einsum("...i,...i->...", q, q) - 1.0
            df = -2.0 * np.einsum("...i,...i->...", q, q / denom)
            step = np.where(inside, 0.0, f / np.where(inside, -1.0, df))
            t = t - step
            if np.all(np.abs(step) <= 1e-10 * (1.0 + t)):
                break
        closest = e2 * y / (t[..., None] + e2)
        dist = np.linalg.norm(closest - y, axis=-1)
        return np.where(inside, 0.0, dist)

    def bounds_mm(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Axis-aligned bounding box (low, high corners) in LPS mm."""
        a, b, c = self.semi_axes_mm
        theta = math.radians(self.angle_deg)
        half_x = math.hypot(a * math.cos(theta), b * math.sin(theta))
        half_y = math.hypot(a * math.sin(theta), b * math.cos(theta))
        half = np.array([half_x, half_y, c])
        centre = np.asarray(self.centre_mm)
        return centre - half, centre + half

    def voxels(self, grid: Grid, *, margin_mm: float = 0.0) -> VoxelBox:
        """The grid's voxels whose centres are inside (bounding box grown by `margin_mm`)."""
        low, high = self.bounds_mm()
        corners = np.array(np.meshgrid(*zip(low - margin_mm, high + margin_mm, strict=True)))
        idx = grid.lps_to_index(corners.reshape(3, -1).T)
        start = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, np.asarray(grid.shape))
        stop = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 1, 0, np.asarray(grid.shape))
        ranges = [np.arange(a, b) for a, b in zip(start, stop, strict=True)]
        kji = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
        points = grid.index_to_lps(kji.astype(float))
        keep = self.contains(points) if margin_mm == 0.0 else self.distance_mm(points) <= margin_mm
        return VoxelBox(indices=kji[keep], points_mm=points[keep])

    def mask(self, grid: Grid) -> NDArray[np.bool_]:
        """A boolean array of the grid's shape: voxel centres inside the ellipsoid."""
        out = np.zeros(grid.shape, dtype=bool)
        box = self.voxels(grid)
        out[tuple(box.indices.T)] = True
        return out


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class VoxelBox:
    """Integer (k, j, i) indices of some voxels and the LPS mm of their centres."""

    indices: NDArray[np.intp]
    points_mm: NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionPlan:
    """One lesion by construction: identity, shape at scale 1 and its course over the CT dates.

    `scales[i]` multiplies every semi-axis at CT timepoint i (0 = absent); `hu[i]` is the
    lesion's nominal attenuation there (a mixed lesion adds sclerotic islands to it).
    """

    lesion_id: str
    organ: str
    kind: LesionKind
    field: FieldStatus
    shape: Ellipsoid
    scales: tuple[float, ...]
    hu: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LesionKind(self.kind))
        object.__setattr__(self, "field", FieldStatus(self.field))
        if len(self.scales) != len(self.hu) or any(not s >= 0 for s in self.scales):
            msg = (
                f"lesion {self.lesion_id}: scales must be >= 0 and as many as hu values, got "
                f"{self.scales} and {self.hu}"
            )
            raise ValueError(msg)

    def shape_at(self, timepoint: int) -> Ellipsoid | None:
        """The ellipsoid at CT timepoint `timepoint`, or None when the lesion is absent."""
        scale = self.scales[timepoint]
        return self.shape.scaled(scale) if scale > 0 else None

    def present_at(self, timepoint: int) -> bool:
        """True when the lesion exists at that CT timepoint."""
        return self.scales[timepoint] > 0


def lesion_hu(
    plan: LesionPlan, timepoint: int, points_mm: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Attenuation (HU, before noise) at lesion points; mixed lesions carry sclerotic islands.

    The islands are fixed in the lesion's own normalised frame, so they scale with the lesion.
    """
    base = np.full(points_mm.shape[0], plan.hu[timepoint], dtype=float)
    if plan.kind is not LesionKind.MIXED:
        return base
    u = plan.shape.normalised(points_mm) / plan.scales[timepoint]
    islands = np.prod(np.sin(3.0 * np.pi * u + 0.5), axis=-1) > 0.2
    return np.where(islands, base + HU_SCLEROTIC_ISLAND_GAIN, base)


def paint_lesions(
    hu: NDArray[np.float32], grid: Grid, lesions: tuple[LesionPlan, ...], timepoint: int
) -> dict[str, NDArray[np.bool_]]:
    """Write each present lesion's HU into `hu` (in place); return its mask by lesion_id."""
    masks: dict[str, NDArray[np.bool_]] = {}
    for plan in lesions:
        shape = plan.shape_at(timepoint)
        if shape is None:
            continue
        box = shape.voxels(grid)
        hu[tuple(box.indices.T)] = lesion_hu(plan, timepoint, box.points_mm)
        mask = np.zeros(grid.shape, dtype=bool)
        mask[tuple(box.indices.T)] = True
        masks[plan.lesion_id] = mask
    return masks
