"""A de-identified run leaves neither the patient's name nor ID nor true dates in any output."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom

from abscopal.deid import deidentifier
from abscopal.outputs import run_patient


def test_text_shifts_dates_and_replaces_the_id() -> None:
    deid = deidentifier("SYN-1", shift_days=-10)
    assert (
        deid.text("SYN-1 seen 2024-03-11, t1 2024-05-13")
        == f"{deid.pseudonym} seen 2024-03-01, t1 2024-05-03"
    )
    assert deidentifier("SYN-1").pseudonym == deid.pseudonym  # stable
    assert -365 <= deidentifier("SYN-1").shift_days <= -1


def test_deidentified_outputs(synthetic_patients: dict[str, Path], tmp_path: Path) -> None:
    folder = synthetic_patients["d"]
    first_ct = next(p for p in sorted(folder.rglob("CT_*.dcm")))
    header = pydicom.dcmread(first_ct, stop_before_pixels=True)
    identifiers = [str(header.PatientID), str(header.PatientName), str(header.PatientBirthDate)]
    true_dates = [
        line.split(": ")[1]
        for line in (folder / "manifest.yaml").read_text().splitlines()
        if "date: 20" in line
    ]
    out = tmp_path / "deid"
    result = run_patient(folder, out, pdf=False, deidentify=True)
    assert result["patient_id"].startswith("ANON-")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".html", ".json", ".csv", ".parquet", ".dcm"}
    for path in files:
        data = path.read_bytes()
        for needle in [*identifiers, str(header.StudyInstanceUID), str(header.AccessionNumber)]:
            assert needle.encode() not in data, f"{needle!r} left in {path.name}"
        if path.suffix in {".json", ".csv", ".html"}:
            for day in true_dates:
                assert day.encode() not in data, f"true date {day} left in {path.name}"
    for sr_path in (out / "sr").glob("*.dcm"):
        sr = pydicom.dcmread(sr_path)
        assert sr.PatientIdentityRemoved == "YES"
        assert sr.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert "PatientBirthDate" not in sr or not sr.PatientBirthDate
    verdict = json.loads((out / "results.json").read_text())["abscopal"]
    assert (verdict["status"], verdict["certainty"]) == ("indeterminate", "C")  # same call


def test_zero_shift_keeps_dates(synthetic_patients: dict[str, Path], tmp_path: Path) -> None:
    result = run_patient(
        synthetic_patients["c"], tmp_path / "c", pdf=False, deidentify=True, date_shift_days=0
    )
    truth = json.loads((synthetic_patients["c"] / "truth.json").read_text())
    assert result["timeline"]["scan_dates"][0] == truth["lesions"][0]["diameters"][0]["date"]
    assert result["patient_id"] != truth["patient_id"]
