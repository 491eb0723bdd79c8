"""The registry, the shared vocabulary and the behaviours every criterion shares."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from abscopal.criteria import CRITERIA, Assessment, LesionReading, PatientSeries, ResponseCategory
from abscopal.criteria._base import GenericResponse, exact, group_timepoints
from abscopal.criteria._targets import TargetParams, select
from abscopal.model import LesionKind

C = ResponseCategory
RULE_ID = re.compile(r"(\bR-[A-Z]+|\bI[1-6]\b|\bP[0-4]\b|\bM[1-4]\b|§\d)")


def test_registry_has_the_design_names() -> None:
    assert list(CRITERIA) == ["recist11", "irecist", "mrecist", "percist", "eortc", "mda", "choi"]
    for key, criterion in CRITERIA.items():
        assert criterion.key == key


@pytest.mark.parametrize("key", list(CRITERIA))
def test_every_criterion_docstring_cites_its_rules(key: str) -> None:
    criterion = CRITERIA[key]
    doc = type(criterion).__doc__ or ""
    module_doc = __import__(type(criterion).__module__, fromlist=["_"]).__doc__ or ""
    assert "CLINICAL.md §" in doc
    assert RULE_ID.search(doc + module_doc)
    assert re.search(r"\b(19|20)\d\d\b", doc)  # the publication year
    assert "Source" in module_doc or "Sources" in module_doc


def test_generic_meaning_of_every_category() -> None:
    assert C.NON_CR_NON_PD.generic is GenericResponse.STABLE
    assert C.iUPD.generic is GenericResponse.PROGRESSIVE_UNCONFIRMED
    assert C.UPMD.generic is GenericResponse.PROGRESSIVE_UNCONFIRMED
    assert C.CMR.generic is GenericResponse.COMPLETE
    assert C.NE.generic is GenericResponse.NOT_EVALUABLE
    assert all(c.generic for c in C)


def test_ne_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="ne_reason"):
        Assessment(criterion="x", version="1", date=dt.date(2024, 1, 1), category=C.NE)


def test_exact_arithmetic_of_the_spec() -> None:
    assert exact(63) <= Decimal("0.7") * exact(90)  # float says False


def _reading(lid: str, organ: str, ld: int, day: dt.date = dt.date(2024, 1, 8)) -> LesionReading:
    return LesionReading(lesion_id=lid, date=day, organ=organ, diameter_long_mm=Decimal(ld))


def test_auto_selection_two_per_organ_five_in_total() -> None:
    readings = [
        _reading("A1", "liver", 50),
        _reading("A2", "liver", 40),
        _reading("A3", "liver", 45),
        _reading("B1", "lung", 20),
        _reading("B2", "lung", 20),
        _reading("C1", "adrenal", 30),
        _reading("D1", "peritoneum", 15),
        _reading("E1", "lung", 9),
    ]
    series = PatientSeries(patient_id="P", readings=tuple(readings))
    selection = select(group_timepoints(series)[0], TargetParams())
    assert [t.lesion_id for t in selection.targets] == ["A1", "A3", "C1", "B1", "B2"]
    assert {t.lesion_id for t in selection.non_targets} == {"A2", "D1", "E1"}
    reasons = {s.lesion_id: s.reason for s in selection.reasons}
    assert "R-S" in reasons["A1"]
    assert "R-M" in reasons["E1"]


def test_selection_by_kind() -> None:
    day = dt.date(2024, 1, 8)
    readings = (
        LesionReading(
            lesion_id="N1", date=day, kind=LesionKind.NODAL, diameter_short_mm=Decimal(15)
        ),
        LesionReading(
            lesion_id="N2", date=day, kind=LesionKind.NODAL, diameter_short_mm=Decimal(12)
        ),
        LesionReading(
            lesion_id="N3", date=day, kind=LesionKind.NODAL, diameter_short_mm=Decimal(9)
        ),
        LesionReading(
            lesion_id="B1", date=day, kind=LesionKind.BLASTIC, diameter_long_mm=Decimal(30)
        ),
        LesionReading(
            lesion_id="B2", date=day, kind=LesionKind.MIXED, soft_tissue_long_mm=Decimal(10)
        ),
        LesionReading(
            lesion_id="S1", date=day, diameter_long_mm=Decimal(12), slice_thickness_mm=Decimal(7)
        ),
    )
    selection = select(
        group_timepoints(PatientSeries(patient_id="P", readings=readings))[0], TargetParams()
    )
    assert {t.lesion_id for t in selection.targets} == {"N1", "B2"}
    assert {t.lesion_id for t in selection.non_targets} == {"N2", "B1", "S1"}  # N3 is normal


def test_manual_roles_override_selection() -> None:
    day = dt.date(2024, 1, 8)
    from abscopal.readings import Role

    readings = (
        LesionReading(lesion_id="L1", date=day, diameter_long_mm=Decimal(50)),
        LesionReading(lesion_id="L2", date=day, diameter_long_mm=Decimal(20), role=Role.TARGET),
    )
    selection = select(
        group_timepoints(PatientSeries(patient_id="P", readings=readings))[0], TargetParams()
    )
    assert [t.lesion_id for t in selection.targets] == ["L2"]
    assert [t.lesion_id for t in selection.non_targets] == ["L1"]


def test_subset_runs_on_the_named_lesions_only() -> None:
    base, fu = dt.date(2024, 1, 8), dt.date(2024, 3, 4)
    readings = (
        _reading("IN", "lung", 40, base),
        _reading("OUT", "liver", 40, base),
        _reading("IN", "lung", 20, fu),
        _reading("OUT", "liver", 52, fu),
    )
    series = PatientSeries(patient_id="P", readings=readings)
    recist = CRITERIA["recist11"]
    assert recist.assess(series).timepoints[0].category is C.SD  # 80 -> 72
    assert recist.assess(series, lesion_ids=["OUT"]).timepoints[0].category is C.PD
    assert recist.assess(series, lesion_ids=["IN"]).timepoints[0].category is C.PR


def test_timepoint_groups_scans_within_14_days() -> None:
    readings = (
        _reading("L1", "liver", 40, dt.date(2024, 1, 8)),
        _reading("L2", "lung", 30, dt.date(2024, 1, 20)),
        _reading("L1", "liver", 30, dt.date(2024, 3, 4)),
        _reading("L2", "lung", 15, dt.date(2024, 3, 18)),
    )
    tps = group_timepoints(PatientSeries(patient_id="P", readings=readings))
    assert [tp.date for tp in tps] == [dt.date(2024, 1, 20), dt.date(2024, 3, 18)]
    [a] = CRITERIA["recist11"].assess(PatientSeries(patient_id="P", readings=readings)).timepoints
    assert a.category is C.PR  # 70 -> 45


def test_no_follow_up_is_ne_with_reason() -> None:
    series = PatientSeries(patient_id="P", readings=(_reading("L1", "liver", 40),))
    for criterion in CRITERIA.values():
        result = criterion.assess(series)
        assert result.best_response.category is C.NE
        assert result.best_response.ne_reason == "no_follow_up"


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'pd_min'"):
        CRITERIA["recist11"].with_params(pd_min="5")


def test_unconfirmed_response_without_a_later_scan_is_provisional() -> None:
    base, fu = dt.date(2024, 1, 8), dt.date(2024, 3, 4)
    series = PatientSeries(
        patient_id="P",
        readings=(_reading("L1", "liver", 40, base), _reading("L1", "liver", 20, fu)),
    )
    best = CRITERIA["recist11"].with_params(confirm_response="true").assess(series).best_response
    assert best.category is C.SD  # unconfirmed PR at 56 d ≥ 42 d
    assert best.provisional
    assert "awaiting_confirmation" in best.flags
