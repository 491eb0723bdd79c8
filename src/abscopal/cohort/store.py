"""The results store: SQLAlchemy 2 models, Alembic migrations, one transaction per patient.

SQLite in the output folder by default (WAL journal, foreign keys on), PostgreSQL by URL. Every
child table is keyed by the patient's source key plus natural keys (lesion, date), never by an
autoincrement, so a resumed run and an uninterrupted run write the same rows.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from abscopal.errors import AbscopalError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)
MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
DB_NAME: Final = "cohort.sqlite"


class StoreError(AbscopalError):
    """The results database cannot be used: unreachable, or made by a newer abscopal."""


class Base(DeclarativeBase):
    """Declarative base of the cohort store."""

    type_annotation_map: Final = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    """One invocation of `abscopal cohort`, with its provenance."""

    __tablename__ = "runs"
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(Text)
    executor: Mapped[str] = mapped_column(String(200))
    settings_sha256: Mapped[str] = mapped_column(String(64))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)  # versions, settings, input hashes


class PatientRow(Base):
    """One patient of the cohort: its inputs' hash, its status and the patient-level verdict."""

    __tablename__ = "patients"
    patient_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(200))
    source_path: Mapped[str] = mapped_column(Text)
    input_sha256: Mapped[str] = mapped_column(String(64))
    settings_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # done | failed
    error: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    primary_cancer: Mapped[str | None] = mapped_column(String(100))
    abscopal_status: Mapped[str | None] = mapped_column(String(20))
    certainty: Mapped[str | None] = mapped_column(String(1))
    abscopal_lesions: Mapped[list[Any] | None] = mapped_column(JSON)
    abscopal_response: Mapped[str | None] = mapped_column(String(3))
    out_of_field_response_rate: Mapped[float | None] = mapped_column(Float)
    result_path: Mapped[str | None] = mapped_column(Text)


def _patient_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("patients.patient_key", ondelete="CASCADE"), primary_key=True)


class StudyRow(Base):
    """A scan date of a patient."""

    __tablename__ = "studies"
    patient_key: Mapped[str] = _patient_fk()
    study_date: Mapped[date] = mapped_column(Date, primary_key=True)


class TreatmentRow(Base):
    """A local or systemic therapy of a patient."""

    __tablename__ = "treatments"
    patient_key: Mapped[str] = _patient_fk()
    treatment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    category: Mapped[str] = mapped_column(String(10))  # local | systemic
    kind: Mapped[str] = mapped_column(String(40))  # radiation, radioembolization or drug class
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    label: Mapped[str] = mapped_column(Text)


class LesionRow(Base):
    """A lesion of a patient."""

    __tablename__ = "lesions"
    patient_key: Mapped[str] = _patient_fk()
    lesion_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    organ: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    field: Mapped[str] = mapped_column(String(20))


class MeasurementRow(Base):
    """A lesion's size and density at one date."""

    __tablename__ = "measurements"
    patient_key: Mapped[str] = _patient_fk()
    lesion_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    present: Mapped[bool] = mapped_column(Boolean)
    volume_ml: Mapped[float | None] = mapped_column(Float)
    diameter_long_mm: Mapped[float | None] = mapped_column(Float)
    diameter_short_mm: Mapped[float | None] = mapped_column(Float)
    hu_mean: Mapped[float | None] = mapped_column(Float)
    sclerotic_fraction: Mapped[float | None] = mapped_column(Float)
    pct_change_baseline: Mapped[float | None] = mapped_column(Float)
    pct_change_nadir: Mapped[float | None] = mapped_column(Float)


class DoseRow(Base):
    """A lesion's dose and field status."""

    __tablename__ = "doses"
    patient_key: Mapped[str] = _patient_fk()
    lesion_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    field: Mapped[str] = mapped_column(String(20))
    dose_mean_gy: Mapped[float | None] = mapped_column(Float)
    dose_max_gy: Mapped[float | None] = mapped_column(Float)
    min_distance_to_ptv_mm: Mapped[float | None] = mapped_column(Float)
    field_rule: Mapped[str | None] = mapped_column(String(20))
    reasons: Mapped[list[Any]] = mapped_column(JSON)


class AssessmentRow(Base):
    """A lesion's best response by the lesion-level criterion of the pipeline.

    The patient-level categories per date and criterion are in `TimepointAssessmentRow`.
    """

    __tablename__ = "assessments"
    patient_key: Mapped[str] = _patient_fk()
    lesion_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    best_response: Mapped[str] = mapped_column(String(10))
    best_pct_change: Mapped[float | None] = mapped_column(Float)


class CriterionResponseRow(Base):
    """A patient's best overall response by one criterion, on all lesions or out-of-field only."""

    __tablename__ = "criteria_responses"
    patient_key: Mapped[str] = _patient_fk()
    criterion: Mapped[str] = mapped_column(String(20), primary_key=True)  # recist11, mda, ...
    scope: Mapped[str] = mapped_column(String(20), primary_key=True)  # all_lesions | out_of_field
    best_response: Mapped[str] = mapped_column(String(10))


class TimepointAssessmentRow(Base):
    """A patient's response category at one follow-up date, by one criterion and lesion scope."""

    __tablename__ = "assessment_timepoints"
    patient_key: Mapped[str] = _patient_fk()
    criterion: Mapped[str] = mapped_column(String(20), primary_key=True)
    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(String(10))
    ne_reason: Mapped[str | None] = mapped_column(Text)
    rules: Mapped[list[Any]] = mapped_column(JSON)  # the rules (with citations) that decided it


class FindingRow(Base):
    """A lesion's abscopal finding (CLINICAL.md §8)."""

    __tablename__ = "findings"
    patient_key: Mapped[str] = _patient_fk()
    lesion_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    therapy_id: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(30))
    grade: Mapped[str | None] = mapped_column(String(1))
    t1: Mapped[date | None] = mapped_column(Date)
    t2: Mapped[date | None] = mapped_column(Date)
    metric: Mapped[str | None] = mapped_column(String(40))
    pct_change: Mapped[float | None] = mapped_column(Float)
    confirmation: Mapped[str | None] = mapped_column(String(40))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    flags: Mapped[list[Any]] = mapped_column(JSON)


CHILDREN: Final = (
    StudyRow,
    TreatmentRow,
    LesionRow,
    MeasurementRow,
    DoseRow,
    AssessmentRow,
    FindingRow,
    CriterionResponseRow,
    TimepointAssessmentRow,
)
TABLES: Final = ("runs", "patients", *(c.__tablename__ for c in CHILDREN))


def default_url(out_dir: Path) -> str:
    """The SQLite database in the output folder."""
    return f"sqlite:///{(Path(out_dir) / DB_NAME).resolve()}"


def shown(url: str) -> str:
    """`url` with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def open_store(url: str) -> Engine:
    """Connect, refuse a newer schema, apply the migrations; a clear `StoreError` otherwise."""
    from alembic.util.exc import CommandError

    parsed = make_url(url)
    args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        args = {"connect_timeout": 5}
    elif parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, connect_args=args)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        msg = f"--db {shown(url)}: not a usable database URL ({exc})"
        raise StoreError(msg) from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.begin() as connection:
            _migrate(connection)
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") and exc.orig else exc).strip()
        msg = f"--db {shown(url)}: cannot open the database: {reason.splitlines()[0]}"
        raise StoreError(msg) from exc
    except CommandError as exc:
        msg = f"--db {shown(url)}: {exc}"
        raise StoreError(msg) from exc
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the single writer
    # NORMAL in WAL: no fsync per commit; a killed process loses nothing committed, a power cut
    # at most the last patients, which the next run redoes (their rows are whole or absent)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _migrate(connection: Any) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    current = MigrationContext.configure(connection).get_current_revision()
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        msg = (
            f"the database schema is at revision {current!r}, written by a newer abscopal "
            f"(this one knows up to {script.get_current_head()!r}); upgrade abscopal or use "
            "another --db"
        )
        raise StoreError(msg)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def completed(engine: Engine) -> dict[str, tuple[str, str, str]]:
    """patient_key → (status, input_sha256, settings_sha256) of every stored patient."""
    with Session(engine) as session:
        rows = session.execute(
            select(
                PatientRow.patient_key,
                PatientRow.status,
                PatientRow.input_sha256,
                PatientRow.settings_sha256,
            )
        )
        return {key: (status, inputs, settings) for key, status, inputs, settings in rows}


def start_run(
    engine: Engine,
    *,
    source: str,
    executor: str,
    settings_sha256: str,
    provenance: Mapping[str, Any],
) -> int:
    """Record a run; return its id."""
    with Session(engine) as session, session.begin():
        run = Run(
            started_at=_now(),
            source=source,
            executor=executor,
            settings_sha256=settings_sha256,
            provenance=dict(provenance),
        )
        session.add(run)
        session.flush()
        return run.run_id


def finish_run(
    engine: Engine, run_id: int, *, input_sha256: Mapping[str, str] | None = None
) -> None:
    """Stamp the end of a run and complete its provenance with every patient's input hash.

    The workers hash the inputs as they go, so a run starts with the hashes of the patients it
    skips only; a run killed midway keeps those and finished_at NULL (the patients table holds
    each stored patient's hash either way).
    """
    with Session(engine) as session, session.begin():
        run = session.get(Run, run_id)
        if run is None:
            return
        run.finished_at = _now()
        if input_sha256 is not None:
            run.provenance = {**run.provenance, "input_sha256": dict(sorted(input_sha256.items()))}


def save_patient(
    engine: Engine,
    *,
    run_id: int,
    patient_key: str,
    source_path: str,
    input_sha256: str,
    settings_sha256: str,
    result: Mapping[str, Any] | None,
    error: str | None = None,
    result_path: str | None = None,
) -> None:
    """Replace everything stored about one patient, in one transaction (delete, then insert).

    Core multi-row inserts, not the ORM unit of work: a patient's ~100 rows need no identity
    map, and the parent process that writes every patient must keep up with the workers.
    """
    verdict = (result or {}).get("abscopal") or {}
    patient = {
        "patient_key": patient_key,
        "patient_id": None if result is None else str(result["patient_id"]),
        "source_path": source_path,
        "input_sha256": input_sha256,
        "settings_sha256": settings_sha256,
        "status": "failed" if result is None else "done",
        "error": error,
        "run_id": run_id,
        "updated_at": _now(),
        "primary_cancer": None if result is None else result.get("primary_cancer"),
        "abscopal_status": verdict.get("status"),
        "certainty": verdict.get("certainty"),
        "abscopal_lesions": verdict.get("lesions"),
        "abscopal_response": verdict.get("abscopal_response"),
        "out_of_field_response_rate": verdict.get("out_of_field_response_rate"),
        "result_path": result_path,
    }
    children = {} if result is None else _children(patient_key, result)
    tables = [Base.metadata.tables[child.__tablename__] for child in CHILDREN]
    with engine.begin() as connection:
        for table in tables:
            connection.execute(delete(table).where(table.c.patient_key == patient_key))
        patients = Base.metadata.tables[PatientRow.__tablename__]
        connection.execute(delete(patients).where(patients.c.patient_key == patient_key))
        connection.execute(insert(patients), [patient])
        for child, table in zip(CHILDREN, tables, strict=True):  # after the patient: foreign keys
            if children.get(child):
                connection.execute(insert(table), children[child])


Rows = dict[type[Base], list[dict[str, Any]]]


def _children(key: str, result: Mapping[str, Any]) -> Rows:
    rows: Rows = {child: [] for child in CHILDREN}
    timeline = result.get("timeline") or {}
    rows[StudyRow] = [
        {"patient_key": key, "study_date": _day(d)}
        for d in sorted(set(timeline.get("scan_dates", [])))
    ]
    rows[TreatmentRow] = _treatments(key, timeline)
    for lesion in result.get("lesions", []):
        _add_lesion(rows, key, lesion)
    _add_criteria(rows, key, result.get("criteria") or {})
    return rows


def _treatments(key: str, timeline: Mapping[str, Any]) -> list[dict[str, Any]]:
    local = [
        {
            "patient_key": key,
            "treatment_id": t["therapy_id"],
            "category": "local",
            "kind": t["kind"],
            "start_date": _day(t["start_date"]),
            "end_date": _day(t.get("end_date")),
            "label": t.get("label", ""),
        }
        for t in timeline.get("local_therapies", [])
    ]
    systemic = [
        {
            "patient_key": key,
            "treatment_id": f"systemic-{n + 1}-{s['agent']}",
            "category": "systemic",
            "kind": s["drug_class"],
            "start_date": _day(s["start_date"]),
            "end_date": _day(s.get("stop_date")),
            "label": s["agent"],
        }
        for n, s in enumerate(timeline.get("systemic_therapies", []))
    ]
    return local + systemic


def _add_lesion(rows: Rows, key: str, lesion: Mapping[str, Any]) -> None:
    ids = {"patient_key": key, "lesion_id": lesion["lesion_id"]}
    rows[LesionRow].append(
        {**ids, "organ": lesion.get("organ"), "kind": lesion["kind"], "field": lesion["field"]}
    )
    rows[DoseRow].append(
        {
            **ids,
            "field": lesion["field"],
            "dose_mean_gy": lesion.get("dose_mean_gy"),
            "dose_max_gy": lesion.get("dose_max_gy"),
            "min_distance_to_ptv_mm": lesion.get("min_distance_to_ptv_mm"),
            "field_rule": lesion.get("field_rule"),
            "reasons": list(lesion.get("field_reasons", [])),
        }
    )
    rows[AssessmentRow].append(
        {
            **ids,
            "best_response": lesion["best_response"],
            "best_pct_change": lesion.get("best_pct_change"),
        }
    )
    rows[MeasurementRow].extend(
        {
            **ids,
            "date": _day(m["date"]),
            "present": bool(m["present"]),
            **{name: m.get(name) for name in _MEASURED},
        }
        for m in lesion.get("measurements", [])
    )
    finding = lesion.get("finding")
    if finding is not None:
        rows[FindingRow].append(_finding(ids, finding))


_MEASURED: Final = (
    "volume_ml",
    "diameter_long_mm",
    "diameter_short_mm",
    "hu_mean",
    "sclerotic_fraction",
    "pct_change_baseline",
    "pct_change_nadir",
)


def _finding(ids: Mapping[str, str], f: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **ids,
        "therapy_id": f["therapy_id"],
        "outcome": f["outcome"],
        "grade": f.get("grade"),
        "t1": _day(f.get("t1")),
        "t2": _day(f.get("t2")),
        "metric": f.get("metric"),
        "pct_change": f.get("pct_change"),
        "confirmation": f.get("confirmation"),
        "reasons": list(f.get("reasons", [])),
        "flags": list(f.get("flags", [])),
    }


def _add_criteria(rows: Rows, key: str, criteria: Mapping[str, Any]) -> None:
    """Each criterion's best response and its category at every follow-up date, per scope."""
    for criterion, scopes in sorted(criteria.items()):
        for scope, assessed in sorted(scopes.items()):
            ids = {"patient_key": key, "criterion": criterion, "scope": scope}
            rows[CriterionResponseRow].append({**ids, "best_response": assessed["best_response"]})
            rows[TimepointAssessmentRow].extend(
                {
                    **ids,
                    "date": _day(t["date"]),
                    "category": t["category"],
                    "ne_reason": t.get("ne_reason"),
                    "rules": list(t.get("rules", [])),
                }
                for t in assessed.get("timepoints", [])
            )


def _day(value: Any) -> Any:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _now() -> datetime:
    return datetime.now(UTC)


def read_tables(engine: Engine) -> dict[str, Any]:
    """Every table as a pandas DataFrame (JSON columns as JSON text), rows in key order."""
    import pandas as pd

    frames: dict[str, Any] = {}
    for name, table in Base.metadata.tables.items():
        keys = [c.name for c in table.primary_key.columns]
        with engine.connect() as connection:
            frame = pd.read_sql_table(name, connection)
        for column in table.columns:
            if isinstance(column.type, JSON):
                frame[column.name] = frame[column.name].map(
                    lambda v: None if v is None else json.dumps(v, sort_keys=True)
                )
        frames[name] = frame.sort_values(keys).reset_index(drop=True)
    return frames


def patient_status(engine: Engine, keys: set[str]) -> dict[str, tuple[str, str | None, str | None]]:
    """patient_key → (status, abscopal_status, error) for the given keys."""
    with Session(engine) as session:
        rows = session.execute(
            select(
                PatientRow.patient_key,
                PatientRow.status,
                PatientRow.abscopal_status,
                PatientRow.error,
            )
        )
        return {k: (s, a, e) for k, s, a, e in rows if k in keys}
