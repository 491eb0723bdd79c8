"""Lesion size against phantoms of known size and against pyradiomics' own reference values."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from abscopal.cli.main import main
from abscopal.errors import IngestWarning
from abscopal.geometry import AXIAL, Grid
from abscopal.io.image import read_image, read_mask, read_pet
from abscopal.measure import (
    intensity_peak,
    intensity_stats,
    max_2d_diameter_mesh_mm,
    max_3d_diameter_mm,
    measure_lesion,
    measure_size,
    mesh_volume_ml,
    pet_uptake,
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
    assert size.diameter_long_mm == pytest.approx(
        40.0, abs=0.8 + 1e-9
    )  # one voxel: the tips are single voxels
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


# --- first-order statistics, IBSI, TotalSegmentator, PET uptake, the `measure`/`suv` commands ---


def _firstorder_reference(case: str) -> dict[str, float]:
    path = shared_path("data", "pyradiomics", "baseline_firstorder_shared_cases.csv")
    with path.open() as f:
        rows = {row["featureName"]: row for row in csv.DictReader(f)}
    return {
        k: float(rows[f"original_firstorder_{k}"][case]) for k in ("Mean", "Minimum", "Maximum")
    }


@pytest.mark.parametrize("case", ["brain1", "breast1", "lung1"])
def test_first_order_equals_pyradiomics(case: str) -> None:
    """Mean, minimum and maximum in label 1 of the NRRD pair: exact (no resampling, no binning)."""
    data = shared_path("data", "pyradiomics")
    image = read_image(data / f"{case}_image.nrrd")
    stats = intensity_stats(image, read_mask(data / f"{case}_label.nrrd", reference=image))
    reference = _firstorder_reference(case)
    assert stats is not None
    assert stats.mean == pytest.approx(reference["Mean"], rel=1e-12)
    assert (stats.min, stats.max) == (reference["Minimum"], reference["Maximum"])


def _ibsi(feature: str) -> tuple[float, float]:
    path = shared_path("data", "ibsi", "ibsi1_reference_values.csv")
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["feature"] == feature and row["data"] == "dig. phantom":
                tolerance = 0.0 if row["tolerance"] in {"—", ""} else float(row["tolerance"])
                return float(row["value"]), tolerance
    raise KeyError(feature)


def test_ibsi_digital_phantom() -> None:
    """IBSI 1 digital phantom: volumes within the published tolerance; statistics and peaks are
    published to 3 significant digits without tolerance, so to half a unit of the last digit."""
    folder = shared_path("data", "ibsi", "ibsi_1_digital_phantom", "nifti")
    image = read_image(folder / "image" / "phantom.nii.gz")
    mask = read_mask(folder / "mask" / "mask.nii.gz", reference=image)
    stats = intensity_stats(image, mask)
    assert stats is not None
    for feature, value, digits in [
        ("volume (voxel counting)", mask.voxel_count * mask.grid.voxel_volume_ml * 1000, None),
        ("volume (mesh)", mesh_volume_ml(mask) * 1000, None),
        ("maximum 3D diameter", max_3d_diameter_mm(mask), None),
        ("mean", stats.mean, 0.005),
        ("minimum", stats.min, 0.5),
        ("global intensity peak", intensity_peak(image, mask), 0.05),
        ("local intensity peak", intensity_peak(image, mask, local=True), 0.05),
    ]:
        reference, tolerance = _ibsi(feature)
        assert value == pytest.approx(reference, abs=digits if digits else tolerance), feature


def _sts_reference(case: str) -> dict[str, float]:
    path = shared_path("data", "ibsi", "validation_roi_reference_STS001-003.csv")
    with path.open() as f:
        return {
            row["quantity"].split("_")[2]: float(row["peer_median"])
            for row in csv.DictReader(f)
            if row["modality"] == "PET" and row["id"] == case
        }


@pytest.mark.parametrize("case", ["STS_001", "STS_002", "STS_003"])
@pytest.mark.parametrize("source", ["dicom", "nifti"])
def test_ibsi_validation_pet(case: str, source: str) -> None:
    """Voxel count, SUVmax and SUVmean within 1 % of the median of the IBSI teams, from DICOM
    PET + RTSTRUCT (Units GML: already SUVbw) and from the NIfTI image + mask."""
    folder = shared_path("data", "ibsi", "ibsi_validation")
    if source == "dicom":
        pet = read_pet(folder / "dicom" / case / "PET" / "image")
        assert pet.suv_bw_factor == 1.0
        mask = read_mask(folder / "dicom" / case / "PET" / "mask" / "RS.dcm", reference=pet.suv)
    else:
        with pytest.warns(IngestWarning, match="taken as SUVbw"):
            pet = read_pet(folder / "nifti" / case / "PET_image.nii.gz")
        mask = read_mask(folder / "nifti" / case / "PET_mask.nii.gz", reference=pet.suv)
    uptake = pet_uptake(pet.suv, mask, sul_per_suv=None)
    reference = _sts_reference(case)
    assert uptake is not None
    assert mask.voxel_count == pytest.approx(reference["vox"], rel=0.01)
    assert uptake.suvmax == pytest.approx(reference["max"], rel=0.01)
    assert uptake.suvmean == pytest.approx(reference["mean"], rel=0.01)
    assert uptake.suvmax >= uptake.suvpeak >= uptake.suvmean * 0.5


@pytest.mark.parametrize("name", ["liver", "spleen", "kidney_right", "stomach", "vertebrae_L1"])
def test_totalsegmentator_statistics(name: str) -> None:
    """Volume (mm³) and mean HU of TotalSegmentator's own statistics, within 1 %."""
    folder = shared_path("data", "totalsegmentator")
    expected = json.loads((folder / "example_seg_fast_statistics.json").read_text())[name]
    image = read_image(folder / "example_ct_sm.nii.gz")
    mask = read_mask(folder / "example_seg_fast" / f"{name}.nii.gz", reference=image)
    stats = intensity_stats(image, mask)
    assert stats is not None
    assert mask.voxel_count * mask.grid.voxel_volume_ml * 1000 == pytest.approx(
        expected["volume"], rel=0.01
    )
    assert stats.mean == pytest.approx(expected["intensity"], rel=0.01)


def test_peak_of_a_uniform_sphere_is_its_value() -> None:
    """A 30 mm ball of 10 in a background of 1: the 1 cm³ peak sits inside, at exactly 10."""
    m = ellipsoid((15.0, 15.0, 15.0), (2.0, 2.0, 2.0))
    image = np.where(m.mask, 10.0, 1.0)
    pet = Volume(array=image, grid=m.grid, modality="PT", units="SUVBW")
    uptake = pet_uptake(pet, m, sul_per_suv=0.75)
    assert uptake is not None
    assert (uptake.suvmax, uptake.suvpeak) == (10.0, 10.0)
    assert uptake.sulpeak == pytest.approx(7.5)
    assert uptake.suvmean == pytest.approx(10.0)


def test_measure_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_path("data", "pyradiomics")
    args = ["measure", str(data / "lung1_image.nrrd"), str(data / "lung1_label.nrrd"), "--json"]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    keys = {"voxel_count", "volume_ml", "diameter_long_mm", "diameter_short_mm"}
    keys |= {"diameter_max_3d_mm", "mean", "min", "max"}
    assert keys <= out.keys()
    reference = _firstorder_reference("lung1")
    assert (out["mean"], out["min"], out["max"]) == pytest.approx(
        (reference["Mean"], reference["Minimum"], reference["Maximum"])
    )
    assert out["diameter_max_3d_mm"] == pytest.approx(
        _pyradiomics_reference("original_shape_Maximum3DDiameter")["lung1"], rel=1e-6
    )


def test_suv_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_path("data", "ibsi", "ibsi_validation", "dicom", "STS_002", "PET")
    args = ["suv", str(folder / "image"), "--mask", str(folder / "mask" / "RS.dcm"), "--json"]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert {"suv_bw_factor", "suvmax", "suvmean", "sulpeak"} <= out.keys()
    assert out["suvmax"] == pytest.approx(_sts_reference("STS_002")["max"], rel=0.01)
    assert 0 < out["sulpeak"] < out["suvmax"]


def test_measure_command_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["measure", str(tmp_path / "nope.nii.gz"), str(tmp_path / "m.nii.gz"), "--json"])
    assert "no such file" in str(done.value.code)


def _adc_phantom(inside: float, outside: float) -> tuple[Volume, LesionMask]:
    """An ADC map with a known value in an ellipsoid lesion and another around it."""
    lesion = ellipsoid((6.0, 9.0, 9.0), (3.0, 1.0, 1.0))
    array = np.where(lesion.mask, inside, outside).astype(np.float32)
    return Volume(array=array, grid=lesion.grid, modality="MR", units="AU"), lesion


def test_mean_adc_in_either_unit() -> None:
    """A lesion of 800 µm²/s in 2000 µm²/s tissue reads 800, whether stored in µm²/s or mm²/s."""
    from abscopal.measure import adc_mean_um2_s

    adc, lesion = _adc_phantom(800.0, 2000.0)
    assert adc_mean_um2_s(adc, lesion) == pytest.approx(800.0)
    adc_mm2, _ = _adc_phantom(0.0008, 0.002)
    assert adc_mean_um2_s(adc_mm2, lesion, unit="mm2_s") == pytest.approx(800.0, rel=1e-6)


def test_adc_in_the_wrong_unit_is_refused() -> None:
    """An ADC map in mm²/s read as µm²/s is not silently 0.0008 µm²/s."""
    from abscopal.errors import IngestError
    from abscopal.measure import adc_mean_um2_s

    adc, lesion = _adc_phantom(0.0008, 0.002)
    with pytest.raises(IngestError, match="mm2_s"):
        adc_mean_um2_s(adc, lesion)


def test_measure_command_adc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`abscopal measure ADC MASK --adc mm2_s --json` adds adc_mean_um2_s."""
    from abscopal.io.image import write_nifti

    adc, lesion = _adc_phantom(0.0011, 0.0025)
    write_nifti(adc, tmp_path / "adc.nii.gz")
    write_nifti(
        Volume(array=lesion.mask.astype(np.float32), grid=lesion.grid, modality="SEG", units="1"),
        tmp_path / "mask.nii.gz",
    )
    args = ["measure", str(tmp_path / "adc.nii.gz"), str(tmp_path / "mask.nii.gz")]
    with pytest.raises(SystemExit) as done:
        main([*args, "--adc", "mm2_s", "--json"])
    assert done.value.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["adc_mean_um2_s"] == pytest.approx(1100.0, rel=1e-5)
    assert out["voxel_count"] == lesion.voxel_count


def test_image_and_mask_read_together_equal_read_apart() -> None:
    """The concurrent NRRD read gives the same voxels, grid and mask as reading one by one."""
    from abscopal.io.image import read_image_and_mask

    data = shared_path("data", "pyradiomics")
    image_path, mask_path = data / "breast1_image.nrrd", data / "breast1_label.nrrd"
    volume, mask = read_image_and_mask(image_path, mask_path)
    alone = read_image(image_path)
    assert np.array_equal(volume.array, alone.array)
    assert volume.grid == alone.grid
    assert np.array_equal(mask.mask, read_mask(mask_path, reference=alone).mask)
    assert mask.grid == read_mask(mask_path, reference=alone).grid
