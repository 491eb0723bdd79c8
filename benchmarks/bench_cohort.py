"""Cohort throughput: patients per hour with 1 and 2 local workers and a 2-worker Dask cluster.

    python benchmarks/bench_cohort.py [--patients N] [--cache DIR]

Prints, for each executor, patients per hour and the per-patient overhead of the cohort
machinery (start-up, hashing, staging, scheduling, storing) as a share of the analysis time,
two ways:

- wall: (wall time × workers − summed analysis time) / patients, the issue's definition. It
  also counts workers idling at the end of the run and any other load on the machine.
- CPU: (CPU time of the run's whole process tree − summed analysis CPU) / patients, which
  other load on a shared machine disturbs far less.

Then the ratios: throughput at 2 workers over 2 × throughput at 1 worker (scaling efficiency).
Each executor runs in a fresh interpreter, as `abscopal cohort` would, on the same cohort; no
per-patient HTML. The issue's figure is for `--patients 100` (about 10 minutes on two cores);
`make bench` runs the default 20, whose fixed start-up costs weigh ~5 times more per patient.
Synthetic patients are written once into the cache folder (default
`$XDG_CACHE_HOME/abscopal/bench-cohort`), keyed by the synth sources and the cohort size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import abscopal.synth
from abscopal.synth.cohort import TRUTH_CSV, synthesize_cohort

SEED = 1
INCIDENCE = 0.3
EXECUTORS = {  # name: (RunOptions keywords, workers)
    "local x1": ({"jobs": 1}, 1),
    "local x2": ({"jobs": 2}, 2),
    "dask x2": ({"dask_workers": 2}, 2),
}


def cohort(cache: Path, patients: int) -> Path:
    """The cached synthetic cohort of `patients` (generated on first use)."""
    digest = hashlib.sha256(f"{patients}-{SEED}-{INCIDENCE}".encode())
    for file in sorted(Path(abscopal.synth.__file__).parent.glob("*.py")):
        digest.update(file.read_bytes())
    folder = cache / digest.hexdigest()[:16]
    if not (folder / TRUTH_CSV).exists():
        print(f"writing {patients} synthetic patients to {folder} (once)", flush=True)
        tmp = cache / f".building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        synthesize_cohort(tmp, patients=patients, seed=SEED, incidence=INCIDENCE, jobs=2)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    return folder


def run_one(name: str, source: Path, out: Path) -> None:
    """In a child interpreter: one executor's run; its summary as JSON on stdout."""
    from abscopal.cohort import RunOptions, run_cohort

    keywords, _ = EXECUTORS[name]
    options = RunOptions(
        patient_reports=False, jobs=keywords.get("jobs"), dask_workers=keywords.get("dask_workers")
    )
    summary = run_cohort(source, out, options=options)
    _reap_forkserver()
    print(
        json.dumps(
            {
                "failed": summary.failed,
                "failures": summary.failures[:2],
                "seconds": summary.seconds,
                "task_seconds": summary.task_seconds,
                "task_cpu_seconds": summary.task_cpu_seconds,
            }
        )
    )


def _reap_forkserver() -> None:
    """Stop and wait for the forkserver, which reaped the workers: their CPU time then counts."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)  # private, 3.8+
    if stop is not None:
        stop()


def measure(name: str, source: Path, out: Path) -> dict[str, float]:
    """Run one executor in a child process; its summary plus the process tree's CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, __file__, "--run", name, "--source", str(source), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return figures


def main() -> int:
    """Run the three executors on one cohort and print their figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=_default_cache())
    parser.add_argument("--run", choices=sorted(EXECUTORS), help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_one(args.run, args.source, args.out)
        return 0
    source = cohort(args.cache, args.patients)
    n = args.patients
    print(f"{n} small synthetic patients, {os.cpu_count()} CPUs; timings of a shared machine vary")
    per_hour = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, workers) in EXECUTORS.items():
            figures = measure(name, source, Path(tmp) / name.replace(" ", ""))
            if figures["failed"]:
                print(f"{name}: {figures['failed']} failed: {figures['failures']}", file=sys.stderr)
                return 1
            per_hour[name] = n / figures["seconds"] * 3600
            analysis = figures["task_seconds"] / n
            wall = (figures["seconds"] * workers - figures["task_seconds"]) / n
            cpu = (figures["cpu_seconds"] - figures["task_cpu_seconds"]) / n
            analysis_cpu = figures["task_cpu_seconds"] / n
            print(
                f"{name}: {per_hour[name]:.0f} patients/h ({figures['seconds']:.1f} s); "
                f"analysis {analysis:.2f} s/patient; cohort overhead {wall:.2f} s/patient "
                f"({100 * wall / analysis:.1f} % of analysis, wall), {cpu:.2f} CPU s/patient "
                f"({100 * cpu / analysis_cpu:.1f} % of analysis CPU)",
                flush=True,
            )
    for name in ("local x2", "dask x2"):
        ratio = per_hour[name] / per_hour["local x1"]
        print(f"{name} vs local x1: ratio {ratio:.2f}x, scaling efficiency {50 * ratio:.0f} %")
    return 0


def _default_cache() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "abscopal" / "bench-cohort"


if __name__ == "__main__":
    sys.exit(main())
