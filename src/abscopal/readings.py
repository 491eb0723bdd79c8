"""Lesion readings: one lesion read at one date, as a measurement table or the pipeline states it.

These records are the input of every response criterion (CLINICAL.md §0, "Input fields"). They sit
with the foundations so that `io.table` can build them without importing the criteria.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING

from abscopal.model import LesionKind, Vocabulary

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

SCAN_FIELDS = (  # scan-level values: a subset keeps them even without the row that carried them
    "liver_sul_mean",
    "liver_sul_sd",
    "blood_sul_mean",
    "blood_sul_sd",
    "slice_thickness_mm",
)  # §0: a timepoint groups scans within 14 d of its first scan


class Role(Vocabulary):
    """User-set role of a lesion (RECIST family); empty in the table means automatic (R-S)."""

    TARGET = "target"
    NON_TARGET = "non_target"
    NEW = "new"


class LesionStatus(Vocabulary):
    """Presence and non-target status of one lesion on one date (§0 input fields)."""

    PRESENT = "present"
    ABSENT = "absent"
    TOO_SMALL = "too_small"
    NOT_EVALUATED = "not_evaluated"
    UNEQUIVOCAL_PROGRESSION = "unequivocal_progression"
    FURTHER_INCREASE = "further_increase"


class NewLesion(Vocabulary):
    """Reader's call on a new lesion (R-NEW)."""

    NONE = "none"
    EQUIVOCAL = "equivocal"
    UNEQUIVOCAL = "unequivocal"


class BoneSign(Vocabulary):
    """Qualitative MD Anderson signs on XR/CT (§7)."""

    SCLEROTIC_RIM = "sclerotic_rim"
    FILL_IN = "fill_in"
    NEW_SCLEROSIS = "new_sclerosis"
    COMPLETE_FILL_IN = "complete_fill_in"
    NORMALISED = "normalised"
    NONE = "none"


class ScanStatus(Vocabulary):
    """Skeletal scintigraphy spot compared with baseline (§7)."""

    UNCHANGED = "unchanged"
    REGRESSED = "regressed"
    RESOLVED = "resolved"
    INCREASED = "increased"
    NEW = "new"


class CtPhase(Vocabulary):
    """Contrast phase of the CT (Choi needs portal venous)."""

    PORTAL_VENOUS = "portal_venous"
    ARTERIAL = "arterial"
    NON_CONTRAST = "non_contrast"


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionReading:
    """One lesion read on one date: the input fields of CLINICAL.md §0, units in the names.

    Scan-level values (liver and blood-pool reference, slice thickness) are repeated on the
    readings of that scan. `None` is a measurement that was not made.
    """

    lesion_id: str
    date: dt.date
    organ: str = "unknown"
    kind: LesionKind = LesionKind.SOFT_TISSUE
    role: Role | None = None
    status: LesionStatus = LesionStatus.PRESENT
    new_lesion: NewLesion | None = None
    diameter_long_mm: Decimal | None = None
    diameter_short_mm: Decimal | None = None
    diameter_viable_mm: Decimal | None = None
    diameter_perp_mm: Decimal | None = None
    soft_tissue_long_mm: Decimal | None = None
    aphe: bool | None = None
    washout: bool | None = None
    hu_mean: Decimal | None = None
    ct_phase: CtPhase | None = None
    sulpeak: Decimal | None = None
    tlg_g: Decimal | None = None
    suvmax: Decimal | None = None
    suvmean: Decimal | None = None
    suv_type: str | None = None
    background_indistinguishable: bool | None = None
    bone_signs: frozenset[BoneSign] = frozenset()
    ss_status: ScanStatus | None = None
    liver_sul_mean: Decimal | None = None
    liver_sul_sd: Decimal | None = None
    blood_sul_mean: Decimal | None = None
    blood_sul_sd: Decimal | None = None
    slice_thickness_mm: Decimal | None = None
    irradiated: bool | None = None

    def __post_init__(self) -> None:
        if not self.lesion_id:
            msg = "lesion_id must not be empty"
            raise ValueError(msg)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_mm", "_g")) and value is not None and not value >= 0:
                msg = f"{f.name} of lesion {self.lesion_id!r} must be >= 0, got {value}"
                raise ValueError(msg)

    @property
    def present(self) -> bool:
        """False when the lesion is absent or was not evaluated."""
        return self.status not in {LesionStatus.ABSENT, LesionStatus.NOT_EVALUATED}


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientSeries:
    """A patient's readings over time; `baseline_date` defaults to the earliest date (R-S)."""

    patient_id: str
    readings: tuple[LesionReading, ...]
    baseline_date: dt.date | None = None
    therapy_start: dt.date | None = None

    def restricted(self, lesion_ids: Collection[str] | None) -> PatientSeries:
        """Only the readings of `lesion_ids` (all when `None`); the baseline date is kept."""
        if lesion_ids is None:
            return self
        keep = set(lesion_ids)
        base = self.baseline_date or min((r.date for r in self.readings), default=None)
        scan: dict[tuple[dt.date, str], Decimal] = {}
        for r in self.readings:
            for name in SCAN_FIELDS:
                if getattr(r, name) is not None:
                    scan.setdefault((r.date, name), getattr(r, name))
        kept = (_with_scan(r, scan) for r in self.readings if r.lesion_id in keep)
        return PatientSeries(
            patient_id=self.patient_id,
            readings=tuple(kept),
            baseline_date=base,
            therapy_start=self.therapy_start,
        )


def _with_scan(r: LesionReading, scan: Mapping[tuple[dt.date, str], Decimal]) -> LesionReading:
    def pick(name: str) -> Decimal | None:
        own: Decimal | None = getattr(r, name)
        return own if own is not None else scan.get((r.date, name))

    return dataclasses.replace(
        r,
        liver_sul_mean=pick("liver_sul_mean"),
        liver_sul_sd=pick("liver_sul_sd"),
        blood_sul_mean=pick("blood_sul_mean"),
        blood_sul_sd=pick("blood_sul_sd"),
        slice_thickness_mm=pick("slice_thickness_mm"),
    )
