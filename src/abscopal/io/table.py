"""The measurement table (DESIGN.md): one CSV row per lesion per date → `PatientSeries` records.

Errors name the file, the line and the column, what was expected and what was found. A lesion that
simply lacks a measurement is not an error here: the criterion reports NE with the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from abscopal.errors import IngestError
from abscopal.model import LesionKind
from abscopal.readings import (
    BoneSign,
    CtPhase,
    LesionReading,
    LesionStatus,
    NewLesion,
    PatientSeries,
    Role,
    ScanStatus,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

REQUIRED = ("patient_id", "lesion_id", "date", "kind")
NUMBERS = (
    "diameter_long_mm",
    "diameter_short_mm",
    "diameter_viable_mm",
    "diameter_perp_mm",
    "soft_tissue_long_mm",
    "sulpeak",
    "tlg_g",
    "suvmax",
    "suvmean",
    "liver_sul_mean",
    "liver_sul_sd",
    "blood_sul_mean",
    "blood_sul_sd",
    "slice_thickness_mm",
)
SIGNED_NUMBERS = ("hu_mean",)  # attenuation may be negative
BOOLEANS = ("aphe", "washout", "background_indistinguishable", "irradiated", "baseline")
VOCABULARIES: dict[str, Callable[[str], Any]] = {
    "kind": LesionKind,
    "role": Role,
    "status": LesionStatus,
    "new_lesion": NewLesion,
    "ss_status": ScanStatus,
    "ct_phase": CtPhase,
}
TEXT = ("patient_id", "lesion_id", "organ", "suv_type", "note")
DATES = ("date", "therapy_start")
SIGNS = ("bone_sign", "bone_signs")
KNOWN = frozenset((*NUMBERS, *SIGNED_NUMBERS, *BOOLEANS, *VOCABULARIES, *TEXT, *DATES, *SIGNS))
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n"}


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    reading: LesionReading
    patient_id: str
    baseline: bool
    therapy_start: dt.date | None


def read_table(path: Path) -> list[PatientSeries]:
    """Every patient of the table, in order of first appearance."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        _check_header(path, header)
        rows = [
            _parse_row(path, line, {k.strip(): (v or "").strip() for k, v in raw.items() if k})
            for line, raw in enumerate(reader, start=2)
        ]
    _check_duplicates(path, rows)
    _check_sul_reference(path, rows)
    return _series(rows)


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        msg = (
            f"{path.name}: line 1 (header): missing column(s) {', '.join(missing)}; "
            f"the table needs at least {', '.join(REQUIRED)} (see README, measurement table)"
        )
        raise IngestError(msg)
    unknown = [c for c in header if c not in KNOWN]
    if unknown:
        msg = (
            f"{path.name}: line 1 (header): unknown column(s) {', '.join(unknown)}; "
            f"expected names from: {', '.join(sorted(KNOWN))}"
        )
        raise IngestError(msg)


def _fail(path: Path, line: int, column: str, problem: str) -> IngestError:
    return IngestError(f"{path.name}: line {line}, column {column!r}: {problem}")


def _parse_row(path: Path, line: int, raw: dict[str, str]) -> _Row:
    values: dict[str, Any] = {}
    for column, text in raw.items():
        if text == "" or column == "note":
            continue
        try:
            values[column] = _parse_cell(column, text)
        except (ValueError, InvalidOperation) as exc:
            raise _fail(path, line, column, str(exc)) from None
    for column in REQUIRED:
        if column not in values:
            raise _fail(path, line, column, "empty; this column must have a value")
    patient = values.pop("patient_id")
    baseline = bool(values.pop("baseline", False))
    therapy_start = values.pop("therapy_start", None)
    signs: set[BoneSign] = set()
    for column in SIGNS:
        signs |= values.pop(column, set())
    values["bone_signs"] = frozenset(signs - {BoneSign.NONE})
    try:
        reading = LesionReading(**values)
    except ValueError as exc:
        raise _fail(path, line, "lesion_id", str(exc)) from None
    return _Row(line, reading, patient, baseline, therapy_start)


def _parse_cell(column: str, text: str) -> object:
    if column in NUMBERS or column in SIGNED_NUMBERS:
        try:
            value = Decimal(text)
        except InvalidOperation:
            msg = f"expected a number (decimal point '.', no unit), got {text!r}"
            raise ValueError(msg) from None
        if not value.is_finite():
            msg = f"expected a finite number, got {text!r}"
            raise ValueError(msg)
        if column in NUMBERS and value < 0:
            msg = f"must be >= 0, got {text}"
            raise ValueError(msg)
        return value
    if column in DATES:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            msg = f"expected a date YYYY-MM-DD, got {text!r}"
            raise ValueError(msg) from None
    if column in BOOLEANS:
        return _boolean(text)
    if column in VOCABULARIES:
        return VOCABULARIES[column](text)
    if column in SIGNS:
        return {
            BoneSign(part.strip()) for part in text.replace("|", ";").split(";") if part.strip()
        }
    return text


def _boolean(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    msg = f"expected true or false, got {text!r}"
    raise ValueError(msg)


def _check_duplicates(path: Path, rows: list[_Row]) -> None:
    seen: dict[tuple[str, str, dt.date], int] = {}
    for row in rows:
        key = (row.patient_id, row.reading.lesion_id, row.reading.date)
        if key in seen:
            problem = (
                f"lesion {key[1]!r} is measured twice on {key[2]} (also line {seen[key]}); "
                "keep one row per lesion per date"
            )
            raise _fail(path, row.line, "lesion_id", problem)
        seen[key] = row.line


def _check_sul_reference(path: Path, rows: list[_Row]) -> None:
    referenced = {
        (row.patient_id, row.reading.date)
        for row in rows
        if row.reading.liver_sul_mean is not None or row.reading.blood_sul_mean is not None
    }
    for row in rows:
        if row.reading.sulpeak is not None and (row.patient_id, row.reading.date) not in referenced:
            problem = (
                f"sulpeak given but no liver reference on {row.reading.date}; PERCIST needs "
                "liver_sul_mean and liver_sul_sd (or blood_sul_mean, blood_sul_sd) on that scan"
            )
            raise _fail(path, row.line, "liver_sul_mean", problem)


def _series(rows: list[_Row]) -> list[PatientSeries]:
    by_patient: dict[str, list[_Row]] = {}
    for row in rows:
        by_patient.setdefault(row.patient_id, []).append(row)
    out = []
    for patient, group in by_patient.items():
        flagged = [r.reading.date for r in group if r.baseline]
        starts = [r.therapy_start for r in group if r.therapy_start is not None]
        out.append(
            PatientSeries(
                patient_id=patient,
                readings=tuple(r.reading for r in group),
                baseline_date=min(flagged) if flagged else None,
                therapy_start=min(starts) if starts else None,
            )
        )
    return out
