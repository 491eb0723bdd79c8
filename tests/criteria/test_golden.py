"""Golden tables (tests/data/golden, origin in its README): CSV inputs → expected categories.

Each expected row is its own case; every category of every registered criterion must have a case.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest

from abscopal.criteria import CRITERIA, SeriesAssessment
from abscopal.io.table import read_table

GOLDEN = Path(__file__).parents[1] / "data" / "golden"


def _expected(key: str) -> list[dict[str, str]]:
    with (GOLDEN / f"{key}.expected.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


CASES = [(key, row) for key in CRITERIA for row in _expected(key)]


@cache
def _run(key: str, patient_id: str, params: str) -> SeriesAssessment:
    series = {s.patient_id: s for s in read_table(GOLDEN / f"{key}.csv")}
    changes = dict(item.split("=", 1) for item in params.split(";") if item)
    return CRITERIA[key].with_params(**changes).assess(series[patient_id])


@pytest.mark.parametrize(
    ("key", "row"),
    CASES,
    ids=[f"{k}-{r['patient_id']}-{r['date']}-{r['params'] or 'default'}" for k, r in CASES],
)
def test_golden_case(key: str, row: dict[str, str]) -> None:
    result = _run(key, row["patient_id"], row["params"])
    if row["date"] == "BOR":
        got = result.best_response
    else:
        [got] = [a for a in result.timepoints if a.date.isoformat() == row["date"]]
    assert got.category.value == row["expected"], (got.rules, got.flags, got.ne_reason)
    if got.category.value == "NE":
        assert got.ne_reason


@pytest.mark.parametrize("key", list(CRITERIA))
def test_every_category_has_a_golden_case(key: str) -> None:
    expected = {row["expected"] for row in _expected(key)}
    categories = {c.value for c in CRITERIA[key].categories}
    assert expected == categories  # both directions: no category without a case, no stray name


def test_at_least_sixty_golden_cases() -> None:
    assert len(CASES) >= 60
