"""DICOM SR TID 1500 Measurement Reports, one per timepoint, written with highdicom.

Each lesion is a volumetric measurement group that references its SEG segment (and, through it,
the source CT series), carries the same tracking identifier and UID at every timepoint, its finding
site, and the long axis, short axis and volume that abscopal measured.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import SegmentationStorage, generate_uid

from abscopal import __version__
from abscopal.atomic import atomic_path
from abscopal.deid import METHOD_CODES

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from abscopal.io.refs import InstanceRef, TimepointRefs

_LONG_AXIS = Code("103339001", "SCT", "Long Axis")
_SHORT_AXIS = Code("103340004", "SCT", "Short Axis")
_VOLUME = Code("118565006", "SCT", "Volume")
_MM = Code("mm", "UCUM", "millimeter")
_ML = Code("ml", "UCUM", "milliliter")
_NEOPLASM = Code("108369006", "SCT", "Neoplasm")
_CT_PROCEDURE = Code("25045-6", "LN", "CT unspecified body region")


def tracking_uid(patient_id: str, lesion_id: str) -> str:
    """A stable TrackingUID for a lesion without one in its SEG."""
    return str(generate_uid(entropy_srcs=["abscopal tracking", patient_id, lesion_id]))


def _evidence(ref: InstanceRef, study: Mapping[str, str]) -> pydicom.Dataset:
    """A header-only dataset that stands for one referenced instance (highdicom's evidence)."""
    ds = pydicom.Dataset()
    for keyword, value in study.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = ref.sop_class_uid
    ds.SOPInstanceUID = ref.sop_instance_uid
    ds.SeriesInstanceUID = ref.series_uid
    ds.StudyInstanceUID = ref.study_uid
    ds.Modality = "SEG" if ref.sop_class_uid == SegmentationStorage else "CT"
    return ds


def _group(
    lesion: Mapping[str, Any], m: Mapping[str, Any], refs: TimepointRefs, patient_id: str
) -> Any:
    segment = next((s for s in refs.segments if s.lesion_id == lesion["lesion_id"]), None)
    if segment is None or refs.seg is None:
        return None
    sites = []
    if segment.site_code is not None:
        value, scheme, meaning = segment.site_code
        sites = [hd.sr.FindingSite(anatomic_location=Code(value, scheme, meaning))]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=segment.tracking_uid or tracking_uid(patient_id, lesion["lesion_id"]),
            identifier=lesion["lesion_id"],
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=refs.seg.sop_class_uid,
            sop_instance_uid=refs.seg.sop_instance_uid,
            segment_number=segment.number,
            source_series=hd.sr.SourceSeriesForSegmentation(refs.ct[0].series_uid),
        ),
        finding_type=_NEOPLASM,
        finding_sites=sites,
        measurements=[
            hd.sr.Measurement(name=_LONG_AXIS, value=float(m["diameter_long_mm"]), unit=_MM),
            hd.sr.Measurement(name=_SHORT_AXIS, value=float(m["diameter_short_mm"]), unit=_MM),
            hd.sr.Measurement(name=_VOLUME, value=float(m["volume_ml"]), unit=_ML),
        ],
    )


def _code_item(value: str, scheme: str, meaning: str) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_timepoint_sr(
    path: Path,
    result: Mapping[str, Any],
    day: date,
    refs: TimepointRefs,
    *,
    deidentification_method: str | None = None,
) -> Path | None:
    """Write the TID 1500 report of `day` to `path` (atomically); None if no lesion was seen.

    With `deidentification_method` (refs already de-identified), the SR says so
    (PatientIdentityRemoved, DeidentificationMethod) and its own dates are the study date.
    """
    iso = day.isoformat()
    groups = []
    for lesion in result["lesions"]:
        m = next((x for x in lesion["measurements"] if x["date"] == iso and x["present"]), None)
        group = _group(lesion, m, refs, result["patient_id"]) if m else None
        if group is not None:
            groups.append(group)
    if not groups or refs.seg is None:
        return None
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=str(generate_uid(entropy_srcs=["abscopal device"])),
            name="abscopal",
            model_name=__version__,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_CT_PROCEDURE,
        imaging_measurements=groups,
    )
    study = dict(refs.study)
    evidence = [_evidence(ref, study) for ref in (*refs.ct, refs.seg)]
    seed = [result["patient_id"], iso, "abscopal sr"]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=str(generate_uid(entropy_srcs=[*seed, "series"])),
        series_number=900,
        sop_instance_uid=str(generate_uid(entropy_srcs=[*seed, "instance"])),
        instance_number=1,
        manufacturer="abscopal",
        series_description="abscopal lesion measurements (research use only)",
        institution_name=None,
    )
    if deidentification_method is not None:
        sr.PatientIdentityRemoved = "YES"
        sr.DeidentificationMethod = deidentification_method
        sr.DeidentificationMethodCodeSequence = [_code_item(*code) for code in METHOD_CODES]
        for keyword in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
            if keyword in sr:
                setattr(sr, keyword, study.get("StudyDate", ""))
    with atomic_path(path) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    return path
