"""RT Structure Set (the PTV) and RT Dose of a synthetic EBRT plan, on the planning CT's frame.

Both belong to the planning CT's study. The RTDOSE is PHYSICAL dose in GY summed over the PLAN,
uint32 with DoseGridScaling, its GridFrameOffsetVector relative (first frame 0 mm). Its
ReferencedRTPlanSequence names a plan UID that is not written: there is no RTPLAN object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from abscopal.synth.dicom import (
    CT_IMAGE_STORAGE,
    PatientInfo,
    SeriesInfo,
    StudyInfo,
    add_image_plane,
    da,
    ds,
    new_dataset,
    save,
    tm,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from numpy.typing import NDArray

    from abscopal.geometry import Grid

RT_DOSE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCTURE_SET_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.481.5"
STUDY_COMPONENT_MANAGEMENT: Final = "1.2.840.10008.3.1.2.3.1"  # RTReferencedStudySequence class
DOSE_GRID_SCALING_GY: Final = 1e-5
DOSE_PIXEL_MM: Final = 4.0
DOSE_SLICE_MM: Final = 5.0


def write_rtdose(
    path: Path,
    *,
    dose_gy: NDArray[np.float64],
    grid: Grid,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    sop_instance_uid: str,
    plan_sop_instance_uid: str,
) -> None:
    """A multi-frame RTDOSE of `dose_gy` (slice, row, column) on `grid`."""
    out = new_dataset(
        sop_class_uid=RT_DOSE_STORAGE,
        sop_instance_uid=sop_instance_uid,
        patient=patient,
        study=study,
        series=series,
        instance_number=1,
    )
    out.OperatorsName = ""
    out.ContentDate = da(series.when)
    out.ContentTime = tm(series.when)
    add_image_plane(out, grid, 0, slice_thickness_mm=grid.spacing_mm[0])
    del out.SliceLocation
    offsets = [k * grid.spacing_mm[0] for k in range(grid.shape[0])]
    out.NumberOfFrames = grid.shape[0]
    out.FrameIncrementPointer = Tag(0x3004, 0x000C)  # GridFrameOffsetVector
    out.GridFrameOffsetVector = [ds(v) for v in offsets]
    out.SamplesPerPixel = 1
    out.PhotometricInterpretation = "MONOCHROME2"
    out.BitsAllocated = 32
    out.BitsStored = 32
    out.HighBit = 31
    out.PixelRepresentation = 0
    out.DoseUnits = "GY"
    out.DoseType = "PHYSICAL"
    out.DoseSummationType = "PLAN"
    out.DoseGridScaling = ds(DOSE_GRID_SCALING_GY)
    out.TissueHeterogeneityCorrection = ["IMAGE"]
    plan_ref = Dataset()
    plan_ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
    plan_ref.ReferencedSOPInstanceUID = plan_sop_instance_uid
    out.ReferencedRTPlanSequence = [plan_ref]
    stored = np.rint(np.clip(dose_gy, 0.0, None) / DOSE_GRID_SCALING_GY).astype("<u4")
    out.PixelData = np.ascontiguousarray(stored).tobytes()
    save(out, path)


def write_rtstruct(
    path: Path,
    *,
    contours: Sequence[tuple[int, NDArray[np.float64]]],
    ct_images: Sequence[Dataset],
    roi_name: str,
    label: str,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    sop_instance_uid: str,
) -> None:
    """An RT Structure Set with one PTV ROI: a CLOSED_PLANAR polygon (LPS mm) per CT slice.

    `contours` pairs the index of a slice in `ct_images` with its (n, 3) polygon.
    """
    out = new_dataset(
        sop_class_uid=RT_STRUCTURE_SET_STORAGE,
        sop_instance_uid=sop_instance_uid,
        patient=patient,
        study=study,
        series=series,
        instance_number=1,
    )
    first = ct_images[0]
    frame_uid = str(first.FrameOfReferenceUID)
    out.OperatorsName = ""
    out.StructureSetLabel = label
    out.StructureSetName = f"{label} targets"
    out.StructureSetDate = da(series.when)
    out.StructureSetTime = tm(series.when)

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = [_image_ref(image) for image in ct_images]
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_COMPONENT_MANAGEMENT
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = [series_ref]
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = frame_uid
    frame_ref.RTReferencedStudySequence = [study_ref]
    out.ReferencedFrameOfReferenceSequence = [frame_ref]

    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = frame_uid
    roi.ROIName = roi_name
    roi.ROIGenerationAlgorithm = "MANUAL"
    out.StructureSetROISequence = [roi]

    items = []
    for number, (k, polygon) in enumerate(contours, start=1):
        item = Dataset()
        item.ContourImageSequence = [_image_ref(ct_images[k])]
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.NumberOfContourPoints = len(polygon)
        item.ContourNumber = number
        item.ContourData = [ds(float(v)) for v in np.round(polygon, 3).ravel()]
        items.append(item)
    roi_contour = Dataset()
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ReferencedROINumber = 1
    roi_contour.ContourSequence = items
    out.ROIContourSequence = [roi_contour]

    observation = Dataset()
    observation.ObservationNumber = 1
    observation.ReferencedROINumber = 1
    observation.ROIObservationLabel = roi_name
    observation.RTROIInterpretedType = "PTV"
    observation.ROIInterpreter = ""
    out.RTROIObservationsSequence = [observation]
    save(out, path)


def _image_ref(image: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    return ref
