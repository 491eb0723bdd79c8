"""Y-90 absorbed dose: macroscopic models and voxel dosimetry (DOSIMETRY.md §3–§5).

Local deposition (LDM, the EANM default): every decay deposits its energy in the voxel where it
happens, `D_v = k·A0_v/m_v`, i.e. `D = 1000·k·C0[GBq/mL]/ρ[g/mL]` with permanent trapping and
physical decay only. Dose-voxel kernel (DVK): the unit-density LDM map convolved with an
energy-fraction kernel (`abscopal.dose.kernel`), divided by ρ at the target voxel; DVK and LDM
share k and total energy. `k` (Gy·kg/GBq) is a named parameter stored with every result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np

from abscopal.dose.kernel import (
    FFT_DTYPES,
    J_PER_MEV,
    KERNEL_RADIUS_MM,
    KERNEL_SAMPLES,
    KERNEL_SEED,
    DosePointKernel,
    build_kernel,
    convolve,
)
from abscopal.model import Volume
from abscopal.units import BQ_PER_GBQ

if TYPE_CHECKING:
    from numpy.typing import NDArray

K_TG144_GY_KG_PER_GBQ: Final = 49.67  # AAPM TG-144 preset, DOSIMETRY.md §3
K_PRESETS: Final = {"tg144": 49.67, "icrp107": 49.77, "partition_lit": 49.38, "glass_ifu": 50.0}
HALF_LIFE_H: Final = 64.1  # ICRP-107
_G_PER_KG: Final = 1000.0
_S_PER_H: Final = 3600.0
_LUNG_DENSITY_G_ML: Final = 0.5  # below this a voxel counts as lung for `lung_ldm`
METHODS: Final = ("ldm", "dvk")


class ActivityMismatchWarning(UserWarning):
    """The imaged total activity disagrees with the administered activity beyond the margin."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Y90DoseSettings:
    """Settings of a Y-90 dose computation; stored with every result."""

    method: str = "ldm"
    k_gy_kg_per_gbq: float = K_TG144_GY_KG_PER_GBQ
    half_life_h: float = HALF_LIFE_H
    density_g_ml: float = 1.0  # "water": dose to unit-density tissue (ignored with a density map)
    kernel_radius_mm: float = KERNEL_RADIUS_MM
    kernel_samples: int = KERNEL_SAMPLES
    kernel_seed: int = KERNEL_SEED
    lung_ldm: bool = False  # DVK: keep lung voxels (ρ < 0.5 g/mL or lung mask) at LDM
    activity_margin: float = 0.2  # imaged vs administered, relative
    fft_dtype: str = "float64"  # DVK transforms; "float32" is faster, ~1e-6 of the maximum

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            msg = f"method must be one of {', '.join(METHODS)}, got {self.method!r}"
            raise ValueError(msg)
        positive = (self.k_gy_kg_per_gbq, self.half_life_h, self.density_g_ml)
        if not all(v > 0 for v in positive) or not self.kernel_radius_mm > 0:
            msg = "k_gy_kg_per_gbq, half_life_h, density_g_ml and kernel_radius_mm must be > 0"
            raise ValueError(msg)
        if self.kernel_samples < 1 or not self.activity_margin >= 0:
            msg = "kernel_samples must be >= 1 and activity_margin >= 0"
            raise ValueError(msg)
        if self.fft_dtype not in FFT_DTYPES:
            msg = f"fft_dtype must be one of {', '.join(FFT_DTYPES)}, got {self.fft_dtype!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Y90Dose:
    """A Y-90 dose map (Gy) with everything that produced it."""

    dose: Volume
    settings: Y90DoseSettings
    density_mode: str  # "water", "constant" or "map"
    total_activity_bq: float
    energy_outside_grid_fraction: float
    kernel: dict[str, object] = field(default_factory=dict)

    def settings_dict(self) -> dict[str, object]:
        """Settings, density mode and kernel identity, ready for JSON."""
        return {**asdict(self.settings), "density_mode": self.density_mode, "kernel": self.kernel}


# ---------------------------------------------------------------- constants and decay


def k_gy_kg_per_gbq(*, half_life_h: float, mean_energy_mev: float) -> float:
    """Energy released per GBq (J/GBq = Gy·kg/GBq): 49.77 at 64.1 h, 0.9331 MeV."""
    return decays_per_gbq(half_life_h) * mean_energy_mev * J_PER_MEV


def decays_per_gbq(half_life_h: float = HALF_LIFE_H) -> float:
    """Decays of 1 GBq to completion: 1e9·T½[s]/ln 2 (3.32916e14 at 64.1 h)."""
    return 1e9 * half_life_h * _S_PER_H / math.log(2.0)


def decay_factor(elapsed_h: float, *, half_life_h: float = HALF_LIFE_H) -> float:
    """A0/A(t) for permanent trapping: exp(ln 2 · t / T½). 1.024075 at 2.2 h for 64.1 h."""
    return math.exp(math.log(2.0) * elapsed_h / half_life_h)


# ---------------------------------------------------------------- macroscopic models (§4)


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        msg = f"{name} must be in [0, 1), got {value}"
        raise ValueError(msg)


def lung_dose_gy(
    activity_gbq: float, lsf: float, *, k_gy_kg_per_gbq: float, lung_mass_kg: float = 1.0
) -> float:
    """Lung dose k·A·LSF/M_lung (M_lung = 1 kg by convention)."""
    _fraction("lsf", lsf)
    return k_gy_kg_per_gbq * activity_gbq * lsf / lung_mass_kg


def mird_mono_activity_gbq(
    dose_gy: float, mass_kg: float, *, lsf: float, residual: float = 0.0, k_gy_kg_per_gbq: float
) -> float:
    """MIRD mono-compartment planning: A = D·M/(k·(1−LSF)·(1−R))."""
    _fraction("lsf", lsf)
    _fraction("residual", residual)
    return dose_gy * mass_kg / (k_gy_kg_per_gbq * (1 - lsf) * (1 - residual))


def mird_mono_dose_gy(
    activity_gbq: float,
    mass_kg: float,
    *,
    lsf: float,
    residual: float = 0.0,
    k_gy_kg_per_gbq: float,
) -> float:
    """MIRD mono-compartment delivered dose: D = k·A·(1−LSF)·(1−R)/M."""
    _fraction("lsf", lsf)
    _fraction("residual", residual)
    return k_gy_kg_per_gbq * activity_gbq * (1 - lsf) * (1 - residual) / mass_kg


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionDoses:
    """Delivered partition-model doses (Gy) and the constants used."""

    normal_liver_gy: float
    tumour_gy: float
    lung_gy: float
    k_gy_kg_per_gbq: float


def partition_activity_gbq(
    normal_dose_gy: float,
    *,
    tumour_to_normal: float,
    tumour_mass_kg: float,
    normal_mass_kg: float,
    lsf: float,
    k_gy_kg_per_gbq: float,
) -> float:
    """Partition-model planning: A = D_N·(T/N·M_T + M_N)/(k·(1−LSF)); T/N a concentration ratio."""
    _fraction("lsf", lsf)
    weight = tumour_to_normal * tumour_mass_kg + normal_mass_kg
    return normal_dose_gy * weight / (k_gy_kg_per_gbq * (1 - lsf))


def partition_doses(
    activity_gbq: float,
    *,
    tumour_to_normal: float,
    tumour_mass_kg: float,
    normal_mass_kg: float,
    lsf: float,
    k_gy_kg_per_gbq: float,
    lung_mass_kg: float = 1.0,
) -> PartitionDoses:
    """Partition-model delivered doses: D_N = k·A·(1−LSF)/(T/N·M_T + M_N), D_T = T/N·D_N."""
    _fraction("lsf", lsf)
    weight = tumour_to_normal * tumour_mass_kg + normal_mass_kg
    normal = k_gy_kg_per_gbq * activity_gbq * (1 - lsf) / weight
    return PartitionDoses(
        normal_liver_gy=normal,
        tumour_gy=tumour_to_normal * normal,
        lung_gy=lung_dose_gy(
            activity_gbq, lsf, k_gy_kg_per_gbq=k_gy_kg_per_gbq, lung_mass_kg=lung_mass_kg
        ),
        k_gy_kg_per_gbq=k_gy_kg_per_gbq,
    )


def bsa_dubois_m2(height_m: float, weight_kg: float) -> float:
    """DuBois body-surface area 0.20247·H^0.725·W^0.425 (1.8481 m² at 1.75 m, 70 kg)."""
    return float(0.20247 * height_m**0.725 * weight_kg**0.425)


def bsa_activity_gbq(bsa_m2: float, involvement: float) -> float:
    """Resin BSA method A = (BSA − 0.2) + V_T/(V_T + V_L); context only."""
    _fraction("involvement", involvement)
    return bsa_m2 - 0.2 + involvement


# ---------------------------------------------------------------- activity check


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCheck:
    """Imaged total activity at administration against the administered activity."""

    imaged_bq: float
    administered_bq: float
    ratio: float
    margin: float
    consistent: bool


def check_activity(
    imaged_bq: float, administered_bq: float, *, margin: float = 0.2
) -> ActivityCheck:
    """Compare imaged and administered activity; warn (`ActivityMismatchWarning`) beyond `margin`."""
    if not administered_bq > 0:
        msg = f"administered_bq must be > 0, got {administered_bq}"
        raise ValueError(msg)
    ratio = imaged_bq / administered_bq
    consistent = abs(ratio - 1.0) <= margin
    if not consistent:
        warnings.warn(
            f"imaged Y-90 activity {imaged_bq / BQ_PER_GBQ:.3f} GBq is {ratio:.2f}× the administered "
            f"{administered_bq / BQ_PER_GBQ:.3f} GBq (margin ±{margin:.0%}); check the calibration, "
            "the decay correction and the field of view, or use patient-relative calibration",
            ActivityMismatchWarning,
            stacklevel=2,
        )
    return ActivityCheck(
        imaged_bq=imaged_bq,
        administered_bq=administered_bq,
        ratio=ratio,
        margin=margin,
        consistent=consistent,
    )


# ---------------------------------------------------------------- voxel dosimetry (§5)


def total_activity_bq(activity: Volume) -> float:
    """Σ concentration × voxel volume: the imaged activity in Bq."""
    return float(activity.array.sum(dtype=np.float64) * activity.grid.voxel_volume_ml)


def _check_activity_volume(activity: Volume) -> NDArray[np.float64]:
    if activity.units.upper() != "BQML":
        msg = f"Y-90 activity must be in BQML (Bq/mL), got {activity.units!r}"
        raise ValueError(msg)
    values = np.asarray(activity.array, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        msg = "Y-90 activity holds NaN or infinite voxels; fix the reconstruction or mask them"
        raise ValueError(msg)
    return values


def _dose_volume(activity: Volume, dose: NDArray[np.float64], modality: str) -> Volume:
    return Volume(
        array=dose,
        grid=activity.grid,
        modality=modality,
        units="GY",
        acquisition_date=activity.acquisition_date,
        series_uid=activity.series_uid,
    )


def ldm_dose(
    activity_at_admin: Volume,
    settings: Y90DoseSettings | None = None,
    *,
    density_g_ml: NDArray[np.float64] | None = None,
) -> Volume:
    """LDM dose (Gy) from activity concentration at administration (Bq/mL, units "BQML")."""
    settings = settings or Y90DoseSettings()
    c0_gbq_ml = _check_activity_volume(activity_at_admin) / BQ_PER_GBQ
    rho = _density(activity_at_admin, settings, density_g_ml)
    dose = _G_PER_KG * settings.k_gy_kg_per_gbq * c0_gbq_ml / rho
    return _dose_volume(activity_at_admin, dose, "Y90DOSE")


def _density(
    activity: Volume, settings: Y90DoseSettings, density_g_ml: NDArray[np.float64] | None
) -> NDArray[np.float64] | float:
    if density_g_ml is None:
        return settings.density_g_ml
    rho = np.asarray(density_g_ml, dtype=np.float64)
    if rho.shape != activity.array.shape or not np.all(rho > 0):
        msg = f"density map must match the activity shape {activity.array.shape} and be > 0"
        raise ValueError(msg)
    return rho


def y90_dose(
    activity_at_admin: Volume,
    settings: Y90DoseSettings | None = None,
    *,
    kernel_table: DosePointKernel | None = None,
    density_g_ml: NDArray[np.float64] | None = None,
    lung_mask: NDArray[np.bool_] | None = None,
) -> Y90Dose:
    """LDM or DVK dose with its settings, density mode and kernel identity.

    DVK needs `kernel_table` (e.g. the Graves 2019 table); the kernel is built at the activity
    grid's own spacing. The result keeps the input grid and reports the fraction of the energy that
    the kernel carries beyond it (`energy_outside_grid_fraction`).
    """
    s = settings or Y90DoseSettings()
    constant = "water" if s.density_g_ml == 1.0 else "constant"
    mode = "map" if density_g_ml is not None else constant
    ldm = ldm_dose(activity_at_admin, s, density_g_ml=density_g_ml)
    total = total_activity_bq(activity_at_admin)
    if s.method == "ldm":
        return Y90Dose(
            dose=ldm,
            settings=s,
            density_mode=mode,
            total_activity_bq=total,
            energy_outside_grid_fraction=0.0,
        )
    if kernel_table is None:
        msg = "method 'dvk' needs kernel_table (the Graves 2019 Y-90 dose point kernel)"
        raise ValueError(msg)
    kernel = build_kernel(
        kernel_table,
        activity_at_admin.grid.spacing_mm,
        radius_mm=s.kernel_radius_mm,
        samples=s.kernel_samples,
        seed=s.kernel_seed,
    )
    water = ldm_dose(activity_at_admin, s, density_g_ml=np.ones(activity_at_admin.grid.shape))
    spread = convolve(water.array, kernel, fft_dtype=s.fft_dtype)
    deposited = float(water.array.sum())
    outside = 1.0 - float(spread.sum()) / deposited if deposited > 0 else 0.0
    rho = _density(activity_at_admin, s, density_g_ml)
    dose = spread / rho
    if s.lung_ldm:
        lung = np.zeros(dose.shape, dtype=bool) if lung_mask is None else np.asarray(lung_mask)
        if density_g_ml is not None:
            lung = lung | (np.asarray(density_g_ml) < _LUNG_DENSITY_G_ML)
        dose = np.where(lung, ldm.array, dose)
    return Y90Dose(
        dose=_dose_volume(activity_at_admin, dose, "Y90DOSE"),
        settings=s,
        density_mode=mode,
        total_activity_bq=total,
        energy_outside_grid_fraction=max(0.0, outside),
        kernel=kernel.identity(),
    )
