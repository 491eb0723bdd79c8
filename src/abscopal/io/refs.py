"""What outputs must cite: study context and SOP instance references of the inputs.

The SR (TID 1500) names the patient and study it belongs to, the source CT series and the SEG
segment of every measurement. These records carry exactly that, read from headers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydicom

from abscopal.errors import IngestError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

# The study and patient attributes an SR copies from its evidence (PS3.3 C.7.1.1, C.7.2.1).
STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceRef:
    """One SOP instance: enough to cite it as evidence."""

    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentRef:
    """One segment of a SEG instance, with its anatomic region when the SEG names one."""

    number: int
    lesion_id: str
    tracking_uid: str | None
    site_code: tuple[str, str, str] | None  # (value, scheme, meaning)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimepointRefs:
    """The DICOM identity of one timepoint: study attributes, CT instances, SEG and segments."""

    study: tuple[tuple[str, str], ...]  # (keyword, value) of STUDY_KEYWORDS present in the CT
    ct: tuple[InstanceRef, ...]
    seg: InstanceRef | None
    segments: tuple[SegmentRef, ...]


def _header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        msg = f"{path}: cannot read the DICOM header ({exc}); the file changed while reading"
        raise IngestError(msg) from exc


def _ref(ds: pydicom.Dataset) -> InstanceRef:
    return InstanceRef(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        study_uid=str(ds.StudyInstanceUID),
    )


def timepoint_refs(ct_files: Sequence[Path], seg_file: Path | None) -> TimepointRefs:
    """References of one CT series and, when given, the SEG drawn on it."""
    headers = [_header(f) for f in ct_files]
    first = headers[0]
    study = tuple((k, str(first.get(k, ""))) for k in STUDY_KEYWORDS if k in first)
    seg = segments = None
    if seg_file is not None:
        seg_ds = _header(seg_file)
        seg = _ref(seg_ds)
        segments = tuple(_segment(item) for item in seg_ds.get("SegmentSequence", []))
    return TimepointRefs(
        study=study, ct=tuple(_ref(h) for h in headers), seg=seg, segments=segments or ()
    )


def _segment(item: pydicom.Dataset) -> SegmentRef:
    lesion_id = str(item.get("TrackingID", "") or item.get("SegmentLabel", ""))
    regions = item.get("AnatomicRegionSequence", [])
    site = None
    if regions:
        code = regions[0]
        site = (str(code.CodeValue), str(code.CodingSchemeDesignator), str(code.CodeMeaning))
    tracking_uid = str(item.get("TrackingUID", "")) or None
    return SegmentRef(
        number=int(item.SegmentNumber),
        lesion_id=lesion_id,
        tracking_uid=tracking_uid,
        site_code=site,
    )
