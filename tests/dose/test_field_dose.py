"""DOSIMETRY §8.3 evidence in the one Y-90 classifier: gaps (§10 test 21), the physical bound
D_ref·f_planar(gap) (test 22's numbers), the noise floor and the loaded region."""

from __future__ import annotations

import numpy as np
import pytest

from abscopal.dose.field import (
    FieldSettings,
    LesionField,
    classify_y90,
    gap_mm,
    noise_floor_bq_ml,
    region_distance,
    y90_loaded_region,
)
from abscopal.dose.kernel import DosePointKernel, parse_dose_point_kernel
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


@pytest.fixture(scope="module")
def table() -> DosePointKernel:
    path = shared_path("reference", "graves2019_Y90_beta_DPK_water_to159mm.csv")
    return parse_dose_point_kernel(path.read_text())


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (2.5, 0.8, 0.8)])
def test_gap_is_exact_for_boxes(spacing: tuple[float, float, float]) -> None:
    grid = _grid((40, 6, 6), spacing)
    a, b = _boxes(grid, 10.0)
    assert gap_mm(a, region_distance(b, grid)) == pytest.approx(10.0, abs=1e-9)
    touching_a, touching_b = _boxes(grid, 0.0)
    assert gap_mm(touching_a, region_distance(touching_b, grid)) == 0.0
    assert gap_mm(a, region_distance(a, grid)) == 0.0
    assert gap_mm(a, region_distance(np.zeros(grid.shape, bool), grid)) == float("inf")


def _bone_near_loaded_cube(table: DosePointKernel, gap: float, d_ref_gy: float) -> LesionField:
    """A bone lesion without activity, `gap` mm from a loaded region of mean LDM `d_ref_gy`."""
    grid = _grid((80, 6, 6), (1.0, 1.0, 1.0))
    loaded, lesion = _boxes(grid, gap)
    return classify_y90(
        lesion_id="B",
        therapy_id="Y",
        organ="rib",
        imaging_available=True,
        dose_mean_gy=0.0,
        distance_to_loaded_mm=gap_mm(lesion, region_distance(loaded, grid)),
        reference_dose_gy=d_ref_gy,
        kernel_table=table,
    )


@pytest.mark.parametrize(
    ("gap", "bound_gy", "status"),
    [
        (5.0, 1.25, FieldStatus.UNCERTAIN),  # §10 test 22 bound; within the 11 mm margin (Y2)
        (8.0, 0.12, FieldStatus.UNCERTAIN),
        (10.0, 0.09, FieldStatus.UNCERTAIN),  # §8.3 alone said out_of_field; CLINICAL Y2 decides
        (12.0, 0.085, FieldStatus.OUT_OF_FIELD),  # beyond the margin, no activity: Y3
        (20.0, 0.07, FieldStatus.OUT_OF_FIELD),  # f_planar(20 mm) = 0.0007 (§8.1)
    ],
)
def test_y90_physical_bound_is_evidence_and_the_margin_decides(
    table: DosePointKernel, gap: float, bound_gy: float, status: FieldStatus
) -> None:
    r = _bone_near_loaded_cube(table, gap, 100.0)
    assert (r.field, r.rule) == (status, "Y2" if status is FieldStatus.UNCERTAIN else "Y3")
    assert r.distance_to_loaded_mm == pytest.approx(gap, abs=1e-9)
    assert r.dose_bound_gy == pytest.approx(bound_gy, abs=0.01 if gap == 5.0 else 0.005)
    assert r.reference_dose_gy == 100.0
    assert r.flags == ()


def test_y90_a_high_physical_bound_beyond_the_margin_is_flagged(table: DosePointKernel) -> None:
    """D_ref 2000 Gy × f_planar(12 mm) 0.00085 = 1.7 Gy ≥ 1 Gy: Y3 stands, flagged for review."""
    r = _bone_near_loaded_cube(table, 12.0, 2000.0)
    assert r.field is FieldStatus.OUT_OF_FIELD
    assert r.dose_bound_gy == pytest.approx(1.71, abs=0.01)
    assert r.flags == ("physical_bound_high",)


def test_y90_lesion_mostly_inside_the_loaded_region_is_in_field() -> None:
    """60 % of a liver lesion inside a 100 Gy loaded region: LDM mean 60 Gy, Y1."""
    grid = _grid((80, 6, 6), (1.0, 1.0, 1.0))
    loaded = np.zeros(grid.shape, bool)
    loaded[:30] = True
    lesion = np.zeros(grid.shape, bool)
    lesion[18:38] = True  # 12 of 20 slices inside
    ldm = np.where(loaded, 100.0, 0.0)
    r = classify_y90(
        lesion_id="H",
        therapy_id="Y",
        organ="liver",
        imaging_available=True,
        dose_mean_gy=float(ldm[lesion].mean()),
        distance_to_loaded_mm=gap_mm(lesion, region_distance(loaded, grid)),
    )
    assert (r.field, r.rule, r.dose_mean_gy, r.distance_to_loaded_mm) == (
        FieldStatus.IN_FIELD,
        "Y1",
        pytest.approx(60.0),
        0.0,
    )


def test_y90_bone_touching_shunted_lungs_is_uncertain_with_its_bound(
    table: DosePointKernel,
) -> None:
    """LSF 0.05, 2 GBq, k 49.67 → lung D_ref 4.967 Gy; bone touching the lungs: bound 2.48 Gy."""
    grid = _grid((80, 6, 6), (1.0, 1.0, 1.0))
    lungs, bone = _boxes(grid, 0.0)
    no_uptake = np.zeros(grid.shape)
    loaded = y90_loaded_region(no_uptake, noise_floor=1.0, lungs=lungs, lung_shunt_fraction=0.05)
    assert np.array_equal(loaded, lungs)
    r = classify_y90(
        lesion_id="B",
        therapy_id="Y",
        organ="rib",
        imaging_available=True,
        dose_mean_gy=0.0,
        distance_to_loaded_mm=gap_mm(bone, region_distance(loaded, grid)),
        reference_dose_gy=49.67 * 2.0 * 0.05,
        kernel_table=table,
    )
    assert r.field is FieldStatus.UNCERTAIN  # CLINICAL Y2: a documented lung shunt
    assert r.dose_bound_gy == pytest.approx(2.48, abs=0.01)
    unshunted = y90_loaded_region(no_uptake, noise_floor=1.0, lungs=lungs, lung_shunt_fraction=0.0)
    assert not unshunted.any()


def test_y90_without_imaging_is_uncertain_and_echoes_its_settings() -> None:
    r = classify_y90(
        lesion_id="B", therapy_id="Y", organ="rib", imaging_available=False, dose_mean_gy=None
    )
    assert (r.field, r.rule) == (FieldStatus.UNCERTAIN, "Y2")
    assert r.settings == FieldSettings()
    out = r.to_dict()
    assert out["field"] == "uncertain"
    assert out["settings"]["y90_margin_mm"] == 11.0  # type: ignore[index]


def test_activity_above_the_noise_floor_within_11_mm_of_the_lesion() -> None:
    grid = _grid((60, 20, 20), (2.0, 2.0, 2.0))
    rng = np.random.default_rng(0)
    activity = rng.uniform(90.0, 110.0, grid.shape)  # bounded noise: mean + 3 SD exceeds it
    activity[:20] += 5e4  # the loaded liver, z < 40 mm
    floor = noise_floor_bq_ml(activity, grid)
    assert 100.0 < floor < 200.0
    loaded = region_distance(y90_loaded_region(activity, noise_floor=floor), grid)
    near = np.zeros(grid.shape, bool)
    near[23:28, 5:15, 5:15] = True  # 6 mm from the liver face
    far = np.zeros(grid.shape, bool)
    far[50:55, 5:15, 5:15] = True  # 60 mm away
    assert gap_mm(near, loaded) == pytest.approx(6.0)
    assert gap_mm(far, loaded) == pytest.approx(60.0)

    def status(lesion: np.ndarray) -> FieldStatus:
        return classify_y90(
            lesion_id="B",
            therapy_id="Y",
            organ="vertebra",
            imaging_available=True,
            dose_mean_gy=0.0,
            distance_to_loaded_mm=gap_mm(lesion, loaded),
            noise_floor_bq_ml=floor,
        ).field

    assert (status(near), status(far)) == (FieldStatus.UNCERTAIN, FieldStatus.OUT_OF_FIELD)
