"""`abscopal cohort`: many patients, resumable, on local processes or a Dask cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from abscopal.cli._app import JsonFlag, app, emit

if TYPE_CHECKING:
    from abscopal.cohort.run import PatientOutcome


class _RichProgress:
    """A rich progress bar with ETA on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]cohort"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.bar.add_task("cohort", total=None, failed=0)
        self.failed = 0

    def start(self, total: int, skipped: int) -> None:
        self.bar.start()
        if skipped:
            self.bar.console.log(f"{skipped} unchanged patient(s) skipped")
        self.bar.update(self.task, total=total)

    def advance(self, outcome: PatientOutcome) -> None:
        self.failed += not outcome.ok
        self.bar.update(self.task, advance=1, failed=self.failed)

    def stop(self) -> None:
        self.bar.stop()


@app.command(
    help="Analyze every patient of SOURCE (a folder of patient folders, a CSV listing them, or "
    "a DICOM tree to split by PatientID) into --out and a results database; rerun to resume."
)
def cohort(
    source: Annotated[
        Path,
        typer.Argument(
            help="Folder of patient folders, a CSV (path column), or a DICOM tree with "
            "manifests/<PatientID>.yaml or manifests.csv (patient_id,manifest)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="SQLAlchemy URL; default sqlite in --out (postgresql+psycopg://…)."
        ),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", min=1, help="Local worker processes (default: cores).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address, tcp://host:port.")
    ] = None,
    dask_workers: Annotated[
        int | None,
        typer.Option("--dask-workers", min=1, help="Start a local Dask cluster of N workers."),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Retries of a dead worker's patient.")
    ] = 2,
    memory_limit_mb: Annotated[
        int | None, typer.Option("--memory-limit-mb", min=256, help="Memory limit per worker (MB).")
    ] = None,
    reports: Annotated[
        bool, typer.Option("--reports/--no-reports", help="Write each patient's report.html.")
    ] = True,
    validate: Annotated[
        bool, typer.Option("--validate", help="Dry run: check every input, compute nothing.")
    ] = False,
    stats: Annotated[
        bool, typer.Option("--stats/--no-stats", help="Write the cohort report and exports.")
    ] = True,
    manifests: Annotated[
        Path | None,
        typer.Option(
            "--manifests",
            help="SOURCE is a DICOM tree: its manifests, a folder of <PatientID>.yaml or a CSV "
            "(patient_id,manifest).",
        ),
    ] = None,
    show_patient_ids: Annotated[
        bool,
        typer.Option(
            "--show-patient-ids",
            help="Let messages name a DICOM tree's PatientIDs (default: pseudonyms only).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    from abscopal.cohort.run import RunOptions, run_cohort

    options = RunOptions(
        jobs=jobs,
        scheduler=scheduler,
        dask_workers=dask_workers,
        retries=retries,
        memory_limit_mb=memory_limit_mb,
        patient_reports=reports,
        validate=validate,
        manifests=manifests,
        show_patient_ids=show_patient_ids,
    )
    progress = None if as_json or not sys.stderr.isatty() else _RichProgress()
    try:
        summary = run_cohort(source, out, db_url=db, options=options, progress=progress)
    finally:
        if progress is not None:
            progress.stop()
    report = None
    if stats and not validate and summary.done:
        from abscopal.cohort.stats import summarize
        from abscopal.cohort.store import open_store, read_tables
        from abscopal.report.cohort import write_cohort_report

        tables = read_tables(open_store(db or _default(out)))
        report = write_cohort_report(out / "cohort", tables, summarize(tables))
    payload = {
        "patients": summary.patients,
        "done": summary.done,
        "failed": summary.failed,
        "abscopal_patients": summary.abscopal_patients,
        "skipped": summary.skipped,
        "validated": validate,
        "failures": [{"patient": k, "error": e} for k, e in summary.failures],
        "run_id": summary.run_id,
        "db": summary.db,
        "executor": summary.executor,
        "report": None if report is None else str(report),
        "seconds": round(summary.seconds, 2),
    }
    text = (
        f"{summary.done} of {summary.patients} patients done, {summary.failed} failed, "
        f"{summary.abscopal_patients} abscopal" + (f"; report: {report}" if report else "")
    )
    emit(payload, as_json=as_json, text=text)
    if summary.failed:
        for key, error in summary.failures:
            typer.echo(f"abscopal: patient {key} failed: {error}", err=True)
        raise typer.Exit(code=1)


def _default(out: Path) -> str:
    from abscopal.cohort.store import default_url

    return default_url(out)
