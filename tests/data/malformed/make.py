"""Write the malformed DICOM corpus: one small file per defect, next to a good CT series.

Run `python tests/data/malformed/make.py [FOLDER]` (default: this folder); the tests call
`write_corpus(tmp_path)` so they never depend on files left over from an older run.

good/       three valid CT slices (4 x 4 pixels, 2 mm apart) of one series
bad/        one file per defect (the names say which), all of another series
seg/        a DICOM SEG drawn on another series than good/ (ReferencedSeriesSequence elsewhere)
"""

from __future__ import annotations

import sys
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent

# defect name -> what is changed in an otherwise valid slice (None: delete the attribute)
DEFECTS: dict[str, dict[str, object]] = {
    "missing_pixel_data": {"PixelData": None},
    "missing_image_position": {"ImagePositionPatient": None},
    "rows_inconsistent": {"Rows": 8},
    "zero_pixel_spacing": {"PixelSpacing": [0.0, 0.8]},
    "negative_slice_thickness": {"SliceThickness": -2.0},
    "nan_rescale_slope": {"RescaleSlope": "NaN"},
}


def ct_slice(*, series_uid: str, frame_uid: str, study_uid: str, z: float) -> Dataset:
    """One valid 4 x 4 CT slice at height `z` (mm)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = "CT", "MALFORMED-1", "Malformed^Corpus"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
        study_uid,
        series_uid,
        frame_uid,
    )
    ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "20240101", "120000", 1, 1
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.Manufacturer, ds.PatientBirthDate, ds.PatientSex = "abscopal tests", "", "O"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.8, 0.8]
    ds.SliceThickness = 2.0
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = np.full((4, 4), 1064, dtype=np.int16).tobytes()
    return ds


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write good/, bad/ and seg/ under `folder`; return every written path by name."""
    study, frame = generate_uid(), generate_uid()
    good_uid, bad_uid, other_uid = generate_uid(), generate_uid(), generate_uid()
    out: dict[str, Path] = {}
    (folder / "good").mkdir(parents=True, exist_ok=True)
    (folder / "bad").mkdir(exist_ok=True)
    (folder / "seg").mkdir(exist_ok=True)
    for n in range(3):
        path = folder / "good" / f"ct_{n}.dcm"
        ct_slice(series_uid=good_uid, frame_uid=frame, study_uid=study, z=2.0 * n).save_as(
            path, enforce_file_format=True
        )
        out[f"good_{n}"] = path
    for n, (name, change) in enumerate(DEFECTS.items()):
        ds = ct_slice(series_uid=bad_uid, frame_uid=frame, study_uid=study, z=2.0 * n)
        for keyword, value in change.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        out[name] = folder / "bad" / f"{name}.dcm"
        ds.save_as(out[name], enforce_file_format=True)
    whole = out["good_0"].read_bytes()
    out["truncated"] = folder / "bad" / "truncated.dcm"
    out["truncated"].write_bytes(whole[: len(whole) - 10])  # the last pixels are gone
    others = [
        ct_slice(series_uid=other_uid, frame_uid=frame, study_uid=study, z=2.0 * n)
        for n in range(3)
    ]
    mask = np.zeros((3, 4, 4), dtype=bool)
    mask[1, 1:3, 1:3] = True
    seg = hd.seg.Segmentation(
        source_images=others,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label="lesion",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Neoplasm,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
        ],
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="abscopal tests",
        manufacturer_model_name="make.py",
        software_versions="1",
        device_serial_number="1",
    )
    out["seg_other_series"] = folder / "seg" / "seg_other_series.dcm"
    seg.save_as(out["seg_other_series"])
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for name, path in write_corpus(target).items():
        print(f"{name}: {path}")
