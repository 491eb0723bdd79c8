"""The command line: `--json` keys of the contract, and bad input that fails cleanly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest

from abscopal.cli.main import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr as the shell would see them (sys.exit(str) prints it, exits 1)."""
    message = ""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        message = "" if isinstance(exc.code, int) or exc.code is None else f"{exc.code}\n"
    out, err = capsys.readouterr()
    return code, out, err + message


def test_analyze_json_keys(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["analyze", str(synthetic_patients["a"]), "--out", str(tmp_path / "a"), "--json"], capsys
    )
    assert code == 0
    result = json.loads(out)
    assert {"patient_id", "lesions", "abscopal"} <= result.keys()
    for lesion in result["lesions"]:
        assert {"lesion_id", "field", "dose_mean_gy", "best_response"} <= lesion.keys()
    assert {"status", "certainty", "lesions"} <= result["abscopal"].keys()
    assert (tmp_path / "a" / "report.html").is_file()
    assert (
        json.loads((tmp_path / "a" / "results.json").read_text())["abscopal"] == result["abscopal"]
    )


def test_synth_json_and_determinism(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--patients",
            "1",
            "--seed",
            "3",
            "--scenario",
            "c",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    payload = json.loads(out)
    assert payload["patients"] == 1
    truth = json.loads((Path(payload["patient_dirs"][0]) / "truth.json").read_text())
    assert truth["abscopal"]["status"] == "not_abscopal"


def test_synth_untracked_and_moving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--untracked --motion 4` writes exactly what the generator's options write."""
    from abscopal.synth import synthesize_patient
    from abscopal.synth.patient import Motion

    argv = ["synth", "--out", str(tmp_path / "cli"), "--seed", "11", "--scenario", "f"]
    code, out, _ = run([*argv, "--untracked", "--motion", "4", "--json"], capsys)
    assert code == 0
    (cli_dir,) = (Path(d) for d in json.loads(out)["patient_dirs"])
    api_dir = synthesize_patient(
        tmp_path / "api", scenario="f", seed=11, untracked=True, motion=Motion(degrees=4.0)
    )
    files = sorted(p.relative_to(cli_dir) for p in cli_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(api_dir) for p in api_dir.rglob("*") if p.is_file())
    assert all((cli_dir / f).read_bytes() == (api_dir / f).read_bytes() for f in files)
    origins = {
        tuple(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient)
        for p in sorted(cli_dir.rglob("ct/*/*.dcm"))[::64]
    }
    assert len(origins) > 1  # the CTs stand in different places


def copy_patient(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def assert_clean_failure(
    argv: list[str], out_dir: Path, capsys: pytest.CaptureFixture[str], *fragments: str
) -> None:
    code, out, err = run([*argv, "--out", str(out_dir), "--no-pdf", "--json"], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("abscopal: error: ")
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    for fragment in fragments:
        assert fragment in err
    assert not out_dir.exists()  # nothing half-written
    assert not any(out_dir.parent.glob(f".{out_dir.name}*"))


def test_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(
        ["analyze", str(empty)], tmp_path / "out", capsys, "no manifest.yaml", str(empty)
    )


def test_folder_without_manifest(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = copy_patient(synthetic_patients["c"], tmp_path)
    (patient / "manifest.yaml").unlink()
    assert_clean_failure(
        ["analyze", str(patient)], tmp_path / "out", capsys, "no manifest.yaml", "README"
    )


def test_manifest_with_misspelt_field(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = copy_patient(synthetic_patients["c"], tmp_path)
    manifest = patient / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("prescription_gy:", "prescripton_gy:"))
    assert_clean_failure(
        ["analyze", str(patient)],
        tmp_path / "out",
        capsys,
        "manifest.yaml line",
        "prescripton_gy: Extra inputs are not permitted",
        "prescription_gy: Field required",
    )


def test_manifest_with_missing_field(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = copy_patient(synthetic_patients["c"], tmp_path)
    manifest = patient / "manifest.yaml"
    lines = [
        line
        for line in manifest.read_text().splitlines()
        if not line.strip().startswith("fractions:")
    ]
    manifest.write_text("\n".join(lines) + "\n")
    assert_clean_failure(
        ["analyze", str(patient)], tmp_path / "out", capsys, "fractions: Field required"
    )


def test_file_that_is_not_dicom(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = copy_patient(synthetic_patients["c"], tmp_path)
    junk = next((patient / "ct").iterdir()) / "CT_9999.dcm"
    junk.write_text("this is a note, not an image")
    assert_clean_failure(
        ["analyze", str(patient)], tmp_path / "out", capsys, "CT_9999.dcm", "not a DICOM file"
    )


def test_seg_on_another_frame_of_reference(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = copy_patient(synthetic_patients["c"], tmp_path)
    seg_path = sorted((patient / "seg").iterdir())[-1]
    seg = pydicom.dcmread(seg_path)
    seg.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=["another frame"])
    seg.save_as(seg_path)
    assert_clean_failure(
        ["analyze", str(patient)], tmp_path / "out", capsys, seg_path.name, "FrameOfReferenceUID"
    )


def test_bad_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["synth", "--out", "x", "--scenario", "z"], capsys)
    assert code == 2


def test_lesion_override_naming_a_missing_lesion(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = copy_patient(synthetic_patients["c"], tmp_path)
    manifest = patient / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace("lesion_id: B3", "lesion_id: B9"))
    assert_clean_failure(
        ["analyze", str(patient)], tmp_path / "out", capsys, "lesion_id 'B9' matches no segment"
    )


def test_scan_before_birth(
    synthetic_patients: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = copy_patient(synthetic_patients["c"], tmp_path)
    manifest = patient / "manifest.yaml"
    manifest.write_text(manifest.read_text() + "birth_date: 2030-01-01\n")
    assert_clean_failure(["analyze", str(patient)], tmp_path / "out", capsys, "before birth_date")
