"""Domain records are valid from the moment they exist."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from abscopal.geometry import AXIAL, Grid
from abscopal.model import (
    DrugClass,
    FieldStatus,
    Lesion,
    LesionMask,
    Measurement,
    Patient,
    RadiationCourse,
    Radioembolization,
    SystemicTherapy,
    Timeline,
    Volume,
)

GRID = Grid(origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1), axes=AXIAL, shape=(2, 3, 4))


def measurement(**kw: object) -> Measurement:
    base = {
        "lesion_id": "L",
        "date": date(2024, 1, 1),
        "voxel_count": 5,
        "volume_ml": 0.005,
        "diameter_long_mm": 10.0,
        "diameter_short_mm": 5.0,
    }
    base.update(kw)
    return Measurement(**base)  # type: ignore[arg-type]


def test_measurement_validates_on_construction_and_replace() -> None:
    m = measurement()
    with pytest.raises(ValueError, match="diameter_short_mm"):
        replace(m, diameter_short_mm=11.0)
    with pytest.raises(ValueError, match="diameter_short_mm"):
        measurement(diameter_short_mm=float("nan"))
    with pytest.raises(AttributeError):
        m.volume_ml = 1.0  # type: ignore[misc]


def test_vocabularies_list_their_values() -> None:
    with pytest.raises(ValueError, match="expected one of: in_field, low_dose"):
        FieldStatus("in-field")
    assert (
        SystemicTherapy(agent="x", drug_class="g_csf", start_date=date(2024, 1, 1)).drug_class
        is DrugClass.G_CSF
    )  # type: ignore[arg-type]


def test_arrays_must_fit_their_grid() -> None:
    with pytest.raises(ValueError, match="does not match grid shape"):
        Volume(array=np.zeros((1, 3, 4)), grid=GRID, modality="CT", units="HU")
    with pytest.raises(ValueError, match="must be boolean"):
        LesionMask(lesion_id="L", mask=np.zeros(GRID.shape), grid=GRID)


def test_treatments_check_dates_and_doses() -> None:
    with pytest.raises(ValueError, match="before start date"):
        RadiationCourse(
            therapy_id="RT",
            start_date=date(2024, 2, 1),
            end_date=date(2024, 1, 1),
            prescription_gy=20,
            fractions=5,
        )
    with pytest.raises(ValueError, match="activity_bq"):
        Radioembolization(therapy_id="Y", date=date(2024, 1, 1), activity_bq=0)
    with pytest.raises(ValueError, match="unique"):
        Timeline(
            local_therapies=(
                Radioembolization(therapy_id="Y", date=date(2024, 1, 1), activity_bq=1e9),
            )
            * 2
        )


def test_patient_lesions_are_unique_and_looked_up() -> None:
    with pytest.raises(ValueError, match="unique"):
        Patient(patient_id="P", lesions=(Lesion(lesion_id="A"), Lesion(lesion_id="A")))
    assert Patient(patient_id="P").lesion("Z").organ == "unknown"
