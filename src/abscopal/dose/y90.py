"""Y-90 absorbed dose from a quantitative post-treatment image (DOSIMETRY.md §3, §5).

Local deposition (LDM, the EANM default): every decay deposits its energy in the voxel where it
happens, `D_v = k·A0_v/m_v`, i.e. `D = 1000·k·C0[GBq/mL]/ρ[g/mL]` with permanent trapping and
physical decay only. `k` (Gy·kg/GBq) is a named parameter stored with every result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from abscopal.model import Volume
from abscopal.units import BQ_PER_GBQ

K_TG144_GY_KG_PER_GBQ: Final = 49.67  # AAPM TG-144 preset, DOSIMETRY.md §3
HALF_LIFE_H: Final = 64.1  # ICRP-107
_G_PER_KG: Final = 1000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Y90DoseSettings:
    """Settings of a Y-90 dose computation; stored with every result."""

    method: str = "ldm"
    k_gy_kg_per_gbq: float = K_TG144_GY_KG_PER_GBQ
    half_life_h: float = HALF_LIFE_H
    density_g_ml: float = 1.0  # "water": dose to unit-density tissue

    def __post_init__(self) -> None:
        if self.method != "ldm":
            msg = f"method must be 'ldm' (dose-kernel convolution comes later), got {self.method!r}"
            raise ValueError(msg)
        if not (self.k_gy_kg_per_gbq > 0 and self.half_life_h > 0 and self.density_g_ml > 0):
            msg = "k_gy_kg_per_gbq, half_life_h and density_g_ml must be > 0"
            raise ValueError(msg)


def decay_factor(elapsed_h: float, *, half_life_h: float = HALF_LIFE_H) -> float:
    """A0/A(t) for permanent trapping: exp(ln 2 · t / T½). 1.024075 at 2.2 h for 64.1 h."""
    return math.exp(math.log(2.0) * elapsed_h / half_life_h)


def ldm_dose(activity_at_admin: Volume, settings: Y90DoseSettings | None = None) -> Volume:
    """LDM dose (Gy) from activity concentration at administration (Bq/mL, units "BQML")."""
    settings = settings or Y90DoseSettings()
    if activity_at_admin.units.upper() != "BQML":
        msg = f"Y-90 activity must be in BQML (Bq/mL), got {activity_at_admin.units!r}"
        raise ValueError(msg)
    c0_gbq_ml = activity_at_admin.array.astype(np.float64) / BQ_PER_GBQ
    dose = _G_PER_KG * settings.k_gy_kg_per_gbq * c0_gbq_ml / settings.density_g_ml
    return Volume(
        array=dose,
        grid=activity_at_admin.grid,
        modality="Y90DOSE",
        units="GY",
        acquisition_date=activity_at_admin.acquisition_date,
        series_uid=activity_at_admin.series_uid,
    )


def total_activity_bq(activity: Volume) -> float:
    """Σ concentration × voxel volume: the imaged activity in Bq."""
    return float(activity.array.sum(dtype=np.float64) * activity.grid.voxel_volume_ml)
