"""The post-treatment Y-90 PET: activity by construction and its quantitative DICOM series.

Activity is uniform in the treated territory (the liver's right lobe, `phantom.Tissue.LIVER_RIGHT`)
with a tumour-to-normal concentration ratio of 4 in the in-field HCC, zero everywhere else, and
±5 % multiplicative noise that never makes a voxel negative. The image total
Σ (Bq/mL · voxel mL) equals the administered activity decayed from administration to the scan
start (Units BQML, DecayCorrection START).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from abscopal.synth import phantom
from abscopal.synth.dicom import (
    PatientInfo,
    SeriesInfo,
    StudyInfo,
    Uids,
    add_image_plane,
    da,
    ds,
    dt,
    new_dataset,
    save_series,
    tm,
)

if TYPE_CHECKING:
    from pathlib import Path

    from numpy.typing import NDArray
    from pydicom.sr.coding import Code

    from abscopal.geometry import Grid
    from abscopal.synth.lesions import Ellipsoid
    from abscopal.synth.scenarios import Y90Plan

PET_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.128"
Y90_HALF_LIFE_S: Final = 230760.0  # 64.1 h
TUMOUR_TO_NORMAL: Final = 4.0
NOISE_FRACTION: Final = 0.05
PET_PIXEL_MM: Final = 4.0
PET_SLICES: Final = 80  # 4 mm slices from the first CT slice: the whole CT slab
_INT16_TOP: Final = 32000


def pet_grid(frame_of_reference_uid: str | None) -> Grid:
    """The PET grid: 96 × 96 × 80 voxels of 4 mm over the CT's field of view and slab."""
    return phantom.axial_grid(
        pixel_mm=PET_PIXEL_MM,
        slice_mm=PET_PIXEL_MM,
        slices=PET_SLICES,
        frame_of_reference_uid=frame_of_reference_uid,
    )


def decayed_activity_bq(plan: Y90Plan) -> float:
    """Administered activity decayed to the PET scan start."""
    elapsed_s = (plan.pet_start - plan.administered).total_seconds()
    return plan.activity_bq * math.exp(-math.log(2.0) * elapsed_s / Y90_HALF_LIFE_S)


def y90_activity(
    plan: Y90Plan, *, tumour: Ellipsoid, grid: Grid, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Activity concentration (Bq/mL) on `grid`, scaled so its total is the decayed activity."""
    labels = phantom.label_volume(grid)
    weight = (labels == phantom.Tissue.LIVER_RIGHT).astype(float)
    weight[tuple(tumour.voxels(grid).indices.T)] = TUMOUR_TO_NORMAL
    noise = np.clip(1.0 + NOISE_FRACTION * rng.standard_normal(grid.shape), 0.0, None)
    weight *= noise
    total_weight = float(weight.sum())
    if not total_weight > 0:
        msg = "the Y-90 territory has no voxel on the PET grid; check the PET field of view"
        raise ValueError(msg)
    out: NDArray[np.float64] = weight * (
        decayed_activity_bq(plan) / (total_weight * grid.voxel_volume_ml)
    )
    return out


def write_pet_series(
    folder: Path,
    *,
    activity_bqml: NDArray[np.float64],
    grid: Grid,
    plan: Y90Plan,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    uids: Uids,
) -> float:
    """One PT file per slice (int16, per-slice RescaleSlope); returns the stored total in Bq."""
    total_bq = 0.0
    slices = grid.shape[0]
    images: list[Dataset] = []
    for k in range(slices):
        plane = activity_bqml[k]
        top = float(plane.max())
        slope = float(ds(top / _INT16_TOP)) if top > 0 else 1.0
        stored = np.rint(plane / slope).astype("<i2")
        total_bq += float(stored.sum(dtype=np.int64)) * slope * grid.voxel_volume_ml
        image = new_dataset(
            sop_class_uid=PET_IMAGE_STORAGE,
            sop_instance_uid=uids(series.series_uid, "sop", k),
            patient=patient,
            study=study,
            series=series,
            instance_number=k + 1,
        )
        image.ImageType = ["ORIGINAL", "PRIMARY"]
        image.PatientPosition = "FFS"
        image.BodyPartExamined = "ABDOMEN"
        image.AcquisitionDate = da(plan.pet_start)
        image.AcquisitionTime = tm(plan.pet_start)
        image.ContentDate = da(plan.pet_start)
        image.ContentTime = tm(plan.pet_start)
        image.ImageComments = "Y-90 PET registered to the planning CT (shared FrameOfReferenceUID)"
        _pet_series_module(image, plan, slices)
        add_image_plane(image, grid, k, slice_thickness_mm=grid.spacing_mm[0])
        image.ImageIndex = k + 1
        image.FrameReferenceTime = "0"
        image.ActualFrameDuration = plan.pet_frame_s * 1000  # ms
        image.DecayFactor = "1"  # the frame is already referred to its start
        image.DoseCalibrationFactor = "1"
        image.SliceSensitivityFactor = "1"
        image.SamplesPerPixel = 1
        image.PhotometricInterpretation = "MONOCHROME2"
        image.BitsAllocated = 16
        image.BitsStored = 16
        image.HighBit = 15
        image.PixelRepresentation = 1
        image.RescaleIntercept = "0"
        image.RescaleSlope = ds(slope)
        image.RescaleType = "BQML"
        image.PixelData = np.ascontiguousarray(stored).tobytes()
        images.append(image)
    save_series(images, [folder / f"PT_{k + 1:04d}.dcm" for k in range(slices)])
    return total_bq


def _pet_series_module(image: Dataset, plan: Y90Plan, slices: int) -> None:
    image.Units = "BQML"
    image.CountsSource = "EMISSION"
    image.SeriesType = ["STATIC", "IMAGE"]
    image.DecayCorrection = "START"
    image.CorrectedImage = ["ATTN", "SCAT", "DECY", "RAN", "NORM"]
    image.RandomsCorrectionMethod = "DLYD"
    image.AttenuationCorrectionMethod = "CT-based"
    image.ReconstructionMethod = "OSEM 3i21s"
    image.NumberOfSlices = slices
    drug = Dataset()
    drug.Radiopharmaceutical = "Y-90 microspheres"
    drug.RadiopharmaceuticalStartTime = tm(plan.administered)
    drug.RadiopharmaceuticalStartDateTime = dt(plan.administered)
    drug.RadionuclideTotalDose = ds(plan.activity_bq)
    drug.RadionuclideHalfLife = ds(Y90_HALF_LIFE_S)
    drug.RadionuclidePositronFraction = "0.0000319"  # internal pair production of Y-90
    drug.RadionuclideCodeSequence = [_code(codes.SCT._90Yttrium)]
    drug.RadiopharmaceuticalCodeSequence = [_code(codes.SCT.Yttrium90Microspheres)]
    image.RadiopharmaceuticalInformationSequence = [drug]
    image.PatientOrientationCodeSequence = []
    image.PatientGantryRelationshipCodeSequence = []


def _code(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item
