"""SOURCE kinds: a DICOM tree split by PatientID, with pseudonymous keys and clear errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from abscopal.cli.main import main
from abscopal.cohort import RunOptions, open_store, read_tables, run_cohort
from abscopal.cohort.source import discover, pseudonym
from abscopal.errors import IngestError
from conftest import Reference, comparable

TREE_PATIENTS = 3  # analysed from the tree; the reference run gives their expected rows
_NAMED_FILE = re.compile(r"^\s*(rtdose|rtstruct):.*\n", re.MULTILINE)


def _folders(source: Path) -> list[Path]:
    return sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))


def _y90_first(folders: list[Path], count: int) -> list[Path]:
    """`count` patients, a Y-90 one first (its manifest names a PET folder, relative to the root)."""
    y90 = [f for f in folders if "radioembolization" in (f / "manifest.yaml").read_text()]
    return [y90[0], *[f for f in folders if f != y90[0]][: count - 1]]


def mixed_tree(root: Path, patients: list[Path], *, manifests: list[Path]) -> Path:
    """The patients' DICOM files shuffled into shared folders (`ct/<date>/`, `rt/`, `seg/`,
    `pet/`), and `manifests/<PatientID>.yaml` for those in `manifests`.

    File names get a patient-free prefix, so nothing but the headers tells the patients apart.
    The manifests drop their rtdose/rtstruct paths (several patients' files now share `rt/`):
    each patient's single RTDOSE and RTSTRUCT are found by modality; `post_treatment_imaging:
    pet` still points at the tree's `pet/` folder, which holds one PET series per patient.
    """
    for n, folder in enumerate(patients):
        for file in sorted(folder.rglob("*.dcm")):
            relative = file.relative_to(folder)
            target = root / relative.parent / f"{n:02d}-{relative.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    (root / "manifests").mkdir(parents=True)
    for folder in manifests:
        text = _NAMED_FILE.sub("", (folder / "manifest.yaml").read_text())
        (root / "manifests" / f"{folder.name}.yaml").write_text(text)
    return root


def test_a_tree_is_split_by_patient_id_under_pseudonyms(
    cohort_source: Path, tmp_path: Path
) -> None:
    chosen = _folders(cohort_source)[:3]
    tree = mixed_tree(tmp_path / "tree", chosen, manifests=chosen[:2])
    (tree / "manifests" / "NOT-IN-TREE.yaml").write_text("patient_id: NOT-IN-TREE\n")
    patients = {p.key: p for p in discover(tree, staging=tmp_path / "staging")}
    assert set(patients) == {pseudonym(f.name) for f in chosen} | {pseudonym("NOT-IN-TREE")}
    for folder in chosen[:2]:
        patient = patients[pseudonym(folder.name)]
        assert patient.missing is None
        assert patient.members[0] == ("manifest.yaml", tree / "manifests" / f"{folder.name}.yaml")
        assert len(patient.members) == 1 + len(list(folder.rglob("*.dcm")))  # its files only
    no_manifest = patients[pseudonym(chosen[2].name)].missing
    no_files = patients[pseudonym("NOT-IN-TREE")].missing
    assert no_manifest is not None
    assert "no manifest" in no_manifest
    assert str(tree / "manifests") in no_manifest
    assert no_files is not None
    assert "no DICOM file" in no_files
    for key, patient in patients.items():
        assert re.fullmatch(r"pid-[0-9a-f]{12}", key)
        assert "SYN-" not in (patient.missing or "")  # PatientIDs stay out of messages
        assert "NOT-IN-TREE" not in (patient.missing or "")


def test_show_ids_names_the_patient_id_and_a_csv_maps_manifests(
    cohort_source: Path, tmp_path: Path
) -> None:
    chosen = _folders(cohort_source)[:2]
    tree = mixed_tree(tmp_path / "tree", chosen, manifests=chosen[:1])
    table = tmp_path / "map.csv"
    manifest = tree / "manifests" / f"{chosen[0].name}.yaml"
    table.write_text(f"patient_id,manifest\n{chosen[0].name},{manifest}\n")
    patients = discover(tree, manifests=table, staging=tmp_path / "s", show_ids=True)
    by_key = {p.key: p for p in patients}
    assert by_key[pseudonym(chosen[0].name)].members[0][1] == manifest
    missing = by_key[pseudonym(chosen[1].name)].missing or ""
    assert f"PatientID {chosen[1].name!r}" in missing
    assert str(table) in missing


def test_a_tree_without_manifests_is_an_error_that_says_where_they_go(
    cohort_source: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    mixed_tree(tree, _folders(cohort_source)[:1], manifests=[])
    (tree / "manifests").rmdir()
    with pytest.raises(IngestError, match=r"manifests/<PatientID>\.yaml.*manifests\.csv"):
        discover(tree, staging=tmp_path / "staging")


def test_tree_patients_give_the_reference_results_and_resume(
    reference: Reference, tmp_path: Path
) -> None:
    chosen = _y90_first(reference.folders, TREE_PATIENTS + 1)
    analysed, unlisted = chosen[:TREE_PATIENTS], chosen[TREE_PATIENTS]
    tree = mixed_tree(tmp_path / "tree", chosen, manifests=analysed)
    out = tmp_path / "out"
    options = RunOptions(jobs=2, patient_reports=False)
    summary = run_cohort(tree, out, options=options)
    assert (summary.patients, summary.done, summary.failed) == (len(chosen), TREE_PATIENTS, 1)
    [(key, reason)] = summary.failures
    assert key == pseudonym(unlisted.name)
    assert "no manifest" in reason
    logs = "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    named = [f.name for f in chosen if f.name in logs or f.name in reason]
    assert named == []  # neither logs nor errors name a PatientID
    keys = {pseudonym(f.name): f.name for f in analysed}
    got = _renamed(read_tables(open_store(f"sqlite:///{out / 'cohort.sqlite'}")), keys)
    _assert_same(
        comparable(got, set(keys.values())), comparable(reference.tables, set(keys.values()))
    )
    again = run_cohort(tree, out, options=options)
    assert (again.skipped, again.done) == (TREE_PATIENTS, TREE_PATIENTS)  # staged hashes are stable


def _renamed(tables: dict[str, pd.DataFrame], keys: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Tables with pseudonymous keys mapped back to folder names; paths and hashes dropped."""
    out = {}
    for name, frame in tables.items():
        renamed = frame
        if "patient_key" in frame:
            renamed = frame.assign(patient_key=frame["patient_key"].map(lambda k: keys.get(k, k)))
        out[name] = renamed.drop(columns=["input_sha256", "source_path"], errors="ignore")
    return out


def _assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name, frame in left.items():
        theirs = right[name].drop(columns=["input_sha256", "source_path"], errors="ignore")
        ordered = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
        expected = theirs.sort_values(list(theirs.columns[:2])).reset_index(drop=True)
        pd.testing.assert_frame_equal(ordered, expected, check_dtype=False, obj=name)


def test_validate_checks_a_tree_patient_without_computing(
    cohort_source: Path, tmp_path: Path
) -> None:
    chosen = _folders(cohort_source)[:1]
    tree = mixed_tree(tmp_path / "tree", chosen, manifests=chosen)
    summary = run_cohort(tree, tmp_path / "out", options=RunOptions(jobs=1, validate=True))
    assert (summary.done, summary.failed, summary.run_id) == (1, 0, None)
    staged = tmp_path / "out" / "sources" / pseudonym(chosen[0].name)
    assert (staged / "manifest.yaml").is_file()
    assert len(list(staged.rglob("*.dcm"))) == len(list(chosen[0].rglob("*.dcm")))


def test_the_command_takes_manifests_and_shows_ids_only_when_asked(
    cohort_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = _folders(cohort_source)[:2]
    tree = mixed_tree(tmp_path / "export", chosen, manifests=chosen[:1])
    elsewhere = tmp_path / "manifests"
    (tree / "manifests").replace(elsewhere)  # a read-only export keeps its manifests elsewhere
    for show in ([], ["--show-patient-ids"]):
        argv = ["cohort", str(tree), "--out", str(tmp_path / "out"), "--manifests", str(elsewhere)]
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--validate", "--jobs", "1", "--json", *show])
        assert exit_info.value.code == 1  # the patient without a manifest
        captured = capsys.readouterr()
        payload = json.loads(captured.out)
        assert (payload["patients"], payload["done"], payload["failed"]) == (2, 1, 1)
        assert (chosen[1].name in captured.out + captured.err) is bool(show)
