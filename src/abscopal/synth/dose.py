"""The analytic EBRT dose of a synthetic plan, the truth the RTDOSE is written from.

The PTV is the in-field lesion (at its planning-CT size) grown by exactly `margin_mm`: the points
within `margin_mm` of the lesion ellipsoid. With d the distance (mm) to the PTV surface::

    D = Rx · (1 + ripple)        inside the PTV, |ripple| ≤ 2 %
    D = Rx · exp(−d / σ)         outside, σ = 6 mm (SBRT) or 10 mm (conventional)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
from skimage import measure

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from abscopal.geometry import Grid
    from abscopal.synth.lesions import Ellipsoid

PTV_MARGIN_MM: Final = 5.0
SIGMA_SBRT_MM: Final = 6.0
SIGMA_CONVENTIONAL_MM: Final = 10.0
RIPPLE: Final = 0.02  # inside the PTV; the brief allows ±3 %
_CONTOUR_STEP_MM: Final = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyticDose:
    """A prescription to a PTV around `target` with an exponential fall-off of `sigma_mm`."""

    target: Ellipsoid
    prescription_gy: float
    sigma_mm: float
    margin_mm: float = PTV_MARGIN_MM

    def __post_init__(self) -> None:
        if not (self.prescription_gy > 0 and self.sigma_mm > 0 and self.margin_mm >= 0):
            msg = (
                "prescription_gy and sigma_mm must be > 0 and margin_mm >= 0, got "
                f"{self.prescription_gy}, {self.sigma_mm}, {self.margin_mm}"
            )
            raise ValueError(msg)

    def distance_to_ptv_mm(self, points_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Distance (mm) from each (n, 3) LPS point to the PTV surface; 0 inside the PTV."""
        return np.maximum(self.target.distance_mm(points_mm) - self.margin_mm, 0.0)

    def dose_gy(self, points_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Physical dose (Gy) at (n, 3) LPS points."""
        points = np.asarray(points_mm, dtype=float)
        d = self.distance_to_ptv_mm(points)
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        ripple = RIPPLE * np.sin(2.0 * np.pi * x / 17.0) * np.cos(2.0 * np.pi * (y + z) / 23.0)
        inside = self.prescription_gy * (1.0 + ripple)
        outside = self.prescription_gy * np.exp(-d / self.sigma_mm)
        return np.where(d > 0.0, outside, inside)

    def dose_on_grid(self, grid: Grid) -> NDArray[np.float64]:
        """Dose (Gy) at every voxel centre of `grid` (slice, row, column)."""
        out = np.empty(grid.shape, dtype=float)
        _, rows, cols = grid.shape
        jj, ii = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        for k in range(grid.shape[0]):
            kji = np.stack([np.full(jj.shape, k), jj, ii], axis=-1).astype(float)
            out[k] = self.dose_gy(grid.index_to_lps(kji))
        return out

    def ptv_contour_mm(self, s_mm: float) -> NDArray[np.float64] | None:
        """The PTV's section at S = `s_mm` as an (n, 3) closed polygon in LPS mm, or None."""
        a, b, c = self.target.semi_axes_mm
        cz = self.target.centre_mm[2]
        if abs(s_mm - cz) >= c + self.margin_mm:
            return None
        reach = max(a, b) + self.margin_mm + 2.0 * _CONTOUR_STEP_MM
        steps = np.arange(-reach, reach + _CONTOUR_STEP_MM / 2, _CONTOUR_STEP_MM)
        cx, cy = self.target.centre_mm[0], self.target.centre_mm[1]
        yy, xx = np.meshgrid(cy + steps, cx + steps, indexing="ij")
        points = np.stack([xx, yy, np.full(xx.shape, s_mm)], axis=-1)
        field = self.target.distance_mm(points) - self.margin_mm
        contours = [c for c in measure.find_contours(field, 0.0) if len(c) >= 4]
        if not contours:
            return None
        rows_cols = max(contours, key=len)[:-1]  # closed: the last point repeats the first
        out = np.empty((len(rows_cols), 3))
        out[:, 0] = cx + steps[0] + rows_cols[:, 1] * _CONTOUR_STEP_MM
        out[:, 1] = cy + steps[0] + rows_cols[:, 0] * _CONTOUR_STEP_MM
        out[:, 2] = s_mm
        every = max(1, math.ceil(len(out) / 180))  # ≤ 180 vertices, about 1 mm apart
        return out[::every]
