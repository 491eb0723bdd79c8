"""DICOM writing for synthetic patients: UIDs, common modules, the CT series and its SEG.

The patient, study and series modules are shared by every object written. Every UID is `pydicom.uid.generate_uid` with entropy from the patient's namespace (patient id,
scenario, size) and the object's role, so a seed always gives the same UIDs. Files are
little-endian explicit VR with a PS3.10 header; nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Final

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.sr.codedict import codes
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DA, TM

from abscopal import __version__

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from numpy.typing import NDArray
    from pydicom.sr.coding import Code

    from abscopal.geometry import Grid

CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
MANUFACTURER: Final = "abscopal synthetic phantom"
MODEL: Final = "abscopal.synth"
SOFTWARE: Final = f"abscopal {__version__}"
DEVICE_SERIAL: Final = "SYN-0001"
HU_INTERCEPT: Final = -1024.0
_NEVER_CACHED: Final = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "SQ", "UN"})
_ANATOMY: Final[dict[str, Code]] = {
    "liver": codes.SCT.Liver,
    "vertebra": codes.SCT.StructureOfVertebralColumn,
    "rib": codes.SCT.BoneStructureOfRib,
    "ilium": codes.SCT.Ilium,
    "femur": codes.SCT.Femur,
}


@dataclass(frozen=True, slots=True)
class Uids:
    """Deterministic UIDs in one namespace: ``uids("ct", 3, "sop", 12)``."""

    namespace: tuple[str, ...]

    def __call__(self, *parts: object) -> str:
        """The UID of the object named by `parts` in this namespace."""
        return str(generate_uid(entropy_srcs=[*self.namespace, *(str(p) for p in parts)]))


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientInfo:
    """Patient module values."""

    patient_id: str
    patient_name: str
    birth_date: date
    sex: str
    weight_kg: float
    height_m: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyInfo:
    """General Study module values."""

    study_uid: str
    when: datetime
    study_id: str
    accession: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesInfo:
    """General Series values of one series (its start is SeriesDate/SeriesTime)."""

    series_uid: str
    number: int
    modality: str
    when: datetime
    description: str


def da(value: date) -> str:
    """DICOM DA."""
    return value.strftime("%Y%m%d")


def tm(value: time | datetime) -> str:
    """DICOM TM (whole seconds)."""
    return value.strftime("%H%M%S")


def dt(value: datetime) -> str:
    """DICOM DT (whole seconds, no offset)."""
    return value.strftime("%Y%m%d%H%M%S")


def ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text in {"-0", ""}:
        text = "0"
    return text if len(text) <= 16 else f"{value:.9g}"


def new_dataset(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    instance_number: int,
) -> Dataset:
    """A dataset with file meta, Patient, General Study, General Series, Equipment, SOP Common."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = Dataset()
    out.file_meta = meta
    out.SpecificCharacterSet = "ISO_IR 100"
    out.SOPClassUID = sop_class_uid
    out.SOPInstanceUID = sop_instance_uid
    out.InstanceCreationDate = da(series.when)
    out.InstanceCreationTime = tm(series.when)
    out.PatientName = patient.patient_name
    out.PatientID = patient.patient_id
    out.PatientBirthDate = da(patient.birth_date)
    out.PatientSex = patient.sex
    age_years = (study.when.date() - patient.birth_date).days // 365
    out.PatientAge = f"{age_years:03d}Y"
    out.PatientWeight = ds(patient.weight_kg)
    out.PatientSize = ds(patient.height_m)
    out.PatientIdentityRemoved = "YES"  # synthetic: there is no person behind it
    out.StudyInstanceUID = study.study_uid
    out.StudyDate = da(study.when)
    out.StudyTime = tm(study.when)
    out.StudyID = study.study_id
    out.AccessionNumber = study.accession
    out.ReferringPhysicianName = ""
    out.StudyDescription = study.description
    out.Modality = series.modality
    out.SeriesInstanceUID = series.series_uid
    out.SeriesNumber = series.number
    out.SeriesDate = da(series.when)
    out.SeriesTime = tm(series.when)
    out.SeriesDescription = series.description
    out.Manufacturer = MANUFACTURER
    out.ManufacturerModelName = MODEL
    out.SoftwareVersions = SOFTWARE
    out.DeviceSerialNumber = DEVICE_SERIAL
    out.InstitutionName = "abscopal synthetic cohort"
    out.InstanceNumber = instance_number
    return out


def add_image_plane(out: Dataset, grid: Grid, k: int, *, slice_thickness_mm: float) -> None:
    """Image Plane and Frame of Reference of slice `k` of an axial grid."""
    position = grid.index_to_lps(np.array([float(k), 0.0, 0.0]))
    out.FrameOfReferenceUID = grid.frame_of_reference_uid
    out.PositionReferenceIndicator = ""
    out.ImagePositionPatient = [ds(v) for v in position]
    out.ImageOrientationPatient = [ds(v) for v in (*grid.axes[2], *grid.axes[1])]
    out.PixelSpacing = [ds(grid.spacing_mm[1]), ds(grid.spacing_mm[2])]  # row, column spacing
    out.SliceThickness = ds(slice_thickness_mm)
    out.SliceLocation = ds(float(position[2]))
    out.Rows = grid.shape[1]
    out.Columns = grid.shape[2]


def save(dataset: Dataset, path: Path) -> None:
    """Write a PS3.10 file (the caller writes inside an atomic folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)


def save_series(datasets: Sequence[Dataset], paths: Sequence[Path]) -> None:
    """Write the single-frame files of one series, encoding each repeated element once.

    The bytes are those of `Dataset.save_as(..., enforce_file_format=True)` for explicit VR
    little endian (the test suite compares them); only the encoding work is shared, which
    halves the time for a series of a hundred slices.
    """
    encoded: dict[tuple[int, str, str], bytes] = {}
    for dataset, path in zip(datasets, paths, strict=True):
        correct_ambiguous_vr(dataset, is_little_endian=True)
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, False
        out.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(out, dataset.file_meta, enforce_standard=True)
        for element in dataset:  # ascending tags
            key = (int(element.tag), str(element.VR), str(element.value))
            cached = None if element.VR in _NEVER_CACHED else encoded.get(key)
            if cached is None:
                one = DicomBytesIO()
                one.is_little_endian, one.is_implicit_VR = True, False
                write_data_element(one, element)
                cached = one.getvalue()
                if element.VR not in _NEVER_CACHED:
                    encoded[key] = cached
            out.write(cached)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out.getvalue())


def write_ct_series(
    folder: Path,
    *,
    stored: NDArray[np.int16],
    grid: Grid,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    uids: Uids,
) -> list[Dataset]:
    """One CT file per slice, CT_0001.dcm feet first; stored values are HU + 1024.

    Returns the datasets (the SEG's source images).
    """
    out: list[Dataset] = []
    paths: list[Path] = []
    for k in range(grid.shape[0]):
        sop_uid = uids(series.series_uid, "sop", k)
        image = new_dataset(
            sop_class_uid=CT_IMAGE_STORAGE,
            sop_instance_uid=sop_uid,
            patient=patient,
            study=study,
            series=series,
            instance_number=k + 1,
        )
        image.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        image.BodyPartExamined = "ABDOMEN"
        image.PatientPosition = "HFS"
        image.AcquisitionNumber = 1
        image.AcquisitionDate = da(series.when)
        image.AcquisitionTime = tm(series.when)
        image.ContentDate = da(series.when)
        image.ContentTime = tm(series.when)
        image.KVP = "120"
        image.ConvolutionKernel = "STANDARD"
        add_image_plane(image, grid, k, slice_thickness_mm=grid.spacing_mm[0])
        image.SamplesPerPixel = 1
        image.PhotometricInterpretation = "MONOCHROME2"
        image.BitsAllocated = 16
        image.BitsStored = 16
        image.HighBit = 15
        image.PixelRepresentation = 1
        image.RescaleIntercept = ds(HU_INTERCEPT)
        image.RescaleSlope = "1"
        image.RescaleType = "HU"
        image.WindowCenter = "40"
        image.WindowWidth = "400"
        image.PixelData = np.ascontiguousarray(stored[k], dtype="<i2").tobytes()
        out.append(image)
        paths.append(folder / f"CT_{k + 1:04d}.dcm")
    save_series(out, paths)
    return out


def write_seg(
    path: Path,
    *,
    source_images: Sequence[Dataset],
    masks: Mapping[str, NDArray[np.bool_]],
    organs: Mapping[str, str],
    tracking_uids: Mapping[str, str],
    series: SeriesInfo,
    sop_instance_uid: str,
) -> None:
    """A BINARY DICOM SEG of the CT: one segment per lesion in `masks` order.

    SegmentLabel and TrackingID are the lesion_id; TrackingUID is stable for the lesion across
    timepoints; the property is Morphologically Abnormal Structure / Neoplasm, drawn MANUAL.
    """
    ids = list(masks)
    pixels = np.stack([masks[i] for i in ids], axis=-1)  # (frames, rows, columns, segments)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=lesion_id,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_uid=tracking_uids[lesion_id],
            tracking_id=lesion_id,
            anatomic_regions=[_ANATOMY[organs[lesion_id]]]
            if organs[lesion_id] in _ANATOMY
            else None,
        )
        for number, lesion_id in enumerate(ids, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series.series_uid,
        series_number=series.number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL,
        software_versions=SOFTWARE,
        device_serial_number=DEVICE_SERIAL,
        content_label="LESIONS",
        content_description="Lesions by construction (synthetic truth)",
        content_creator_name="Synthetic^Generator",
        series_description=series.description,
        content_date=series.when.date(),
        content_time=series.when.time(),
        series_date=series.when.date(),
        series_time=series.when.time(),
    )
    # highdicom stamps the clock and a random dimension UID; keep the files reproducible
    seg.InstanceCreationDate = DA(da(series.when))
    seg.InstanceCreationTime = TM(tm(series.when))
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = dt(series.when)
    dimension_uid = generate_uid(entropy_srcs=[sop_instance_uid, "dimension organization"])
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = dimension_uid
    save(seg, path)
