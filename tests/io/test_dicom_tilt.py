"""Gantry tilt: slices shifted in-plane along the stack are resampled onto an orthogonal grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from abscopal.errors import IngestWarning
from abscopal.io.dicom import index_folder, load_series

PIXEL_MM, STEP_MM, SLICES, SIZE = 1.0, 2.0, 16, 32
CENTRE_LPS = np.array([12.0, 14.0, 15.0])  # a 4 mm ball, HU 1000 in air (-1024 HU)
RADIUS_MM = 4.0


def _write_sheared_ct(folder: Path, write_slice, shift_mm: tuple[float, float, float]) -> None:
    """Axial slices every 2 mm in z whose origin moves by `shift_mm` in-plane per slice."""
    uid = generate_uid()
    j, i = np.indices((SIZE, SIZE), dtype=float)
    for k in range(SLICES):
        origin = np.array(shift_mm) * k + (0.0, 0.0, STEP_MM * k)
        # pixel (j, i) of slice k lies at origin + i·PIXEL_MM·x + j·PIXEL_MM·y (IOP 1,0,0,0,1,0)
        x, y, z = origin[0] + i * PIXEL_MM, origin[1] + j * PIXEL_MM, origin[2]
        inside = (x - CENTRE_LPS[0]) ** 2 + (y - CENTRE_LPS[1]) ** 2 + (z - CENTRE_LPS[2]) ** 2
        pixels = np.where(inside <= RADIUS_MM**2, 2024, 0)
        write_slice(
            folder / f"{k:02d}.dcm",
            position=origin,
            series_uid=uid,
            pixels=pixels,
            pixel_spacing=(PIXEL_MM, PIXEL_MM),
        )


def _ball_centre_lps(volume) -> np.ndarray:
    weights = np.clip(volume.array + 1024.0, 0.0, None)  # HU above air
    index = np.argwhere(weights > 0)
    centre = (index * weights[weights > 0][:, None]).sum(axis=0) / weights.sum()
    return volume.grid.index_to_lps(centre)


@pytest.mark.parametrize(
    ("shift_mm", "tilt_deg", "grown"),
    [
        ((0.0, 0.5, 0.0), "14.0", (0, 8, 0)),  # 0.5 mm per 2 mm slice: atan(0.25)
        ((-0.7, 0.0, 0.0), "19.3", (0, 0, 11)),  # toward -x: the grid grows at its start
    ],
)
def test_tilted_series_is_resampled_onto_an_orthogonal_grid(
    tmp_path: Path, write_slice, shift_mm, tilt_deg, grown
) -> None:
    _write_sheared_ct(tmp_path, write_slice, shift_mm)
    with pytest.warns(IngestWarning, match=rf"gantry tilt of {tilt_deg} degrees.*resampled"):
        volume = load_series(index_folder(tmp_path)[0])
    grid = volume.grid
    assert grid.axes == ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    assert grid.spacing_mm == pytest.approx((STEP_MM, PIXEL_MM, PIXEL_MM))
    assert grid.shape == tuple(n + g for n, g in zip((SLICES, SIZE, SIZE), grown, strict=True))
    # the ball is where the slices put it: within a fifth of a voxel of its true centre
    np.testing.assert_allclose(_ball_centre_lps(volume), CENTRE_LPS, atol=0.2)
    assert volume.array.max() == pytest.approx(1000.0, abs=1.0)
    assert volume.array.min() == pytest.approx(-1024.0)  # the corners outside the stack: air


def test_ignoring_the_tilt_would_misplace_the_ball(tmp_path: Path, write_slice) -> None:
    """The control: read as if orthogonal, the ball's centre is off by the shift at its slice."""
    _write_sheared_ct(tmp_path, write_slice, (0.0, 0.5, 0.0))
    with pytest.warns(IngestWarning, match="gantry tilt"):
        volume = load_series(index_folder(tmp_path)[0])
    k = round(CENTRE_LPS[2] / STEP_MM)
    naive_y = CENTRE_LPS[1] - 0.5 * k  # the slice's row index of the ball, placed without shift
    assert abs(_ball_centre_lps(volume)[1] - naive_y) > 3.0
