"""Execution: same results on every executor, resumable after SIGKILL, failures recorded."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from abscopal.cli.main import main
from abscopal.cohort import RunOptions, open_store, read_tables, run_cohort
from abscopal.cohort.store import StoreError
from conftest import Reference, comparable, write_csv

SUBSET = 7  # patients compared across executors
CRASH = 20  # patients of the crash test


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return read_tables(open_store(f"sqlite:///{out / 'cohort.sqlite'}"))


def _assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name, frame in left.items():
        pd.testing.assert_frame_equal(frame, right[name], check_dtype=False, obj=name)


@pytest.mark.parametrize(
    "options",
    [RunOptions(jobs=1, patient_reports=False), RunOptions(dask_workers=2, patient_reports=False)],
    ids=["jobs1", "dask2"],
)
def test_executors_give_the_reference_results(
    reference: Reference, tmp_path: Path, options: RunOptions
) -> None:
    folders = reference.folders[:SUBSET]
    source = write_csv(tmp_path / "cohort.csv", folders)
    summary = run_cohort(source, tmp_path / "out", options=options)
    assert (summary.done, summary.failed) == (SUBSET, 0)
    keys = {f.name for f in folders}
    _assert_same(comparable(_tables(tmp_path / "out"), keys), comparable(reference.tables, keys))


def test_sigkill_at_random_moments_then_resume_gives_the_same_database(
    reference: Reference, tmp_path: Path
) -> None:
    folders = reference.folders[:CRASH]
    source = write_csv(tmp_path / "cohort.csv", folders)
    out = tmp_path / "out"
    argv = ["cohort", str(source), "--out", str(out), "--jobs", "2", "--no-stats", "--json"]
    command = [
        sys.executable,
        "-c",
        "import sys; from abscopal.cli.main import main; main(sys.argv[1:])",
        *argv,
    ]
    rng = random.Random(20240607)
    logs = out / "logs"
    for _ in range(5):  # five kills, each at a random moment after the run has started work
        seen = len(list(logs.glob("*.log"))) if logs.exists() else 0
        process = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 180
        while process.poll() is None and time.monotonic() < deadline:
            if logs.exists() and len(list(logs.glob("*.log"))) > seen:
                break  # a worker has begun a new patient
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the run, its forkserver and its workers
        process.wait()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert (payload["patients"], payload["done"], payload["failed"]) == (CRASH, CRASH, 0)
    keys = {f.name for f in folders}
    _assert_same(comparable(_tables(out), keys), comparable(reference.tables, keys))
    runs = _tables(out)["runs"]
    assert len(runs) >= 2  # killed runs stay recorded, without finished_at
    leftovers = [p for p in out.rglob(".*") if p.name not in {".", ".."}]
    assert leftovers == []  # no temporary files or folders of killed writers
    assert sorted(p.name for p in (out / "patients").iterdir()) == sorted(keys)


def test_rerun_skips_unchanged_and_redoes_changed(reference: Reference, tmp_path: Path) -> None:
    folders = reference.folders[:2]
    source = write_csv(tmp_path / "cohort.csv", folders)
    out = tmp_path / "out"
    first = run_cohort(source, out, options=RunOptions(jobs=1, patient_reports=False))
    again = run_cohort(source, out, options=RunOptions(jobs=1, patient_reports=False))
    assert (first.skipped, again.skipped, again.done) == (0, 2, 2)


def test_bad_patients_fail_alone_with_their_reason(
    reference: Reference, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.yaml").write_text("patient_id: [unclosed\n", encoding="utf-8")
    source = write_csv(tmp_path / "cohort.csv", [*reference.folders[:2], empty, corrupt])
    with pytest.raises(SystemExit) as exit_info:
        main(["cohort", str(source), "--out", str(tmp_path / "out"), "--jobs", "2", "--json"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert {k: payload[k] for k in ("patients", "done", "failed")} == {
        "patients": 4,
        "done": 2,
        "failed": 2,
    }
    reasons = {f["patient"]: f["error"] for f in payload["failures"]}
    assert "manifest" in reasons["empty"]
    assert reasons["corrupt"]
    assert "patient corrupt failed" in captured.err
    assert Path(payload["report"]).exists()  # the cohort report of the two that completed
    assert (tmp_path / "out" / "patients" / reference.folders[0].name / "report.html").exists()
    assert (tmp_path / "out" / "logs" / "corrupt.log").read_text()


def test_validate_checks_inputs_without_computing(reference: Reference, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    source = write_csv(tmp_path / "cohort.csv", [reference.folders[0], empty])
    summary = run_cohort(source, tmp_path / "out", options=RunOptions(jobs=1, validate=True))
    assert (summary.done, summary.failed, summary.run_id) == (1, 1, None)
    assert not any((tmp_path / "out" / "patients").iterdir())


def test_unreachable_database_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    url = "postgresql+psycopg://user:secret@127.0.0.1:9/none"
    with pytest.raises(SystemExit) as exit_info:
        main(["cohort", str(tmp_path), "--out", str(tmp_path / "out"), "--db", url, "--json"])
    message = str(exit_info.value.code)
    assert "cannot open the database" in message
    assert "secret" not in message
    assert not (tmp_path / "out" / "logs").exists()


def test_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = open_store(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(StoreError, match="newer abscopal"):
        open_store(url)
