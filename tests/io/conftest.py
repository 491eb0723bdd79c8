"""Shared fixtures of the io tests: the borrowed DICOM data and a writer of tiny image series."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

DATA = Path(__file__).parents[2].parent / "shared" / "data"  # ../shared/data from the repo root


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared reference data is not on this machine)")
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    """dicom-fixtures/: pydicom, pydicom-data and highdicom test files (see data/README.md)."""
    return _require(DATA / "dicom-fixtures")


@pytest.fixture
def dicompyler_dir() -> Path:
    """dicompyler/: a real breast plan (CT slice, RTSTRUCT, RTPLAN, RTDOSE with TPS DVHs)."""
    return _require(DATA / "dicompyler")


@pytest.fixture
def suv_dir() -> Path:
    """calculate-suv/: SUV header attributes of 8 vendor PET series and expected factors."""
    return _require(DATA / "calculate-suv")


SliceWriter = Callable[..., Path]


@pytest.fixture
def write_slice() -> SliceWriter:
    """Write one single-frame CT (or PT) slice of int16 pixels; keywords override any attribute."""
    study_uid, frame_uid = generate_uid(), generate_uid()

    def write(
        path: Path,
        *,
        position: Sequence[float],
        series_uid: str,
        pixels: np.ndarray[Any, Any] | None = None,
        modality: str = "CT",
        orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
        pixel_spacing: Sequence[float] = (0.7, 0.8),
        **attributes: Any,
    ) -> Path:
        data = np.zeros((3, 4), dtype=np.int16) if pixels is None else pixels.astype(np.int16)
        meta = FileMetaDataset()
        sop_class = CTImageStorage if modality == "CT" else PositronEmissionTomographyImageStorage
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientID = "TEST-1"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyDate = "20240101"
        ds.SeriesDescription = "tiny"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = 2.0
        ds.Rows, ds.Columns = data.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024 if modality == "CT" else 0
        ds.PixelData = data.tobytes()
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
        return path

    return write
