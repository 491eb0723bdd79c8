"""Dose inside a lesion from a dose grid on the same frame of reference (DOSIMETRY.md §7.1)."""

from __future__ import annotations

from dataclasses import dataclass

from abscopal.geometry import require_same_frame, sample
from abscopal.model import LesionMask, Volume


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskDose:
    """Dose statistics of one mask. Coverage is explicit.

    `dose_mean_gy` and `dose_max_gy` are None unless the whole lesion lies in the grid; the
    in-grid part is summarised separately and the part outside is bounded by the grid's maximum
    boundary dose, never silently given the in-grid mean.
    """

    fraction_in_grid: float
    dose_mean_gy: float | None
    dose_max_gy: float | None
    dose_mean_in_grid_gy: float | None
    max_boundary_dose_gy: float


def max_boundary_dose_gy(dose: Volume) -> float:
    """Maximum dose over the six faces of the grid: a bound for dose just outside it."""
    a = dose.array
    faces = (a[0], a[-1], a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1])
    return float(max(face.max() for face in faces))


def dose_in_mask(dose: Volume, mask: LesionMask) -> MaskDose:
    """Trilinear dose at every voxel centre of `mask`; both must share a frame of reference."""
    require_same_frame(dose.grid, mask.grid, what=f"dose on lesion {mask.lesion_id}")
    values, inside = sample(dose.array, dose.grid, mask.points_lps(), order=1)
    boundary = max_boundary_dose_gy(dose)
    if values.size == 0:
        return MaskDose(
            fraction_in_grid=0.0,
            dose_mean_gy=None,
            dose_max_gy=None,
            dose_mean_in_grid_gy=None,
            max_boundary_dose_gy=boundary,
        )
    fraction = float(inside.mean())
    in_grid = values[inside]
    whole = fraction == 1.0
    return MaskDose(
        fraction_in_grid=fraction,
        dose_mean_gy=float(values.mean()) if whole else None,
        dose_max_gy=float(values.max()) if whole else None,
        dose_mean_in_grid_gy=float(in_grid.mean()) if in_grid.size else None,
        max_boundary_dose_gy=boundary,
    )
