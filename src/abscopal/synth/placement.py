"""Where each kind of lesion sits in the phantom, and how its size and dose class are chosen.

Every lesion centre lies on a 5 mm slice centre (S = −157.5 + 5·n mm), so both CT sizes cut the
lesion through its largest axial section. Sizes at scale 1 (before the seed's ±8 % jitter):

| site | where | semi-axes (mm) | LD × SA (mm) |
|---|---|---|---|
| liver | right lobe, (−80, −20, 82.5), turned 25° | 16, 12, 11 | 32 × 24 |
| target_vertebra | body centre of L2 or L3 (the EBRT target) | 12, 9, 8.75 | 24 × 18 |
| vertebra | body centre of L3 or L4 (out of field) | 14, 10.5, 8.75 | 28 × 21 |
| rib | lateral point of the rib at S 112.5 or 142.5 | 8 (L), 16 (P), 8.75 | 32 × 16 |
| ilium | iliac wing centre at S −67.5, along the wing | 16, 8, 8.75 | 32 × 16 |
| femur | femoral head centre (a new lesion; no jitter) | 10, 8, 7 | 20 × 16 |

The S semi-axes make the voxel count on 5 mm slices match the ellipsoid's volume at baseline.
Out-of-field and low-dose lesions sit on a pixel centre of the small grid, and their size is
kept only if a reader measuring the masks would see the planned course (`reads_as_planned`):
the seed's jitter moves to the nearest size that passes.
"""

from __future__ import annotations

import math
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from abscopal.synth import phantom
from abscopal.synth.lesions import Ellipsoid

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from abscopal.geometry import Grid
    from abscopal.synth.dose import AnalyticDose

Site = Literal["liver", "target_vertebra", "vertebra", "adjacent_vertebra", "rib", "ilium", "femur"]
Side = Literal["left", "right"]
ORGAN: Final[dict[str, str]] = {
    "liver": "liver",
    "target_vertebra": "vertebra",
    "vertebra": "vertebra",
    "adjacent_vertebra": "vertebra",
    "rib": "rib",
    "ilium": "ilium",
    "femur": "femur",
}
LOW_DOSE_MIN_GY: Final = 1.5
LOW_DOSE_MAX_FRACTION: Final = 0.4  # of the prescription
LOW_DOSE_MIN_GAP_MM: Final = 4.0  # surface to surface: the lesion never touches the PTV
_SIDES: Final[tuple[Side, Side]] = ("left", "right")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sites:
    """The seed's choice of levels and sides."""

    target_level: str  # the EBRT target's vertebra
    vertebra_level: str  # an out-of-field vertebral lesion (Y-90 scenario)
    rib_side: Side
    rib_band_s_mm: float
    ilium_side: Side
    femur_side: Side


def draw_sites(rng: np.random.Generator) -> Sites:
    """Levels and sides drawn from `rng` (six draws, always in this order)."""
    return Sites(
        target_level=("L2", "L3")[int(rng.integers(2))],
        vertebra_level=("L3", "L4")[int(rng.integers(2))],
        rib_side=_SIDES[int(rng.integers(2))],
        rib_band_s_mm=(112.5, 142.5)[int(rng.integers(2))],
        ilium_side=_SIDES[int(rng.integers(2))],
        femur_side=_SIDES[int(rng.integers(2))],
    )


def site_shape(site: Site, sites: Sites, *, jitter: float) -> Ellipsoid:
    """The lesion ellipsoid of `site` at scale 1, every semi-axis times `jitter`."""

    def semi(a: float, b: float, c: float) -> tuple[float, float, float]:
        return (a * jitter, b * jitter, c * jitter)

    if site == "liver":
        return Ellipsoid(
            centre_mm=(-80.0, -20.0, 82.5), semi_axes_mm=semi(16, 12, 11), angle_deg=25.0
        )
    if site == "target_vertebra":
        centre = phantom.vertebral_body_centre(sites.target_level)
        return Ellipsoid(centre_mm=centre, semi_axes_mm=semi(12, 9, 8.75))
    if site == "vertebra":
        centre = _on_pixel(phantom.vertebral_body_centre(sites.vertebra_level))
        return Ellipsoid(centre_mm=centre, semi_axes_mm=semi(14, 10.5, 8.75))
    if site == "rib":  # at the rib's lateral point the rib runs along P: long axis along P
        centre = _on_pixel(phantom.rib_lateral_point(sites.rib_side, sites.rib_band_s_mm))
        return Ellipsoid(centre_mm=centre, semi_axes_mm=semi(8, 16, 8.75))
    if site == "ilium":
        centre, angle = phantom.iliac_wing(sites.ilium_side)
        return Ellipsoid(
            centre_mm=_on_pixel(centre), semi_axes_mm=semi(16, 8, 8.75), angle_deg=angle
        )
    if site == "femur":
        centre = phantom.femoral_head_centre(sites.femur_side)
        return Ellipsoid(centre_mm=centre, semi_axes_mm=semi(10, 8, 7))
    msg = f"site {site!r} has no fixed placement; 'adjacent_vertebra' is placed by low_dose_shape"
    raise ValueError(msg)


def _on_pixel(centre: tuple[float, float, float]) -> tuple[float, float, float]:
    """Move L and P to the nearest pixel centre of the small CT grid (S is a slice centre)."""
    grid = phantom.ct_grid("small")
    x0, y0 = grid.origin_mm[0], grid.origin_mm[1]
    step = grid.spacing_mm[2]
    return (
        x0 + step * round((centre[0] - x0) / step),
        y0 + step * round((centre[1] - y0) / step),
        centre[2],
    )


def lattice_points(shape: Ellipsoid, *, step_mm: float = 1.0) -> NDArray[np.float64]:
    """A regular lattice of points inside `shape` (for grid-independent means)."""
    low, high = shape.bounds_mm()
    axes = [np.arange(lo + step_mm / 2, hi, step_mm) for lo, hi in zip(low, high, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside: NDArray[np.float64] = points[shape.contains(points)]
    return inside


def low_dose_shape(dose: AnalyticDose, sites: Sites) -> Ellipsoid:
    """A lesion in the vertebra above the target whose mean dose is mid-way in the low-dose range.

    Candidates move the centre 0, 5 or 10 mm towards the target and vary the S semi-axis; the
    one whose mean dose is nearest the geometric middle of [1.5 Gy, 0.4 · Rx] wins, provided
    it stays `LOW_DOSE_MIN_GAP_MM` clear of the PTV.
    """
    levels = list(phantom.VERTEBRAE)
    above = levels[levels.index(sites.target_level) + 1]
    centre = phantom.vertebral_body_centre(above)
    low, high = LOW_DOSE_MIN_GY, LOW_DOSE_MAX_FRACTION * dose.prescription_gy
    aim = math.sqrt(low * high)
    best: tuple[float, Ellipsoid] | None = None
    for shift_mm in (0.0, 5.0, 10.0):  # lesion centres stay on 5 mm slice centres
        for semi_s_mm in (6.0, 7.0, 8.75):
            shape = Ellipsoid(
                centre_mm=(centre[0], centre[1], centre[2] - shift_mm),
                semi_axes_mm=(11.0, 9.0, semi_s_mm),
            )
            points = lattice_points(shape)
            gap_mm = float(dose.distance_to_ptv_mm(points).min())
            mean_gy = float(dose.dose_gy(points).mean())
            if gap_mm < LOW_DOSE_MIN_GAP_MM or not low <= mean_gy <= high:
                continue
            score = abs(math.log(mean_gy / aim))
            if best is None or score < best[0]:
                best = (score, shape)
    if best is None:
        msg = (
            f"no low-dose placement above {sites.target_level} gives a mean dose in "
            f"[{low}, {high}] Gy at >= {LOW_DOSE_MIN_GAP_MM} mm from the PTV; add candidate "
            "shifts or semi-axes in low_dose_shape"
        )
        raise ValueError(msg)
    return best[1]


def jitter_candidates(first: float) -> list[float]:
    """`first`, then sizes 1 %, 2 %, … either side of it within [0.9, 1.1]."""
    out = [first]
    for step in range(1, 21):
        out.extend(j for j in (first + 0.01 * step, first - 0.01 * step) if 0.9 <= j <= 1.1)
    return out


def axial_long_diameter_mm(shape: Ellipsoid, grid: Grid) -> float:
    """Largest distance between two voxel centres of the mask in one axial slice."""
    box = shape.voxels(grid)
    best = 0.0
    for k in np.unique(box.indices[:, 0]):
        points = box.points_mm[box.indices[:, 0] == k][:, :2]
        if len(points) < 2:
            continue
        with suppress(QhullError):  # all on one line: keep every point
            points = points[ConvexHull(points).vertices]
        best = max(best, float(pdist(points).max()))
    return best


def reads_as_planned(scales: tuple[float, ...], shape: Ellipsoid, *, baseline: int) -> bool:
    """True when a reader measuring the voxel masks sees the planned course.

    On both CT sizes, with the long diameter taken between voxel centres and edge to edge
    (one pixel more), against the baseline: a planned scale ≤ 0.70 reads ≤ −31 %, one in
    [0.85, 1.05] reads between −25 % and +15 %, one ≥ 1.25 reads ≥ +20 % and ≥ +5 mm.
    """
    for size in ("small", "full"):
        grid = phantom.ct_grid(size)
        pixel_mm = grid.spacing_mm[2]
        centre_to_centre = {
            i: axial_long_diameter_mm(shape.scaled(s), grid) for i, s in enumerate(scales) if s > 0
        }
        for extra_mm in (0.0, pixel_mm):
            base = centre_to_centre[baseline] + extra_mm
            for i, ld in centre_to_centre.items():
                scale, now = scales[i] / scales[baseline], ld + extra_mm
                pct = 100.0 * (now - base) / base
                if scale <= 0.70 and not pct <= -31.0:
                    return False
                if 0.85 <= scale <= 1.05 and not -25.0 < pct < 15.0:
                    return False
                if scale >= 1.25 and not (pct >= 20.0 and now - base >= 5.0):
                    return False
    return True
