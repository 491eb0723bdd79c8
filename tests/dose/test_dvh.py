"""DVH statistics from weighted samples (DOSIMETRY §10 tests 16–20, 24)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from abscopal.dose.dvh import (
    DvhOptions,
    StructureDvh,
    contour_samples,
    cumulative_histogram,
    mask_samples,
    sample_dose,
    structure_dvh,
    structure_dvh_from_contours,
    structure_dvh_from_mask,
)
from abscopal.dose.field import LesionField, classify_ebrt
from abscopal.errors import GeometryError
from abscopal.geometry import AXIAL, Grid
from abscopal.model import FieldStatus, Volume
from shared_data import shared_path

FRAME = "2.25.1"
RX10 = DvhOptions(vx_thresholds_gy=(10.0,))  # the in-field isodose of a 20 Gy prescription


def _grid(shape: tuple[int, int, int], spacing: float = 1.0, frame: str = FRAME) -> Grid:
    """Voxel (k, j, i) centred at (x, y, z) = ((i + .5), (j + .5), (k + .5)) × spacing."""
    half = 0.5 * spacing
    return Grid(
        origin_mm=(half, half, half),
        spacing_mm=(spacing,) * 3,
        axes=AXIAL,
        shape=shape,
        frame_of_reference_uid=frame,
    )


def _dose(array: np.ndarray, spacing: float = 1.0) -> Volume:
    return Volume(array=array, grid=_grid(array.shape, spacing), modality="RTDOSE", units="GY")


def _box(grid: Grid, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> np.ndarray:
    """Mask of the voxel centres in the box [lo, hi] given as (x, y, z) mm."""
    k, j, i = np.indices(grid.shape)
    pts = grid.index_to_lps(np.stack([k, j, i], axis=-1).astype(float))
    return np.all((pts >= np.array(lo)) & (pts <= np.array(hi)), axis=-1)


def test_uniform_dose_cube() -> None:
    dose = _dose(np.full((20, 20, 20), 2.0))
    mask = _box(dose.grid, (0, 0, 0), (10, 10, 10))
    r = structure_dvh_from_mask(
        "cube", dose, mask, dose.grid, DvhOptions(vx_thresholds_gy=(2.0, 2.01))
    )
    assert r.volume_ml == pytest.approx(1.0, abs=1e-9)
    for value in (r.dose_min_gy, r.dose_mean_gy, r.dose_max_gy, r.d98_gy, r.d2_gy):
        assert value == pytest.approx(2.0, abs=1e-9)
    assert r.vx_ml == {2.0: pytest.approx(1.0, abs=1e-9), 2.01: 0.0}
    assert r.grid_coverage == 1.0


def test_gradient_dose() -> None:
    grid = _grid((12, 12, 52))
    x = grid.index_to_lps(np.stack(np.indices(grid.shape), axis=-1).astype(float))[..., 0]
    dose = Volume(array=0.1 * x, grid=grid, modality="RTDOSE", units="GY")
    mask = _box(grid, (0, 0, 0), (50, 10, 10))
    r = structure_dvh_from_mask("bar", dose, mask, grid, DvhOptions(vx_thresholds_gy=(2.5,)))
    assert r.volume_ml == pytest.approx(5.0, abs=1e-9)
    expected = {"dose_mean_gy": 2.5, "dose_min_gy": 0.05, "dose_max_gy": 4.95, "d2_gy": 4.95}
    expected |= {"d50_gy": 2.55, "d95_gy": 0.25, "d98_gy": 0.15}
    for key, value in expected.items():
        assert getattr(r, key) == pytest.approx(value, abs=1e-9), key
    assert r.vx_ml[2.5] == pytest.approx(2.5, abs=1e-9)
    edges, volume = cumulative_histogram(*_samples(dose, mask), bin_width_gy=0.01)
    assert volume[0] == pytest.approx(5.0)
    assert edges[0] == 0.0


def _samples(dose: Volume, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    samples = mask_samples(mask, dose.grid)
    values, _ = sample_dose(dose, samples)
    return values, samples.weights_ml


def _coverage_dose(*, field: bool) -> Volume:
    grid = _grid((30, 40, 40))
    if field:
        array = np.full(grid.shape, 0.2)
        array[_box(grid, (10, 10, 5), (30, 30, 25))] = 10.0
    else:
        array = np.full(grid.shape, 0.5)
        array[-1] = 1.5  # the z = 29.5 mm slice
    return Volume(array=array, grid=grid, modality="RTDOSE", units="GY")


def _box_samples(lo: tuple[float, float, float], hi: tuple[float, float, float]):
    """A box on a 1 mm lattice that extends beyond the dose grid (z up to 50 mm)."""
    big = _grid((60, 40, 40))
    return mask_samples(_box(big, lo, hi), big)


def _field(r: StructureDvh, rx_gy: float = 20.0) -> LesionField:
    """The one EBRT classifier fed from a DVH, as the pipeline feeds it."""
    whole = r.grid_coverage >= 1.0
    return classify_ebrt(
        lesion_id=r.name,
        therapy_id="RT",
        prescription_gy=rx_gy,
        overlap_voxels=0,
        fraction_in_grid=r.grid_coverage,
        dose_mean_gy=r.dose_mean_gy if whole else None,
        dose_max_gy=r.dose_max_gy if whole else None,
        min_distance_to_ptv_mm=None,
        dose_mean_in_grid_gy=r.dose_mean_gy,
        max_boundary_dose_gy=r.max_boundary_dose_gy,
    )


def test_partly_outside_reports_coverage_and_bounds() -> None:
    dose = _coverage_dose(field=True)
    r = structure_dvh("half", dose, _box_samples((15, 15, 20), (25, 25, 40)), RX10)
    assert (r.volume_ml, r.volume_in_grid_ml, r.volume_out_of_grid_ml) == pytest.approx(
        (2.0, 1.0, 1.0)
    )
    assert r.grid_coverage == pytest.approx(0.5)
    assert r.dose_mean_gy == pytest.approx(5.10)
    assert r.dose_mean_lower_gy == pytest.approx(2.55)
    assert r.dose_mean_upper_gy == pytest.approx(2.65)
    assert r.max_boundary_dose_gy == pytest.approx(0.2)
    field = _field(r)  # CLINICAL F2 decides (§8.3 alone said low_dose); the bounds are evidence
    assert (field.field, field.dose_mean_gy) == (FieldStatus.OUTSIDE_GRID, None)
    assert field.dose_mean_in_grid_gy == pytest.approx(5.10)
    assert field.dose_mean_upper_gy == pytest.approx(2.65)


def test_wholly_outside_gives_null_stats_and_outside_grid() -> None:
    dose = _coverage_dose(field=True)
    r = structure_dvh("far", dose, _box_samples((15, 15, 40), (25, 25, 50)))
    assert r.grid_coverage == 0.0
    assert r.dose_mean_gy is None and r.d98_gy is None
    assert r.reason == "outside dose grid"
    assert r.dose_mean_upper_gy == pytest.approx(0.2)
    field = _field(r)
    assert (field.field, field.rule, field.flags) == (
        FieldStatus.OUTSIDE_GRID,
        "F2",
        ("dose_unknown",),
    )
    assert field.dose_mean_upper_gy == pytest.approx(0.2)


def test_hot_boundary_makes_a_partly_covered_lesion_uncertain() -> None:
    dose = _coverage_dose(field=False)
    r = structure_dvh("half", dose, _box_samples((15, 15, 20), (25, 25, 40)), RX10)
    assert r.dose_mean_gy == pytest.approx(0.60)
    assert r.max_boundary_dose_gy == pytest.approx(1.5)
    field = _field(r)  # §8.3 alone said uncertain; CLINICAL F2 keeps the dose unknown
    assert field.field is FieldStatus.OUTSIDE_GRID
    assert field.dose_mean_upper_gy == pytest.approx(1.05)  # 0.5 × 0.60 + 0.5 × 1.5 ≥ 1 Gy


def test_wholly_covered_lesion_is_classified_on_its_mean() -> None:
    """Box x, y 15–25, z 10–20 mm lies in the 10 Gy block: Dmean 10 ≥ 0.5 × 20 Gy → F3."""
    dose = _coverage_dose(field=True)
    r = structure_dvh("in", dose, _box_samples((15, 15, 10), (25, 25, 20)))
    field = _field(r)
    assert (field.field, field.rule) == (FieldStatus.IN_FIELD, "F3")
    assert field.dose_mean_gy == field.dose_mean_upper_gy == pytest.approx(10.0)


def _circle(radius: float, cx: float, cy: float, z: float, n: int = 720) -> np.ndarray:
    """A circumscribed n-gon: lattice points exactly on the circle count as inside.

    (With an inscribed polygon a circle centred on a voxel centre loses its 12 boundary points of
    radius 5 voxels, −12 % at s = 1: a tie-break of points on the outline, not an area error.)
    """
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radius = radius / np.cos(np.pi / n)
    return np.column_stack([cx + radius * np.cos(t), cy + radius * np.sin(t), np.full(n, z)])


def test_supersampling_converges_on_the_circle_area() -> None:
    grid = _grid((3, 30, 30), spacing=2.0)
    exact = np.pi * 100.0 * 2.0 / 1000.0  # one plane, slab = 2 mm
    for offset in np.arange(0.0, 2.0001, 0.05):
        circle = [_circle(10.0, 30.0 + offset, 30.0 + offset, 3.0)]
        for s, tol in ((1, 0.05), (4, 0.01)):
            v = contour_samples(circle, grid, frame_of_reference_uid=FRAME, supersample=s).volume_ml
            assert v == pytest.approx(exact, rel=tol), (offset, s)
    mask = _box(grid, (10, 10, 0), (20, 20, 6))
    assert mask_samples(mask, grid, supersample=3).volume_ml == pytest.approx(
        mask_samples(mask, grid).volume_ml
    )


def test_end_caps() -> None:
    grid = _grid((12, 30, 30), spacing=2.0)
    cylinder = [_circle(10.0, 30.0, 30.0, 3.0 + 2.0 * k) for k in range(11)]
    none = contour_samples(cylinder, grid, frame_of_reference_uid=FRAME)
    half = contour_samples(cylinder, grid, frame_of_reference_uid=FRAME, end_cap="half")
    area_ml = none.volume_ml / 22.0
    assert half.volume_ml == pytest.approx(20.0 * area_ml, rel=1e-12)


def test_bad_inputs() -> None:
    dose = _dose(np.full((5, 5, 5), 1.0))
    with pytest.raises(ValueError, match="empty"):
        structure_dvh_from_mask("x", dose, np.zeros((5, 5, 5), bool), dose.grid)
    nan = _dose(np.full((5, 5, 5), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        structure_dvh_from_mask("x", nan, np.ones((5, 5, 5), bool), nan.grid)
    with pytest.raises(GeometryError, match="FrameOfReferenceUID"):
        contour_samples([_circle(1, 2, 2, 2)], dose.grid, frame_of_reference_uid="9.9")
    with pytest.raises(ValueError, match="end_cap"):
        DvhOptions(end_cap="full")


def test_dicompyler_plan_matches_the_planning_system() -> None:
    """DOSIMETRY §10 test 24: every ROI runs; large interior ROIs within 2 % of the TPS DVH."""
    from abscopal.io.rt import read_rtdose, read_rtstruct

    folder: Path = shared_path("data", "dicompyler")
    dose = read_rtdose(folder / "rtdose.dcm").volume
    struct = read_rtstruct(folder / "rtss.dcm")
    header = pydicom.dcmread(folder / "rtdose.dcm", stop_before_pixels=True)
    prescription = 14.0  # rtplan.dcm; DVHMeanDose holds % of it, DVHData is in Gy
    names = {
        int(r.ROINumber): r.ROIName
        for r in pydicom.dcmread(folder / "rtss.dcm").StructureSetROISequence
    }
    results = {
        name: structure_dvh_from_contours(
            name, dose, contours, frame_of_reference_uid=struct.frame_of_reference_uid
        )
        for name, contours in struct.rois.items()
    }
    assert len(results) == 10
    assert results["Areola"].volume_ml == 0.0 and results["Areola"].dose_mean_gy is None
    assert results["Areola"].reason
    for name, r in results.items():
        if r.volume_ml > 0 and name != "BODY":
            assert r.grid_coverage == 1.0, name
    checked = []
    for item in header.DVHSequence:
        name = names[int(item.DVHReferencedROISequence[0].ReferencedROINumber)]
        if name not in {"Breast", "Heart", "Lt Lung", "Tumor Bed Block"}:
            continue
        data = np.asarray(item.DVHData, dtype=float)
        widths, volumes = data[0::2], data[1::2]  # cumulative, 0.01 Gy bins
        upper = np.cumsum(widths)
        differential = volumes - np.append(volumes[1:], 0.0)
        ref_mean = float(np.dot(differential, upper - 0.5 * widths))
        ref_mean /= float(differential.sum())
        r = results[name]
        assert r.volume_ml == pytest.approx(volumes[0], rel=0.02), name
        assert r.dose_mean_gy == pytest.approx(ref_mean, rel=0.02), name
        assert 100 * r.dose_mean_gy / prescription == pytest.approx(item.DVHMeanDose, rel=0.02)
        checked.append(name)
    assert len(checked) == 4
