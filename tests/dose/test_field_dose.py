"""DOSIMETRY §8.3 distances and Y-90 region rules (§10 tests 21, 22) and the Y-90 margin check."""

from __future__ import annotations

import numpy as np
import pytest

from abscopal.dose.field import (
    FieldThresholds,
    activity_reaches_margin,
    gap_mm,
    noise_floor_bq_ml,
    y90_region_status,
)
from abscopal.dose.kernel import f_planar, parse_dose_point_kernel
from abscopal.geometry import AXIAL, Grid
from abscopal.model import FieldStatus
from shared_data import shared_path


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Grid:
    return Grid(
        origin_mm=(0, 0, 0), spacing_mm=spacing, axes=AXIAL, shape=shape, frame_of_reference_uid="1"
    )


def _boxes(grid: Grid, gap_along_z_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Two slabs stacked along axis 0 (z) with `gap_along_z_mm` between their faces."""
    z = np.arange(grid.shape[0]) * grid.spacing_mm[0]
    a = np.zeros(grid.shape, bool)
    b = np.zeros(grid.shape, bool)
    a[z < 20.0 - 1e-9] = True
    b[(z >= 20.0 + gap_along_z_mm - 1e-9) & (z < 40.0 + gap_along_z_mm)] = True
    return a, b


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (2.5, 0.8, 0.8)])
def test_gap_is_exact_for_boxes(spacing: tuple[float, float, float]) -> None:
    grid = _grid((40, 6, 6), spacing)
    a, b = _boxes(grid, 10.0)
    assert gap_mm(a, b, grid) == pytest.approx(10.0, abs=1e-9)
    touching_a, touching_b = _boxes(grid, 0.0)
    assert gap_mm(touching_a, touching_b, grid) == 0.0
    assert gap_mm(a, a, grid) == 0.0


def test_y90_region_rules() -> None:
    table = parse_dose_point_kernel(
        shared_path("reference", "graves2019_Y90_beta_DPK_water_to159mm.csv").read_text()
    )
    grid = _grid((80, 6, 6), (1.0, 1.0, 1.0))

    def status(gap: float) -> tuple[FieldStatus, float | None]:
        loaded, lesion = _boxes(grid, gap)
        r = y90_region_status(
            lesion, loaded, grid, reference_dose_gy=100.0, f_planar=lambda x: f_planar(table, x)
        )
        return r.field, r.dose_bound_gy

    assert status(10.0)[0] is FieldStatus.OUT_OF_FIELD
    assert status(10.0)[1] == pytest.approx(0.09, abs=0.005)
    assert status(8.0)[0] is FieldStatus.UNCERTAIN
    assert status(8.0)[1] == pytest.approx(0.12, abs=0.005)
    assert status(5.0)[0] is FieldStatus.LOW_DOSE
    assert status(5.0)[1] == pytest.approx(1.25, abs=0.01)
    loaded = np.zeros(grid.shape, bool)
    loaded[:30] = True
    lesion = np.zeros(grid.shape, bool)
    lesion[20:40] = True  # 10 of 20 slices... make it 60 %: 12 of 20
    lesion[18:20] = True
    lesion[38:40] = False
    inside = y90_region_status(
        lesion, loaded, grid, reference_dose_gy=100.0, f_planar=lambda _: 0.0
    )
    assert inside.field is FieldStatus.IN_FIELD
    lung_bound = y90_region_status(
        *_boxes(grid, 0.0)[::-1],
        grid,
        reference_dose_gy=4.967,
        f_planar=lambda x: f_planar(table, x),
    )
    assert lung_bound.field is FieldStatus.LOW_DOSE
    assert lung_bound.dose_bound_gy == pytest.approx(2.48, abs=0.01)
    unknown = y90_region_status(
        lesion, loaded, grid, reference_dose_gy=1.0, f_planar=lambda _: 0.0, imaging_available=False
    )
    assert unknown.field is FieldStatus.UNCERTAIN
    assert unknown.thresholds == FieldThresholds()


def test_activity_above_the_noise_floor_within_11_mm_of_the_lesion() -> None:
    grid = _grid((60, 20, 20), (2.0, 2.0, 2.0))
    rng = np.random.default_rng(0)
    activity = rng.uniform(90.0, 110.0, grid.shape)  # bounded noise: mean + 3 SD exceeds it
    activity[:20] += 5e4  # the loaded liver, z < 40 mm
    floor = noise_floor_bq_ml(activity, grid)
    assert 100.0 < floor < 200.0
    near = np.zeros(grid.shape, bool)
    near[23:28, 5:15, 5:15] = True  # 6 mm from the liver face
    far = np.zeros(grid.shape, bool)
    far[50:55, 5:15, 5:15] = True  # 60 mm away
    assert activity_reaches_margin(near, activity, grid, noise_floor=floor, margin_mm=11.0)
    assert not activity_reaches_margin(far, activity, grid, noise_floor=floor, margin_mm=11.0)
