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
    incidence: Annotated[
        float | None,
        typer.Option(
            "--incidence",
            min=0.0,
            max=1.0,
            help="Draw a cohort: each patient is an abscopal responder with this probability.",
        ),
    ] = None,
    early_fraction: Annotated[
        float,
        typer.Option(
            "--early-fraction",
            min=0.0,
            max=1.0,
            help="With --incidence: share of responders responding on day 91 (else day 182).",
        ),
    ] = 0.5,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Processes writing patients.")] = 1,
    untracked: Annotated[
        bool,
        typer.Option(
            "--untracked",
            help="Follow-up SEGs label segments per date, with no shared TrackingUID "
            "(lesions must be matched by geometry).",
        ),
    ] = False,
    motion_deg: Annotated[
        float,
        typer.Option(
            "--motion",
            min=0.0,
            help="Move the patient rigidly between CTs: degrees about S per step (with a 10 mm "
            "shift); 0 = no motion.",
        ),
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    from abscopal.synth import SCENARIOS, synthesize
    from abscopal.synth.patient import Motion

    if scenario is not None and scenario not in SCENARIOS:
        msg = f"--scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}"
        raise typer.BadParameter(msg)
    if size not in {"small", "full"}:
        msg = f"--size must be 'small' or 'full', got {size!r}"
        raise typer.BadParameter(msg)
    chosen: Literal["small", "full"] = "full" if size == "full" else "small"
    motion = Motion(degrees=motion_deg) if motion_deg > 0 else None
    if incidence is not None:
        if untracked or motion is not None:
            msg = "--untracked and --motion apply to scenario patients; leave out --incidence"
            raise typer.BadParameter(msg)
        if scenario is not None:
            msg = "--incidence draws the scenarios itself; leave out --scenario"
            raise typer.BadParameter(msg)
        from abscopal.synth.cohort import synthesize_cohort

        folders = synthesize_cohort(
            out,
            patients=patients,
            seed=seed,
            incidence=incidence,
            early_fraction=early_fraction,
            size=chosen,
            jobs=jobs,
        )
    else:
        folders = synthesize(
            out,
            patients=patients,
            seed=seed,
            scenario=scenario,
            size=chosen,
            untracked=untracked,
            motion=motion,
        )
    payload = {"patients": len(folders), "patient_dirs": [str(f) for f in folders]}
    emit(payload, as_json=as_json, text="\n".join(str(f) for f in folders))
