"""The store on SQLite and, where `.ci/run` started one, PostgreSQL: upserts, one patient whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from abscopal.cohort import open_store, read_tables
from abscopal.cohort.store import MIGRATIONS, Base, save_patient, start_run

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
    "criteria": {
        "recist11": {
            "all_lesions": {
                "best_response": "PR",
                "timepoints": [
                    {"date": "2024-03-01", "category": "SD", "rules": ["R-T4"], "ne_reason": None},
                    {"date": "2024-05-01", "category": "PR", "rules": ["R-T2"], "ne_reason": None},
                ],
            },
            "out_of_field": {
                "best_response": "NE",
                "timepoints": [
                    {
                        "date": "2024-03-01",
                        "category": "NE",
                        "rules": [],
                        "ne_reason": "too_early_for_sd",
                    }
                ],
            },
        }
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
    timepoints = tables["assessment_timepoints"]
    assert [
        (r.criterion, r.scope, r.date.strftime("%Y-%m-%d"), r.category, r.ne_reason)
        for r in timepoints.itertuples()
    ] == [
        ("recist11", "all_lesions", "2024-03-01", "SD", None),
        ("recist11", "all_lesions", "2024-05-01", "PR", None),
        ("recist11", "out_of_field", "2024-03-01", "NE", "too_early_for_sd"),
    ]
    best = tables["criteria_responses"].set_index("scope")["best_response"].to_dict()
    assert best == {"all_lesions": "PR", "out_of_field": "NE"}


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
        len(tables[name]) == 0
        for name in (
            "lesions",
            "measurements",
            "findings",
            "studies",
            "assessment_timepoints",
            "criteria_responses",
        )
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


def test_a_database_of_the_first_schema_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    old = create_engine(url)
    with old.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO runs (started_at, source, executor, settings_sha256, provenance) "
                "VALUES ('2024-01-01 00:00:00', 's', 'e', 'x', '{}')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO patients (patient_key, source_path, input_sha256, settings_sha256, "
                "status, run_id, updated_at) VALUES ('old', '/p', 'a', 'b', 'done', 1, "
                "'2024-01-01 00:00:00')"
            )
        )
    tables = {name for (name,) in old.connect().execute(text("SELECT name FROM sqlite_master"))}
    assert "assessment_timepoints" not in tables  # 0001 is the first schema as it was
    old.dispose()
    engine = open_store(url)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == "0002"
    tables = read_tables(engine)
    assert list(tables["patients"]["patient_key"]) == ["old"]
    assert tables["assessment_timepoints"].empty
