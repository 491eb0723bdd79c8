"""Fixtures of the report tests: a realistic result dictionary and a small synthetic CT."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from abscopal.geometry import AXIAL, Grid
from abscopal.model import LesionMask, Volume

FRAME = "2.25.1234"


def _m(day: str, ld: float | None, pct: float | None, *, present: bool = True) -> dict[str, Any]:
    return {
        "date": day,
        "present": present,
        "diameter_long_mm": ld,
        "diameter_short_mm": None if ld is None else round(0.7 * ld, 1),
        "volume_ml": None,
        "hu_mean": 35.0,
        "sclerotic_fraction": None,
        "pct_change_baseline": pct,
        "pct_change_nadir": None,
    }


RESULT: dict[str, Any] = {
    "patient_id": "SYN-0001-000",
    "primary_cancer": "hcc",
    "disclaimer": "For research use only; not for clinical decision-making.",
    "abscopal": {
        "status": "abscopal",
        "certainty": "A",
        "lesions": ["B1"],
        "reasons": [
            "B1: LD 27.0 -> 15.0 mm (-44.4 %) at 2024-05-13, confirmed (CLINICAL §8.5 G4)",
            "B2: low dose 3.1 Gy, no response (CLINICAL §8.5 G0)",
        ],
        "abscopal_response": "Y",
        "out_of_field_response_rate": 0.25,
    },
    "timeline": {
        "local_therapies": [
            {
                "therapy_id": "Y90-1",
                "kind": "radioembolization",
                "start_date": "2024-02-12",
                "end_date": "2024-02-12",
                "label": "Y-90 glass 2.5 GBq, right_lobe",
            }
        ],
        "systemic_therapies": [
            {
                "agent": "sorafenib",
                "drug_class": "targeted",
                "start_date": "2023-03-01",
                "stop_date": "2023-10-15",
            },
            {
                "agent": "zoledronic acid",
                "drug_class": "bone_active",
                "start_date": "2023-06-01",
                "stop_date": None,
            },
        ],
        "scan_dates": ["2023-11-20", "2024-01-29", "2024-05-13", "2024-08-12"],
    },
    "lesions": [
        {
            "lesion_id": "H1",
            "organ": "liver",
            "kind": "hcc",
            "field": "in_field",
            "dose_mean_gy": 182.4,
            "dose_max_gy": 301.0,
            "field_reasons": ["F1: inside the treated territory, Dmean 182.4 Gy"],
            "best_response": "PR",
            "best_pct_change": -61.0,
            "finding": {
                "grade": None,
                "outcome": "in_field",
                "t1": None,
                "reasons": ["in-field response reported (CLINICAL §8.5)"],
                "flags": [],
            },
            "measurements": [
                _m("2023-11-20", 41.0, 0.0),
                _m("2024-01-29", 43.0, 4.9),
                _m("2024-05-13", 22.0, -46.3),
                _m("2024-08-12", 16.0, -61.0),
            ],
        },
        {
            "lesion_id": "B1",
            "organ": "vertebra",
            "kind": "lytic",
            "field": "out_of_field",
            "dose_mean_gy": 0.02,
            "dose_max_gy": 0.05,
            "field_reasons": ["F5: Dmean 0.02 Gy < 1 Gy"],
            "best_response": "PR",
            "best_pct_change": -48.1,
            "finding": {
                "grade": "A",
                "outcome": "graded",
                "t1": "2024-05-13",
                "reasons": ["LD -44.4 % at t1, confirmed 91 d later (CLINICAL §8.5 G4)"],
                "flags": ["typical_timing"],
            },
            "measurements": [
                _m("2023-11-20", 27.0, 0.0),
                _m("2024-01-29", 27.5, 1.9),
                _m("2024-05-13", 15.0, -44.4),
                _m("2024-08-12", 14.0, -48.1),
            ],
        },
        {
            "lesion_id": "B2",
            "organ": "rib",
            "kind": "blastic",
            "field": "low_dose",
            "dose_mean_gy": 3.1,
            "dose_max_gy": 6.4,
            "field_reasons": ["F3: Dmean 3.1 Gy in [1, 20) Gy"],
            "best_response": "SD",
            "best_pct_change": 5.0,
            "finding": {
                "grade": None,
                "outcome": "no_response",
                "t1": None,
                "reasons": ["best change +5.0 % (CLINICAL §8.5 G0)"],
                "flags": [],
            },
            "measurements": [
                _m("2023-11-20", 20.0, 0.0),
                _m("2024-05-13", 21.0, 5.0),
                _m("2024-08-12", None, None),
            ],
        },
        {
            "lesion_id": "N1",
            "organ": "lymph_node",
            "kind": "nodal",
            "field": "outside_grid",
            "dose_mean_gy": None,
            "dose_max_gy": None,
            "field_reasons": ["F6: outside the dose grid"],
            "best_response": "CR",
            "best_pct_change": -100.0,
            "finding": {
                "grade": "C",
                "outcome": "graded",
                "t1": "2024-05-13",
                "reasons": ["outside the dose grid (CLINICAL §8.5 G2)"],
                "flags": [],
            },
            "measurements": [
                _m("2023-11-20", 18.0, 0.0),
                _m("2024-05-13", 0.0, -100.0, present=False),
            ],
        },
        {
            "lesion_id": "L1",
            "organ": "lung",
            "kind": "soft_tissue",
            "field": "uncertain",
            "dose_mean_gy": None,
            "dose_max_gy": None,
            "field_reasons": [],
            "best_response": None,
            "best_pct_change": None,
            "finding": None,
            "measurements": [],
        },
    ],
    "provenance": {
        "abscopal": "0.1.0",
        "libraries": {"numpy": "2.4.6", "pydicom": "3.0.2"},
        "criteria": "RECIST 1.1",
        "settings": {"low_dose_gy": 1.0, "window_months": [0.5, 24]},
        "input_sha256": {"manifest.yaml": "ab" * 32},
    },
}


@pytest.fixture
def result() -> dict[str, Any]:
    """A realistic result: Y-90 for HCC, an abscopal vertebral lesion (grade A), five lesions."""
    return copy.deepcopy(RESULT)


LESION_CENTRE = (10, 30, 34)  # (slice, row, column) of the bright ellipsoid
LESION_RADII = (3.2, 8.2, 6.2)  # voxels: the largest cross-section is slice 10


@pytest.fixture
def ct() -> Volume:
    """A 20 x 64 x 64 CT (2.5 x 2 x 2 mm) of 40 HU with a 250 HU ellipsoid lesion."""
    grid = Grid(
        origin_mm=(-64.0, -64.0, -25.0),
        spacing_mm=(2.5, 2.0, 2.0),
        axes=AXIAL,
        shape=(20, 64, 64),
        frame_of_reference_uid=FRAME,
    )
    array = np.full(grid.shape, 40.0)
    array[_ellipsoid(grid.shape)] = 250.0
    return Volume(array=array, grid=grid, modality="CT", units="HU")


@pytest.fixture
def lesion_mask(ct: Volume) -> LesionMask:
    """The ellipsoid's mask on the CT grid cropped to its bounding box plus one voxel."""
    full = _ellipsoid(ct.grid.shape)
    idx = np.argwhere(full)
    k0, j0, i0 = (int(v) for v in idx.min(axis=0) - 1)
    k1, j1, i1 = (int(v) for v in idx.max(axis=0) + 2)
    cropped = full[k0:k1, j0:j1, i0:i1]
    grid = ct.grid.crop((k0, j0, i0), (k1, j1, i1))
    return LesionMask(lesion_id="B1", mask=cropped, grid=grid)


def _ellipsoid(shape: tuple[int, int, int]) -> np.ndarray:
    k, j, i = np.indices(shape)
    c, r = LESION_CENTRE, LESION_RADII
    return ((k - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((i - c[2]) / r[2]) ** 2 <= 1.0
