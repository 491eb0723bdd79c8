"""The scenario table (a–g) and the per-patient plan drawn from it with a seeded generator.

Each scenario fixes the primary cancer, the local therapy, the systemic therapies (days from
t0), the lesions with their time courses and the expected abscopal finding (CLINICAL.md §8).
The seed moves the dates, the demographics, the vertebral levels and sides, and each lesion's
size by up to ±10 % (±8 % drawn, then moved to the nearest size whose voxel masks read as the
planned course, see `placement.reads_as_planned`); it never changes a class or the finding.

Time courses are scale factors at the CT dates t0 − 84, t0 − 7 (the planning CT and every
lesion's baseline), t0 + 30, t0 + 91 and t0 + 182 d.

Scenario a also holds S1, a stable soft-tissue nodule in the untreated left liver lobe whose
right tip lies 5 mm from the loaded right lobe (across the fissure): its truth is `uncertain`
(CLINICAL §8.1 Y2, activity within the 11 mm margin). It never responds, so the patient's finding
stays that of B1 and B2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final, Literal

import numpy as np

from abscopal.model import DrugClass, FieldStatus, LesionKind
from abscopal.synth.dose import SIGMA_CONVENTIONAL_MM, SIGMA_SBRT_MM, AnalyticDose
from abscopal.synth.lesions import HU_BLASTIC, HU_HCC, HU_LYTIC, Ellipsoid, LesionPlan
from abscopal.synth.placement import (
    LOW_DOSE_MAX_FRACTION,
    LOW_DOSE_MIN_GY,
    ORGAN,
    Site,
    Sites,
    draw_sites,
    jitter_candidates,
    lattice_points,
    low_dose_shape,
    reads_as_planned,
    site_shape,
)
from abscopal.units import BQ_PER_GBQ

SCENARIOS: Final[tuple[str, ...]] = ("a", "b", "c", "d", "e", "f", "g")
CT_OFFSETS_DAYS: Final = (-84, -7, 30, 91, 182)
PLANNING: Final = 1  # index of the planning CT (t0 − 7 d), every lesion's baseline
BASE_T0: Final = date(2024, 2, 12)
MAX_SHIFT_DAYS: Final = 60
Y90_ADMINISTRATION: Final = time(10, 0)
Y90_PET_START: Final = time(11, 30)  # on t0 + 1 d
Y90_PET_FRAME_S: Final = 1200
OUT_OF_FIELD_MIN_MM: Final = 80.0
OUT_OF_FIELD_MAX_GY: Final = 0.5
NEAR_LOADED_GAP_MM: Final = 5.0  # S1's tip to the right lobe's face (L = −18 mm)
_NEAR_LOADED_SEMI_MM: Final = (12.0, 10.0, 8.75)  # LD × SA 24 × 20 mm
_NEAR_LOADED_LIVER: Final = Ellipsoid(  # left lobe, fixed (no jitter): the gap is the point
    centre_mm=(-18.0 + NEAR_LOADED_GAP_MM + _NEAR_LOADED_SEMI_MM[0], -45.0, 102.5),
    semi_axes_mm=_NEAR_LOADED_SEMI_MM,
)

_HU: Final[dict[LesionKind, float]] = {
    LesionKind.LYTIC: HU_LYTIC,
    LesionKind.BLASTIC: HU_BLASTIC,
    LesionKind.MIXED: HU_LYTIC,
    LesionKind.HCC: HU_HCC,
}
IN_FIELD: Final = (0.97, 1.0, 0.85, 0.70, 0.60)


@dataclass(frozen=True, slots=True, kw_only=True)
class EbrtPlan:
    """An EBRT/SBRT course to the PTV around the in-field lesion."""

    therapy_id: str
    start_date: date
    end_date: date
    prescription_gy: float
    fractions: int
    technique: Literal["ebrt", "sbrt"]
    sigma_mm: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Y90Plan:
    """A right-lobe Y-90 radioembolization and its post-treatment PET."""

    therapy_id: str
    administered: datetime
    activity_bq: float
    pet_start: datetime
    pet_frame_s: int
    device: Literal["glass", "resin"] = "glass"
    territory: str = "right_lobe"


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemicPlan:
    """A systemic agent."""

    agent: str
    drug_class: DrugClass
    start_date: date
    stop_date: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AbscopalTruth:
    """The expected patient-level finding, in the vocabulary of `abscopal analyze --json`."""

    status: Literal["abscopal", "not_abscopal", "indeterminate"]
    certainty: Literal["A", "B", "C"] | None
    lesions: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientPlan:
    """Everything one synthetic patient is built from."""

    patient_id: str
    scenario: str
    primary_cancer: str
    sex: Literal["F", "M"]
    birth_date: date
    weight_kg: float
    height_m: float
    t0: date
    ct_dates: tuple[date, ...]
    therapy: EbrtPlan | Y90Plan
    systemic: tuple[SystemicPlan, ...]
    lesions: tuple[LesionPlan, ...]
    abscopal: AbscopalTruth

    @property
    def t_end(self) -> date:
        """Last day of the local therapy."""
        return self.therapy.end_date if isinstance(self.therapy, EbrtPlan) else self.t0

    @property
    def dose(self) -> AnalyticDose | None:
        """The analytic dose of an EBRT plan (None for Y-90)."""
        if not isinstance(self.therapy, EbrtPlan):
            return None
        target = next(p for p in self.lesions if p.field is FieldStatus.IN_FIELD)
        shape = target.shape_at(PLANNING)
        if shape is None:
            msg = f"in-field lesion {target.lesion_id} must be present on the planning CT"
            raise ValueError(msg)
        return AnalyticDose(
            target=shape,
            prescription_gy=self.therapy.prescription_gy,
            sigma_mm=self.therapy.sigma_mm,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _LesionSpec:
    lesion_id: str
    site: Site
    kind: LesionKind
    field: FieldStatus
    scales: tuple[float, ...]
    hu: tuple[float, ...] | None = None  # None: the kind's HU at every date
    shape: Ellipsoid | None = None  # a fixed placement instead of the site's (no jitter)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Scenario:
    primary_cancer: str
    sex: Literal["F", "M"] | None
    local: Literal["y90", "ebrt"]
    lesions: tuple[_LesionSpec, ...]
    abscopal: AbscopalTruth
    prescription_gy: float = 0.0
    fractions: int = 0
    last_day: int = 0  # t_end − t0 (days)
    technique: Literal["ebrt", "sbrt"] = "ebrt"
    systemic: tuple[tuple[str, DrugClass, int, int | None], ...] = ()  # start, stop: days from t0


_LYTIC, _BLASTIC, _MIXED = LesionKind.LYTIC, LesionKind.BLASTIC, LesionKind.MIXED
_IN, _OUT = FieldStatus.IN_FIELD, FieldStatus.OUT_OF_FIELD
_NONE = AbscopalTruth(status="not_abscopal", certainty=None, lesions=())


def _target(kind: LesionKind = _LYTIC) -> _LesionSpec:
    return _LesionSpec(
        lesion_id="B1", site="target_vertebra", kind=kind, field=_IN, scales=IN_FIELD
    )


_TABLE: Final[dict[str, _Scenario]] = {
    "a": _Scenario(
        primary_cancer="hcc",
        sex=None,
        local="y90",
        lesions=(
            _LesionSpec(
                lesion_id="H1", site="liver", kind=LesionKind.HCC, field=_IN, scales=IN_FIELD
            ),
            _LesionSpec(
                lesion_id="B1",
                site="vertebra",
                kind=_LYTIC,
                field=_OUT,
                scales=(0.97, 1.0, 0.90, 0.62, 0.52),
            ),
            _LesionSpec(
                lesion_id="B2",
                site="ilium",
                kind=_MIXED,
                field=_OUT,
                scales=(0.97, 1.0, 0.90, 0.62, 0.52),
            ),
            _LesionSpec(  # last: the seed's draws for H1, B1 and B2 stay as they were
                lesion_id="S1",
                site="liver",
                kind=LesionKind.SOFT_TISSUE,
                field=FieldStatus.UNCERTAIN,
                scales=(0.99, 1.0, 1.01, 0.99, 1.0),
                hu=(HU_HCC,) * 5,
                shape=_NEAR_LOADED_LIVER,
            ),
        ),
        systemic=(("sorafenib", DrugClass.TARGETED, -300, -120),),
        abscopal=AbscopalTruth(status="abscopal", certainty="A", lesions=("B1", "B2")),
    ),
    "b": _Scenario(
        primary_cancer="nsclc",
        sex=None,
        local="ebrt",
        prescription_gy=24.0,
        fractions=3,
        last_day=4,
        technique="sbrt",
        lesions=(
            _target(),
            _LesionSpec(
                lesion_id="B2",
                site="rib",
                kind=_LYTIC,
                field=_OUT,
                scales=(0.96, 1.0, 0.92, 0.64, 0.60),
            ),
            _LesionSpec(
                lesion_id="B3",
                site="adjacent_vertebra",
                kind=_BLASTIC,
                field=FieldStatus.LOW_DOSE,
                scales=(0.99, 1.0, 1.02, 0.98, 1.0),
            ),
        ),
        systemic=(("pembrolizumab", DrugClass.IMMUNOTHERAPY, -180, None),),
        abscopal=AbscopalTruth(status="abscopal", certainty="B", lesions=("B2",)),
    ),
    "c": _Scenario(
        primary_cancer="breast",
        sex="F",
        local="ebrt",
        prescription_gy=30.0,
        fractions=10,
        last_day=13,
        lesions=(
            _target(),
            _LesionSpec(
                lesion_id="B2",
                site="rib",
                kind=_LYTIC,
                field=_OUT,
                scales=(0.97, 1.0, 1.10, 1.25, 1.40),
            ),
            _LesionSpec(
                lesion_id="B3",
                site="ilium",
                kind=_MIXED,
                field=_OUT,
                scales=(0.97, 1.0, 1.10, 1.25, 1.40),
            ),
        ),
        abscopal=_NONE,
    ),
    "d": _Scenario(
        primary_cancer="breast",
        sex="F",
        local="ebrt",
        prescription_gy=30.0,
        fractions=10,
        last_day=13,
        lesions=(
            _target(),
            _LesionSpec(
                lesion_id="B2",
                site="rib",
                kind=_LYTIC,
                field=_OUT,
                scales=(0.97, 1.0, 0.90, 0.62, 0.55),
            ),
        ),
        systemic=(
            ("palbociclib", DrugClass.TARGETED, 21, None),
            ("letrozole", DrugClass.HORMONAL, 21, None),
        ),
        abscopal=AbscopalTruth(status="indeterminate", certainty="C", lesions=("B2",)),
    ),
    "e": _Scenario(
        primary_cancer="breast",
        sex="F",
        local="ebrt",
        prescription_gy=20.0,
        fractions=5,
        last_day=4,
        lesions=(
            _target(),
            _LesionSpec(
                lesion_id="B2",
                site="ilium",
                kind=_LYTIC,
                field=_OUT,
                scales=(0.99, 1.0, 1.01, 0.99, 1.0),
                hu=(HU_LYTIC, HU_LYTIC, HU_LYTIC, HU_LYTIC, HU_BLASTIC),
            ),
        ),
        abscopal=AbscopalTruth(status="abscopal", certainty="B", lesions=("B2",)),
    ),
    "f": _Scenario(
        primary_cancer="prostate",
        sex="M",
        local="ebrt",
        prescription_gy=20.0,
        fractions=5,
        last_day=4,
        lesions=(
            _target(_BLASTIC),
            _LesionSpec(
                lesion_id="B2",
                site="ilium",
                kind=_BLASTIC,
                field=_OUT,
                scales=(0.98, 1.0, 1.02, 0.99, 1.01),
            ),
            _LesionSpec(
                lesion_id="N1",
                site="femur",
                kind=_BLASTIC,
                field=FieldStatus.UNCERTAIN,
                scales=(0.0, 0.0, 0.0, 0.75, 1.0),
            ),
        ),
        abscopal=_NONE,
    ),
    "g": _Scenario(
        primary_cancer="breast",
        sex="F",
        local="ebrt",
        prescription_gy=30.0,
        fractions=10,
        last_day=13,
        lesions=(
            _target(),
            _LesionSpec(
                lesion_id="B2",
                site="rib",
                kind=_LYTIC,
                field=_OUT,
                scales=(0.97, 1.0, 0.90, 0.62, 0.55),
            ),
        ),
        systemic=(("capecitabine", DrugClass.CHEMOTHERAPY, 21, None),),
        abscopal=_NONE,
    ),
}


def plan_patient(*, scenario: str, seed: int, index: int) -> PatientPlan:
    """Draw one patient of `scenario` from a generator seeded with (seed, index, scenario)."""
    if scenario not in _TABLE:
        msg = f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}"
        raise ValueError(msg)
    if seed < 0 or index < 0:
        msg = f"seed and index must be >= 0, got seed={seed}, index={index}"
        raise ValueError(msg)
    spec = _TABLE[scenario]
    rng = np.random.default_rng([seed, index, SCENARIOS.index(scenario)])
    t0 = BASE_T0 + timedelta(days=int(rng.integers(0, MAX_SHIFT_DAYS + 1)))
    sex: Literal["F", "M"] = spec.sex or ("F" if rng.random() < 0.5 else "M")
    age_days = int(rng.integers(45 * 365, 80 * 365))
    weight_kg = round(float(rng.uniform(55.0, 95.0)), 1)
    height_m = round(float(rng.uniform(1.55, 1.90)), 2)
    sites = draw_sites(rng)
    therapy = _therapy(spec, t0, rng)
    lesions: list[LesionPlan] = []
    for lesion in spec.lesions:
        jitter = 1.0 if lesion.site == "femur" else float(rng.uniform(0.92, 1.08))
        if lesion.site == "adjacent_vertebra":
            continue  # placed against the dose below
        lesions.append(_lesion(lesion, _readable_shape(lesion, sites, jitter)))
    if isinstance(therapy, EbrtPlan):
        target_shape = lesions[0].shape
        dose = AnalyticDose(
            target=target_shape, prescription_gy=therapy.prescription_gy, sigma_mm=therapy.sigma_mm
        )
        for lesion in spec.lesions:
            if lesion.site == "adjacent_vertebra":
                lesions.append(_lesion(lesion, low_dose_shape(dose, sites)))
    systemic = tuple(
        SystemicPlan(
            agent=agent,
            drug_class=drug_class,
            start_date=t0 + timedelta(days=start),
            stop_date=None if stop is None else t0 + timedelta(days=stop),
        )
        for agent, drug_class, start, stop in spec.systemic
    )
    plan = PatientPlan(
        patient_id=f"SYN-{seed:04d}-{index:03d}",
        scenario=scenario,
        primary_cancer=spec.primary_cancer,
        sex=sex,
        birth_date=t0 - timedelta(days=age_days),
        weight_kg=weight_kg,
        height_m=height_m,
        t0=t0,
        ct_dates=tuple(t0 + timedelta(days=d) for d in CT_OFFSETS_DAYS),
        therapy=therapy,
        systemic=systemic,
        lesions=tuple(lesions),
        abscopal=spec.abscopal,
    )
    check_plan(plan)
    return plan


def _therapy(spec: _Scenario, t0: date, rng: np.random.Generator) -> EbrtPlan | Y90Plan:
    if spec.local == "y90":
        activity_gbq = round(float(rng.uniform(2.0, 3.0)), 2)
        return Y90Plan(
            therapy_id="Y90-1",
            administered=datetime.combine(t0, Y90_ADMINISTRATION),
            activity_bq=float(round(activity_gbq * BQ_PER_GBQ)),
            pet_start=datetime.combine(t0 + timedelta(days=1), Y90_PET_START),
            pet_frame_s=Y90_PET_FRAME_S,
        )
    return EbrtPlan(
        therapy_id="RT-1",
        start_date=t0,
        end_date=t0 + timedelta(days=spec.last_day),
        prescription_gy=spec.prescription_gy,
        fractions=spec.fractions,
        technique=spec.technique,
        sigma_mm=SIGMA_SBRT_MM if spec.technique == "sbrt" else SIGMA_CONVENTIONAL_MM,
    )


def _readable_shape(spec: _LesionSpec, sites: Sites, jitter: float) -> Ellipsoid:
    """The site's shape; for out-of-field lesions the nearest size a reader sees as planned."""
    if spec.shape is not None:
        return spec.shape
    if spec.field is not FieldStatus.OUT_OF_FIELD:
        return site_shape(spec.site, sites, jitter=jitter)
    for candidate in jitter_candidates(jitter):
        shape = site_shape(spec.site, sites, jitter=candidate)
        if reads_as_planned(spec.scales, shape, baseline=PLANNING):
            return shape
    msg = (
        f"{spec.lesion_id}: no size of the {spec.site} lesion within ±10 % reads as its planned "
        f"course {spec.scales} on the CT grids; change its semi-axes in placement.site_shape"
    )
    raise ValueError(msg)


def _lesion(spec: _LesionSpec, shape: Ellipsoid) -> LesionPlan:
    hu = spec.hu if spec.hu is not None else (_HU[spec.kind],) * len(spec.scales)
    return LesionPlan(
        lesion_id=spec.lesion_id,
        organ=ORGAN[spec.site],
        kind=spec.kind,
        field=spec.field,
        shape=shape,
        scales=spec.scales,
        hu=hu,
    )


def check_plan(plan: PatientPlan) -> None:
    """Refuse a plan whose lesions would not have the class and size the scenario promises."""
    for lesion in plan.lesions:
        baseline = lesion.shape_at(PLANNING)
        if baseline is not None and baseline.diameter_long_mm < 18.0:
            msg = f"{lesion.lesion_id}: baseline LD {baseline.diameter_long_mm:.1f} mm < 18 mm"
            raise ValueError(msg)
        watched = {FieldStatus.OUT_OF_FIELD, FieldStatus.LOW_DOSE}
        if lesion.field in watched and not reads_as_planned(
            lesion.scales, lesion.shape, baseline=PLANNING
        ):
            msg = (
                f"{lesion.lesion_id}: its voxel masks would not read as its course {lesion.scales}"
            )
            raise ValueError(msg)
    dose = plan.dose
    if dose is None:
        return
    rx = dose.prescription_gy
    for lesion in plan.lesions:
        baseline = lesion.shape_at(PLANNING)
        if baseline is None:
            continue
        mean_gy = float(dose.dose_gy(lattice_points(baseline)).mean())
        if lesion.field is FieldStatus.OUT_OF_FIELD:
            largest = lesion.shape.scaled(max(lesion.scales))
            gap_mm = float(dose.distance_to_ptv_mm(lattice_points(largest)).min())
            if gap_mm < OUT_OF_FIELD_MIN_MM or mean_gy >= OUT_OF_FIELD_MAX_GY:
                msg = (
                    f"{lesion.lesion_id}: out-of-field lesion {gap_mm:.0f} mm from the PTV with "
                    f"Dmean {mean_gy:.2f} Gy; it must be >= {OUT_OF_FIELD_MIN_MM} mm and "
                    f"< {OUT_OF_FIELD_MAX_GY} Gy"
                )
                raise ValueError(msg)
        if lesion.field is FieldStatus.LOW_DOSE and not (
            LOW_DOSE_MIN_GY <= mean_gy <= LOW_DOSE_MAX_FRACTION * rx
        ):
            msg = (
                f"{lesion.lesion_id}: low-dose Dmean {mean_gy:.2f} Gy outside [1.5, {0.4 * rx}] Gy"
            )
            raise ValueError(msg)
