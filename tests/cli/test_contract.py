"""The `--json` keys of DESIGN.md's command-line contract for dvh, y90 and demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abscopal.cli.main import main
from shared_data import shared_path


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    try:
        main(argv)
    except SystemExit as exc:  # typer exits 0 after a command
        assert exc.code in (0, None)
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_dvh_keys_and_heart_mean(capsys: pytest.CaptureFixture[str]) -> None:
    """Heart mean dose equals dicompyler-core's 0.6475 Gy on the same plan (benchmarks/bench_dvh)."""
    folder = shared_path("data", "dicompyler")
    result = run_json(
        [
            "dvh",
            str(folder / "rtdose.dcm"),
            str(folder / "rtss.dcm"),
            "--structure",
            "Heart",
            "--json",
        ],
        capsys,
    )
    (heart,) = result["structures"]  # type: ignore[misc]
    keys = {"name", "volume_ml", "dose_min_gy", "dose_mean_gy", "dose_max_gy", "d98_gy", "d2_gy"}
    assert keys <= heart.keys()
    assert heart["dose_mean_gy"] == pytest.approx(0.64753, rel=1e-3)


def test_y90_keys_and_total_activity(
    synthetic_patients: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Imaged activity decayed back to administration equals the administered activity (±2 %)."""
    patient = synthetic_patients["a"]
    result = run_json(["y90", str(patient / "pet"), "--json"], capsys)
    assert {"total_activity_bq", "dose_mean_gy"} <= result.keys()
    manifest = (patient / "manifest.yaml").read_text()
    administered_gbq = float(
        next(line.split(":")[1] for line in manifest.splitlines() if "activity_gbq" in line)
    )
    assert result["total_activity_bq"] == pytest.approx(administered_gbq * 1e9, rel=0.02)


def test_demo_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's keys, on one scenario to keep the test short (`make demo` runs all seven)."""
    import abscopal.synth

    monkeypatch.setattr(abscopal.synth, "SCENARIOS", ("a",))
    result = run_json(["demo", "--out", str(tmp_path), "--json"], capsys)
    assert (result["patients"], result["abscopal_patients"]) == (1, 1)
    assert Path(str(result["report"])).is_file()


def test_y90_dose_written_as_rtdose(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out dose.dcm` is an RTDOSE on the PET's frame and study, equal to the NIfTI dose map."""
    import pydicom

    from abscopal.io.image import read_itk_volume
    from abscopal.io.rt import read_rtdose

    pet = synthetic_patients["a"] / "pet"
    run_json(["y90", str(pet), "--out", str(tmp_path / "dose.dcm"), "--json"], capsys)
    run_json(["y90", str(pet), "--out", str(tmp_path / "dose.nii.gz"), "--json"], capsys)
    rtdose = read_rtdose(tmp_path / "dose.dcm").volume
    nifti = read_itk_volume(tmp_path / "dose.nii.gz")
    first_pet = pydicom.dcmread(next(pet.rglob("*.dcm")), stop_before_pixels=True)
    assert rtdose.grid.frame_of_reference_uid == first_pet.FrameOfReferenceUID
    assert pydicom.dcmread(tmp_path / "dose.dcm").StudyInstanceUID == first_pet.StudyInstanceUID
    assert rtdose.grid.same_geometry(nifti.grid, tol_mm=1e-3)
    peak = float(nifti.array.max())
    assert np.abs(rtdose.array - nifti.array).max() <= 1e-6 * peak
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing staged
