"""Statistics on small hand-made frames: Wilson intervals, Kaplan–Meier, logistic caveats."""

from __future__ import annotations

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from abscopal.cohort.stats import incidence, kaplan_meier, logistic, wilson


def _frame(n: int, events: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_key": [f"P{i}" for i in range(n)],
            "primary_cancer": ["breast"] * n,
            "local_therapy": ["radiation"] * n,
            "immunotherapy": [i % 2 == 0 for i in range(n)],
            "dose_class": ["high" if i % 3 else "low" for i in range(n)],
            "abscopal": [i < events for i in range(n)],
            "oof_response": [i < events for i in range(n)],
            "days": [91.0 if i < events else 182.0 for i in range(n)],
            "event": [i < events for i in range(n)],
        }
    )


def test_wilson_is_statsmodels_wilson() -> None:
    assert wilson(1, 96) == pytest.approx(proportion_confint(1, 96, method="wilson"))


def test_incidence_overall_and_by_group() -> None:
    table = incidence(_frame(20, 4))
    overall = table.query("group == 'overall'").iloc[0]
    assert (overall["patients"], overall["events"], overall["proportion"]) == (20, 4, 0.2)
    assert set(table["group"]) == {"overall", "local_therapy", "immunotherapy", "primary_cancer"}


def test_kaplan_meier_censors_at_last_follow_up() -> None:
    km = kaplan_meier(_frame(10, 3))
    assert (km.patients, km.events) == (10, 3)
    assert km.cumulative[-1] == pytest.approx(0.3)
    assert km.median_days is None  # never reaches 50 %
    assert km.median_days_responders == 91.0


def test_logistic_reports_separation_instead_of_numbers() -> None:
    frame = _frame(30, 10)
    frame["oof_response"] = frame["dose_class"] == "low"  # dose class predicts it perfectly
    result = logistic(frame)
    assert result.table.empty
    assert "not estimable" in result.note
    assert any("confounding" in c for c in result.caveats)
