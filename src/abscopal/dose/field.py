"""Field status of a lesion for one local therapy (CLINICAL.md §8.1).

EBRT/SBRT rules F1–F5 and Y-90 rules Y1–Y3 are evaluated in order; the first match wins. Every
threshold is a field of `FieldSettings`, and each result names the rule that decided it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from abscopal.criteria._base import at_least_fraction, exact
from abscopal.geometry import Grid, require_same_frame
from abscopal.model import FieldStatus, LesionMask

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import NDArray

    from abscopal.dose.dvh import StructureDvh

# Worst first, for several courses without a common frame (CLINICAL.md §8.1, "Several courses").
_SEVERITY = (
    FieldStatus.IN_FIELD,
    FieldStatus.UNCERTAIN,
    FieldStatus.OUTSIDE_GRID,
    FieldStatus.LOW_DOSE,
    FieldStatus.OUT_OF_FIELD,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSettings:
    """Thresholds of §8.1 with their defaults."""

    ptv_overlap_min_voxels: int = 1  # F1, project
    in_field_fraction: str = "0.5"  # F3, × prescription, project (a decimal string: exact compare)
    low_dose_min_gy: float = 1.0  # F4/F5, Menon 2019
    low_dose_max_gy: float = 20.0  # F4 published upper bound, Menon 2019
    strict_distance_mm: float = 100.0  # Tomaciello 2023
    y90_activity_min_gy: float = 1.0  # Y1/Y2: LDM dose that counts as "activity at the lesion"
    y90_margin_mm: float = (
        11.0  # Y2: 99.6 % of the Y-90 beta energy lies within 11 mm (DOSIMETRY §2)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionField:
    """Field status of one lesion for one local therapy, with the numbers and rule behind it."""

    lesion_id: str
    therapy_id: str
    field: FieldStatus
    rule: str
    reason: str
    dose_mean_gy: float | None = None
    dose_max_gy: float | None = None
    fraction_in_grid: float | None = None
    overlap_voxels: int | None = None
    min_distance_to_ptv_mm: float | None = None
    flags: tuple[str, ...] = ()


def ptv_overlap_voxels(mask: LesionMask, ptv: NDArray[np.bool_], ptv_grid: Grid) -> int:
    """Number of lesion voxels whose centre falls in a PTV voxel (nearest voxel)."""
    require_same_frame(ptv_grid, mask.grid, what=f"PTV on lesion {mask.lesion_id}")
    index = np.rint(ptv_grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(ptv_grid.shape)), axis=1)
    return int(np.count_nonzero(ptv[tuple(index[inside].T)]))


def distance_to_ptv_mm(ptv: NDArray[np.bool_], ptv_grid: Grid) -> NDArray[np.float64]:
    """Euclidean distance (mm) from every voxel centre of `ptv_grid` to the nearest PTV voxel."""
    if not ptv.any():
        return np.full(ptv.shape, np.inf)
    return np.asarray(ndimage.distance_transform_edt(~ptv, sampling=ptv_grid.spacing_mm))


def min_distance_mm(mask: LesionMask, distance: NDArray[np.float64], grid: Grid) -> float | None:
    """Smallest voxel-centre distance from the lesion to the PTV; None if the lesion is off-grid."""
    index = np.rint(grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(grid.shape)), axis=1)
    if not inside.any():
        return None
    return float(distance[tuple(index[inside].T)].min())


def classify_ebrt(
    *,
    lesion_id: str,
    therapy_id: str,
    prescription_gy: float,
    overlap_voxels: int,
    fraction_in_grid: float,
    dose_mean_gy: float | None,
    dose_max_gy: float | None,
    min_distance_to_ptv_mm: float | None,
    settings: FieldSettings | None = None,
) -> LesionField:
    """Rules F1–F5 for one lesion and one EBRT/SBRT course."""
    s = settings or FieldSettings()
    far = min_distance_to_ptv_mm is not None and min_distance_to_ptv_mm > s.strict_distance_mm
    distance = _distance_text(min_distance_to_ptv_mm)

    def result(
        status: FieldStatus, rule: str, reason: str, flags: tuple[str, ...] = ()
    ) -> LesionField:
        return LesionField(
            lesion_id=lesion_id,
            therapy_id=therapy_id,
            field=status,
            rule=rule,
            reason=f"{rule}: {reason}",
            dose_mean_gy=dose_mean_gy,
            dose_max_gy=dose_max_gy,
            fraction_in_grid=fraction_in_grid,
            overlap_voxels=overlap_voxels,
            min_distance_to_ptv_mm=min_distance_to_ptv_mm,
            flags=flags,
        )

    if overlap_voxels >= s.ptv_overlap_min_voxels:
        return result(FieldStatus.IN_FIELD, "F1", f"overlaps the PTV by {overlap_voxels} voxel(s)")
    if fraction_in_grid < 1.0 or dose_mean_gy is None:
        flags = ("dose_unknown", "strict_distance") if far else ("dose_unknown",)
        share = f"{100 * fraction_in_grid:.0f} % of the lesion lies in the dose grid"
        return result(FieldStatus.OUTSIDE_GRID, "F2", f"{share}; {distance}", flags)
    threshold = exact(prescription_gy) * exact(float(s.in_field_fraction))
    if at_least_fraction(dose_mean_gy, s.in_field_fraction, prescription_gy):
        why = f"Dmean {dose_mean_gy:.2f} Gy ≥ {threshold} Gy ({s.in_field_fraction} × prescription)"
        return result(FieldStatus.IN_FIELD, "F3", why)
    if exact(dose_mean_gy) >= exact(s.low_dose_min_gy):
        above = ("above_low_dose_range",) if dose_mean_gy > s.low_dose_max_gy else ()
        why = f"{s.low_dose_min_gy} Gy ≤ Dmean {dose_mean_gy:.2f} Gy < {threshold} Gy"
        return result(FieldStatus.LOW_DOSE, "F4", why, above)
    why = f"Dmean {dose_mean_gy:.2f} Gy < {s.low_dose_min_gy} Gy; {distance}"
    return result(FieldStatus.OUT_OF_FIELD, "F5", why, ("strict_distance",) if far else ())


def classify_y90(
    *,
    lesion_id: str,
    therapy_id: str,
    organ: str,
    imaging_available: bool,
    dose_mean_gy: float | None,
    dose_max_gy: float | None = None,
    activity_near: bool | None = None,
    unknown_reason: str = "the lesion has no mask on the post-treatment image's frame of reference",
    settings: FieldSettings | None = None,
) -> LesionField:
    """Rules Y1–Y3 for one lesion and one Y-90 treatment.

    "Covered by activity" means an LDM mean dose of at least `y90_activity_min_gy` from the
    post-treatment image. `activity_near` says whether activity above the image's noise floor lies
    in the lesion or within `y90_margin_mm` of it (`activity_reaches_margin`); such a lesion that
    is not covered is `uncertain`, since imaging blur and the beta range leave deposition possible.
    When the dose at the lesion is unknown (no mask on the image's frame, or the lesion lies outside
    the imaged field of view) pass `dose_mean_gy=None` and say why in `unknown_reason` (Y2).
    """
    s = settings or FieldSettings()

    def result(status: FieldStatus, rule: str, reason: str) -> LesionField:
        return LesionField(
            lesion_id=lesion_id,
            therapy_id=therapy_id,
            field=status,
            rule=rule,
            reason=f"{rule}: {reason}",
            dose_mean_gy=dose_mean_gy,
            dose_max_gy=dose_max_gy,
        )

    hepatic = organ.lower() == "liver"
    if not imaging_available:
        why = "no post-treatment Y-90 PET or bremsstrahlung SPECT to exclude deposition"
        return result(FieldStatus.UNCERTAIN, "Y2", why)
    if dose_mean_gy is None:
        return result(FieldStatus.UNCERTAIN, "Y2", unknown_reason)
    ldm = f"LDM Dmean {dose_mean_gy:.2f} Gy"
    covered = dose_mean_gy >= s.y90_activity_min_gy
    if covered and hepatic:
        return result(FieldStatus.IN_FIELD, "Y1", f"covered by Y-90 activity ({ldm})")
    if covered:
        return result(FieldStatus.UNCERTAIN, "Y2", f"extrahepatic activity at the lesion ({ldm})")
    if activity_near:
        why = f"activity above the noise floor within {s.y90_margin_mm:g} mm of the lesion ({ldm})"
        return result(FieldStatus.UNCERTAIN, "Y2", why)
    where = "in an untreated liver territory" if hepatic else "extrahepatic"
    near = "" if activity_near is None else f" or within {s.y90_margin_mm:g} mm"
    why = f"{where}, no activity at the lesion{near} on post-treatment imaging ({ldm} < {s.y90_activity_min_gy} Gy)"
    return result(FieldStatus.OUT_OF_FIELD, "Y3", why)


def mask_on_grid(mask: LesionMask, grid: Grid) -> NDArray[np.bool_]:
    """The lesion as a boolean array on `grid` (nearest voxel of each lesion voxel centre)."""
    require_same_frame(grid, mask.grid, what=f"lesion {mask.lesion_id} on the image grid")
    index = np.rint(grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(grid.shape)), axis=1)
    out = np.zeros(grid.shape, dtype=bool)
    out[tuple(index[inside].T)] = True
    return out


def worst(fields: Sequence[LesionField]) -> LesionField:
    """The most treated status of several local therapies (in_field > uncertain > … > out_of_field)."""
    if not fields:
        msg = "worst() needs at least one field status"
        raise ValueError(msg)
    return min(fields, key=lambda f: _SEVERITY.index(f.field))


def _distance_text(distance_mm: float | None) -> str:
    if distance_mm is None:
        return "distance to the PTV unknown"
    return f"{distance_mm:.0f} mm from the PTV"


# ---------------------------------------------------------------- DOSIMETRY.md §8.3


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldThresholds:
    """Thresholds of DOSIMETRY.md §8.3 (project defaults); echoed in every result."""

    out_max_gy: float = 1.0
    threshold_quantity: str = "physical"
    ebrt_in_isodose_fraction: float = 0.5
    in_overlap_fraction: float = 0.5
    y90_min_distance_mm: float = 10.0
    y90_margin_mm: float = 11.0  # 99.6 % of the beta energy lies within 11 mm
    y90_noise_floor_sd: float = 3.0  # floor = background mean + 3 SD
    y90_background_distance_mm: float = 30.0
    lungs_loaded_if_lsf_above: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DoseFieldStatus:
    """A §8.3 status with the numbers and thresholds behind it."""

    field: FieldStatus
    rule: str
    reason: str
    distance_mm: float | None = None
    dose_mean_gy: float | None = None
    dose_bound_gy: float | None = None
    grid_coverage: float | None = None
    noise_floor_bq_ml: float | None = None
    thresholds: FieldThresholds = dataclass_field(default_factory=FieldThresholds)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict, thresholds included."""
        out = asdict(self)
        out["field"] = str(self.field)
        return out


def ebrt_coverage_status(
    dvh: StructureDvh, *, prescription_gy: float, thresholds: FieldThresholds | None = None
) -> DoseFieldStatus:
    """EBRT rules of §8.3 from a lesion's DVH: outside_grid, in_field, out_of_field, uncertain, low_dose.

    `in_field` needs the volume at ≥ `ebrt_in_isodose_fraction` × prescription; it is computed
    from the DVH's V_x when present, else from D98/D50/D2 bounds is not attempted: pass
    `vx_thresholds_gy` with that isodose in the DVH options.
    """
    t = thresholds or FieldThresholds()
    isodose = t.ebrt_in_isodose_fraction * prescription_gy

    def result(status: FieldStatus, rule: str, reason: str, bound: float | None) -> DoseFieldStatus:
        return DoseFieldStatus(
            field=status,
            rule=rule,
            reason=f"{rule}: {reason}",
            dose_mean_gy=dvh.dose_mean_gy,
            dose_bound_gy=bound,
            grid_coverage=dvh.grid_coverage,
            thresholds=t,
        )

    boundary = dvh.max_boundary_dose_gy
    if dvh.grid_coverage == 0 or dvh.dose_mean_gy is None:
        why = f"no part of the lesion lies in the dose grid; dose ≤ {boundary:.2f} Gy at its faces"
        return result(FieldStatus.OUTSIDE_GRID, "E-grid", why, boundary)
    in_ml = next((v for x, v in dvh.vx_ml.items() if abs(x - isodose) <= 1e-9), None)
    if in_ml is None:
        in_ml = (
            dvh.volume_in_grid_ml
            if dvh.dose_min_gy is not None and dvh.dose_min_gy >= isodose
            else 0.0
        )
        lo, hi = dvh.dose_min_gy, dvh.dose_max_gy
        if lo is not None and hi is not None and lo < isodose <= hi:
            msg = f"V{isodose:g}Gy is needed: add {isodose:g} to DvhOptions.vx_thresholds_gy"
            raise ValueError(msg)
    share = in_ml / dvh.volume_ml
    if share >= t.in_overlap_fraction:
        why = f"{100 * share:.0f} % of the lesion ≥ {isodose:g} Gy (in-field isodose)"
        return result(FieldStatus.IN_FIELD, "E-in", why, dvh.dose_mean_upper_gy)
    mean = dvh.dose_mean_gy
    if mean < t.out_max_gy and (dvh.grid_coverage >= 1.0 or boundary < t.out_max_gy):
        why = f"covered Dmean {mean:.2f} Gy < {t.out_max_gy} Gy; boundary {boundary:.2f} Gy"
        return result(FieldStatus.OUT_OF_FIELD, "E-out", why, dvh.dose_mean_upper_gy)
    if mean < t.out_max_gy:
        why = f"covered Dmean {mean:.2f} Gy but grid boundary {boundary:.2f} Gy ≥ {t.out_max_gy} Gy"
        return result(FieldStatus.UNCERTAIN, "E-unc", why, dvh.dose_mean_upper_gy)
    why = f"covered Dmean {mean:.2f} Gy ≥ {t.out_max_gy} Gy, below the in-field isodose"
    return result(FieldStatus.LOW_DOSE, "E-low", why, dvh.dose_mean_upper_gy)


def gap_mm(lesion: NDArray[np.bool_], region: NDArray[np.bool_], grid: Grid) -> float:
    """Surface gap (mm) between two masks on one grid (DOSIMETRY §8.3 `distance_mm`).

    The nearest pair of voxel centres (EDT of the region's complement read at the lesion), at
    distance d along u, gives `max(0, d − (w(u) + w(u))/2)` with `w(u) = Σ|u_a|·s_a`; 0 when they
    overlap or touch; inf when the region is empty.
    """
    if not region.any():
        return float("inf")
    if not lesion.any():
        msg = "gap_mm: the lesion mask is empty"
        raise ValueError(msg)
    if (lesion & region).any():
        return 0.0
    spacing = np.asarray(grid.spacing_mm, dtype=float)
    distance, indices = ndimage.distance_transform_edt(
        ~region, sampling=grid.spacing_mm, return_indices=True
    )
    points = np.argwhere(lesion)
    d = distance[tuple(points.T)]
    best = int(np.argmin(d))
    source = points[best]
    target = indices[(slice(None), *source)]
    delta = (np.asarray(target) - source) * spacing
    length = float(np.linalg.norm(delta))
    u = delta / length
    width = float(np.sum(np.abs(u) * spacing))
    return max(0.0, length - width)


def noise_floor_bq_ml(
    activity: NDArray[np.float64],
    grid: Grid,
    *,
    background: NDArray[np.bool_] | None = None,
    perfused: NDArray[np.bool_] | None = None,
    thresholds: FieldThresholds | None = None,
) -> float:
    """Background mean + n·SD of activity concentration (§8.3 `y90_noise_floor`).

    The background VOI is given, else every voxel ≥ `y90_background_distance_mm` from the
    perfused region (or from the hottest 1 % of voxels when no perfused mask is given).
    """
    t = thresholds or FieldThresholds()
    if background is None:
        seed = perfused
        if seed is None or not seed.any():
            seed = activity >= np.quantile(activity, 0.99)
        far = ndimage.distance_transform_edt(~seed, sampling=grid.spacing_mm)
        background = far >= t.y90_background_distance_mm
    values = activity[background]
    if values.size < 2:  # an SD needs two voxels
        msg = "noise floor: the background VOI has fewer than 2 voxels; pass a background mask"
        raise ValueError(msg)
    return float(values.mean() + t.y90_noise_floor_sd * values.std())


def y90_region_status(
    lesion: NDArray[np.bool_],
    loaded: NDArray[np.bool_],
    grid: Grid,
    *,
    reference_dose_gy: float,
    f_planar: Callable[[float], float],
    imaging_available: bool = True,
    noise_floor: float | None = None,
    thresholds: FieldThresholds | None = None,
) -> DoseFieldStatus:
    """Y-90 rules of §8.3: in_field, out_of_field (gap and physical bound), low_dose, uncertain.

    `loaded` = perfused mask ∪ {activity > noise floor} ∪ lungs (LSF above the threshold) ∪ any
    extrahepatic uptake, built by the caller; bound = D_ref·f_planar(gap).
    """
    t = thresholds or FieldThresholds()

    def result(
        status: FieldStatus, rule: str, reason: str, **numbers: float | None
    ) -> DoseFieldStatus:
        return DoseFieldStatus(
            field=status,
            rule=rule,
            reason=f"{rule}: {reason}",
            noise_floor_bq_ml=noise_floor,
            thresholds=t,
            **numbers,
        )

    if not imaging_available:
        return result(FieldStatus.UNCERTAIN, "Y-img", "no quantitative image and no perfused mask")
    share = float((lesion & loaded).sum()) / float(lesion.sum())
    gap = gap_mm(lesion, loaded, grid)
    if share >= t.in_overlap_fraction:
        why = f"{100 * share:.0f} % of the lesion inside the loaded region"
        return result(FieldStatus.IN_FIELD, "Y-in", why, distance_mm=gap)
    bound = reference_dose_gy * f_planar(gap) if np.isfinite(gap) else 0.0
    numbers = {"distance_mm": gap, "dose_bound_gy": bound}
    if gap >= t.y90_min_distance_mm and bound < t.out_max_gy:
        why = f"{gap:.1f} mm from the loaded region, bound {bound:.3f} Gy < {t.out_max_gy} Gy"
        return result(FieldStatus.OUT_OF_FIELD, "Y-out", why, **numbers)
    if bound >= t.out_max_gy:
        why = f"{gap:.1f} mm from the loaded region, bound {bound:.2f} Gy ≥ {t.out_max_gy} Gy"
        return result(FieldStatus.LOW_DOSE, "Y-low", why, **numbers)
    why = f"{gap:.1f} mm from the loaded region, closer than {t.y90_min_distance_mm} mm"
    return result(FieldStatus.UNCERTAIN, "Y-unc", why, **numbers)


def activity_reaches_margin(
    lesion: NDArray[np.bool_],
    activity: NDArray[np.float64],
    grid: Grid,
    *,
    noise_floor: float,
    margin_mm: float,
) -> bool:
    """True when a voxel above the noise floor lies in the lesion or within `margin_mm` of it."""
    hot = activity > noise_floor
    if not hot.any():
        return False
    near = ndimage.distance_transform_edt(~lesion, sampling=grid.spacing_mm) <= margin_mm
    return bool((hot & near).any())
