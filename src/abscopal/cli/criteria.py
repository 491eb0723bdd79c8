"""`abscopal criteria TABLE.csv`: response categories from a measurement table (no images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abscopal.cli._app import JsonFlag, app, emit

TableArg = Annotated[
    Path, typer.Argument(help="Measurement table (CSV; columns in the README).", exists=True)
]
CriteriaOption = Annotated[
    str,
    typer.Option("--criteria", help="recist11, irecist, mrecist, percist, eortc, mda or choi."),
]
LesionsOption = Annotated[
    str | None,
    typer.Option("--lesions", help="Comma-separated lesion IDs: assess only these lesions."),
]


@app.command(help="Response per timepoint and best overall response from a measurement table.")
def criteria(
    table: TableArg,
    criteria: CriteriaOption = "recist11",
    lesions: LesionsOption = None,
    as_json: JsonFlag = False,
) -> None:
    from abscopal.criteria import CRITERIA, assess_table_series
    from abscopal.io.table import read_table

    if criteria not in CRITERIA:
        msg = f"--criteria must be one of {', '.join(CRITERIA)}, got {criteria!r}"
        raise typer.BadParameter(msg)
    subset = [x.strip() for x in lesions.split(",") if x.strip()] if lesions else None
    payload = assess_table_series(read_table(table), CRITERIA[criteria], lesion_ids=subset)
    lines = [
        f"{p['patient_id']}: "
        + ", ".join(f"{t['date']} {t['category']}" for t in p["timepoints"])
        + f"; best {p['best_response']}"
        for p in payload["patients"]
    ]
    emit(payload, as_json=as_json, text="\n".join(lines))
