"""End to end: freshly generated patients analyzed from their DICOM reproduce truth.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from abscopal.outputs import result_dict
from abscopal.pipeline import analyze, load_patient
from abscopal.synth import SCENARIOS


@pytest.fixture(scope="module")
def analyzed(
    synthetic_patients: dict[str, Path],
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Scenario → (result, truth)."""
    out = {}
    for scenario, folder in synthetic_patients.items():
        inputs = load_patient(folder)
        result = result_dict(analyze(inputs), inputs)
        out[scenario] = (result, json.loads((folder / "truth.json").read_text()))
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_verdict_matches_truth(analyzed: dict[str, Any], scenario: str) -> None:
    result, truth = analyzed[scenario]
    assert result["patient_id"] == truth["patient_id"]
    got = {k: result["abscopal"][k] for k in ("status", "certainty", "lesions")}
    assert got == truth["abscopal"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_field_status_matches_truth(analyzed: dict[str, Any], scenario: str) -> None:
    result, truth = analyzed[scenario]
    got = {lesion["lesion_id"]: lesion["field"] for lesion in result["lesions"]}
    assert got == {lesion["lesion_id"]: lesion["field"] for lesion in truth["lesions"]}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_long_axis_within_one_voxel_of_truth(
    analyzed: dict[str, Any], synthetic_patients: dict[str, Path], scenario: str
) -> None:
    """The measured RECIST long axis of every present lesion is within one in-plane voxel."""
    from abscopal.io.dicom import index_folder

    result, truth = analyzed[scenario]
    ct = next(s for s in index_folder(synthetic_patients[scenario]) if s.modality == "CT")
    import pydicom

    voxel_mm = max(
        float(v) for v in pydicom.dcmread(ct.files[0], stop_before_pixels=True).PixelSpacing
    )
    measured = {
        (lesion["lesion_id"], m["date"]): m
        for lesion in result["lesions"]
        for m in lesion["measurements"]
    }
    checked = 0
    for lesion in truth["lesions"]:
        for true in lesion["diameters"]:
            got = measured[(lesion["lesion_id"], true["date"])]
            assert got["present"] == true["present"]
            if true["present"]:
                assert got["diameter_long_mm"] == pytest.approx(
                    true["diameter_long_mm"], abs=voxel_mm
                )
                checked += 1
    assert checked >= 10


def test_ebrt_dose_matches_the_generator(analyzed: dict[str, Any]) -> None:
    """Sampled RTDOSE means agree with the generator's analytic dose (within 5 % or 0.1 Gy)."""
    result, truth = analyzed["b"]
    expected = {
        lesion["lesion_id"]: lesion["dose_mean_gy_expected"]
        for lesion in truth["lesions"]
        if lesion.get("dose_mean_gy_expected") is not None
    }
    assert expected
    for lesion in result["lesions"]:
        if lesion["lesion_id"] in expected:
            want = expected[lesion["lesion_id"]]
            assert lesion["dose_mean_gy"] == pytest.approx(want, rel=0.05, abs=0.1)


def test_results_carry_provenance_and_disclaimer(analyzed: dict[str, Any]) -> None:
    result, _ = analyzed["a"]
    assert result["disclaimer"] == "For research use only; not for clinical decision-making."
    provenance = result["provenance"]
    assert provenance["settings"]["y90"]["k_gy_kg_per_gbq"] == 49.67
    assert "manifest.yaml" in provenance["input_sha256"]
    assert provenance["libraries"]["pydicom"]


@pytest.mark.parametrize(
    ("scenario", "criterion", "expected"),
    [
        ("a", "recist11", "PR"),  # both bone lesions −38 % and more
        ("c", "recist11", "PD"),  # out-of-field growth ≥ 20 % and ≥ 5 mm
    ],
)
def test_out_of_field_response_by_criterion(
    analyzed: dict[str, Any], scenario: str, criterion: str, expected: str
) -> None:
    result, _ = analyzed[scenario]
    assert result["abscopal"]["out_of_field_best_response"][criterion] == expected
    assert result["criteria"][criterion]["out_of_field"]["timepoints"]


def test_sclerosis_is_an_mda_partial_response(analyzed: dict[str, Any]) -> None:
    """Scenario e: at the last CT the lytic lesion is sclerotic at the same size: MDA PR (fill-in).

    Its best overall response may still be PD: on 3 mm pixels a 15 mm short axis moves by a voxel
    between scans, and MDA's per-lesion product rule (+25 % against the nadir) reads that as growth.
    """
    result, _ = analyzed["e"]
    last = result["criteria"]["mda"]["out_of_field"]["timepoints"][-1]
    assert last["category"] == "PR"
    assert any("fill_in" in rule for rule in last["rules"])


def test_field_evidence_of_the_lesion_near_the_loaded_liver(analyzed: dict[str, Any]) -> None:
    """S1 (5 mm from the loaded right lobe on a 0.5 mm phantom) is uncertain by the margin rule,
    and its result shows why: a gap within 11 mm of activity above the noise floor."""
    result, _ = analyzed["a"]
    s1 = next(lesion for lesion in result["lesions"] if lesion["lesion_id"] == "S1")
    evidence = s1["field_evidence"]
    assert s1["field"] == "uncertain"
    assert evidence["therapy_id"] == "Y90-1"
    assert 0.0 < evidence["distance_to_loaded_mm"] <= evidence["settings"]["y90_margin_mm"]
    assert evidence["noise_floor_bq_ml"] is not None  # 0 on the noiseless synthetic PET
    bone = [lesion for lesion in result["lesions"] if lesion["kind"] in {"lytic", "mixed"}]
    margin_mm = evidence["settings"]["y90_margin_mm"]
    assert bone and all(b["field_evidence"]["distance_to_loaded_mm"] > margin_mm for b in bone)
    assert {b["field"] for b in bone} == {"out_of_field"}
