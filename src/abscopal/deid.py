"""De-identified outputs (DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile).

Applied to what abscopal writes, never to the inputs: the patient ID becomes a pseudonym, every
name, birth date, accession number, study ID and referring physician is removed from the SR, UIDs
are replaced consistently, and dates are shifted by one offset per patient (the "Retain
Longitudinal Temporal Information with Modified Dates" option), so intervals stay true.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from pydicom.uid import generate_uid

if TYPE_CHECKING:
    from abscopal.io.refs import InstanceRef, SegmentRef, TimepointRefs

METHOD = "abscopal: PS3.15 basic profile, modified dates"  # LO: at most 64 characters
# DeidentificationMethodCodeSequence (PS3.16 CID 7050): the profile and the option applied.
METHOD_CODES = (
    ("113100", "DCM", "Basic Application Confidentiality Profile"),
    ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_REMOVED = {
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Deidentifier:
    """One patient's pseudonym, date shift (days) and UID map."""

    patient_id: str
    pseudonym: str
    shift_days: int

    def day(self, value: date) -> date:
        """`value` shifted by the patient's offset."""
        return value + timedelta(days=self.shift_days)

    def uid(self, value: str) -> str:
        """A new UID for `value`, the same every time for this patient."""
        return str(generate_uid(entropy_srcs=["abscopal deid", self.pseudonym, value]))

    def text(self, value: str) -> str:
        """`value` with the patient ID replaced and every ISO date shifted."""
        shifted = _ISO_DATE.sub(self._shift_match, value)
        return shifted.replace(self.patient_id, self.pseudonym)

    def _shift_match(self, match: re.Match[str]) -> str:
        try:
            return self.day(date(*(int(g) for g in match.groups()))).isoformat()
        except ValueError:  # not a calendar date after all
            return match.group(0)

    def result(self, value: Any) -> Any:
        """A copy of a result (dicts, lists, strings) with identifiers and dates replaced."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "input_sha256" and isinstance(
                    item, dict
                ):  # file names carry dates and IDs
                    digest = hashlib.sha256("".join(sorted(item.values())).encode()).hexdigest()
                    out[key] = {"files": len(item), "sha256_of_sorted_hashes": digest}
                else:
                    out[self.text(str(key))] = self.result(item)
            return out
        if isinstance(value, list):
            return [self.result(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def refs(self, refs: TimepointRefs) -> TimepointRefs:
        """Study attributes and UIDs of one timepoint for a de-identified SR."""
        study = []
        for keyword, value in refs.study:
            if keyword in _REMOVED:  # the profile's "Z": kept, but empty
                study.append((keyword, ""))
            elif keyword == "PatientName":
                study.append((keyword, self.pseudonym.replace("-", "^", 1)))  # family^given
            elif keyword == "PatientID":
                study.append((keyword, self.pseudonym))
            elif keyword == "StudyDate" and value:
                day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
                study.append((keyword, f"{self.day(day):%Y%m%d}"))
            elif keyword == "StudyInstanceUID":
                study.append((keyword, self.uid(value)))
            else:
                study.append((keyword, value))
        return replace(
            refs,
            study=tuple(study),
            ct=tuple(self._instance(r) for r in refs.ct),
            seg=None if refs.seg is None else self._instance(refs.seg),
            segments=tuple(self._segment(s) for s in refs.segments),
        )

    def _instance(self, ref: InstanceRef) -> InstanceRef:
        return replace(
            ref,
            sop_instance_uid=self.uid(ref.sop_instance_uid),
            series_uid=self.uid(ref.series_uid),
            study_uid=self.uid(ref.study_uid),
        )

    def _segment(self, segment: SegmentRef) -> SegmentRef:
        uid = segment.tracking_uid
        return replace(segment, tracking_uid=None if uid is None else self.uid(uid))


def deidentifier(patient_id: str, *, shift_days: int | None = None) -> Deidentifier:
    """The de-identifier of `patient_id`.

    The pseudonym is a hash of the ID. Without `shift_days`, dates move back by a per-patient offset
    of 1–365 days derived from the same hash; `shift_days=0` keeps the true dates.
    """
    digest = hashlib.sha256(f"abscopal:{patient_id}".encode()).hexdigest()
    shift = -(int(digest[:8], 16) % 365 + 1) if shift_days is None else shift_days
    return Deidentifier(
        patient_id=patient_id, pseudonym=f"ANON-{digest[:10].upper()}", shift_days=shift
    )
