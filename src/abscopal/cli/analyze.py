"""`abscopal analyze PATIENT`: the full pipeline for one patient folder or manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abscopal.cli._app import JsonFlag, app, emit

PatientArg = Annotated[
    Path, typer.Argument(help="Patient folder (manifest.yaml + DICOM) or its manifest.")
]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Output folder (default: out/<patient folder name>).")
]


PdfOption = Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write report.pdf.")]
DeidOption = Annotated[
    bool,
    typer.Option(
        "--deidentify",
        help="Pseudonymise every output (DICOM PS3.15 basic profile) and shift its dates.",
    ),
]
ShiftOption = Annotated[
    int | None,
    typer.Option(
        "--date-shift-days",
        help="With --deidentify: days to add to every date (default: a per-patient offset; 0 keeps dates).",
    ),
]


@app.command(help="Analyze one patient: lesions, dose, field status and the abscopal verdict.")
def analyze(
    patient: PatientArg,
    out: OutOption = None,
    pdf: PdfOption = True,
    deidentify: DeidOption = False,
    date_shift_days: ShiftOption = None,
    as_json: JsonFlag = False,
) -> None:
    from abscopal.outputs import run_patient

    folder = patient.parent if patient.is_file() else patient
    out_dir = out if out is not None else Path("out") / folder.resolve().name
    result = run_patient(
        patient, out_dir, pdf=pdf, deidentify=deidentify, date_shift_days=date_shift_days
    )
    verdict = result["abscopal"]
    grade = f", grade {verdict['certainty']}" if verdict["certainty"] else ""
    text = f"{verdict['status']}{grade}: {verdict['reasons'][0]}\nreport: {out_dir / 'report.html'}"
    emit(result, as_json=as_json, text=text)
