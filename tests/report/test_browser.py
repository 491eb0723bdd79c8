"""The HTML report as a radiologist opens it: headless Chromium renders it and shows the verdict."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from abscopal.outputs import run_patient

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_renders_in_chromium(synthetic_patients: dict[str, Path], tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed here; .ci/run installs it")
    out = tmp_path / "e"
    run_patient(synthetic_patients["e"], out, pdf=False)
    url = (out / "report.html").resolve().as_uri()
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, "--window-size=1200,2400", f"--screenshot={shot}", url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 50_000  # a page with figures, not a blank or error page
    dom = subprocess.run(
        [*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert "Abscopal response" in dom and "(abscopal)" in dom  # the verdict of scenario e
    assert "For research use only; not for clinical decision-making." in dom
    assert dom.count("<img") >= 5
    assert 'id="dose"' in dom and "B2" in dom
