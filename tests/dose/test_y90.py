"""Y-90 local deposition against DOSIMETRY.md §3 and §5 and the reference decay factors."""

from __future__ import annotations

import numpy as np
import pytest

from abscopal.dose.y90 import Y90DoseSettings, decay_factor, ldm_dose, total_activity_bq
from abscopal.geometry import AXIAL, Grid
from abscopal.model import Volume


def activity(values: np.ndarray, spacing: tuple[float, float, float] = (4.0, 4.0, 4.0)) -> Volume:
    grid = Grid(
        origin_mm=(0, 0, 0),
        spacing_mm=spacing,
        axes=AXIAL,
        shape=values.shape,
        frame_of_reference_uid="1",
    )
    return Volume(array=values, grid=grid, modality="PT", units="BQML")


def test_one_mbq_per_ml_gives_k_gray() -> None:
    """DOSIMETRY §5.2: 1 MBq/mL at ρ = 1 gives 49.67 Gy with k = 49.67."""
    dose = ldm_dose(activity(np.full((2, 2, 2), 1e6)), Y90DoseSettings(k_gy_kg_per_gbq=49.67))
    assert np.allclose(dose.array, 49.67)
    assert dose.units == "GY"


def test_energy_closure() -> None:
    """Σ D·m = k·Σ A0 (DOSIMETRY §5.2), here with liver density 1.05 g/mL."""
    rng = np.random.default_rng(1)
    act = activity(rng.uniform(0, 5e5, size=(5, 6, 7)), spacing=(3.0, 4.0, 4.0))
    settings = Y90DoseSettings(k_gy_kg_per_gbq=49.38, density_g_ml=1.05)
    dose = ldm_dose(act, settings)
    mass_kg = 1.05 * act.grid.voxel_volume_ml / 1000
    energy_j = float((dose.array * mass_kg).sum())
    assert energy_j == pytest.approx(49.38 * total_activity_bq(act) / 1e9, rel=1e-12)


def test_decay_factors_of_dosimetry_md() -> None:
    assert decay_factor(2.2) == pytest.approx(1.024075, abs=5e-7)
    assert decay_factor(24.0) == pytest.approx(1.296314, abs=5e-7)


def test_refuses_other_units_and_methods() -> None:
    with pytest.raises(ValueError, match="BQML"):
        ldm_dose(
            Volume(
                array=np.ones((1, 1, 1)),
                grid=activity(np.ones((1, 1, 1))).grid,
                modality="PT",
                units="CNTS",
            )
        )
    with pytest.raises(ValueError, match="method"):
        Y90DoseSettings(method="dvk")
