"""A synthetic cohort of 50 patients: findings equal truth; statistics match the generator."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from abscopal.cohort.stats import summarize, wilson
from conftest import EARLY_FRACTION, INCIDENCE, PATIENTS, Reference


def test_every_patient_finding_equals_its_truth(reference: Reference) -> None:
    patients = reference.tables["patients"].set_index("patient_key")
    assert len(patients) == PATIENTS
    for folder in reference.folders:
        truth = json.loads((folder / "truth.json").read_text())["abscopal"]
        row = patients.loc[folder.name]
        assert row["status"] == "done"
        assert row["abscopal_status"] == truth["status"], folder.name
        assert (row["certainty"] or None) == truth["certainty"], folder.name
        assert sorted(json.loads(row["abscopal_lesions"])) == sorted(truth["lesions"])


def test_incidence_and_time_to_response_match_the_generator(reference: Reference) -> None:
    stats = summarize(reference.tables)
    truth = reference.truth
    overall = stats.incidence.query("group == 'overall'").iloc[0]
    assert overall["patients"] == PATIENTS
    assert overall["events"] == int(truth["abscopal"].sum())  # exactly the drawn responders
    # the generator's incidence lies within the Wilson 95 % interval of the estimate
    assert overall["ci_low"] <= INCIDENCE <= overall["ci_high"]
    assert (overall["ci_low"], overall["ci_high"]) == pytest.approx(
        wilson(int(overall["events"]), PATIENTS)
    )
    responders = truth.loc[truth["abscopal"] == 1, "response_day"]
    assert stats.km.events == len(responders)
    assert stats.km.median_days_responders == pytest.approx(responders.median())
    # early responders (day 91): the generator's share, within sampling error
    early = (responders == 91).mean()
    sd = (EARLY_FRACTION * (1 - EARLY_FRACTION) / len(responders)) ** 0.5
    assert abs(early - EARLY_FRACTION) < 3 * sd
    # Kaplan–Meier cumulative incidence at day 182 equals the observed proportion (no early censoring)
    assert stats.km.cumulative[-1] == pytest.approx(overall["proportion"])
    by_immuno = stats.incidence.query("group == 'immunotherapy'")
    assert set(by_immuno["level"]) == {"True", "False"}
    assert by_immuno["patients"].sum() == PATIENTS
    assert isinstance(stats.logistic.table, pd.DataFrame)
    assert stats.logistic.caveats


def test_each_date_keeps_its_category_by_criterion(reference: Reference) -> None:
    timepoints = reference.tables["assessment_timepoints"]
    best = reference.tables["criteria_responses"]
    assert not timepoints.empty
    for folder in reference.folders:
        result = json.loads((reference.out / "patients" / folder.name / "results.json").read_text())
        expected = sorted(
            (criterion, scope, t["date"], t["category"])
            for criterion, scopes in result["criteria"].items()
            for scope, assessed in scopes.items()
            for t in assessed["timepoints"]
        )
        rows = timepoints[timepoints["patient_key"] == folder.name]
        stored = sorted(
            (r.criterion, r.scope, r.date.strftime("%Y-%m-%d"), r.category)
            for r in rows.itertuples()
        )
        assert stored == expected, folder.name
        responses = best[best["patient_key"] == folder.name]
        assert {(r.criterion, r.scope): r.best_response for r in responses.itertuples()} == {
            (criterion, scope): assessed["best_response"]
            for criterion, scopes in result["criteria"].items()
            for scope, assessed in scopes.items()
        }
