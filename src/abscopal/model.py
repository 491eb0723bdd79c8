"""The domain records: images, lesions, measurements, treatments and the patient's timeline.

Every record is frozen and validated on construction; a change is a new object
(`dataclasses.replace` validates again). Units are in the field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from abscopal.geometry import Grid


Day = date  # for annotations inside records that have a field named `date`


class Vocabulary(StrEnum):
    """A StrEnum whose error lists the accepted values."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        allowed = ", ".join(m.value for m in cls)
        msg = f"{value!r} is not a valid {cls.__name__}; expected one of: {allowed}"
        raise ValueError(msg)


class LesionKind(Vocabulary):
    """Lesion kinds of the measurement table (DESIGN.md); lytic, blastic and mixed are bone."""

    SOFT_TISSUE = "soft_tissue"
    NODAL = "nodal"
    LYTIC = "lytic"
    BLASTIC = "blastic"
    MIXED = "mixed"
    HCC = "hcc"

    @property
    def is_bone(self) -> bool:
        """True for lytic, blastic and mixed bone lesions."""
        return self in {LesionKind.LYTIC, LesionKind.BLASTIC, LesionKind.MIXED}


class DrugClass(Vocabulary):
    """Systemic therapy classes (CLINICAL.md §8.4)."""

    IMMUNOTHERAPY = "immunotherapy"
    CHEMOTHERAPY = "chemotherapy"  # "cytotoxic" in CLINICAL.md
    TARGETED = "targeted"
    HORMONAL = "hormonal"
    BONE_ACTIVE = "bone_active"
    G_CSF = "g_csf"
    STEROID = "steroid"
    OTHER = "other"


class FieldStatus(Vocabulary):
    """Field status of a lesion for a local therapy (CLINICAL.md §8.1); the `--json` strings."""

    IN_FIELD = "in_field"
    LOW_DOSE = "low_dose"
    OUT_OF_FIELD = "out_of_field"
    OUTSIDE_GRID = "outside_grid"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Volume:
    """An image or dose array on its grid, in `units` (e.g. "HU", "BQML", "GY")."""

    array: NDArray[Any]
    grid: Grid
    modality: str
    units: str
    acquisition_date: date | None = None
    series_uid: str | None = None

    def __post_init__(self) -> None:
        if self.array.shape != self.grid.shape:
            msg = f"array shape {self.array.shape} does not match grid shape {self.grid.shape}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LesionMask:
    """One lesion's binary mask on a grid (usually cropped to the lesion's bounding box)."""

    lesion_id: str
    mask: NDArray[np.bool_]
    grid: Grid

    def __post_init__(self) -> None:
        if self.mask.dtype != np.bool_ or self.mask.shape != self.grid.shape:
            msg = (
                f"mask of lesion {self.lesion_id!r} must be boolean with the grid's shape "
                f"{self.grid.shape}, got {self.mask.dtype} {self.mask.shape}"
            )
            raise ValueError(msg)

    @property
    def voxel_count(self) -> int:
        """Number of voxels in the mask."""
        return int(np.count_nonzero(self.mask))

    def points_lps(self) -> NDArray[np.float64]:
        """LPS mm of every voxel centre in the mask, (n, 3)."""
        return self.grid.voxel_centres_lps(np.argwhere(self.mask))

    def cropped(self, *, pad: int = 1) -> LesionMask:
        """The same lesion on the sub-grid of its bounding box, `pad` voxels wider where possible.

        Shape metrics then cost what the lesion costs, not what the scan costs.
        """
        slices = np.flatnonzero(self.mask.any(axis=(1, 2)))
        if slices.size == 0:
            return self
        plane = np.any(self.mask[slices[0] : slices[-1] + 1], axis=0)  # rows, columns: one slab
        hits = (slices, np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0)))
        spans = [
            (max(int(hit[0]) - pad, 0), min(int(hit[-1]) + 1 + pad, self.mask.shape[axis]))
            for axis, hit in enumerate(hits)
        ]
        start = (spans[0][0], spans[1][0], spans[2][0])
        stop = (spans[0][1], spans[1][1], spans[2][1])
        if start == (0, 0, 0) and stop == self.mask.shape:
            return self
        box = tuple(slice(a, b) for a, b in spans)
        return LesionMask(
            lesion_id=self.lesion_id, mask=self.mask[box], grid=self.grid.crop(start, stop)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Lesion:
    """A tracked lesion: a stable identifier across timepoints, its organ and kind."""

    lesion_id: str
    organ: str = "unknown"
    kind: LesionKind = LesionKind.SOFT_TISSUE

    def __post_init__(self) -> None:
        if not self.lesion_id:
            msg = "lesion_id must not be empty"
            raise ValueError(msg)
        object.__setattr__(self, "kind", LesionKind(self.kind))


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One lesion measured at one date. Absent lesions have zero size."""

    lesion_id: str
    date: date
    voxel_count: int
    volume_ml: float
    diameter_long_mm: float
    diameter_short_mm: float
    hu_mean: float | None = None
    sclerotic_fraction: float | None = None

    def __post_init__(self) -> None:
        long_mm, short_mm = self.diameter_long_mm, self.diameter_short_mm
        if not 0.0 <= short_mm <= long_mm + 1e-9:  # NaN fails this comparison too
            msg = f"diameter_short_mm must be in [0, diameter_long_mm={long_mm}], got {short_mm}"
            raise ValueError(msg)
        if self.voxel_count < 0 or not self.volume_ml >= 0.0:
            msg = (
                f"voxel_count and volume_ml must be >= 0, got {self.voxel_count}, {self.volume_ml}"
            )
            raise ValueError(msg)
        if self.sclerotic_fraction is not None and not 0.0 <= self.sclerotic_fraction <= 1.0:
            msg = f"sclerotic_fraction must be in [0, 1], got {self.sclerotic_fraction}"
            raise ValueError(msg)

    @property
    def present(self) -> bool:
        """False when the lesion was not seen (no voxels)."""
        return self.voxel_count > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Study:
    """One imaging timepoint: its date, modality and the series it holds."""

    study_uid: str
    date: date
    modality: str
    series_uids: tuple[str, ...] = ()


def _check_dates(name: str, start: date, end: date | None) -> None:
    if end is not None and end < start:
        msg = f"{name}: end date {end} is before start date {start}"
        raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiationCourse:
    """An EBRT/SBRT course; `target` names the PTV structure in the RTSTRUCT."""

    therapy_id: str
    start_date: date
    end_date: date
    prescription_gy: float
    fractions: int
    target: str = "PTV"
    technique: str = "ebrt"

    def __post_init__(self) -> None:
        _check_dates(f"radiation course {self.therapy_id}", self.start_date, self.end_date)
        if not self.prescription_gy > 0 or self.fractions < 1:
            msg = (
                f"radiation course {self.therapy_id}: prescription_gy must be > 0 and fractions "
                f">= 1, got {self.prescription_gy}, {self.fractions}"
            )
            raise ValueError(msg)

    @property
    def t0(self) -> date:
        """First day of the therapy."""
        return self.start_date

    @property
    def t_end(self) -> date:
        """Last day of the therapy."""
        return self.end_date


@dataclass(frozen=True, slots=True, kw_only=True)
class Radioembolization:
    """A Y-90 radioembolization (one day: t0 = t_end)."""

    therapy_id: str
    date: date
    activity_bq: float
    device: str = "glass"
    territory: str = "right_lobe"

    def __post_init__(self) -> None:
        if not self.activity_bq > 0:
            msg = f"Y-90 {self.therapy_id}: activity_bq must be > 0, got {self.activity_bq}"
            raise ValueError(msg)
        if self.device not in {"glass", "resin"}:
            msg = f"Y-90 {self.therapy_id}: device must be 'glass' or 'resin', got {self.device!r}"
            raise ValueError(msg)

    @property
    def t0(self) -> Day:
        """Day of the treatment."""
        return self.date

    @property
    def t_end(self) -> Day:
        """Day of the treatment."""
        return self.date


LocalTherapy = RadiationCourse | Radioembolization


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherLocalTherapy:
    """Surgery, ablation, TACE, cementoplasty…: treats the lesions it aims at, induces no call."""

    therapy_id: str
    kind: str
    date: date
    target_lesion_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemicTherapy:
    """A systemic agent with its class, dates and any dose changes."""

    agent: str
    drug_class: DrugClass
    start_date: date
    stop_date: date | None = None
    dose_change_dates: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "drug_class", DrugClass(self.drug_class))
        _check_dates(f"systemic therapy {self.agent}", self.start_date, self.stop_date)


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Local and systemic therapies and scan dates of one patient."""

    local_therapies: tuple[LocalTherapy, ...] = ()
    systemic_therapies: tuple[SystemicTherapy, ...] = ()
    other_local_therapies: tuple[OtherLocalTherapy, ...] = ()
    scan_dates: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        ids = [t.therapy_id for t in (*self.local_therapies, *self.other_local_therapies)]
        if len(ids) != len(set(ids)):
            msg = f"local therapy ids must be unique, got {ids}"
            raise ValueError(msg)
        object.__setattr__(self, "scan_dates", tuple(sorted(set(self.scan_dates))))


@dataclass(frozen=True, slots=True, kw_only=True)
class Patient:
    """A patient: pseudonymous identifier, primary cancer, lesions and timeline."""

    patient_id: str
    primary_cancer: str = "unknown"
    birth_date: date | None = None
    lesions: tuple[Lesion, ...] = ()
    timeline: Timeline = field(default_factory=Timeline)

    def __post_init__(self) -> None:
        if not self.patient_id:
            msg = "patient_id must not be empty"
            raise ValueError(msg)
        early = [d for d in self.timeline.scan_dates if self.birth_date and d < self.birth_date]
        if early:
            msg = f"scan dated {early[0]} is before birth_date {self.birth_date}; check the dates"
            raise ValueError(msg)
        ids = [lesion.lesion_id for lesion in self.lesions]
        if len(ids) != len(set(ids)):
            msg = f"lesion ids must be unique, got {ids}"
            raise ValueError(msg)

    def lesion(self, lesion_id: str) -> Lesion:
        """The lesion with `lesion_id`, or a soft-tissue lesion of unknown organ."""
        for lesion in self.lesions:
            if lesion.lesion_id == lesion_id:
                return lesion
        return Lesion(lesion_id=lesion_id)
