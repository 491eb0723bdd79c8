"""Field status of a lesion for one local therapy: one rule set per therapy type.

CLINICAL.md §8.1 decides the status: EBRT/SBRT rules F1–F5 and Y-90 rules Y1–Y3, evaluated in
order, the first match wins. DOSIMETRY.md §8.3's quantities are the evidence stored in the same
`LesionField`: grid coverage, the covered mean and the bound for the part outside the dose grid
(maximum boundary dose), the gap to the loaded region, the physical bound D_ref·f_planar(gap) and
the image noise floor. Every threshold is a field of `FieldSettings`, echoed in every result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from abscopal.criteria._base import at_least_fraction, exact
from abscopal.dose.kernel import f_planar
from abscopal.geometry import Grid, require_same_frame
from abscopal.model import FieldStatus, LesionMask

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from abscopal.dose.kernel import DosePointKernel

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
    """Every threshold of the field rules with its default; echoed in every `LesionField`."""

    ptv_overlap_min_voxels: int = 1  # F1, project
    in_field_fraction: str = "0.5"  # F3, × prescription, project (a decimal string: exact compare)
    low_dose_min_gy: float = 1.0  # F4/F5, Menon 2019; DOSIMETRY §8.3 `out_max_gy`
    low_dose_max_gy: float = 20.0  # F4 published upper bound, Menon 2019
    strict_distance_mm: float = 100.0  # Tomaciello 2023
    y90_activity_min_gy: float = 1.0  # Y1/Y2: LDM dose that counts as "activity at the lesion"
    y90_margin_mm: float = 11.0  # Y2: 99.6 % of the Y-90 beta energy lies within 11 mm (§2)
    y90_noise_floor_sd: float = 3.0  # noise floor = background mean + 3 SD (§8.3)
    y90_background_distance_mm: float = 30.0  # automatic background VOI: this far from uptake
    lungs_loaded_if_lsf_above: float = 0.0  # a lung shunt makes the lungs a loaded region


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionField:
    """Field status of one lesion for one local therapy, with the rule, evidence and settings.

    `dose_mean_gy` is None when the dose of the whole lesion is unknown (partly outside the grid,
    no mask on the image's frame). Evidence (None where it does not apply): `fraction_in_grid`,
    `dose_mean_in_grid_gy` and `max_boundary_dose_gy`, whose combination
    `f_in·mean_in + f_out·boundary` is `dose_mean_upper_gy`; for Y-90 the surface gap to the loaded
    region, the physical bound `D_ref·f_planar(gap)` and the noise floor.
    """

    lesion_id: str
    therapy_id: str
    field: FieldStatus
    rule: str
    reason: str
    dose_mean_gy: float | None = None
    dose_max_gy: float | None = None
    fraction_in_grid: float | None = None
    dose_mean_in_grid_gy: float | None = None
    max_boundary_dose_gy: float | None = None
    dose_mean_upper_gy: float | None = None
    overlap_voxels: int | None = None
    min_distance_to_ptv_mm: float | None = None
    distance_to_loaded_mm: float | None = None
    reference_dose_gy: float | None = None
    dose_bound_gy: float | None = None
    noise_floor_bq_ml: float | None = None
    flags: tuple[str, ...] = ()
    settings: FieldSettings = dataclass_field(default_factory=FieldSettings)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict, settings included."""
        out = asdict(self)
        out["field"] = self.field.value
        out["flags"] = list(self.flags)
        return out


# ---------------------------------------------------------------- geometry


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


def mask_on_grid(mask: LesionMask, grid: Grid) -> NDArray[np.bool_]:
    """The lesion as a boolean array on `grid` (nearest voxel of each lesion voxel centre)."""
    require_same_frame(grid, mask.grid, what=f"lesion {mask.lesion_id} on the image grid")
    index = np.rint(grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(grid.shape)), axis=1)
    out = np.zeros(grid.shape, dtype=bool)
    out[tuple(index[inside].T)] = True
    return out


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RegionDistance:
    """One distance transform of a region's complement, read for every lesion (`gap_mm`)."""

    region: NDArray[np.bool_]
    grid: Grid
    distance_mm: NDArray[np.float64]
    nearest_index: NDArray[np.intp]  # (3, *shape): index of the nearest region voxel


def region_distance(region: NDArray[np.bool_], grid: Grid) -> RegionDistance:
    """EDT of `~region` with nearest-voxel indices (`sampling` = the grid's spacing)."""
    distance, nearest = ndimage.distance_transform_edt(
        ~region, sampling=grid.spacing_mm, return_indices=True
    )
    return RegionDistance(
        region=region, grid=grid, distance_mm=np.asarray(distance), nearest_index=nearest
    )


def gap_mm(lesion: NDArray[np.bool_], region: RegionDistance) -> float:
    """Surface gap (mm) between a lesion and a region on one grid (DOSIMETRY §8.3 `distance_mm`).

    The nearest pair of voxel centres, at distance d along u, gives
    `max(0, d − (w(u) + w(u))/2)` with `w(u) = Σ|u_a|·s_a`: exact for axis-aligned boxes, ±½ voxel
    otherwise; 0 when they overlap or touch; inf when the region is empty.
    """
    if not region.region.any():
        return float("inf")
    if not lesion.any():
        msg = "gap_mm: the lesion mask is empty"
        raise ValueError(msg)
    if (lesion & region.region).any():
        return 0.0
    points = np.argwhere(lesion)
    source = points[int(np.argmin(region.distance_mm[tuple(points.T)]))]
    spacing = np.asarray(region.grid.spacing_mm, dtype=float)
    delta = (region.nearest_index[(slice(None), *source)] - source) * spacing
    length = float(np.linalg.norm(delta))
    width = float(np.sum(np.abs(delta / length) * spacing))
    return max(0.0, length - width)


# ---------------------------------------------------------------- Y-90 image evidence


def noise_floor_bq_ml(
    activity: NDArray[np.float64],
    grid: Grid,
    *,
    background: NDArray[np.bool_] | None = None,
    perfused: NDArray[np.bool_] | None = None,
    settings: FieldSettings | None = None,
) -> float:
    """Background mean + n·SD of activity concentration (§8.3 `y90_noise_floor`).

    The background VOI is given, else every voxel ≥ `y90_background_distance_mm` from the
    perfused region (or from the hottest 1 % of voxels when no perfused mask is given).
    """
    s = settings or FieldSettings()
    if background is None:
        seed = perfused
        if seed is None or not seed.any():
            seed = activity >= np.quantile(activity, 0.99)
        far = ndimage.distance_transform_edt(~seed, sampling=grid.spacing_mm)
        background = far >= s.y90_background_distance_mm
    values = activity[background]
    if values.size < 2:  # an SD needs two voxels
        msg = "noise floor: the background VOI has fewer than 2 voxels; pass a background mask"
        raise ValueError(msg)
    return float(values.mean() + s.y90_noise_floor_sd * values.std())


def y90_loaded_region(
    activity: NDArray[np.float64],
    *,
    noise_floor: float,
    perfused: NDArray[np.bool_] | None = None,
    lungs: NDArray[np.bool_] | None = None,
    lung_shunt_fraction: float = 0.0,
    settings: FieldSettings | None = None,
) -> NDArray[np.bool_]:
    """L = perfused ∪ {activity > noise floor} ∪ lungs (LSF above the setting), §8.3.

    Thresholding a blurred image enlarges L, which errs toward "dosed".
    """
    s = settings or FieldSettings()
    loaded = activity > noise_floor
    if perfused is not None:
        loaded |= perfused
    if lungs is not None and lung_shunt_fraction > s.lungs_loaded_if_lsf_above:
        loaded |= lungs
    return loaded


# ---------------------------------------------------------------- classifiers


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
    dose_mean_in_grid_gy: float | None = None,
    max_boundary_dose_gy: float | None = None,
    settings: FieldSettings | None = None,
) -> LesionField:
    """Rules F1–F5 for one lesion and one EBRT/SBRT course.

    The covered mean and the grid's maximum boundary dose are evidence: for a lesion partly
    outside the grid (F2) they give `dose_mean_upper_gy = f_in·mean_in + f_out·boundary`.
    """
    s = settings or FieldSettings()
    far = min_distance_to_ptv_mm is not None and min_distance_to_ptv_mm > s.strict_distance_mm
    distance = _distance_text(min_distance_to_ptv_mm)
    if dose_mean_gy is not None and fraction_in_grid >= 1.0:
        dose_mean_in_grid_gy = dose_mean_gy
    upper = _upper_bound_gy(fraction_in_grid, dose_mean_in_grid_gy, max_boundary_dose_gy)

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
            dose_mean_in_grid_gy=dose_mean_in_grid_gy,
            max_boundary_dose_gy=max_boundary_dose_gy,
            dose_mean_upper_gy=upper,
            overlap_voxels=overlap_voxels,
            min_distance_to_ptv_mm=min_distance_to_ptv_mm,
            flags=flags,
            settings=s,
        )

    if overlap_voxels >= s.ptv_overlap_min_voxels:
        return result(FieldStatus.IN_FIELD, "F1", f"overlaps the PTV by {overlap_voxels} voxel(s)")
    if fraction_in_grid < 1.0 or dose_mean_gy is None:
        flags = ("dose_unknown", "strict_distance") if far else ("dose_unknown",)
        share = f"{100 * fraction_in_grid:.0f} % of the lesion lies in the dose grid"
        bound = "" if upper is None else f" (Dmean ≤ {upper:.2f} Gy by the grid boundary dose)"
        return result(FieldStatus.OUTSIDE_GRID, "F2", f"{share}{bound}; {distance}", flags)
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


def _upper_bound_gy(
    fraction_in_grid: float, mean_in_gy: float | None, boundary_gy: float | None
) -> float | None:
    """f_in·mean_in + f_out·boundary (DOSIMETRY §7.3 item 5); never a rescaled in-grid mean."""
    if fraction_in_grid >= 1.0:
        return mean_in_gy
    if boundary_gy is None or (fraction_in_grid > 0 and mean_in_gy is None):
        return None
    covered = fraction_in_grid * mean_in_gy if mean_in_gy is not None else 0.0
    return covered + (1.0 - fraction_in_grid) * boundary_gy


def classify_y90(
    *,
    lesion_id: str,
    therapy_id: str,
    organ: str,
    imaging_available: bool,
    dose_mean_gy: float | None,
    dose_max_gy: float | None = None,
    distance_to_loaded_mm: float | None = None,
    reference_dose_gy: float | None = None,
    kernel_table: DosePointKernel | None = None,
    noise_floor_bq_ml: float | None = None,
    unknown_reason: str = "the lesion has no mask on the post-treatment image's frame of reference",
    settings: FieldSettings | None = None,
) -> LesionField:
    """Rules Y1–Y3 for one lesion and one Y-90 treatment.

    "Covered by activity" means an LDM mean dose of at least `y90_activity_min_gy` from the
    post-treatment image. `distance_to_loaded_mm` is the surface gap (`gap_mm`) to the loaded
    region (activity above the noise floor, `y90_loaded_region`); a lesion not covered whose gap
    is within `y90_margin_mm` is `uncertain` (Y2): imaging blur and the beta range leave deposition
    possible. None means not checked: the dose rule alone. With `reference_dose_gy` (mean LDM of
    the loaded region) and the kernel table the result carries the physical bound
    `D_ref·f_planar(gap)`; a Y3 lesion whose bound reaches `low_dose_min_gy` is flagged.
    When the dose at the lesion is unknown (no mask on the image's frame, or the lesion lies outside
    the imaged field of view) pass `dose_mean_gy=None` and say why in `unknown_reason` (Y2).
    """
    s = settings or FieldSettings()
    gap = distance_to_loaded_mm
    bound = _physical_bound_gy(gap, reference_dose_gy, kernel_table)

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
            distance_to_loaded_mm=gap,
            reference_dose_gy=reference_dose_gy,
            dose_bound_gy=bound,
            noise_floor_bq_ml=noise_floor_bq_ml,
            flags=flags,
            settings=s,
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
    evidence = _y90_evidence_text(gap, bound)
    margin = f"{s.y90_margin_mm:g} mm"
    if gap is not None and gap <= s.y90_margin_mm:
        why = f"activity above the noise floor within {margin} of the lesion ({ldm}{evidence})"
        return result(FieldStatus.UNCERTAIN, "Y2", why)
    where = "in an untreated liver territory" if hepatic else "extrahepatic"
    near = "" if gap is None else f" or within {margin}"
    dose = f"{ldm} < {s.y90_activity_min_gy} Gy{evidence}"
    why = f"{where}, no activity at the lesion{near} on post-treatment imaging ({dose})"
    hot = bound is not None and bound >= s.low_dose_min_gy
    return result(FieldStatus.OUT_OF_FIELD, "Y3", why, ("physical_bound_high",) if hot else ())


def _physical_bound_gy(
    gap_mm: float | None, reference_dose_gy: float | None, table: DosePointKernel | None
) -> float | None:
    """D_ref·f_planar(gap): the half-space bound of DOSIMETRY §8.1 (0 for an empty region)."""
    if gap_mm is None or reference_dose_gy is None or table is None:
        return None
    if not np.isfinite(gap_mm):
        return 0.0
    return reference_dose_gy * f_planar(table, gap_mm)


def _y90_evidence_text(gap_mm: float | None, bound_gy: float | None) -> str:
    text = "" if gap_mm is None else f"; {gap_mm:.1f} mm from the loaded region"
    return text if bound_gy is None else f"{text}, physical bound {bound_gy:.3f} Gy"


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
