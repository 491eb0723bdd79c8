"""Indexing folders and loading image series: real pydicom fixtures and tiny series written here."""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from abscopal.errors import IngestError, IngestWarning
from abscopal.io.dicom import DicomSeries, index_folder, load_series, series_date


def _only(series: list[DicomSeries]) -> DicomSeries:
    assert len(series) == 1
    return series[0]


# ---- real data -------------------------------------------------------------------------------


def test_real_ct_series_is_indexed_from_headers(fixtures_dir: Path) -> None:
    series = _only(index_folder(fixtures_dir / "pydicom" / "dicomdirtests" / "98892001"))
    assert series.modality == "CT"
    assert series.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert series.series_uid == "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6"
    assert series.frame_of_reference_uid == "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.4"
    assert series.study_date == date(2001, 1, 1)
    assert series.series_description == "SmartScore - Gated 0.5 sec"
    assert len(series.files) == 5


def test_real_ct_series_loads_sorted_along_the_normal(fixtures_dir: Path) -> None:
    """CT5N: five 2.5 mm slices stored with z decreasing as InstanceNumber rises."""
    series = _only(index_folder(fixtures_dir / "pydicom" / "dicomdirtests" / "98892001"))
    volume = load_series(series)
    grid = volume.grid
    assert volume.array.shape == (5, 16, 16)
    assert volume.array.dtype == np.float32
    assert volume.units == "HU"
    assert volume.series_uid == series.series_uid
    assert volume.acquisition_date == date(2001, 1, 1)
    assert grid.origin_mm == pytest.approx((-72.199997, -143.0, -1.2375))
    assert grid.spacing_mm == pytest.approx((2.5, 0.488281, 0.488281))
    assert grid.axes == ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    for path in series.files:  # every slice sits where its IPP says, with HU = stored - 1024
        ds = pydicom.dcmread(path)
        k = round(float(grid.lps_to_index([float(v) for v in ds.ImagePositionPatient])[0]))
        assert grid.index_to_lps([k, 0, 0]) == pytest.approx(
            [float(v) for v in ds.ImagePositionPatient]
        )
        np.testing.assert_array_equal(volume.array[k], ds.pixel_array.astype(np.float32) - 1024)


def test_real_single_slice_ct(fixtures_dir: Path) -> None:
    ct_small = fixtures_dir / "pydicom" / "CT_small.dcm"
    with pytest.warns(IngestWarning):  # rtstruct.dcm in the same folder has no File Meta header
        found = index_folder(fixtures_dir / "pydicom")
    volume = load_series(_only([s for s in found if s.files == (ct_small,)]))
    assert volume.array.shape == (1, 128, 128)
    assert volume.grid.spacing_mm == pytest.approx((5.0, 0.661468, 0.661468))  # SliceThickness
    assert volume.grid.origin_mm == pytest.approx((-158.135803, -179.035797, -75.699997))
    assert volume.acquisition_date == date(1997, 4, 30)  # AcquisitionDate, not StudyDate 2004


def test_real_series_with_a_gap_is_refused(fixtures_dir: Path) -> None:
    """CT2 holds a slice at z = -99.48 and three at 103.02..105.52 mm (1.25 mm apart)."""
    series = _only(index_folder(fixtures_dir / "pydicom" / "dicomdirtests" / "77654033"))
    with pytest.raises(IngestError, match=r"missing slices between positions -99\.48 mm"):
        load_series(series)


def test_fixture_folder_mixes_modalities_and_reads_raw_dicom(fixtures_dir: Path) -> None:
    """rtstruct.dcm has no File Meta header: read raw with a warning; README/LICENSE skipped."""
    with pytest.warns(IngestWarning, match="rtstruct.dcm: no DICOM preamble"):
        series = index_folder(fixtures_dir / "pydicom")
    modalities = sorted(s.modality for s in series)
    assert modalities == ["CT", "CT", "CT", "MR", "RTDOSE", "RTPLAN", "RTSTRUCT", "SEG", "SR"]
    rtstruct = next(s for s in series if s.modality == "RTSTRUCT")
    assert rtstruct.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2"
    dose = next(s for s in series if s.modality == "RTDOSE")
    with pytest.raises(IngestError, match="not an image series"):
        load_series(dose)


# ---- tiny series written here ----------------------------------------------------------------


def test_shuffled_slices_are_sorted(tmp_path: Path, write_slice) -> None:
    uid = generate_uid()
    for n in (2, 0, 3, 1):  # written out of order, InstanceNumber unrelated to position
        pixels = np.full((3, 4), 1000 + n)
        write_slice(
            tmp_path / f"s{n}.dcm",
            position=(10, 20, -5 + 2.0 * n),
            series_uid=uid,
            pixels=pixels,
            InstanceNumber=7 - n,
        )
    volume = load_series(_only(index_folder(tmp_path)))
    assert volume.array[:, 0, 0].tolist() == [-24.0, -23.0, -22.0, -21.0]  # 1000 + n - 1024
    assert volume.grid.origin_mm == pytest.approx((10.0, 20.0, -5.0))
    assert volume.grid.spacing_mm == pytest.approx((2.0, 0.7, 0.8))


def test_sagittal_series_geometry(tmp_path: Path, write_slice) -> None:
    """Rows along +P, columns along -S: the normal is -L, so slices sort by decreasing x."""
    uid = generate_uid()
    orientation = (0, 1, 0, 0, 0, -1)
    for n, x in enumerate((4.0, 7.0, 1.0)):
        write_slice(
            tmp_path / f"{n}.dcm",
            position=(x, -30, 50),
            series_uid=uid,
            orientation=orientation,
            pixels=np.full((3, 4), n),
        )
    volume = load_series(_only(index_folder(tmp_path)))
    grid = volume.grid
    np.testing.assert_allclose(grid.axes, ((-1, 0, 0), (0, 0, -1), (0, 1, 0)), atol=1e-12)
    assert grid.origin_mm == pytest.approx((7.0, -30.0, 50.0))
    assert volume.array[:, 0, 0].tolist() == [-1023.0, -1024.0, -1022.0]  # x = 7, 4, 1
    # voxel (k, j, i) = IPP_k + j * row spacing * column cosines + i * column spacing * row cosines
    assert grid.index_to_lps([2, 2, 3]) == pytest.approx([1.0, -30 + 3 * 0.8, 50 - 2 * 0.7])


def test_duplicate_position_keeps_the_first(tmp_path: Path, write_slice) -> None:
    uid = generate_uid()
    for n, z in enumerate((0.0, 2.0, 2.0, 4.0)):
        write_slice(
            tmp_path / f"{n}.dcm",
            position=(0, 0, z),
            series_uid=uid,
            pixels=np.full((3, 4), n),
            InstanceNumber=n + 1,
        )
    with pytest.warns(IngestWarning, match=r"duplicate slice positions.*2\.dcm"):
        volume = load_series(_only(index_folder(tmp_path)))
    assert volume.array.shape[0] == 3
    assert volume.array[:, 0, 0].tolist() == [-1024.0, -1023.0, -1021.0]


def test_missing_slice_is_refused(tmp_path: Path, write_slice) -> None:
    uid = generate_uid()
    for n, z in enumerate((0.0, 2.0, 6.0, 8.0)):
        write_slice(tmp_path / f"{n}.dcm", position=(0, 0, z), series_uid=uid)
    with pytest.raises(IngestError, match=rf"series {uid}: missing slices.*2\.00 mm to 6\.00 mm"):
        load_series(_only(index_folder(tmp_path)))


def test_badly_uneven_spacing_is_resampled(tmp_path: Path, write_slice) -> None:
    """Slice 3 at 5.4 mm instead of 6 mm (30 % of 2 mm): interpolated onto the regular grid."""
    uid = generate_uid()
    for n, z in enumerate((0.0, 2.0, 4.0, 5.4, 8.0)):
        write_slice(
            tmp_path / f"{n}.dcm", position=(0, 0, z), series_uid=uid, pixels=np.full((3, 4), n)
        )
    with pytest.warns(IngestWarning, match="uneven slice spacing.*resampled"):
        volume = load_series(_only(index_folder(tmp_path)))
    assert volume.grid.spacing_mm[0] == pytest.approx(2.0)
    # at 6 mm: between 5.4 mm (value 3) and 8 mm (value 4), weight 0.6/2.6
    expected = [0, 1, 2, 3 + 0.6 / 2.6, 4]
    assert volume.array[:, 0, 0] + 1024 == pytest.approx(expected, abs=1e-4)


def test_slightly_uneven_spacing_warns(tmp_path: Path, write_slice) -> None:
    uid = generate_uid()
    for n, z in enumerate((0.0, 2.0, 4.0, 6.3, 8.0)):
        write_slice(
            tmp_path / f"{n}.dcm", position=(0, 0, z), series_uid=uid, pixels=np.full((3, 4), n)
        )
    with pytest.warns(IngestWarning, match="uneven slice spacing.*taken as regular"):
        volume = load_series(_only(index_folder(tmp_path)))
    assert (volume.array[:, 0, 0] + 1024).tolist() == [0, 1, 2, 3, 4]


def test_irregular_in_plane_shifts_are_refused(tmp_path: Path, write_slice) -> None:
    """Shifts of 0, 0.5 and 0 mm: no constant tilt explains them, so no geometry is guessed."""
    uid = generate_uid()
    for n, y in enumerate((0.0, 0.5, 0.0)):
        write_slice(tmp_path / f"{n}.dcm", position=(0, y, 2.0 * n), series_uid=uid)
    with pytest.raises(IngestError, match=r"shifted in-plane .*irregular.*\(0020,0032\)"):
        load_series(_only(index_folder(tmp_path)))


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"ImageOrientationPatient": [0, 1, 0, 0, 0, -1]}, "mixed orientation"),
        ({"PixelSpacing": [0.9, 0.9]}, "mixed PixelSpacing"),
    ],
)
def test_mixed_geometry_is_refused(tmp_path: Path, write_slice, attributes, message) -> None:
    uid = generate_uid()
    write_slice(tmp_path / "a.dcm", position=(0, 0, 0), series_uid=uid)
    write_slice(tmp_path / "b.dcm", position=(0, 0, 2), series_uid=uid, **attributes)
    with pytest.raises(IngestError, match=message):
        load_series(_only(index_folder(tmp_path)))


def test_mixed_matrix_size_is_refused(tmp_path: Path, write_slice) -> None:
    uid = generate_uid()
    write_slice(tmp_path / "a.dcm", position=(0, 0, 0), series_uid=uid)
    write_slice(tmp_path / "b.dcm", position=(0, 0, 2), series_uid=uid, pixels=np.zeros((4, 4)))
    with pytest.raises(IngestError, match="mixed matrix size"):
        load_series(_only(index_folder(tmp_path)))


def test_pet_series_applies_per_slice_slope_and_keeps_units(tmp_path: Path, write_slice) -> None:
    uid = generate_uid()
    for n, slope in enumerate((0.5, 2.0)):
        write_slice(
            tmp_path / f"{n}.dcm",
            position=(0, 0, 3.0 * n),
            series_uid=uid,
            modality="PT",
            pixels=np.full((3, 4), 100),
            RescaleSlope=slope,
            Units="BQML",
        )
    volume = load_series(_only(index_folder(tmp_path)))
    assert volume.modality == "PT"
    assert volume.units == "BQML"
    assert volume.array[:, 0, 0].tolist() == [50.0, 200.0]


def test_a_text_file_named_dcm_is_refused_by_name(tmp_path: Path, write_slice) -> None:
    write_slice(tmp_path / "ok.dcm", position=(0, 0, 0), series_uid=generate_uid())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.dcm").write_text("patient notes, not an image\n" * 20)
    with pytest.raises(IngestError, match=r"x\.dcm: not a DICOM file .*remove it or move it out"):
        index_folder(tmp_path)


def test_non_dicom_suffixes_are_skipped_silently(tmp_path: Path, write_slice) -> None:
    write_slice(tmp_path / "ok.dcm", position=(0, 0, 0), series_uid=generate_uid())
    for name in ("manifest.yaml", "truth.json", "mask.nii.gz", "notes.txt", "table.csv"):
        (tmp_path / name).write_text("not dicom")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(_only(index_folder(tmp_path)).files) == 1


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.yaml").write_text("patient_id: X\n")
    with pytest.raises(IngestError, match=rf"{tmp_path}: no DICOM series found"):
        index_folder(tmp_path)


def test_localizer_is_skipped_with_a_warning(tmp_path: Path, write_slice) -> None:
    scout, axial = generate_uid(), generate_uid()
    write_slice(
        tmp_path / "scout.dcm",
        position=(0, 0, 0),
        series_uid=scout,
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
    )
    write_slice(tmp_path / "axial.dcm", position=(0, 0, 0), series_uid=axial)
    with pytest.warns(IngestWarning, match="localizer"):
        found = index_folder(tmp_path)
    assert [s.series_uid for s in found] == [axial]


def test_series_date_prefers_acquisition_then_series_then_study() -> None:
    ds = Dataset()
    ds.StudyDate = "20240103"
    assert series_date(ds) == date(2024, 1, 3)
    ds.SeriesDate = "20240102"
    assert series_date(ds) == date(2024, 1, 2)
    ds.AcquisitionDate = "20240101"
    assert series_date(ds) == date(2024, 1, 1)
    assert series_date(Dataset()) is None


def test_dicomdir_is_skipped_silently(tmp_path: Path, fixtures_dir: Path) -> None:
    fileset = FileSet()
    fileset.add(pydicom.dcmread(fixtures_dir / "pydicom" / "CT_small.dcm"))
    fileset.write(tmp_path)
    assert (tmp_path / "DICOMDIR").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error", IngestWarning)
        assert _only(index_folder(tmp_path)).modality == "CT"
