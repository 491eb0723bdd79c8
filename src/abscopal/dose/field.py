"""Field status of a lesion for one local therapy (CLINICAL.md §8.1).

EBRT/SBRT rules F1–F5 and Y-90 rules Y1–Y3 are evaluated in order; the first match wins. Every
threshold is a field of `FieldSettings`, and each result names the rule that decided it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from abscopal.criteria._base import at_least_fraction, exact
from abscopal.geometry import Grid, require_same_frame
from abscopal.model import FieldStatus, LesionMask

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

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
    unknown_reason: str = "the lesion has no mask on the post-treatment image's frame of reference",
    settings: FieldSettings | None = None,
) -> LesionField:
    """Rules Y1–Y3 for one lesion and one Y-90 treatment.

    "Covered by activity" means an LDM mean dose of at least `y90_activity_min_gy` from the
    post-treatment image. When the dose at the lesion is unknown (no mask on the image's frame, or
    the lesion lies outside the imaged field of view) pass `dose_mean_gy=None` and say why in
    `unknown_reason`: deposition is then not excluded (Y2).
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
    if dose_mean_gy >= s.y90_activity_min_gy:
        if hepatic:
            return result(FieldStatus.IN_FIELD, "Y1", f"covered by Y-90 activity ({ldm})")
        return result(FieldStatus.UNCERTAIN, "Y2", f"extrahepatic activity at the lesion ({ldm})")
    where = "in an untreated liver territory" if hepatic else "extrahepatic"
    why = f"{where}, no activity at the lesion on post-treatment imaging ({ldm} < {s.y90_activity_min_gy} Gy)"
    return result(FieldStatus.OUT_OF_FIELD, "Y3", why)


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
