"""The files `analyze` writes besides the HTML: PDF, DICOM SR TID 1500, CSV and Parquet."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import highdicom as hd
import pandas as pd
import pytest

from abscopal.outputs import run_patient


@pytest.fixture(scope="module")
def outputs(
    synthetic_patients: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("outputs") / "b"
    return out, run_patient(synthetic_patients["b"], out, pdf=True)


def test_pdf_pages_render(outputs: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """pdftoppm renders every page (A4); the verdict page and the figures take at least three."""
    pdf = outputs[0] / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed; .ci/run installs it")
    subprocess.run(["pdftoppm", "-r", "20", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert 3 <= len(pages) <= 30
    assert all(p.stat().st_size > 1000 for p in pages)


def test_sr_round_trip_keeps_measurements_and_tracking(
    outputs: tuple[Path, dict[str, Any]],
) -> None:
    """Every present lesion at every timepoint comes back from the SR with its values and UIDs."""
    out, result = outputs
    srs = sorted((out / "sr").glob("*.dcm"))
    assert len(srs) == len(result["timeline"]["scan_dates"])
    uids: dict[str, set[str]] = {}
    for path in srs:
        sr = hd.sr.srread(path)
        iso = f"{path.stem[:4]}-{path.stem[4:6]}-{path.stem[6:]}"
        groups = sr.content.get_volumetric_roi_measurement_groups()
        assert groups
        for group in groups:
            lesion = next(
                x for x in result["lesions"] if x["lesion_id"] == group.tracking_identifier
            )
            m = next(x for x in lesion["measurements"] if x["date"] == iso)
            values = {v.name.meaning: v.value for v in group.get_measurements()}
            assert float(values["Long Axis"]) == pytest.approx(m["diameter_long_mm"])
            assert float(values["Short Axis"]) == pytest.approx(m["diameter_short_mm"])
            assert float(values["Volume"]) == pytest.approx(m["volume_ml"])
            assert group.finding_sites
            uids.setdefault(group.tracking_identifier, set()).add(group.tracking_uid)
    assert all(len(u) == 1 for u in uids.values())  # one TrackingUID per lesion across timepoints


def test_lesion_tables(outputs: tuple[Path, dict[str, Any]]) -> None:
    out, result = outputs
    csv = pd.read_csv(out / "lesions.csv")
    parquet = pd.read_parquet(out / "lesions.parquet")
    expected_rows = sum(len(x["measurements"]) for x in result["lesions"])
    assert len(csv) == len(parquet) == expected_rows
    b2 = csv[csv["lesion_id"] == "B2"]
    assert set(b2["field"]) == {"out_of_field"}
    assert set(b2["abscopal_grade"]) == {"B"}
    assert json.loads((out / "results.json").read_text())["abscopal"]["status"] == "abscopal"
