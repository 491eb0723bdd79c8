"""The store on SQLite and, where `.ci/run` started one, PostgreSQL: upserts, one patient whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from abscopal.cohort import open_store, read_tables
from abscopal.cohort.store import Base, save_patient, start_run

POSTGRES = os.environ.get("ABSCOPAL_TEST_POSTGRES_URL")

RESULT = {
    "patient_id": "P-1",
    "primary_cancer": "breast",
    "lesions": [
        {
            "lesion_id": "B1",
            "organ": "rib",
            "kind": "lytic",
            "field": "out_of_field",
            "dose_mean_gy": 0.1,
            "best_response": "PR",
            "best_pct_change": -40.0,
            "field_reasons": ["E3"],
            "finding": {
                "therapy_id": "RT-1",
                "outcome": "graded",
                "grade": "B",
                "t1": "2024-05-01",
                "reasons": ["x"],
                "flags": [],
            },
            "measurements": [
                {"date": "2024-01-01", "present": True, "diameter_long_mm": 20.0},
                {"date": "2024-05-01", "present": True, "diameter_long_mm": 12.0},
            ],
        }
    ],
    "abscopal": {
        "status": "abscopal",
        "certainty": "B",
        "lesions": ["B1"],
        "abscopal_response": "Y",
    },
    "timeline": {
        "local_therapies": [
            {
                "therapy_id": "RT-1",
                "kind": "radiation",
                "start_date": "2024-01-31",
                "end_date": "2024-02-04",
                "label": "EBRT 20 Gy / 5 fx to PTV",
            }
        ],
        "systemic_therapies": [
            {
                "agent": "pembrolizumab",
                "drug_class": "immunotherapy",
                "start_date": "2023-06-01",
                "stop_date": None,
            }
        ],
        "scan_dates": ["2024-01-01", "2024-05-01"],
    },
}


def _urls() -> list[object]:
    reason = "no PostgreSQL: set ABSCOPAL_TEST_POSTGRES_URL (.ci/run starts a throw-away server)"
    return [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.skipif(POSTGRES is None, reason=reason)),
    ]


@pytest.fixture(params=_urls())
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cohort.sqlite'}"
    assert POSTGRES is not None
    engine = open_store(POSTGRES)
    Base.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    return POSTGRES


def test_a_patient_saved_twice_is_stored_once(url: str) -> None:
    engine = open_store(url)
    run = start_run(engine, source="s", executor="test", settings_sha256="0" * 64, provenance={})
    for _ in range(2):
        save_patient(
            engine,
            run_id=run,
            patient_key="k1",
            source_path="/p",
            input_sha256="a",
            settings_sha256="b",
            result=RESULT,
        )
    tables = read_tables(engine)
    assert len(tables["patients"]) == 1
    assert len(tables["measurements"]) == 2
    assert tables["findings"].iloc[0]["grade"] == "B"


def test_a_failure_replaces_the_previous_result_whole(url: str) -> None:
    engine = open_store(url)
    run = start_run(engine, source="s", executor="test", settings_sha256="0" * 64, provenance={})
    save_patient(
        engine,
        run_id=run,
        patient_key="k1",
        source_path="/p",
        input_sha256="a",
        settings_sha256="b",
        result=RESULT,
    )
    save_patient(
        engine,
        run_id=run,
        patient_key="k1",
        source_path="/p",
        input_sha256="c",
        settings_sha256="b",
        result=None,
        error="IngestError: x",
    )
    tables = read_tables(engine)
    assert tables["patients"].iloc[0]["status"] == "failed"
    assert all(
        len(tables[name]) == 0 for name in ("lesions", "measurements", "findings", "studies")
    )


def test_a_broken_transaction_leaves_nothing(url: str) -> None:
    engine = open_store(url)
    run = start_run(engine, source="s", executor="test", settings_sha256="0" * 64, provenance={})
    broken = {**RESULT, "lesions": [{**RESULT["lesions"][0], "kind": None}]}  # NOT NULL fails
    with pytest.raises(Exception):  # noqa: B017  the driver's IntegrityError
        save_patient(
            engine,
            run_id=run,
            patient_key="k2",
            source_path="/p",
            input_sha256="a",
            settings_sha256="b",
            result=broken,
        )
    tables = read_tables(engine)
    assert tables["patients"].empty
    assert tables["lesions"].empty
