"""The abscopal golden cases A1–A5 of CLINICAL.md §10, run through field rules and the engine."""

from __future__ import annotations

from datetime import date

import pytest

from abscopal.abscopal import Grade, Outcome, assess_lesion, assess_patient
from abscopal.dose.field import classify_ebrt, classify_y90
from abscopal.model import (
    DrugClass,
    FieldStatus,
    Lesion,
    LesionKind,
    Measurement,
    RadiationCourse,
    Radioembolization,
    SystemicTherapy,
)

RIB = Lesion(lesion_id="R1", organ="rib", kind=LesionKind.LYTIC)


def series(*points: tuple[str, float]) -> list[Measurement]:
    return [
        Measurement(
            lesion_id="R1",
            date=date.fromisoformat(d),
            voxel_count=100,
            volume_ml=1.0,
            diameter_long_mm=ld,
            diameter_short_mm=ld / 2,
        )
        for d, ld in points
    ]


def ebrt_field(dose_gy: float, distance_mm: float, overlap: int = 0, rx: float = 20.0):
    return classify_ebrt(
        lesion_id="R1",
        therapy_id="RT-1",
        prescription_gy=rx,
        overlap_voxels=overlap,
        fraction_in_grid=1.0,
        dose_mean_gy=dose_gy,
        dose_max_gy=dose_gy,
        min_distance_to_ptv_mm=distance_mm,
    )


def course(start: str, end: str, rx: float, fx: int) -> RadiationCourse:
    return RadiationCourse(
        therapy_id="RT-1",
        start_date=date.fromisoformat(start),
        end_date=date.fromisoformat(end),
        prescription_gy=rx,
        fractions=fx,
    )


def test_a1_grade_a() -> None:
    lesion_field = ebrt_field(0.3, 250.0)
    assert lesion_field.field is FieldStatus.OUT_OF_FIELD
    assert "strict_distance" in lesion_field.flags
    stopped = SystemicTherapy(
        agent="paclitaxel",
        drug_class=DrugClass.CHEMOTHERAPY,
        start_date=date(2023, 3, 1),
        stop_date=date(2023, 6, 30),
    )
    ms = series(("2023-11-13", 27), ("2024-01-22", 30), ("2024-04-22", 19), ("2024-06-17", 17))
    f = assess_lesion(
        RIB, ms, lesion_field, course("2024-02-05", "2024-02-09", 20, 5), systemic=[stopped]
    )
    assert f.grade is Grade.A
    assert f.t1 == date(2024, 4, 22)
    assert f.t2 == date(2024, 6, 17)
    assert f.pct_change == pytest.approx(-36.7, abs=0.05)
    assert {"confirmed", "typical_timing", "strict_distance"} <= set(f.flags)
    verdict = assess_patient([f])
    assert (verdict.status, verdict.certainty, verdict.lesions) == ("abscopal", Grade.A, ("R1",))
    assert verdict.abscopal_response == "Y"


def test_a2_grade_b_on_continued_immunotherapy() -> None:
    pembro = SystemicTherapy(
        agent="pembrolizumab", drug_class=DrugClass.IMMUNOTHERAPY, start_date=date(2023, 8, 1)
    )
    ms = series(("2023-11-20", 24), ("2024-01-15", 26), ("2024-04-15", 17), ("2024-06-10", 16))
    f = assess_lesion(
        RIB,
        ms,
        ebrt_field(0.6, 140.0, rx=24),
        course("2024-01-29", "2024-02-02", 24, 3),
        systemic=[pembro],
    )
    assert f.grade is Grade.B
    assert "possible_pseudoprogression" in f.flags
    assert f.pct_change == pytest.approx(-34.6, abs=0.05)


@pytest.mark.parametrize(
    ("drug_class", "outcome", "grade"),
    [
        (DrugClass.TARGETED, Outcome.GRADED, Grade.C),
        (DrugClass.CHEMOTHERAPY, Outcome.NOT_ABSCOPAL, None),
    ],
)
def test_a3_new_systemic_therapy(
    drug_class: DrugClass, outcome: Outcome, grade: Grade | None
) -> None:
    new = SystemicTherapy(agent="x", drug_class=drug_class, start_date=date(2024, 4, 1))
    ms = series(("2024-01-08", 28), ("2024-02-26", 32), ("2024-05-27", 21), ("2024-07-22", 19))
    f = assess_lesion(
        RIB,
        ms,
        ebrt_field(0.4, 120.0, rx=30),
        course("2024-03-04", "2024-03-15", 30, 10),
        systemic=[new],
    )
    assert (f.outcome, f.grade) == (outcome, grade)
    expected_status = "indeterminate" if grade else "not_abscopal"
    assert assess_patient([f]).status == expected_status


def test_a4_overlap_is_in_field_whatever_the_dose() -> None:
    lesion_field = ebrt_field(9.5, 0.0, overlap=3, rx=24)
    assert (lesion_field.field, lesion_field.rule) == (FieldStatus.IN_FIELD, "F1")
    assert ebrt_field(9.5, 5.0, overlap=0, rx=24).field is FieldStatus.LOW_DOSE
    ms = series(("2024-02-01", 28), ("2024-05-13", 15))
    f = assess_lesion(RIB, ms, lesion_field, course("2024-02-12", "2024-02-12", 24, 1))
    assert f.outcome is Outcome.IN_FIELD
    assert f.grade is None


@pytest.mark.parametrize(("imaged", "grade"), [(True, Grade.A), (False, Grade.C)])
def test_a5_y90(imaged: bool, grade: Grade) -> None:
    therapy = Radioembolization(therapy_id="Y90-1", date=date(2024, 2, 12), activity_bq=2.5e9)
    lesion_field = classify_y90(
        lesion_id="R1",
        therapy_id="Y90-1",
        organ="vertebra",
        imaging_available=imaged,
        dose_mean_gy=0.0 if imaged else None,
    )
    assert lesion_field.field is (FieldStatus.OUT_OF_FIELD if imaged else FieldStatus.UNCERTAIN)
    sorafenib = SystemicTherapy(
        agent="sorafenib",
        drug_class=DrugClass.TARGETED,
        start_date=date(2023, 5, 1),
        stop_date=date(2023, 10, 15),
    )
    ms = series(("2023-11-20", 35), ("2024-02-05", 38), ("2024-05-13", 25), ("2024-07-08", 24))
    f = assess_lesion(RIB, ms, lesion_field, therapy, systemic=[sorafenib])
    assert f.grade is grade
    assert f.pct_change == pytest.approx(-34.2, abs=0.05)


def test_response_before_therapy_is_not_abscopal() -> None:
    ms = series(("2023-11-13", 45), ("2024-01-22", 30), ("2024-04-22", 19))
    f = assess_lesion(RIB, ms, ebrt_field(0.3, 250.0), course("2024-02-05", "2024-02-09", 20, 5))
    assert f.outcome is Outcome.NOT_ABSCOPAL
    assert "response_precedes_therapy" in f.reasons[-1]


def test_old_baseline_is_not_evaluable_and_patient_indeterminate() -> None:
    ms = series(("2023-10-01", 30), ("2024-04-22", 19))
    f = assess_lesion(RIB, ms, ebrt_field(0.3, 250.0), course("2024-02-05", "2024-02-09", 20, 5))
    assert f.outcome is Outcome.NOT_EVALUABLE
    verdict = assess_patient([f])
    assert (verdict.status, verdict.certainty, verdict.abscopal_response) == (
        "indeterminate",
        None,
        "UNK",
    )


def test_progression_is_no_response_and_not_abscopal() -> None:
    ms = series(("2023-11-13", 20), ("2024-01-22", 20), ("2024-04-22", 25), ("2024-06-17", 28))
    f = assess_lesion(RIB, ms, ebrt_field(0.3, 250.0), course("2024-02-05", "2024-02-09", 20, 5))
    assert f.outcome is Outcome.NO_RESPONSE
    assert "progression" in f.reasons[-1]
    verdict = assess_patient([f])
    assert (verdict.status, verdict.abscopal_response, verdict.out_of_field_response_rate) == (
        "not_abscopal",
        "N",
        0.0,
    )


def test_exactly_thirty_percent_is_a_response() -> None:
    """CLINICAL §0: 21 ≤ 0.7 × 30 must hold in exact arithmetic."""
    ms = series(("2023-11-13", 30), ("2024-01-22", 30), ("2024-04-22", 21), ("2024-06-17", 21))
    f = assess_lesion(RIB, ms, ebrt_field(0.3, 250.0), course("2024-02-05", "2024-02-09", 20, 5))
    assert f.grade is Grade.A


def sclerosing(points: list[tuple[str, float]]) -> list[Measurement]:
    """A lytic lesion of constant size whose sclerotic fraction is given per date."""
    return [
        Measurement(
            lesion_id="R1",
            date=date.fromisoformat(d),
            voxel_count=100,
            volume_ml=1.0,
            diameter_long_mm=25.0,
            diameter_short_mm=15.0,
            hu_mean=30 + 800 * f,
            sclerotic_fraction=f,
        )
        for d, f in points
    ]


@pytest.mark.parametrize(
    ("last_scan", "grade"),
    [("2024-04-22", Grade.C), ("2024-08-19", Grade.B)],  # ≤ 3 months after t0 → C; later → B
)
def test_sclerosis_only_is_qualitative(last_scan: str, grade: Grade) -> None:
    ms = sclerosing(
        [("2023-11-13", 0.0), ("2024-01-22", 0.02), ("2024-03-04", 0.03), (last_scan, 0.9)]
    )
    f = assess_lesion(RIB, ms, ebrt_field(0.3, 250.0), course("2024-02-05", "2024-02-09", 20, 5))
    assert (f.metric, f.grade) == ("mda_sclerosis", grade)


@pytest.mark.parametrize(
    ("dose", "fraction", "grade"),
    [(5.0, 1.0, Grade.B), (22.0, 1.0, Grade.C), (None, 0.5, Grade.C)],  # low dose; > 20 Gy; unknown
)
def test_dose_caps_the_grade(dose: float | None, fraction: float, grade: Grade) -> None:
    lesion_field = classify_ebrt(
        lesion_id="R1",
        therapy_id="RT-1",
        prescription_gy=60.0,
        overlap_voxels=0,
        fraction_in_grid=fraction,
        dose_mean_gy=dose,
        dose_max_gy=dose,
        min_distance_to_ptv_mm=30.0,
    )
    ms = series(("2023-11-13", 27), ("2024-01-22", 30), ("2024-04-22", 19), ("2024-06-17", 17))
    f = assess_lesion(RIB, ms, lesion_field, course("2024-02-05", "2024-02-09", 60, 30))
    assert f.grade is grade


def test_other_local_therapy_elsewhere_is_flagged() -> None:
    from abscopal.model import OtherLocalTherapy

    rfa = OtherLocalTherapy(
        therapy_id="RFA", kind="ablation", date=date(2024, 3, 1), target_lesion_ids=("L9",)
    )
    ms = series(("2023-11-13", 27), ("2024-01-22", 30), ("2024-04-22", 19), ("2024-06-17", 17))
    f = assess_lesion(
        RIB,
        ms,
        ebrt_field(0.3, 250.0),
        course("2024-02-05", "2024-02-09", 20, 5),
        other_local=[rfa],
    )
    assert "other_local_therapy_in_window" in f.flags
    assert f.grade is Grade.A
