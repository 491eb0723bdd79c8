"""`abscopal synth`: synthetic patients as real DICOM, with manifest and truth.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from abscopal.cli._app import JsonFlag, app, emit


@app.command(help="Write synthetic patients (DICOM + manifest.yaml + truth.json).")
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the patient folders into.")],
    patients: Annotated[int, typer.Option("--patients", min=1, help="Number of patients.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed (deterministic).")] = 0,
    scenario: Annotated[
        str | None, typer.Option("--scenario", help="One scenario a–g for every patient.")
    ] = None,
    size: Annotated[str, typer.Option("--size", help="small (tests) or full (512×512).")] = "small",
    as_json: JsonFlag = False,
) -> None:
    from abscopal.synth import SCENARIOS, synthesize

    if scenario is not None and scenario not in SCENARIOS:
        msg = f"--scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}"
        raise typer.BadParameter(msg)
    if size not in {"small", "full"}:
        msg = f"--size must be 'small' or 'full', got {size!r}"
        raise typer.BadParameter(msg)
    chosen: Literal["small", "full"] = "full" if size == "full" else "small"
    folders = synthesize(out, patients=patients, seed=seed, scenario=scenario, size=chosen)
    payload = {"patients": len(folders), "patient_dirs": [str(f) for f in folders]}
    emit(payload, as_json=as_json, text="\n".join(str(f) for f in folders))
