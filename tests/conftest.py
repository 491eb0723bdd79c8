"""Session fixtures: one synthetic patient per scenario, written once as real DICOM."""

from __future__ import annotations

from pathlib import Path

import pytest

from abscopal.synth import SCENARIOS, synthesize_patient

SEED = 11


@pytest.fixture(scope="session")
def synthetic_patients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scenario letter → patient folder (DICOM, manifest.yaml, truth.json); read-only by tests."""
    root = tmp_path_factory.mktemp("synthetic")
    return {
        scenario: synthesize_patient(root, scenario=scenario, seed=SEED, index=i)
        for i, scenario in enumerate(SCENARIOS)
    }
