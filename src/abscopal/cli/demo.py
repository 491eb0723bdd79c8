"""`abscopal demo`: synthesize one patient per scenario, analyze them, write the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abscopal.cli._app import JsonFlag, app, emit

DEMO_SEED = 2024


@app.command(help="Synthesize a small cohort covering every scenario, analyze it, print the index.")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/demo"),
    as_json: JsonFlag = False,
) -> None:
    from rich.console import Console

    from abscopal.outputs import run_patient
    from abscopal.report.html import write_index
    from abscopal.synth import SCENARIOS, synthesize_patient

    console = Console(stderr=True)
    results, reports = [], []
    for index, scenario in enumerate(SCENARIOS):
        folder = synthesize_patient(
            out / "patients", scenario=scenario, seed=DEMO_SEED, index=index
        )
        report_dir = out / "reports" / folder.name
        console.log(f"scenario {scenario}: analyzing {folder.name}")
        results.append(run_patient(folder, report_dir))
        reports.append(report_dir / "report.html")
    index_path = write_index(out / "index.html", results, reports)
    positive = [r["patient_id"] for r in results if r["abscopal"]["status"] == "abscopal"]
    payload = {
        "patients": len(results),
        "abscopal_patients": len(positive),
        "abscopal_patient_ids": positive,
        "report": str(index_path),
    }
    emit(payload, as_json=as_json, text=f"report: {index_path}")
