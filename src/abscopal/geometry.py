"""Voxel grids in patient coordinates (DICOM LPS, mm) and the transforms between grids.

Arrays are indexed (slice, row, column) = (k, j, i). A `Grid` maps an index to the LPS position of
that voxel's centre::

    p = origin_mm + k·spacing_mm[0]·axes[0] + j·spacing_mm[1]·axes[1] + i·spacing_mm[2]·axes[2]

For an axial DICOM series `axes[2]` is ImageOrientationPatient's row cosines (along a row),
`axes[1]` its column cosines (down a column) and `axes[0]` the slice normal in the order of the
slices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from abscopal.errors import GeometryError
from abscopal.units import mm3_to_ml

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]
IDENTITY: Mat3 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
AXIAL: Mat3 = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))  # slices +S, rows +P, columns +L
_ORTHONORMAL_TOL = 1e-4


@dataclass(frozen=True, slots=True, kw_only=True)
class Grid:
    """A regular voxel grid: voxel-centre origin, spacing and axes in LPS mm, array shape.

    `spacing_mm` and `axes` follow the array's axis order (slice, row, column).
    `frame_of_reference_uid` is DICOM's FrameOfReferenceUID (None for files that have none).
    """

    origin_mm: Vec3
    spacing_mm: Vec3
    axes: Mat3
    shape: tuple[int, int, int]
    frame_of_reference_uid: str | None = None

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            msg = f"shape must be three positive sizes, got {self.shape}"
            raise ValueError(msg)
        if not all(s > 0 for s in self.spacing_mm):  # NaN fails too
            msg = f"spacing_mm must be positive, got {self.spacing_mm}"
            raise ValueError(msg)
        axes = np.asarray(self.axes, dtype=float)
        if axes.shape != (3, 3) or not np.allclose(axes @ axes.T, np.eye(3), atol=_ORTHONORMAL_TOL):
            msg = f"axes must be three orthonormal unit vectors, got {self.axes}"
            raise ValueError(msg)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL."""
        return mm3_to_ml(float(np.prod(self.spacing_mm)))

    @property
    def affine(self) -> NDArray[np.float64]:
        """4×4 matrix from homogeneous (k, j, i, 1) to (L, P, S, 1) in mm."""
        out = np.eye(4)
        out[:3, :3] = np.asarray(self.axes, dtype=float).T * np.asarray(self.spacing_mm)
        out[:3, 3] = self.origin_mm
        return out

    def index_to_lps(self, index: ArrayLike) -> NDArray[np.float64]:
        """LPS mm of (..., 3) continuous indices (k, j, i)."""
        idx = np.asarray(index, dtype=float)
        a = self.affine
        return idx @ a[:3, :3].T + a[:3, 3]

    def lps_to_index(self, points_mm: ArrayLike) -> NDArray[np.float64]:
        """Continuous (k, j, i) indices of (..., 3) LPS points in mm."""
        pts = np.asarray(points_mm, dtype=float) - np.asarray(self.origin_mm)
        scaled = pts @ np.asarray(self.axes, dtype=float).T  # projections on each axis, mm
        index: NDArray[np.float64] = scaled / np.asarray(self.spacing_mm)
        return index

    def crop(self, start: tuple[int, int, int], stop: tuple[int, int, int]) -> Grid:
        """The sub-grid of indices [start, stop) on every axis."""
        origin = self.index_to_lps(np.asarray(start, dtype=float))
        shape = tuple(int(b - a) for a, b in zip(start, stop, strict=True))
        return replace(self, origin_mm=_vec3(origin), shape=shape)  # type: ignore[arg-type]

    def offset_in(self, other: Grid, *, tol_mm: float = 0.01) -> tuple[int, int, int] | None:
        """Index of this grid's first voxel in `other` when this grid is a crop of it, else None."""
        start = np.rint(other.lps_to_index(np.asarray(self.origin_mm))).astype(int)
        stop = start + np.asarray(self.shape)
        if np.any(start < 0) or np.any(stop > np.asarray(other.shape)):
            return None
        a, b, c = (int(v) for v in start)
        crop = other.crop((a, b, c), (int(stop[0]), int(stop[1]), int(stop[2])))
        return (a, b, c) if crop.same_geometry(self, tol_mm=tol_mm) else None

    def same_geometry(self, other: Grid, *, tol_mm: float = 0.01) -> bool:
        """True when both grids place every voxel within `tol_mm` of each other."""
        if self.shape != other.shape:
            return False
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in self.shape], indexing="ij"))
        corners = corners.reshape(3, -1).T
        gap = np.abs(self.index_to_lps(corners) - other.index_to_lps(corners))
        return bool(gap.max() <= tol_mm)

    def voxel_centres_lps(self, indices: NDArray[np.intp]) -> NDArray[np.float64]:
        """LPS mm of integer (n, 3) indices."""
        return self.index_to_lps(indices.astype(float))


def _vec3(values: ArrayLike) -> Vec3:
    x, y, z = (float(v) for v in np.asarray(values, dtype=float).ravel())
    return (x, y, z)


def require_same_frame(a: Grid, b: Grid, *, what: str) -> None:
    """Raise `GeometryError` unless `a` and `b` declare the same FrameOfReferenceUID."""
    if a.frame_of_reference_uid is None or b.frame_of_reference_uid is None:
        msg = f"{what}: a grid has no FrameOfReferenceUID; register the series first"
        raise GeometryError(msg)
    if a.frame_of_reference_uid != b.frame_of_reference_uid:
        msg = (
            f"{what}: FrameOfReferenceUID differs ({a.frame_of_reference_uid} vs "
            f"{b.frame_of_reference_uid}); register the series first (abscopal.register)"
        )
        raise GeometryError(msg)


def sample(
    array: NDArray[np.floating] | NDArray[np.bool_],
    grid: Grid,
    points_mm: NDArray[np.float64],
    *,
    order: int = 1,
    outside: float = np.nan,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Interpolate `array` (on `grid`) at LPS `points_mm` (n, 3).

    Returns the values and whether each point lies inside the grid's voxel footprint
    (index in [−0.5, n − 0.5] on every axis). Points in the half-voxel skirt take the edge value
    (DOSIMETRY.md §7.1); points outside get `outside`.
    """
    idx = grid.lps_to_index(points_mm)
    upper = np.asarray(grid.shape, dtype=float) - 0.5
    inside = np.all((idx >= -0.5) & (idx <= upper), axis=-1)
    clamped = np.clip(idx, 0.0, np.asarray(grid.shape, dtype=float) - 1.0)
    values = ndimage.map_coordinates(
        np.asarray(array, dtype=float), clamped.T, order=order, mode="nearest"
    )
    return np.where(inside, values, outside), inside


def resample(
    array: NDArray[np.floating] | NDArray[np.bool_],
    grid: Grid,
    onto: Grid,
    *,
    order: int = 1,
    outside: float = 0.0,
) -> NDArray[np.float64]:
    """Resample `array` from `grid` onto every voxel of `onto` (same frame of reference only)."""
    require_same_frame(grid, onto, what="resample")
    k, j, i = np.indices(onto.shape).reshape(3, -1)
    points = onto.index_to_lps(np.stack([k, j, i], axis=-1).astype(float))
    values, _ = sample(array, grid, points, order=order, outside=outside)
    return values.reshape(onto.shape)


def sitk_image(array: NDArray[np.floating] | NDArray[np.bool_], grid: Grid) -> Any:
    """A float32 SimpleITK image (x, y, z = column, row, slice) of `array` on `grid`, in LPS."""
    import SimpleITK

    sitk: Any = SimpleITK  # its partial stubs leave most calls untyped
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.SetOrigin(tuple(float(v) for v in grid.origin_mm))
    image.SetSpacing(tuple(float(v) for v in grid.spacing_mm[::-1]))
    axes = np.asarray(grid.axes, dtype=float)[::-1]  # rows: x (column), y (row), z (slice)
    image.SetDirection(tuple(float(v) for v in axes.T.ravel()))
    return image
