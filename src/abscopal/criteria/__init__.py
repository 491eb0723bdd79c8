"""Response criteria and their explicit registry (CLINICAL.md §1–§7; STYLE example 6)."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from abscopal.criteria import choi, eortc, irecist, mda, mrecist, percist, recist
from abscopal.criteria._base import (
    Assessment,
    Criterion,
    GenericResponse,
    ResponseCategory,
    SeriesAssessment,
)
from abscopal.readings import (
    LesionReading,
    PatientSeries,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "CRITERIA",
    "Assessment",
    "Criterion",
    "GenericResponse",
    "LesionReading",
    "PatientSeries",
    "ResponseCategory",
    "SeriesAssessment",
    "assess_table_series",
]

CRITERIA: Final[Mapping[str, Criterion]] = MappingProxyType(
    {  # the --criteria names; read-only to callers
        "recist11": recist.RECIST_1_1,
        "irecist": irecist.IRECIST,
        "mrecist": mrecist.MRECIST,
        "percist": percist.PERCIST_1_0,
        "eortc": eortc.EORTC_PET,
        "mda": mda.MDA_BONE,
        "choi": choi.CHOI,
    }
)


def assess_table_series(
    series: Sequence[PatientSeries],
    criterion: Criterion,
    *,
    lesion_ids: Collection[str] | None = None,
) -> dict[str, Any]:
    """The `abscopal criteria --json` object: `patients` with follow-up timepoints and BOR."""
    patients = []
    params: dict[str, object] = {}
    for s in series:
        result = criterion.assess(s, lesion_ids=lesion_ids)
        params = dict(result.params)
        patients.append(
            {
                "patient_id": result.patient_id,
                "timepoints": [
                    {"date": a.date.isoformat(), "category": a.category.value, **a.to_dict()}
                    for a in result.timepoints
                ],
                "best_response": result.best_response.category.value,
                "best": result.best_response.to_dict(),
                "selection": [
                    {"lesion_id": x.lesion_id, "role": x.role, "reason": x.reason}
                    for x in result.selection
                ],
            }
        )
    return {
        "criteria": criterion.key,
        "lesion_ids": list(lesion_ids) if lesion_ids is not None else None,
        "params": params,
        "patients": patients,
    }
