"""Cohort throughput: patients per hour with 1 and 2 local workers and a 2-worker Dask cluster.

Prints the scaling efficiency at 2 workers (throughput ratio / 2) and the per-patient overhead of
the cohort machinery (hashing, scheduling, storing): wall time × workers minus the summed task
time, per patient, as a share of the analysis time. Small synthetic patients, no per-patient HTML
(`ABSCOPAL_BENCH_PATIENTS`, default 20, sets the cohort size; the issue asks for up to 100).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from abscopal.cohort import RunOptions, run_cohort
from abscopal.synth.cohort import synthesize_cohort


def main() -> int:
    """Run the three executors on one cohort and print their figures."""
    patients = int(os.environ.get("ABSCOPAL_BENCH_PATIENTS", "20"))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "patients"
        synthesize_cohort(source, patients=patients, seed=1, incidence=0.3, jobs=2)
        figures = {}
        for name, options, workers in (
            ("local x1", RunOptions(jobs=1, patient_reports=False), 1),
            ("local x2", RunOptions(jobs=2, patient_reports=False), 2),
            ("dask x2", RunOptions(dask_workers=2, patient_reports=False), 2),
        ):
            summary = run_cohort(source, Path(tmp) / name.replace(" ", ""), options=options)
            if summary.failed:
                print(f"{name}: {summary.failed} failed: {summary.failures[:2]}", file=sys.stderr)
                return 1
            per_hour = patients / summary.seconds * 3600
            analysis = summary.task_seconds / patients
            overhead = (summary.seconds * workers - summary.task_seconds) / patients
            figures[name] = per_hour
            print(
                f"{name}: {per_hour:.0f} patients/h ({summary.seconds:.1f} s for {patients}); "
                f"analysis {analysis:.2f} s/patient, cohort overhead {overhead:.2f} s/patient "
                f"({100 * overhead / analysis:.1f} % of analysis)"
            )
        for name in ("local x2", "dask x2"):
            ratio = figures[name] / figures["local x1"]
            print(
                f"{name} vs local x1: ratio {ratio:.2f}x, scaling efficiency {100 * ratio / 2:.0f} %"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
