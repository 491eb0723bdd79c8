"""Read a patient's result dictionary (the content of results.json) tolerantly, for display.

Every reader here returns what the result holds, or "nothing" (None, an empty list or mapping)
where a key is missing or null: a report must still render for a lesion without measurements or a
patient without systemic therapy. Nothing here computes a number the result does not carry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final

from abscopal.model import FieldStatus

OUT_OF_FIELD_GROUP: Final = frozenset(
    {
        FieldStatus.OUT_OF_FIELD,
        FieldStatus.LOW_DOSE,
        FieldStatus.OUTSIDE_GRID,
        FieldStatus.UNCERTAIN,
    }
)  # the waterfall's out-of-field panel: every lesion not known to be in the field


def mapping(value: object) -> Mapping[str, Any]:
    """Return `value` if it is a mapping, else an empty one (a missing or null key)."""
    return value if isinstance(value, Mapping) else {}


def records(value: object) -> list[Mapping[str, Any]]:
    """Return the mappings in the list `value`; an empty list for a missing or null key."""
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, Mapping)]
    return []


def texts(value: object) -> list[str]:
    """Return the list `value` as strings (reasons, flags, ids); empty for a missing key."""
    if isinstance(value, list | tuple):
        return [str(item) for item in value if item is not None]
    return []


def number(value: object) -> float | None:
    """Return `value` as a float, or None when it is missing, not a number or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return None if math.isnan(out) else out


def as_date(value: object, *, what: str) -> date | None:
    """Read a date from an ISO string ("2024-02-12", or a datetime) or a date; None if missing.

    Raises `ValueError` naming `what` for a string that is no ISO date: a wrong date on a
    timeline would mislead, a missing one only leaves a gap.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date()
        except ValueError:
            pass
    msg = f"{what}: expected an ISO date such as '2024-02-12', got {value!r}"
    raise ValueError(msg)


def field_of(lesion: Mapping[str, Any]) -> FieldStatus:
    """Return the lesion's field status; `uncertain` when the result has none or an unknown one."""
    value = lesion.get("field")
    if value in set(FieldStatus):
        return FieldStatus(value)
    return FieldStatus.UNCERTAIN


def local_therapies(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Return the local therapies of the result's timeline, in the order given."""
    return records(mapping(result.get("timeline")).get("local_therapies"))


def reference_start(result: Mapping[str, Any]) -> tuple[date, str] | None:
    """Return the earliest local therapy's start date and id: day 0 of the spider plot."""
    starts = []
    for therapy in local_therapies(result):
        start = as_date(therapy.get("start_date"), what="local therapy start_date")
        if start is not None:
            starts.append((start, str(therapy.get("therapy_id") or "local therapy")))
    return min(starts) if starts else None
