"""Shared vocabulary of the criteria (CLINICAL.md §0): categories, input readings, `Assessment`.

Every comparison is exact decimal arithmetic (§0 "Arithmetic"); every threshold lives in a frozen
`<Criterion>Params` dataclass of the criterion's module. NE is a value with a reason, never an
exception.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, TypeVar

from abscopal.model import Vocabulary
from abscopal.readings import LesionReading, PatientSeries

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

P = TypeVar("P")

MONTH_DAYS = Decimal("30.4375")  # §0: 1 month = 365.25 / 12 d
TIMEPOINT_WINDOW_DAYS = 14


class GenericResponse(Vocabulary):
    """Criterion-independent meaning of a category (§0)."""

    COMPLETE = "complete"
    PARTIAL = "partial"
    STABLE = "stable"
    PROGRESSIVE = "progressive"
    PROGRESSIVE_UNCONFIRMED = "progressive_unconfirmed"
    NOT_EVALUABLE = "not_evaluable"


class ResponseCategory(Vocabulary):
    """Categories of every criterion; values are the abbreviations printed by `--json`."""

    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NON_CR_NON_PD = "NON_CR_NON_PD"
    NE = "NE"
    iCR = "iCR"  # noqa: N815  (the criterion's own spelling)
    iPR = "iPR"  # noqa: N815
    iSD = "iSD"  # noqa: N815
    iUPD = "iUPD"  # noqa: N815
    iCPD = "iCPD"  # noqa: N815
    CMR = "CMR"
    PMR = "PMR"
    SMD = "SMD"
    PMD = "PMD"
    UPMD = "UPMD"
    CPMD = "CPMD"

    @property
    def generic(self) -> GenericResponse:
        """Complete / partial / stable / progressive / progressive_unconfirmed / not_evaluable."""
        return GenericResponse(_GENERIC[self.value])


_GENERIC = {
    "CR": "complete",
    "iCR": "complete",
    "CMR": "complete",
    "PR": "partial",
    "iPR": "partial",
    "PMR": "partial",
    "SD": "stable",
    "iSD": "stable",
    "SMD": "stable",
    "NON_CR_NON_PD": "stable",
    "PD": "progressive",
    "iCPD": "progressive",
    "PMD": "progressive",
    "CPMD": "progressive",
    "iUPD": "progressive_unconfirmed",
    "UPMD": "progressive_unconfirmed",
    "NE": "not_evaluable",
}


@dataclass(frozen=True, slots=True)
class Timepoint:
    """Readings within 14 d of the group's first scan; dated by its latest scan (§0)."""

    date: dt.date
    readings: Mapping[str, LesionReading]

    def scan_value(self, name: str) -> Decimal | None:
        """First non-empty scan-level value (e.g. `liver_sul_mean`) among the readings."""
        for reading in self.readings.values():
            value = getattr(reading, name)
            if value is not None:
                return value  # type: ignore[no-any-return]
        return None


def group_timepoints(series: PatientSeries) -> list[Timepoint]:
    """Baseline first, then follow-ups (§0 "Time"); readings before the baseline are dropped."""
    readings = sorted(series.readings, key=lambda r: r.date)
    if not readings:
        return []
    start = series.baseline_date or readings[0].date
    groups: list[list[LesionReading]] = []
    for reading in (r for r in readings if r.date >= start):
        if groups and (reading.date - groups[-1][0].date).days <= TIMEPOINT_WINDOW_DAYS:
            groups[-1].append(reading)
        else:
            groups.append([reading])
    return [
        Timepoint(date=group[-1].date, readings={r.lesion_id: r for r in group}) for group in groups
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """One category at one date, with the numbers that decided it and the rules cited (§0)."""

    criterion: str
    version: str
    date: dt.date
    category: ResponseCategory
    baseline_value: Decimal | None = None
    nadir_value: Decimal | None = None
    current_value: Decimal | None = None
    pct_change_baseline: Decimal | None = None
    pct_change_nadir: Decimal | None = None
    abs_change_nadir: Decimal | None = None
    rules: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    ne_reason: str | None = None
    provisional: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "category", ResponseCategory(self.category))
        if self.category is ResponseCategory.NE and not self.ne_reason:
            msg = f"{self.criterion} {self.date}: an NE assessment needs ne_reason"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: dates as ISO strings, decimals as floats rounded to 0.1 % for display."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = float(round(value, 1)) if f.name.startswith("pct") else float(value)
            elif isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Selected:
    """Why a lesion got its role (R-S, or the user's choice)."""

    lesion_id: str
    role: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesAssessment:
    """One criterion on one patient: every follow-up timepoint and the best overall response."""

    criterion: str
    patient_id: str
    timepoints: tuple[Assessment, ...]
    best_response: Assessment
    selection: tuple[Selected, ...] = ()
    params: Mapping[str, object] = field(default_factory=dict)


class Criterion(Protocol):
    """A response criterion: pure function from a patient's series to assessments."""

    @property
    def key(self) -> str:
        """The `--criteria` name, e.g. "recist11"."""
        ...

    @property
    def categories(self) -> frozenset[ResponseCategory]:
        """Every category this criterion can assign (with some parameters)."""
        ...

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-timepoint categories and BOR, on all lesions or only on `lesion_ids`."""
        ...

    def with_params(self, **changes: object) -> Criterion:
        """The same criterion with some parameters changed."""
        ...


def exact(value: float | Decimal) -> Decimal:
    """`value` as the decimal it was written as, so `63 <= 0.7 * 90` holds (CLINICAL.md §0)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def at_most_fraction(
    value: float | Decimal, fraction: str | Decimal, reference: float | Decimal
) -> bool:
    """Value ≤ fraction × reference, in exact decimal arithmetic."""
    return exact(value) <= Decimal(fraction) * exact(reference)


def at_least_fraction(
    value: float | Decimal, fraction: str | Decimal, reference: float | Decimal
) -> bool:
    """Value ≥ fraction × reference, in exact decimal arithmetic."""
    return exact(value) >= Decimal(fraction) * exact(reference)


def pct_change(value: Decimal | None, reference: Decimal | None) -> Decimal | None:
    """100·(value − ref)/ref, exact; `None` when either is missing or ref is 0 (§0)."""
    if value is None or reference is None or reference == 0:
        return None
    return 100 * (value - reference) / reference


def months(days: int) -> Decimal:
    """Days as months of 30.4375 d (§0)."""
    return Decimal(days) / MONTH_DAYS


def best_by_rank(
    assessments: Iterable[Assessment], rank: Sequence[ResponseCategory]
) -> Assessment | None:
    """The first assessment of the best-ranked category (`rank` lists best first)."""
    best: Assessment | None = None
    for a in assessments:
        if a.category in rank and (
            best is None or rank.index(a.category) < rank.index(best.category)
        ):
            best = a
    return best


def params_dict(params: object) -> dict[str, object]:
    """A params dataclass as a JSON-ready dict (for provenance)."""
    return {f.name: _plain(getattr(params, f.name)) for f in fields(params)}  # type: ignore[arg-type]


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    return value


def coerce_params(params: P, changes: Mapping[str, object]) -> P:
    """`params` with `changes` applied; strings are converted to the field's type."""
    known = {f.name: getattr(params, f.name) for f in fields(params)}  # type: ignore[arg-type]
    converted: dict[str, object] = {}
    for name, value in changes.items():
        if name not in known:
            msg = f"unknown parameter {name!r}; expected one of: {', '.join(known)}"
            raise ValueError(msg)
        converted[name] = _convert(value, known[name])
    return dataclasses.replace(params, **converted)  # type: ignore[type-var]


def _convert(value: object, current: object) -> object:
    if not isinstance(value, str) or isinstance(current, str):
        return value
    if isinstance(current, bool):
        return value.strip().lower() in {"1", "true", "yes"}
    if isinstance(current, Decimal):
        return Decimal(value)
    if isinstance(current, int):
        return int(value)
    return value
