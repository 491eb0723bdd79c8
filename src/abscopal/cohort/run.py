"""Run the per-patient pipeline over a cohort: local processes by default, Dask for clusters.

The same task, `process_patient`, runs in a `ProcessPoolExecutor` worker or on a Dask worker.
It stages a tree patient, reads one patient folder and returns a picklable `PatientOutcome`
with the hash of its inputs; only this (parent) process writes to the store, one transaction
per patient, as outcomes arrive. A patient's crash is its own failure; a worker that dies
(memory limit, segfault) is retried, alone at last, then recorded as failed. A rerun skips
patients whose input and settings hashes are unchanged.

Where the time goes: the workers hash a patient's inputs from the per-file hashes the pipeline
computes while reading them (no second read), the parent hashes only patients that a rerun may
skip, and local workers fork from a server that has already imported the pipeline.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import resource
import shutil
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from abscopal.cohort import store
from abscopal.cohort.source import (
    PatientSource,
    discover,
    input_sha256,
    settings_sha256,
    stage,
)
from abscopal.errors import AbscopalError, IngestError
from abscopal.pipeline import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)
REPORTS: Final = "patients"
LOGS: Final = "logs"
STAGING: Final = "sources"  # the staged folders of the patients of a DICOM tree
# Imported once by the forkserver that local and local-Dask workers fork from: ~3 s a worker
# otherwise, paid again after every crash or pool round. An import that fails is skipped.
# The report writers (~1 s more) only when the run writes patient reports.
PRELOAD: Final = (
    "abscopal.cohort.run",
    "abscopal.outputs",
    "abscopal.io.dicom",
    "abscopal.io.manifest",
    "abscopal.io.refs",
    "abscopal.io.rt",
    "abscopal.io.seg",
    "abscopal.io.pet",
    "abscopal.register",
    "abscopal.match",
    "abscopal.tracking",
)
PRELOAD_REPORTS: Final = ("abscopal.report.html", "abscopal.report.sr", "abscopal.report.tables")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
LIBRARIES: Final = ("numpy", "pydicom", "SimpleITK", "SQLAlchemy", "dask", "distributed")


class CohortError(AbscopalError):
    """A cohort run cannot start: bad options or an unreachable scheduler."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How to execute a cohort run; `jobs` None means one worker per core."""

    jobs: int | None = None
    scheduler: str | None = None
    dask_workers: int | None = None
    retries: int = 2
    memory_limit_mb: int | None = None  # per worker; None: 90 % of RAM shared by the workers
    patient_reports: bool = True  # False: results.json only, no per-patient report.html
    validate: bool = False
    manifests: Path | None = None  # a DICOM tree's manifests: folder or CSV (source.py)
    show_patient_ids: bool = False  # let messages name a tree patient's PatientID
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientTask:
    """Everything a worker needs to process one patient; picklable."""

    patient: PatientSource
    report_dir: Path
    log_path: Path
    settings: Settings
    patient_reports: bool
    validate: bool

    @property
    def key(self) -> str:
        """The patient's key."""
        return self.patient.key


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientOutcome:
    """What came back for one patient: its result, or the reason it failed.

    `seconds` is the analysis (or validation) alone, `cpu_seconds` the CPU time the worker
    spent on it (all threads); `overhead_seconds` the cohort's own work in the worker: staging,
    hashing, the patient's log.
    """

    key: str
    result: dict[str, Any] | None
    error: str | None
    seconds: float
    input_sha256: str | None = None  # None: validation, or the worker died
    overhead_seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the patient was processed (or validated) without error."""
        return self.error is None


class ProgressSink(Protocol):
    """Where a run reports progress (the CLI draws a rich progress bar)."""

    def start(self, total: int, skipped: int) -> None:
        """Called once, with the patients to process and the unchanged ones skipped."""

    def advance(self, outcome: PatientOutcome) -> None:
        """Called after each patient is stored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CohortSummary:
    """The outcome of a run, counted over the patients of SOURCE."""

    patients: int
    done: int
    failed: int
    skipped: int
    abscopal_patients: int
    failures: tuple[tuple[str, str], ...]
    run_id: int | None
    db: str
    executor: str
    seconds: float
    task_seconds: float  # summed analysis time of the per-patient tasks (inside the workers)
    worker_overhead_seconds: float  # summed staging and hashing time inside the workers
    task_cpu_seconds: float  # summed CPU time of the analyses


# ---------------------------------------------------------------- the per-patient task


def process_patient(task: PatientTask) -> PatientOutcome:
    """Run (or only validate) one patient; never raises for a patient's own problem."""
    started = time.perf_counter()
    handler = logging.FileHandler(task.log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("abscopal")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    analysis = cpu = 0.0
    result, error, digest = None, None, None
    try:
        logger.info("patient %s: %s", task.key, "validating" if task.validate else "analyzing")
        if task.patient.from_tree:
            stage(task.patient)
        began, began_cpu = time.perf_counter(), time.process_time()
        try:
            if task.validate:
                _validate(task.patient.path)
            else:
                result = _analyze(task)
        finally:
            analysis, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        logger.info("patient %s: done in %.1f s", task.key, analysis)
    except Exception as exc:
        logger.error("patient %s failed:\n%s", task.key, traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}".strip()
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        handler.close()
    if not task.validate:
        digest = input_sha256(task.patient, _pipeline_hashes(result))
    return PatientOutcome(
        key=task.key,
        result=result,
        error=error,
        seconds=analysis,
        input_sha256=digest,
        overhead_seconds=time.perf_counter() - started - analysis,
        cpu_seconds=cpu,
    )


def _pipeline_hashes(result: dict[str, Any] | None) -> dict[str, str]:
    """The per-file SHA-256 the pipeline computed while reading the inputs (none on failure)."""
    hashes = ((result or {}).get("provenance") or {}).get("input_sha256") or {}
    return {
        str(name): value
        for name, value in hashes.items()
        if isinstance(value, str) and _SHA256.fullmatch(value)  # anything else: read again
    }


def _analyze(task: PatientTask) -> dict[str, Any]:
    from abscopal.outputs import run_patient

    path = task.patient.path
    if task.patient_reports:
        result = run_patient(path, task.report_dir, task.settings, pdf=False)
    else:
        from abscopal.atomic import atomic_dir
        from abscopal.outputs import result_dict
        from abscopal.pipeline import analyze, load_patient

        inputs = load_patient(path)
        result = result_dict(analyze(inputs, task.settings), inputs)
        with atomic_dir(task.report_dir) as tmp:
            text = json.dumps(result, indent=2, default=str) + "\n"
            (tmp / "results.json").write_text(text, encoding="utf-8")
    plain: dict[str, Any] = json.loads(json.dumps(result, default=str))
    return plain


def _validate(path: Path) -> None:
    """Read the manifest and every DICOM header; no pixel data, no computation."""
    from abscopal.io.dicom import index_folder
    from abscopal.io.manifest import find_manifest, read_manifest

    manifest = find_manifest(path)
    read_manifest(manifest)
    series = index_folder(manifest.parent)
    if not any(s.modality == "CT" for s in series):
        msg = f"{manifest.parent}: no CT series found; a patient folder needs its CT timepoints"
        raise IngestError(msg)


def _limit_memory(limit_mb: int | None) -> None:
    """Worker initializer: cap the address space, so a blow-up is a MemoryError in one task."""
    if limit_mb is None:
        return
    limit = limit_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


# ---------------------------------------------------------------- the run


def run_cohort(
    source: Path,
    out_dir: Path,
    *,
    db_url: str | None = None,
    options: RunOptions | None = None,
    progress: ProgressSink | None = None,
) -> CohortSummary:
    """Process every patient of `source` into `out_dir` and the store; return the counts."""
    opts = options or RunOptions()
    _check(opts)
    started = time.perf_counter()
    if opts.scheduler is None and not opts.validate:
        _start_forkserver(opts)
    out_dir = Path(out_dir)
    url = db_url or store.default_url(out_dir)
    engine = store.open_store(url)  # unreachable or newer schema: an error before any work
    patients = discover(
        source,
        manifests=opts.manifests,
        staging=out_dir / STAGING,
        show_ids=opts.show_patient_ids,
    )
    settings_hash = settings_sha256(opts.settings)
    reports, logs = out_dir / REPORTS, out_dir / LOGS
    for folder in (reports, logs):
        folder.mkdir(parents=True, exist_ok=True)
        _remove_orphans(folder)
    if (out_dir / STAGING).is_dir():  # tree patients staged by a killed run
        _remove_orphans(out_dir / STAGING)
    hashes = {} if opts.validate else _unchanged(engine, patients, settings_hash, opts, reports)
    tasks = [_task(p, opts, reports, logs) for p in patients if p.key not in hashes]
    executor = _describe(opts)
    run_id = None
    if not opts.validate:
        run_id = store.start_run(
            engine,
            source=str(source),
            executor=executor,
            settings_sha256=settings_hash,
            provenance=_provenance(opts.settings, hashes),
        )
    if progress is not None:
        progress.start(len(tasks), len(patients) - len(tasks))
    by_key = {p.key: p for p in patients}
    outcomes: list[PatientOutcome] = []

    def record(outcome: PatientOutcome) -> None:
        outcomes.append(outcome)
        if run_id is not None:
            patient = by_key[outcome.key]
            hashes[outcome.key] = outcome.input_sha256 or input_sha256(patient)
            store.save_patient(
                engine,
                run_id=run_id,
                patient_key=outcome.key,
                source_path=str(patient.path),
                input_sha256=hashes[outcome.key],
                settings_sha256=settings_hash,
                result=outcome.result,
                error=outcome.error,
                result_path=str(reports / outcome.key) if outcome.ok else None,
            )
        if progress is not None:
            progress.advance(outcome)

    if tasks:
        if opts.scheduler is not None or opts.dask_workers is not None:
            _run_dask(tasks, opts, record)
        else:
            _run_local(tasks, opts, record)
    if run_id is not None:
        store.finish_run(engine, run_id, input_sha256=hashes)
    return _summary(
        engine,
        patients=patients,
        outcomes=outcomes,
        opts=opts,
        run_id=run_id,
        url=url,
        executor=executor,
        seconds=time.perf_counter() - started,
    )


def _unchanged(
    engine: Engine,
    patients: Sequence[PatientSource],
    settings_hash: str,
    opts: RunOptions,
    reports: Path,
) -> dict[str, str]:
    """The patients a rerun skips (done, same settings, same inputs): key → input hash.

    Only those stored as done with these settings are hashed here (in threads: hashlib and file
    reads release the GIL); every other patient is hashed by its worker.
    """
    from concurrent.futures import ThreadPoolExecutor

    stored = store.completed(engine)
    candidates = [
        p
        for p in patients
        if stored.get(p.key, ("",) * 3)[::2] == ("done", settings_hash)
        and not (opts.patient_reports and not (reports / p.key / "report.html").exists())
    ]
    with ThreadPoolExecutor(max_workers=min(8, _workers(opts))) as pool:
        digests = list(pool.map(input_sha256, candidates))
    return {
        p.key: digest
        for p, digest in zip(candidates, digests, strict=True)
        if stored[p.key][1] == digest
    }


def _task(patient: PatientSource, opts: RunOptions, reports: Path, logs: Path) -> PatientTask:
    return PatientTask(
        patient=patient,
        report_dir=reports / patient.key,
        log_path=logs / f"{patient.key}.log",
        settings=opts.settings,
        patient_reports=opts.patient_reports,
        validate=opts.validate,
    )


def _check(opts: RunOptions) -> None:
    if opts.scheduler is not None and opts.dask_workers is not None:
        msg = "--scheduler and --dask-workers exclude each other: pick one Dask cluster"
        raise CohortError(msg)
    for name, value in (("--jobs", opts.jobs), ("--dask-workers", opts.dask_workers)):
        if value is not None and value < 1:
            msg = f"{name} must be >= 1, got {value}"
            raise CohortError(msg)
    if opts.retries < 0:
        msg = f"retries must be >= 0, got {opts.retries}"
        raise CohortError(msg)


def _remove_orphans(folder: Path) -> None:
    """Drop temporary siblings a killed run left behind (`atomic_dir`, `atomic_path`)."""
    for leftover in folder.glob(".*.tmp*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _workers(opts: RunOptions) -> int:
    return opts.dask_workers or opts.jobs or len(os.sched_getaffinity(0))


def memory_limit_mb(opts: RunOptions) -> int:
    """The per-worker memory limit: the option, else 90 % of RAM shared by the workers."""
    if opts.memory_limit_mb is not None:
        return opts.memory_limit_mb
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return max(1024, int(0.9 * total / _workers(opts)))


def _describe(opts: RunOptions) -> str:
    if opts.scheduler is not None:
        return f"dask scheduler {opts.scheduler}"
    if opts.dask_workers is not None:
        return f"dask LocalCluster x{opts.dask_workers}"
    return f"local processes x{_workers(opts)}"


def _provenance(settings: Settings, hashes: dict[str, str]) -> dict[str, Any]:
    """Versions and settings; input hashes of the skipped patients (`finish_run` adds the rest)."""
    from dataclasses import asdict

    return {
        "abscopal": version("abscopal"),
        "libraries": {name: version(name) for name in LIBRARIES},
        "settings": json.loads(json.dumps(asdict(settings), default=_plain)),
        "input_sha256": dict(sorted(hashes.items())),
    }


def _plain(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    return str(value)


def _start_forkserver(opts: RunOptions) -> None:
    """Start the server that local workers (and a local Dask cluster's) fork from.

    It imports the pipeline in the background while this process opens the store and reads
    SOURCE; a server already running (an earlier run in this process) is kept as it is.
    """
    from multiprocessing import forkserver

    if opts.dask_workers is not None:
        import importlib

        distributed: Any = importlib.import_module("distributed.utils")
        with _dask_forkserver():
            distributed.get_mp_context()  # sets its preload list once; ours replaces it below
    reports = PRELOAD_REPORTS if opts.patient_reports else ()
    dask = ("distributed",) if opts.dask_workers is not None else ()
    multiprocessing.get_context("forkserver").set_forkserver_preload([*dask, *PRELOAD, *reports])
    forkserver.ensure_running()


def _run_local(
    tasks: Sequence[PatientTask], opts: RunOptions, record: Callable[[PatientOutcome], None]
) -> None:
    """Process pools; a broken pool's unfinished patients are retried, alone once retries run out."""
    attempts: Counter[str] = Counter()
    queue = list(tasks)
    limit = memory_limit_mb(opts)
    while queue:
        broken = _pool_round(queue, min(_workers(opts), len(queue)), limit, record)
        attempts.update(t.key for t in broken)
        queue = [t for t in broken if attempts[t.key] <= opts.retries]
        for task in (t for t in broken if attempts[t.key] > opts.retries):
            if _pool_round([task], 1, limit, record):  # alone: the culprit is known
                reason = (
                    f"worker process died {attempts[task.key] + 1} times (memory limit "
                    f"{limit} MB, or a crash in a native library); see {task.log_path.name}"
                )
                record(PatientOutcome(key=task.key, result=None, error=reason, seconds=0.0))


def _pool_round(
    tasks: Sequence[PatientTask],
    workers: int,
    limit_mb: int,
    record: Callable[[PatientOutcome], None],
) -> list[PatientTask]:
    broken: list[PatientTask] = []
    context = multiprocessing.get_context("forkserver")  # no fork of a threaded parent
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_limit_memory, initargs=(limit_mb,)
    ) as pool:
        futures = {pool.submit(process_patient, t): t for t in tasks}
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                broken.append(futures[future])
                continue
            record(outcome)
    return broken


def _run_dask(
    tasks: Sequence[PatientTask], opts: RunOptions, record: Callable[[PatientOutcome], None]
) -> None:
    import importlib

    distributed: Any = importlib.import_module("distributed")  # ships no type hints
    with _dask_forkserver():
        _run_on_dask(distributed, tasks, opts, record)


def _dask_forkserver() -> Any:
    """Dask configured for a local cluster of cohort workers (the nannies pass it on).

    Workers start (and restart) from the forkserver; no statistical profiler sampling the task
    thread every 10 ms nor GIL monitor, which only a dashboard would show; system metrics every
    2 s instead of 0.5 s. Long single tasks need none of them.
    """
    import dask

    return dask.config.set(
        {
            "distributed.worker.multiprocessing-method": "forkserver",
            "distributed.worker.profile.enabled": False,
            "distributed.admin.system-monitor.gil.enabled": False,
            "distributed.admin.system-monitor.interval": "2s",
        }
    )


def _run_on_dask(
    distributed: Any,
    tasks: Sequence[PatientTask],
    opts: RunOptions,
    record: Callable[[PatientOutcome], None],
) -> None:
    client, cluster = _dask_client(distributed, opts)
    try:
        futures = {
            client.submit(
                process_patient,
                t,
                key=f"abscopal-{t.key}-{os.getpid()}-{time.time_ns()}",
                pure=False,
                retries=opts.retries,
            ): t
            for t in tasks
        }
        for future in distributed.as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:
                outcome = PatientOutcome(
                    key=task.key,
                    result=None,
                    error=f"Dask worker lost: {type(exc).__name__}: {exc}",
                    seconds=0.0,
                )
            record(outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask_client(distributed: Any, opts: RunOptions) -> tuple[Any, Any]:
    """A client of the scheduler, or of a local cluster whose workers fork from a forkserver.

    Dask spawns fresh interpreters by default: each imports distributed and the pipeline, and
    tears down slowly. Forked from one server that has imported both (the caller selects the
    forkserver method), a worker, or its restart after a crash, starts and stops in a fraction
    of that.
    """
    if opts.scheduler is not None:
        try:
            return distributed.Client(opts.scheduler, timeout="15s"), None
        except OSError as exc:
            msg = f"cannot reach the Dask scheduler {opts.scheduler}: {exc}"
            raise CohortError(msg) from exc
    cluster = distributed.LocalCluster(
        n_workers=opts.dask_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=f"{memory_limit_mb(opts)}MB",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return distributed.Client(cluster), cluster


def _summary(
    engine: Engine,
    *,
    patients: Sequence[PatientSource],
    outcomes: Iterable[PatientOutcome],
    opts: RunOptions,
    run_id: int | None,
    url: str,
    executor: str,
    seconds: float,
) -> CohortSummary:
    outcomes = list(outcomes)
    keys = {p.key for p in patients}
    if opts.validate:
        failures = tuple((o.key, o.error or "") for o in outcomes if not o.ok)
        done, abscopal = len(outcomes) - len(failures), 0
    else:
        rows = store.patient_status(engine, keys)
        failures = tuple((k, e or "") for k, (s, _, e) in sorted(rows.items()) if s == "failed")
        done = sum(s == "done" for s, _, _ in rows.values())
        abscopal = sum(v == "abscopal" for s, v, _ in rows.values() if s == "done")
    return CohortSummary(
        patients=len(patients),
        done=done,
        failed=len(failures),
        skipped=len(patients) - len(outcomes),
        abscopal_patients=abscopal,
        failures=failures,
        run_id=run_id,
        db=store.shown(url),
        executor=executor,
        seconds=seconds,
        task_seconds=sum(o.seconds for o in outcomes),
        worker_overhead_seconds=sum(o.overhead_seconds for o in outcomes),
        task_cpu_seconds=sum(o.cpu_seconds for o in outcomes),
    )
