"""Property tests: lesion order does not matter; RECIST's relative rules scale; PD is never PR."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from abscopal.criteria import CRITERIA, LesionReading, PatientSeries, ResponseCategory
from abscopal.model import LesionKind
from abscopal.readings import CtPhase, LesionStatus

C = ResponseCategory
ORGANS = ("liver", "lung", "adrenal", "peritoneum")
START = dt.date(2024, 1, 8)


@st.composite
def series(draw: st.DrawFn) -> PatientSeries:
    """Soft-tissue lesions ≥ 10 mm at baseline, 1–4 follow-ups 8 weeks apart, maybe a new lesion."""
    n_lesions = draw(st.integers(1, 7))
    dates = [START + dt.timedelta(days=56 * i) for i in range(draw(st.integers(2, 5)))]
    readings = []
    for i in range(n_lesions):
        organ = draw(st.sampled_from(ORGANS))
        for j, day in enumerate(dates):
            absent = j > 0 and draw(st.integers(0, 4)) == 0
            readings.append(
                LesionReading(
                    lesion_id=f"L{i}",
                    date=day,
                    organ=organ,
                    kind=LesionKind.SOFT_TISSUE,
                    status=LesionStatus.ABSENT if absent else LesionStatus.PRESENT,
                    diameter_long_mm=None
                    if absent
                    else Decimal(draw(st.integers(10 if j == 0 else 1, 90))),
                    sulpeak=None if absent else Decimal(draw(st.integers(30, 150))) / 10,
                    suvmax=None if absent else Decimal(draw(st.integers(30, 150))) / 10,
                    hu_mean=Decimal(draw(st.integers(10, 90))),
                    ct_phase=CtPhase.PORTAL_VENOUS,
                    liver_sul_mean=Decimal("2.0"),
                    liver_sul_sd=Decimal("0.25"),
                )
            )
    if draw(st.booleans()):
        day = draw(st.sampled_from(dates[1:]))
        readings.append(
            LesionReading(lesion_id="NEW", date=day, organ="bone", diameter_long_mm=Decimal(12))
        )
    return PatientSeries(patient_id="P", readings=tuple(readings))


def categories(key: str, s: PatientSeries) -> list[ResponseCategory]:
    result = CRITERIA[key].assess(s)
    return [a.category for a in result.timepoints] + [result.best_response.category]


@settings(max_examples=60, deadline=None)
@given(series(), st.randoms(use_true_random=False))
def test_categories_do_not_depend_on_lesion_order(s: PatientSeries, rnd: object) -> None:
    shuffled = list(s.readings)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    other = dataclasses.replace(s, readings=tuple(reversed(shuffled)))
    for key in CRITERIA:
        assert categories(key, s) == categories(key, other), key


@settings(max_examples=60, deadline=None)
@given(series(), st.integers(10, 40))
def test_recist_relative_rules_are_scale_invariant(s: PatientSeries, tenths: int) -> None:
    """Scaling every size by k ≥ 1 keeps the categories when the absolute 5 mm floor is off.

    The 5 mm floor (R-T2) and the 10 mm measurability floor (R-M) are absolute by design; with
    `pd_min_abs_mm=0` and every baseline lesion ≥ 10 mm, only the relative rules remain.
    """
    k = Decimal(tenths) / 10

    def scale(r: LesionReading) -> LesionReading:
        ld = r.diameter_long_mm
        return dataclasses.replace(r, diameter_long_mm=None if ld is None else ld * k)

    scaled = dataclasses.replace(s, readings=tuple(scale(r) for r in s.readings))
    recist = CRITERIA["recist11"].with_params(pd_min_abs_mm=Decimal(0))
    before = [a.category for a in recist.assess(s).timepoints]
    after = [a.category for a in recist.assess(scaled).timepoints]
    assert before == after


@settings(max_examples=80, deadline=None)
@given(series())
def test_pd_is_never_reported_as_pr(s: PatientSeries) -> None:
    for key in ("recist11", "irecist", "mrecist"):
        for a in CRITERIA[key].assess(s).timepoints:
            if a.category not in {C.PR, C.iPR}:
                continue
            current, nadir = a.current_value, a.nadir_value
            assert current is not None
            assert nadir is not None
            assert not (current >= Decimal("1.2") * nadir and current - nadir >= 5), key
            assert "equivocal_new_lesion" in a.flags or not any(
                r.lesion_id == "NEW" and r.date == a.date for r in s.readings
            ), key
