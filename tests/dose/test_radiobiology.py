"""BED/EQD2 against every row of ../shared/reference/LQ_worked_examples.csv (DOSIMETRY §6, test 14)."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from abscopal.dose.radiobiology import (
    LqParameters,
    bed_fractionated,
    bed_y90,
    dale_factor,
    eqd2_from_bed,
    lesion_bed,
)
from shared_data import shared_path


def _rows() -> list[dict[str, str]]:
    path = shared_path("reference", "LQ_worked_examples.csv")
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def _fractions(schedule: str) -> int:
    match = re.search(r"(?:x|/)\s*(\d+)", schedule)
    assert match, schedule
    return int(match.group(1))


def test_every_worked_example() -> None:
    rows = _rows()
    assert len(rows) == 79
    for row in rows:
        dose, ab = float(row["D_Gy"]), float(row["alpha_beta_Gy"])
        if row["modality"] == "EBRT":
            bed = float(bed_fractionated(dose, _fractions(row["schedule"]), alpha_beta_gy=ab))
            places = 0.005
        else:
            p = LqParameters(alpha_beta_gy=ab, repair_half_time_h=float(row["T_rep_h"]))
            bed = float(bed_y90(dose, p))
            places = 0.0005
        eqd2 = float(eqd2_from_bed(bed, alpha_beta_gy=ab))
        assert bed == pytest.approx(float(row["BED_Gy"]), abs=places), row
        assert eqd2 == pytest.approx(float(row["EQD2_Gy"]), abs=places), row


@pytest.mark.parametrize(("t_rep", "factor"), [(0.5, 0.00774), (1.5, 0.02287), (2.5, 0.03754)])
def test_dale_factor(t_rep: float, factor: float) -> None:
    assert dale_factor(repair_half_time_h=t_rep) == pytest.approx(factor, abs=1e-5)


def test_named_examples() -> None:
    assert float(bed_fractionated(8, 1, alpha_beta_gy=10)) == pytest.approx(14.4)
    assert float(eqd2_from_bed(40.0, alpha_beta_gy=2)) == pytest.approx(20.0)
    y90 = float(bed_y90(120.0, LqParameters(alpha_beta_gy=10, repair_half_time_h=1.5)))
    assert y90 == pytest.approx(152.927, abs=0.005)


def test_properties_and_voxelwise_equals_scalar_loop() -> None:
    rng = np.random.default_rng(1)
    dose = rng.uniform(0, 300, 50)
    p = LqParameters(alpha_beta_gy=2.5, repair_half_time_h=2.5)
    arr = bed_y90(dose, p)
    assert np.all(arr >= dose)
    np.testing.assert_allclose(arr, [float(bed_y90(d, p)) for d in dose], rtol=1e-15)
    tiny = bed_y90(dose, LqParameters(repair_half_time_h=1e-12))
    np.testing.assert_allclose(tiny, dose, rtol=1e-12)
    many = bed_fractionated(dose, 10**9, alpha_beta_gy=3)
    np.testing.assert_allclose(many, dose, rtol=1e-6)


def test_lesion_bed_is_mean_of_voxel_bed_not_bed_of_mean() -> None:
    result = lesion_bed([0.0, 20.0], modality="ebrt", fractions=1)
    assert result.bed_mean_gy == pytest.approx((0 + 20 * 3) / 2)
    assert result.bed_of_mean_dose_gy == pytest.approx(10 * 2)
    with pytest.raises(ValueError, match="NaN"):
        lesion_bed([np.nan], modality="y90")
