"""The cohort generator draws incidence and timing as asked, deterministically."""

from __future__ import annotations

import pytest

from abscopal.synth.cohort import EARLY_DAY, LATE_DAY, plan_cohort


def test_plan_is_deterministic_and_follows_incidence_and_timing() -> None:
    plan = plan_cohort(patients=2000, seed=3, incidence=0.2, early_fraction=0.75)
    assert plan == plan_cohort(patients=2000, seed=3, incidence=0.2, early_fraction=0.75)
    responders = [m for m in plan if m.abscopal]
    assert len(responders) / 2000 == pytest.approx(0.2, abs=0.03)
    early = sum(m.response_day == EARLY_DAY for m in responders) / len(responders)
    assert early == pytest.approx(0.75, abs=0.06)
    assert {m.response_day for m in responders} == {EARLY_DAY, LATE_DAY}
    assert all(m.response_day is None for m in plan if not m.abscopal)


@pytest.mark.parametrize("incidence", [-0.1, 1.5])
def test_incidence_outside_0_1_is_refused(incidence: float) -> None:
    with pytest.raises(ValueError, match="incidence"):
        plan_cohort(patients=3, seed=0, incidence=incidence)
