"""Lesion size against phantoms of known size and against pyradiomics' own reference values."""

from __future__ import annotations

import csv
from datetime import date

import numpy as np
import pytest
import SimpleITK as sitk

from abscopal.geometry import AXIAL, Grid
from abscopal.measure import (
    max_2d_diameter_mesh_mm,
    max_3d_diameter_mm,
    measure_lesion,
    measure_size,
)
from abscopal.model import LesionMask, Volume
from shared_data import shared_path


def ellipsoid(
    semi_mm: tuple[float, float, float], spacing: tuple[float, float, float]
) -> LesionMask:
    """Axis-aligned ellipsoid (semi-axes along slice, row, column), centred on a voxel."""
    shape = tuple(int(2 * np.ceil(a / s) + 5) for a, s in zip(semi_mm, spacing, strict=True))
    grid = Grid(
        origin_mm=(0, 0, 0),
        spacing_mm=spacing,
        axes=AXIAL,
        shape=shape,
        frame_of_reference_uid="1.2.3",
    )
    idx = np.indices(shape).astype(float)
    centre = [(n - 1) / 2 for n in shape]
    r2 = sum(((idx[a] - centre[a]) * spacing[a] / semi_mm[a]) ** 2 for a in range(3))
    return LesionMask(lesion_id="L1", mask=r2 <= 1.0, grid=grid)


def test_ellipsoid_diameters_and_volume() -> None:
    """Ellipsoid 40 × 20 mm in-plane, 30 mm tall, on 0.8 × 0.8 × 2 mm voxels: 12.57 mL."""
    with np.errstate(all="raise", under="ignore"):
        size = measure_size(ellipsoid((15.0, 10.0, 20.0), (2.0, 0.8, 0.8)))
    assert size.diameter_long_mm == pytest.approx(40.0, abs=0.8)
    assert size.diameter_short_mm == pytest.approx(20.0, abs=0.8)
    assert size.volume_ml == pytest.approx(4 / 3 * np.pi * 15 * 10 * 20 / 1000, rel=0.03)


def test_rotated_lesion_short_axis_is_perpendicular() -> None:
    """A 30 × 12 mm ellipse rotated by 30° in-plane keeps its axes."""
    grid = Grid(
        origin_mm=(0, 0, 0),
        spacing_mm=(5.0, 0.5, 0.5),
        axes=AXIAL,
        shape=(3, 90, 90),
        frame_of_reference_uid="1",
    )
    j, i = np.indices((90, 90)) * 0.5 - 22.25
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    u, v = c * i + s * j, -s * i + c * j
    section = (u / 15) ** 2 + (v / 6) ** 2 <= 1
    mask = np.zeros(grid.shape, bool)
    mask[1] = section
    size = measure_size(LesionMask(lesion_id="r", mask=mask, grid=grid))
    assert size.diameter_long_mm == pytest.approx(30.0, abs=0.5)
    assert size.diameter_short_mm == pytest.approx(12.0, abs=0.5)


def test_empty_mask_has_zero_size() -> None:
    m = ellipsoid((5.0, 5.0, 5.0), (1.0, 1.0, 1.0))
    empty = LesionMask(lesion_id="x", mask=np.zeros_like(m.mask), grid=m.grid)
    size = measure_size(empty)
    assert (size.voxel_count, size.diameter_long_mm, size.slice_index) == (0, 0.0, None)


def test_hu_and_sclerotic_fraction_on_the_image_grid() -> None:
    m = ellipsoid((6.0, 6.0, 6.0), (2.0, 1.0, 1.0))
    image = np.full(m.grid.shape, 30.0)
    image[: m.grid.shape[0] // 2] = 800.0  # the lower half of the lesion is sclerotic
    ct = Volume(array=image, grid=m.grid, modality="CT", units="HU")
    result = measure_lesion(m, ct, date=date(2024, 1, 1))
    inside = image[m.mask]
    assert result.hu_mean == pytest.approx(inside.mean())
    assert result.sclerotic_fraction == pytest.approx(np.mean(inside > 300))


def _read_nrrd_mask(name: str) -> LesionMask:
    image = sitk.ReadImage(str(shared_path("data", "pyradiomics", f"{name}_label.nrrd")))
    array = sitk.GetArrayFromImage(image) == 1  # label 1, as in the pyradiomics baseline
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    axes = tuple(tuple(float(x) for x in d[:, a]) for a in (2, 1, 0))
    sx, sy, sz = image.GetSpacing()
    grid = Grid(
        origin_mm=image.GetOrigin(),
        spacing_mm=(sz, sy, sx),
        axes=axes,
        shape=array.shape,
        frame_of_reference_uid="nrrd",
    )
    return LesionMask(lesion_id=name, mask=array, grid=grid)


def _pyradiomics_reference(feature: str) -> dict[str, float]:
    path = shared_path("data", "pyradiomics", "baseline_shape_shared_cases.csv")
    with path.open() as f:
        rows = {row["featureName"]: row for row in csv.DictReader(f)}
    return {case: float(rows[feature][case]) for case in ("brain1", "breast1", "lung1")}


@pytest.mark.parametrize("case", ["brain1", "breast1", "lung1"])
def test_matches_pyradiomics_reference(case: str) -> None:
    """VoxelVolume exactly; the RECIST long axis never exceeds Maximum2DDiameterSlice.

    pyradiomics also measures between slices (see `max_2d_diameter_mesh_mm`), so on brain1 its
    value (53.6 mm) exceeds the longest axis on any image slice (48.0 mm).
    """
    size = measure_size(_read_nrrd_mask(case))
    volume_mm3 = _pyradiomics_reference("original_shape_VoxelVolume")[case]
    diameter_mm = _pyradiomics_reference("original_shape_Maximum2DDiameterSlice")[case]
    assert size.volume_ml * 1000 == pytest.approx(volume_mm3, rel=1e-6)
    assert diameter_mm - 6.0 <= size.diameter_long_mm <= diameter_mm + 1e-6


@pytest.mark.parametrize("case", ["brain1", "breast1", "lung1"])
def test_mesh_diameters_equal_pyradiomics(case: str) -> None:
    """Maximum2DDiameterSlice and Maximum3DDiameter to 1e-6 relative: the same mesh vertices."""
    mask = _read_nrrd_mask(case)
    reference_2d = _pyradiomics_reference("original_shape_Maximum2DDiameterSlice")[case]
    reference_3d = _pyradiomics_reference("original_shape_Maximum3DDiameter")[case]
    assert max_2d_diameter_mesh_mm(mask) == pytest.approx(reference_2d, rel=1e-6)
    assert max_3d_diameter_mm(mask) == pytest.approx(reference_3d, rel=1e-6)
