"""The manifest: a valid example, and errors that name the file, field and line."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from abscopal.errors import IngestError
from abscopal.io.manifest import find_manifest, manifest_json_schema, read_manifest
from abscopal.model import DrugClass, RadiationCourse, Radioembolization

EXAMPLE = """\
patient_id: P1
primary_cancer: hcc
local_therapies:
  - type: radioembolization
    therapy_id: Y90-1
    date: 2024-02-12
    activity_gbq: 2.5
  - type: radiation
    therapy_id: RT-1
    start_date: 2024-05-01
    end_date: 2024-05-05
    prescription_gy: 20
    fractions: 5
systemic_therapies:
  - agent: pembrolizumab
    drug_class: immunotherapy
    start_date: 2023-08-01
lesions:
  - lesion_id: B1
    organ: vertebra
    kind: lytic
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    return path


def test_example_becomes_a_patient(tmp_path: Path) -> None:
    patient = read_manifest(write(tmp_path, EXAMPLE)).to_patient((date(2024, 1, 1),))
    y90, rt = patient.timeline.local_therapies
    assert isinstance(y90, Radioembolization) and y90.activity_bq == pytest.approx(2.5e9)
    assert isinstance(rt, RadiationCourse) and (rt.t0, rt.t_end) == (
        date(2024, 5, 1),
        date(2024, 5, 5),
    )
    assert patient.timeline.systemic_therapies[0].drug_class is DrugClass.IMMUNOTHERAPY
    assert patient.lesion("B1").kind.is_bone


def test_misspelt_field_names_field_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE.replace("prescription_gy: 20", "prescripton_gy: 20"))
    with pytest.raises(IngestError) as err:
        read_manifest(path)
    text = str(err.value)
    assert "manifest.yaml line 12: local_therapies.1.prescripton_gy: Extra inputs" in text
    assert "local_therapies.1.prescription_gy: Field required" in text


def test_missing_field_and_bad_vocabulary(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"line 1: patient_id: Field required"):
        read_manifest(write(tmp_path, EXAMPLE.replace("patient_id: P1\n", "")))
    with pytest.raises(IngestError, match=r"line 16: systemic_therapies.0.drug_class"):
        read_manifest(
            write(tmp_path, EXAMPLE.replace("drug_class: immunotherapy", "drug_class: vaccine"))
        )


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not valid YAML"):
        read_manifest(write(tmp_path, "patient_id: [unclosed"))
    with pytest.raises(IngestError, match="expected a mapping"):
        read_manifest(write(tmp_path, "- a\n- b\n"))


def test_folder_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"no manifest.yaml in this folder"):
        find_manifest(tmp_path)
    with pytest.raises(IngestError, match="no such file or folder"):
        find_manifest(tmp_path / "missing")


def test_json_schema_is_exported() -> None:
    schema = json.loads(manifest_json_schema())
    assert "patient_id" in schema["required"]


def test_therapy_ending_before_it_starts_names_the_field(tmp_path: Path) -> None:
    text = EXAMPLE.replace("end_date: 2024-05-05", "end_date: 2024-04-05")
    with pytest.raises(
        IngestError, match=r"line 11: local_therapies.1.end_date: .*before start_date"
    ):
        read_manifest(write(tmp_path, text))


def test_systemic_stop_before_start(tmp_path: Path) -> None:
    text = EXAMPLE.replace(
        "start_date: 2023-08-01", "start_date: 2023-08-01\n    stop_date: 2023-07-01"
    )
    with pytest.raises(IngestError, match=r"systemic_therapies.0.stop_date: .*before start_date"):
        read_manifest(write(tmp_path, text))


def test_other_local_therapy_and_birth_date(tmp_path: Path) -> None:
    text = EXAMPLE.replace(
        "systemic_therapies:",
        "  - type: ablation\n    therapy_id: RFA-1\n    date: 2024-03-01\n    target_lesions: [B1]\nsystemic_therapies:",
    ).replace("primary_cancer: hcc", "primary_cancer: hcc\nbirth_date: 1950-01-01")
    patient = read_manifest(write(tmp_path, text)).to_patient((date(2024, 1, 1),))
    (other,) = patient.timeline.other_local_therapies
    assert (other.kind, other.target_lesion_ids) == ("ablation", ("B1",))
    with pytest.raises(ValueError, match="before birth_date"):
        read_manifest(write(tmp_path, text)).to_patient((date(1949, 1, 1),))


def test_readme_manifest_example_validates() -> None:
    """The example a new user copies from the README is a valid manifest."""
    import re

    import yaml

    from abscopal.io.manifest import Manifest

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme, re.S)
    assert example is not None
    manifest = Manifest.model_validate(yaml.safe_load(example.group(1)))
    assert [t.type for t in manifest.local_therapies] == [
        "radioembolization",
        "radiation",
        "ablation",
    ]


MATCHES = """\
matches:
  - date: 2024-05-14
    segment: lesion 3
    lesion_id: B1
  - date: 2024-08-20
    segment: "20240820-2"
    lesion_id: new
"""


def test_matches_are_read(tmp_path: Path) -> None:
    manifest = read_manifest(write(tmp_path, EXAMPLE + MATCHES))
    got = [(m.date, m.segment, m.lesion_id) for m in manifest.matches]
    assert got == [(date(2024, 5, 14), "lesion 3", "B1"), (date(2024, 8, 20), "20240820-2", "new")]
    assert read_manifest(write(tmp_path, EXAMPLE)).matches == []


def test_match_errors_name_field_and_line(tmp_path: Path) -> None:
    """Lines 23–25 hold the first match; a misspelt key and a missing one are found there."""
    text = EXAMPLE + MATCHES.replace("lesion_id: B1", "lesion: B1")
    with pytest.raises(IngestError) as err:
        read_manifest(write(tmp_path, text))
    assert "manifest.yaml line 25: matches.0.lesion: Extra inputs" in str(err.value)
    assert "manifest.yaml line 23: matches.0.lesion_id: Field required" in str(err.value)
    with pytest.raises(IngestError, match=r"line 24: matches.0.segment: String should have"):
        read_manifest(write(tmp_path, EXAMPLE + MATCHES.replace("lesion 3", '""')))


def test_a_segment_matched_twice_is_refused(tmp_path: Path) -> None:
    twice = MATCHES.replace("2024-08-20", "2024-05-14").replace('"20240820-2"', "lesion 3")
    with pytest.raises(
        IngestError, match=r"line 22: matches: .*items 0 and 1 both match segment 'lesion 3'"
    ):
        read_manifest(write(tmp_path, EXAMPLE + twice))
