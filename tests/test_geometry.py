"""Grid index ↔ LPS transforms, frame-of-reference checks and sampling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from abscopal.errors import GeometryError
from abscopal.geometry import AXIAL, Grid, require_same_frame, resample, sample


def axial_grid(**kw: object) -> Grid:
    base = {
        "origin_mm": (-100.0, -50.0, 20.0),
        "spacing_mm": (2.5, 0.8, 0.7),
        "axes": AXIAL,
        "shape": (10, 20, 30),
        "frame_of_reference_uid": "1.2.3",
    }
    base.update(kw)
    return Grid(**base)  # type: ignore[arg-type]


def test_index_to_lps_follows_dicom_axes() -> None:
    g = axial_grid()
    # column index moves along +L (row cosines), row index along +P, slice index along +S.
    assert np.allclose(g.index_to_lps([0, 0, 0]), (-100.0, -50.0, 20.0))
    assert np.allclose(g.index_to_lps([1, 2, 3]), (-100.0 + 3 * 0.7, -50.0 + 2 * 0.8, 20.0 + 2.5))


def test_round_trip_with_oblique_axes() -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    axes = ((0.0, 0.0, 1.0), (-s, c, 0.0), (c, s, 0.0))
    g = axial_grid(axes=axes)
    idx = np.random.default_rng(0).uniform(0, 9, size=(50, 3))
    assert np.allclose(g.lps_to_index(g.index_to_lps(idx)), idx)


def test_invalid_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="spacing_mm"):
        axial_grid(spacing_mm=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="orthonormal"):
        axial_grid(axes=((1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)))


def test_crop_keeps_positions() -> None:
    g = axial_grid()
    sub = g.crop((2, 3, 4), (5, 8, 9))
    assert sub.shape == (3, 5, 5)
    assert np.allclose(sub.index_to_lps([0, 0, 0]), g.index_to_lps([2, 3, 4]))


def test_another_frame_is_refused() -> None:
    g = axial_grid()
    moved = replace(g, frame_of_reference_uid="2.25.1")
    with pytest.raises(GeometryError, match="FrameOfReferenceUID differs"):
        require_same_frame(g, moved, what="RTDOSE on CT")
    with pytest.raises(GeometryError, match="FrameOfReferenceUID differs"):
        resample(np.zeros(g.shape), g, moved)


def test_trilinear_sample_of_a_linear_field_is_exact() -> None:
    g = axial_grid()
    k, j, i = np.indices(g.shape)
    field = 2.0 * k + 0.5 * j - 1.0 * i
    idx = np.array([[1.25, 3.5, 7.75], [8.0, 0.0, 29.0]])
    values, inside = sample(field, g, g.index_to_lps(idx))
    assert inside.all()
    assert np.allclose(values, 2.0 * idx[:, 0] + 0.5 * idx[:, 1] - idx[:, 2])


def test_sample_outside_the_grid_is_nan_and_the_skirt_clamps() -> None:
    g = axial_grid()
    field = np.ones(g.shape)
    values, inside = sample(field, g, g.index_to_lps([[-0.4, 0, 0], [-0.6, 0, 0]]))
    assert inside.tolist() == [True, False]
    assert values[0] == 1.0
    assert np.isnan(values[1])
