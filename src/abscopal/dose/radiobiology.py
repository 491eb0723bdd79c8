"""BED and EQD2 per voxel (DOSIMETRY.md §6): fractionated EBRT and the decaying Y-90 source.

Fractionated: `BED = n·d·(1 + d/(α/β))` with `d = D/n`; Y-90 permanent implant, complete decay
(Dale 1985): `BED = D·[1 + D·λ/((μ+λ)·(α/β))]`, `λ = ln 2/T½`, `μ = ln 2/T_rep`. In both cases
`EQD2 = BED/(1 + 2/(α/β))`. Compute per voxel and then summarise: the BED of the mean dose is not
the mean BED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

HALF_LIFE_Y90_H: Final = 64.1  # ICRP-107
ALPHA_BETA_TUMOUR_GY: Final = 10.0  # lesion default, DOSIMETRY §6
T_REP_TUMOUR_H: Final = 1.5


@dataclass(frozen=True, slots=True, kw_only=True)
class LqParameters:
    """Linear-quadratic parameters; stored with every BED/EQD2 result."""

    alpha_beta_gy: float = ALPHA_BETA_TUMOUR_GY
    repair_half_time_h: float = T_REP_TUMOUR_H  # Y-90 only
    half_life_h: float = HALF_LIFE_Y90_H  # Y-90 only

    def __post_init__(self) -> None:
        if not (self.alpha_beta_gy > 0 and self.repair_half_time_h >= 0 and self.half_life_h > 0):
            msg = (
                "alpha_beta_gy and half_life_h must be > 0 and repair_half_time_h >= 0, got "
                f"{self.alpha_beta_gy}, {self.half_life_h}, {self.repair_half_time_h}"
            )
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionBed:
    """Voxel-wise BED/EQD2 summarised over one lesion, with the parameters used."""

    dose_mean_gy: float
    bed_mean_gy: float
    eqd2_mean_gy: float
    bed_of_mean_dose_gy: float
    parameters: LqParameters
    modality: str  # "ebrt" or "y90"


def _dose(dose_gy: ArrayLike) -> NDArray[np.float64]:
    d = np.asarray(dose_gy, dtype=np.float64)
    if np.any(np.isnan(d)) or np.any(d < 0):
        msg = "dose_gy must be finite and >= 0 (NaN marks dose outside the grid: drop it first)"
        raise ValueError(msg)
    return d


def bed_fractionated(
    dose_gy: ArrayLike, fractions: int, *, alpha_beta_gy: float
) -> NDArray[np.float64]:
    """BED (Gy) of `fractions` equal fractions giving total `dose_gy` (per voxel)."""
    if fractions < 1 or not alpha_beta_gy > 0:
        msg = f"fractions must be >= 1 and alpha_beta_gy > 0, got {fractions}, {alpha_beta_gy}"
        raise ValueError(msg)
    d = _dose(dose_gy)
    return d * (1.0 + (d / fractions) / alpha_beta_gy)


def dale_factor(*, repair_half_time_h: float, half_life_h: float = HALF_LIFE_Y90_H) -> float:
    """λ/(μ+λ) = T_rep/(T_rep + T½): 0.02287 at T_rep 1.5 h, T½ 64.1 h."""
    return repair_half_time_h / (repair_half_time_h + half_life_h)


def bed_y90(dose_gy: ArrayLike, parameters: LqParameters | None = None) -> NDArray[np.float64]:
    """Dale BED (Gy) of a permanent implant decaying completely (per voxel)."""
    p = parameters or LqParameters()
    d = _dose(dose_gy)
    g = dale_factor(repair_half_time_h=p.repair_half_time_h, half_life_h=p.half_life_h)
    return d * (1.0 + d * g / p.alpha_beta_gy)


def eqd2_from_bed(bed_gy: ArrayLike, *, alpha_beta_gy: float) -> NDArray[np.float64]:
    """EQD2 = BED/(1 + 2/(α/β))."""
    return np.asarray(bed_gy, dtype=np.float64) / (1.0 + 2.0 / alpha_beta_gy)


def lesion_bed(
    dose_gy: ArrayLike,
    *,
    modality: str,
    fractions: int = 1,
    weights: ArrayLike | None = None,
    parameters: LqParameters | None = None,
) -> LesionBed:
    """Volume-weighted means of voxel dose, BED and EQD2 over one lesion (`modality` ebrt|y90)."""
    p = parameters or LqParameters()
    d = _dose(dose_gy).ravel()
    if d.size == 0:
        msg = "lesion_bed needs at least one voxel dose (empty mask?)"
        raise ValueError(msg)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if modality == "ebrt":
        bed = bed_fractionated(d, fractions, alpha_beta_gy=p.alpha_beta_gy)
        mean_dose = float(np.average(d, weights=w))
        bed_of_mean = float(bed_fractionated(mean_dose, fractions, alpha_beta_gy=p.alpha_beta_gy))
    elif modality == "y90":
        bed = bed_y90(d, p)
        mean_dose = float(np.average(d, weights=w))
        bed_of_mean = float(bed_y90(mean_dose, p))
    else:
        msg = f"modality must be 'ebrt' or 'y90', got {modality!r}"
        raise ValueError(msg)
    bed_mean = float(np.average(bed, weights=w))
    return LesionBed(
        dose_mean_gy=mean_dose,
        bed_mean_gy=bed_mean,
        eqd2_mean_gy=float(eqd2_from_bed(bed_mean, alpha_beta_gy=p.alpha_beta_gy)),
        bed_of_mean_dose_gy=bed_of_mean,
        parameters=p,
        modality=modality,
    )


def is_close_to_dose(bed_gy: float, dose_gy: float, *, rel: float = 0.02) -> bool:
    """True when BED/D − 1 ≤ `rel` (low doses: BED ≈ D out of field)."""
    return dose_gy == 0 or math.isclose(bed_gy, dose_gy, rel_tol=rel)
