"""Rigid registration recovers a deliberate rigid motion of a synthetic patient's CT."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from abscopal.geometry import Grid
from abscopal.io.dicom import index_folder, load_series
from abscopal.model import Volume
from abscopal.register import Registration, register
from abscopal.synth import synthesize_patient


def rigid_motion(
    degrees: float, shift_mm: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation about the S axis by `degrees` and a translation (LPS mm)."""
    a = np.deg2rad(degrees)
    rotation = np.array(
        [[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]]
    )
    return rotation, np.asarray(shift_mm, dtype=float)


def moved_grid(grid: Grid, rotation: np.ndarray, shift: np.ndarray) -> Grid:
    """The same voxels after the patient moved: every point p goes to rotation @ p + shift."""
    origin = rotation @ np.asarray(grid.origin_mm) + shift
    axes = tuple(tuple(float(v) for v in rotation @ np.asarray(a)) for a in grid.axes)
    return replace(
        grid, origin_mm=tuple(float(v) for v in origin), axes=axes, frame_of_reference_uid="2.25.9"
    )  # type: ignore[arg-type]


def baseline_ct(folder: Path) -> Volume:
    series = [s for s in index_folder(folder / "ct") if s.modality == "CT"]
    return load_series(series[0])


@pytest.fixture(scope="session")
def one_patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic patient (scenario a), shared with tests/test_match.py."""
    return synthesize_patient(tmp_path_factory.mktemp("track"), scenario="a", seed=11, index=0)


def test_rigid_motion_is_recovered(one_patient: Path) -> None:
    """5° about S and (6, -4, 8) mm: follow-up points map back to within 1.5 mm (≈ one voxel)."""
    ct = baseline_ct(one_patient)
    rotation, shift = rigid_motion(5.0, (6.0, -4.0, 8.0))
    follow = replace(ct, grid=moved_grid(ct.grid, rotation, shift))
    result = register(ct, follow)
    corners = ct.grid.index_to_lps(
        np.array([[0, 0, 0], [n - 1 for n in ct.grid.shape]], dtype=float)
    )
    centre = corners.mean(axis=0)
    probes = centre + np.array([[0, 0, 0], [40, 0, 0], [0, 40, 0], [0, 0, 30.0]])
    recovered = result.to_baseline(probes @ rotation.T + shift)
    assert np.abs(recovered - probes).max() < 1.5
    assert result.kind == "rigid"


def test_identity_maps_points_to_themselves() -> None:
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, 6.0]])
    assert np.array_equal(Registration.identity().to_baseline(points), points)


def test_registration_record_validates_its_shapes() -> None:
    with pytest.raises(ValueError, match="matrix must be 3x3"):
        Registration(
            matrix=np.eye(2), offset_mm=np.zeros(3), metric=0.0, kind="rigid", bone_weighted=False
        )
