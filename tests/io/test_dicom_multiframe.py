"""Multi-frame images: Enhanced CT (functional groups) and NM tomography, native and compressed."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    NuclearMedicineImageStorage,
    RLELossless,
    generate_uid,
)

from abscopal.errors import IngestError, IngestWarning
from abscopal.io.dicom import index_folder, load_series

# An Enhanced CT of 4 frames, 2.5 mm apart along +z, stored in the file as z = 7.5, 0, 5, 2.5.
Z_MM = (7.5, 0.0, 5.0, 2.5)
ORIGIN_XY = (-20.0, 30.0)
PIXEL_MM = (0.9, 0.6)  # between rows, between columns
_F, _J, _I = np.indices((4, 32, 32))  # 32 x 32: the smallest frame JPEG 2000 encodes by default
STORED = (1000 * _F + (_J * 32 + _I) % 997).astype(np.int16)  # frame f holds 1000 f + 0..996
SLOPES = (1.0, 1.0, 2.0, 1.0)  # frame 3 (z = 5) has its own PixelValueTransformation


def _item(**attributes: Any) -> Sequence:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return Sequence([item])


def _base(sop_class: str, modality: str, syntax: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyDate = modality, "TEST-MF", "20240102"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    ds.Rows, ds.Columns = STORED.shape[1:]
    ds.NumberOfFrames = len(STORED)
    return ds


def _enhanced_ct(syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = _base(EnhancedCTImageStorage, "CT", syntax)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    shared = ds.SharedFunctionalGroupsSequence[0]
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    shared.PixelMeasuresSequence = _item(PixelSpacing=list(PIXEL_MM), SliceThickness=2.5)
    shared.PixelValueTransformationSequence = _item(
        RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU"
    )
    frames = []
    for z, slope in zip(Z_MM, SLOPES, strict=True):
        group = Dataset()
        group.PlanePositionSequence = _item(ImagePositionPatient=[*ORIGIN_XY, z])
        if slope != 1.0:
            group.PixelValueTransformationSequence = _item(
                RescaleSlope=slope, RescaleIntercept=-1024, RescaleType="HU"
            )
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = STORED.tobytes()
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(syntax)
    elif not syntax.is_little_endian:
        ds.PixelData = STORED.astype(">i2").tobytes()
    ds.save_as(
        path, enforce_file_format=True, little_endian=syntax.is_little_endian, implicit_vr=False
    )
    return path


def _expected_hu() -> np.ndarray:
    """Frames sorted by z (file frames 2, 4, 3, 1) with their own slope, minus 1024."""
    order = np.argsort(Z_MM)
    return np.stack([STORED[f] * SLOPES[f] - 1024.0 for f in order]).astype(np.float32)


@pytest.mark.parametrize(
    "syntax",
    [ExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless, JPEG2000Lossless, JPEGLSLossless],
)
def test_enhanced_ct_loads_with_its_geometry_and_per_frame_rescale(
    tmp_path: Path, syntax: str
) -> None:
    _save(_enhanced_ct(syntax), tmp_path / "ct.dcm")
    (series,) = index_folder(tmp_path)
    volume = load_series(series)
    grid = volume.grid
    assert volume.units == "HU"
    assert grid.shape == (4, 32, 32)
    assert grid.origin_mm == pytest.approx((*ORIGIN_XY, 0.0))
    assert grid.spacing_mm == pytest.approx((2.5, *PIXEL_MM))
    assert grid.axes == ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    np.testing.assert_array_equal(volume.array, _expected_hu())
    # voxel (k=2, j=4, i=5): z = 5 mm, y = 30 + 4·0.9, x = -20 + 5·0.6
    assert grid.index_to_lps([2, 4, 5]) == pytest.approx([-17.0, 33.6, 5.0])
    assert volume.array[2, 4, 5] == 2 * (2000 + 4 * 32 + 5) - 1024  # file frame 3, slope 2


def test_legacy_converted_enhanced_ct_matches_its_single_frame_source(
    tmp_path: Path, write_slice
) -> None:
    """highdicom (an independent writer) packs single-frame slices into one Enhanced CT."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    uid = generate_uid()
    (tmp_path / "single").mkdir()
    (tmp_path / "enhanced").mkdir()
    for n in (3, 0, 2, 1):  # sagittal slices 1.5 mm apart, along -x
        write_slice(
            tmp_path / "single" / f"{n}.dcm",
            position=(1.5 * n - 3.0, -7.0, 5.0),
            series_uid=uid,
            pixels=np.arange(12).reshape(3, 4) + 100 * n,
            orientation=(0, 1, 0, 0, 0, -1),
            InstanceNumber=n + 1,
        )
    single = load_series(index_folder(tmp_path / "single")[0])
    sources = [pydicom.dcmread(p) for p in sorted((tmp_path / "single").glob("*.dcm"))]
    enhanced = LegacyConvertedEnhancedCTImage(
        legacy_datasets=sources,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced" / "ct.dcm")
    volume = load_series(index_folder(tmp_path / "enhanced")[0])
    assert volume.grid.same_geometry(single.grid, tol_mm=1e-6)
    np.testing.assert_array_equal(volume.array, single.array)


def _nm_tomo(image_type: str = "RECON TOMO") -> Dataset:
    ds = _base(NuclearMedicineImageStorage, "NM", ExplicitVRLittleEndian)
    ds.PixelRepresentation = 0
    ds.ImageType = ["ORIGINAL", "PRIMARY", image_type, "EMISSION"]
    ds.PixelSpacing = [4.0, 4.0]
    ds.SpacingBetweenSlices = 4.0
    ds.SliceThickness = 4.0
    ds.NumberOfSlices = len(STORED)
    ds.DetectorInformationSequence = _item(
        ImagePositionPatient=[-10.0, -12.0, 40.0],
        ImageOrientationPatient=[1, 0, 0, 0, 0, -1],  # coronal: rows +x, columns -z, normal +y
    )
    ds.PixelData = STORED.astype(np.uint16).tobytes()
    return ds


def test_nm_tomography_stacks_frames_along_the_normal(tmp_path: Path) -> None:
    _save(_nm_tomo(), tmp_path / "spect.dcm")
    volume = load_series(index_folder(tmp_path)[0])
    grid = volume.grid
    assert volume.modality == "NM"
    assert volume.units == "COUNTS"
    np.testing.assert_allclose(grid.axes, ((0, 1, 0), (0, 0, -1), (1, 0, 0)), atol=1e-12)
    assert grid.spacing_mm == pytest.approx((4.0, 4.0, 4.0))
    assert grid.origin_mm == pytest.approx((-10.0, -12.0, 40.0))
    # frame 3 lies 3 x 4 mm along +y from the first; its pixel (row 2, column 1) 8 mm lower, 4 mm left
    assert grid.index_to_lps([3, 2, 1]) == pytest.approx([-6.0, 0.0, 32.0])
    np.testing.assert_array_equal(volume.array, STORED.astype(np.float32))


def test_planar_nm_is_refused_naming_image_type(tmp_path: Path) -> None:
    _save(_nm_tomo("STATIC"), tmp_path / "planar.dcm")
    with pytest.raises(IngestError, match=r"planar\.dcm: NM ImageType \(0008,0008\).*RECON TOMO"):
        load_series(index_folder(tmp_path)[0])


def test_enhanced_frame_without_position_is_refused(tmp_path: Path) -> None:
    ds = _enhanced_ct()
    del ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence
    _save(ds, tmp_path / "ct.dcm")
    with pytest.raises(IngestError, match=r"ct\.dcm frame 3: PlanePositionSequence \(0020,9113\)"):
        load_series(index_folder(tmp_path)[0])


def test_enhanced_frames_at_one_position_keep_the_first(tmp_path: Path) -> None:
    """Two echoes at every position (Enhanced MR style): duplicates dropped with a warning."""
    ds = _enhanced_ct()
    for group, z in zip(ds.PerFrameFunctionalGroupsSequence, (0.0, 0.0, 2.5, 2.5), strict=True):
        group.PlanePositionSequence[0].ImagePositionPatient = [*ORIGIN_XY, z]
    _save(ds, tmp_path / "ct.dcm")
    with pytest.warns(IngestWarning, match=r"duplicate slice positions.*ct\.dcm frame 2"):
        volume = load_series(index_folder(tmp_path)[0])
    assert volume.array.shape == (2, 32, 32)
    np.testing.assert_array_equal(volume.array[:, 0, 0], [0 - 1024.0, 2 * 2000 - 1024.0])


def test_enhanced_and_single_frame_read_the_same_without_warnings(tmp_path: Path) -> None:
    _save(_enhanced_ct(), tmp_path / "ct.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_series(index_folder(tmp_path)[0]).array.shape == (4, 32, 32)
