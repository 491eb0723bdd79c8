"""Lesion-timepoint rows (one per lesion per scan) as CSV and Parquet, for spreadsheets and R."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from abscopal.atomic import atomic_path

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

LESION_COLUMNS = ("lesion_id", "organ", "kind", "field", "dose_mean_gy", "best_response")
MEASUREMENT_COLUMNS = (
    "date",
    "present",
    "diameter_long_mm",
    "diameter_short_mm",
    "volume_ml",
    "hu_mean",
    "sclerotic_fraction",
    "pct_change_baseline",
    "pct_change_nadir",
)


def lesion_rows(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per lesion and scan date, with the lesion's field, dose and abscopal finding."""
    rows = []
    for lesion in result["lesions"]:
        finding = lesion.get("finding") or {}
        for m in lesion["measurements"]:
            rows.append(
                {
                    "patient_id": result["patient_id"],
                    **{k: lesion.get(k) for k in LESION_COLUMNS},
                    **{k: m.get(k) for k in MEASUREMENT_COLUMNS},
                    "abscopal_outcome": finding.get("outcome"),
                    "abscopal_grade": finding.get("grade"),
                }
            )
    frame = pd.DataFrame(
        rows,
        columns=[
            "patient_id",
            *LESION_COLUMNS,
            *MEASUREMENT_COLUMNS,
            "abscopal_outcome",
            "abscopal_grade",
        ],
    )
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame


def write_lesion_tables(out_dir: Path, result: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write `lesions.csv` and `lesions.parquet` into `out_dir`, each atomically."""
    frame = lesion_rows(result)
    csv_path, parquet_path = out_dir / "lesions.csv", out_dir / "lesions.parquet"
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(parquet_path) as tmp:
        frame.to_parquet(tmp, index=False)
    return csv_path, parquet_path
