"""Cohort fixtures: one synthetic cohort of 50 patients, generated once and cached, run once.

Generating 50 small patients takes ~100 s on two cores, so the folders are cached under pytest's
cache folder, keyed by a hash of the synth sources and the cohort parameters: a change to the
generator regenerates them. Sessions running at once share the cache under a file lock (one
builds, the others wait), and an incomplete cohort is rebuilt. The reference run (`--jobs 2`, no
per-patient HTML) is made once per session and shared by the truth, statistics, equivalence and
crash tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import abscopal.synth
from abscopal.cohort import RunOptions, open_store, read_tables, run_cohort
from abscopal.synth.cohort import TRUTH_CSV, synthesize_cohort

PATIENTS = 50
SEED = 5
INCIDENCE = 0.3
EARLY_FRACTION = 0.6
POSTGRES_ENV = "ABSCOPAL_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class Reference:
    source: Path
    out: Path
    truth: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    folders: list[Path]


def _synth_hash() -> str:
    digest = hashlib.sha256(f"{PATIENTS}-{SEED}-{INCIDENCE}-{EARLY_FRACTION}".encode())
    root = Path(abscopal.synth.__file__).parent
    for file in sorted(root.glob("*.py")):
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def cohort_source(request: pytest.FixtureRequest) -> Path:
    """A folder of 50 synthetic patients plus cohort_truth.csv (read-only for tests)."""
    cache = Path(request.config.cache.mkdir("abscopal-cohort"))
    folder = cache / _synth_hash()
    # other pytest sessions on this working tree share the cache: one builds, the rest wait
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(folder):
            _build(cache, folder)
    return folder


def _complete(folder: Path) -> bool:
    if not (folder / TRUTH_CSV).exists():
        return False
    names = pd.read_csv(folder / TRUTH_CSV)["folder"]
    return len(names) == PATIENTS and all((folder / n / "manifest.yaml").is_file() for n in names)


def _build(cache: Path, folder: Path) -> None:
    for old in cache.iterdir():
        if old.is_dir():  # older generators' cohorts, and builds killed midway
            shutil.rmtree(old, ignore_errors=True)
    tmp = cache / f".building-{os.getpid()}"
    synthesize_cohort(
        tmp,
        patients=PATIENTS,
        seed=SEED,
        incidence=INCIDENCE,
        early_fraction=EARLY_FRACTION,
        jobs=2,
    )
    tmp.replace(folder)


@pytest.fixture(scope="session")
def reference(cohort_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The uninterrupted reference run of the whole cohort with two local workers."""
    out = tmp_path_factory.mktemp("cohort-reference")
    summary = run_cohort(cohort_source, out, options=RunOptions(jobs=2, patient_reports=False))
    assert summary.failed == 0, summary.failures
    truth = pd.read_csv(cohort_source / TRUTH_CSV)
    folders = sorted(
        p for p in cohort_source.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    tables = read_tables(open_store(f"sqlite:///{out / 'cohort.sqlite'}"))
    return Reference(source=cohort_source, out=out, truth=truth, tables=tables, folders=folders)


VOLATILE = {"run_id", "updated_at", "result_path", "started_at", "finished_at"}


def comparable(tables: dict[str, pd.DataFrame], keys: set[str]) -> dict[str, pd.DataFrame]:
    """The patient tables restricted to `keys`, without run ids, timestamps and output paths."""
    out = {}
    for name, frame in tables.items():
        if name == "runs":
            continue
        kept = frame[frame["patient_key"].isin(keys)]
        kept = kept.drop(columns=[c for c in kept.columns if c in VOLATILE])
        out[name] = kept.reset_index(drop=True)
    return out


def write_csv(path: Path, folders: list[Path]) -> Path:
    lines = ["path", *(str(f) for f in folders)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
