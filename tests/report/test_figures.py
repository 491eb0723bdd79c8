from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from abscopal.errors import GeometryError
from abscopal.model import LesionMask, Volume
from abscopal.report import figures
from abscopal.report.figures import (
    FIELD_COLOURS,
    key_image_png,
    spider_png,
    timeline_png,
    waterfall_png,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
YELLOW = np.array([255, 212, 0])  # the contour colour, #ffd400


def decode(png: bytes) -> np.ndarray:
    """The PNG as an (h, w, 3) uint8 array, after checking its signature."""
    assert png[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def pixels_of(rgb: np.ndarray, colour: str | np.ndarray, *, tol: int = 30) -> int:
    target = (
        np.array([int(colour[k : k + 2], 16) for k in (1, 3, 5)])
        if isinstance(colour, str)
        else colour
    )
    return int(np.count_nonzero(np.all(np.abs(rgb.astype(int) - target) <= tol, axis=-1)))


@pytest.mark.parametrize("draw", [timeline_png, spider_png, waterfall_png])
def test_result_figures_are_pngs_of_plausible_size(draw: Any, result: dict[str, Any]) -> None:
    rgb = decode(draw(result))
    height, width, _ = rgb.shape
    assert 600 <= width <= 2000
    assert 150 <= height <= 1200
    assert rgb.std() > 10  # something is drawn, not a blank canvas


@pytest.mark.parametrize("draw", [timeline_png, spider_png, waterfall_png])
@pytest.mark.parametrize(
    "partial",
    [
        {},
        {"patient_id": "X", "lesions": None, "timeline": None},
        {"lesions": [{"lesion_id": "B9"}], "timeline": {"scan_dates": ["2024-01-01"]}},
        {"lesions": [{"lesion_id": "B9", "field": "bogus", "measurements": [{"date": None}]}]},
    ],
)
def test_result_figures_draw_a_partial_result(draw: Any, partial: dict[str, Any]) -> None:
    assert decode(draw(partial)).shape[0] > 100


def test_timeline_without_systemic_therapy(result: dict[str, Any]) -> None:
    result["timeline"]["systemic_therapies"] = []
    assert decode(timeline_png(result)).shape[1] > 600


def test_timeline_refuses_a_date_that_is_no_date(result: dict[str, Any]) -> None:
    result["timeline"]["scan_dates"].append("13/05/2024")
    with pytest.raises(ValueError, match="scan date: expected an ISO date"):
        timeline_png(result)


def test_spider_without_local_therapy_counts_from_baseline(result: dict[str, Any]) -> None:
    result["timeline"]["local_therapies"] = []
    assert decode(spider_png(result)).shape[1] > 600


def test_waterfall_colours_each_lesion_by_field(result: dict[str, Any]) -> None:
    rgb = decode(waterfall_png(result))
    for field in ("in_field", "out_of_field", "low_dose", "outside_grid"):
        assert pixels_of(rgb, FIELD_COLOURS[field], tol=4) > 50, field
    only_in_field = {**result, "lesions": [result["lesions"][0]]}
    rgb = decode(waterfall_png(only_in_field))
    assert pixels_of(rgb, FIELD_COLOURS["in_field"], tol=4) > 50
    assert pixels_of(rgb, FIELD_COLOURS["out_of_field"], tol=4) == 0


def test_key_image_draws_the_lesion_contour(ct: Volume, lesion_mask: LesionMask) -> None:
    with_mask = decode(key_image_png(ct, lesion_mask, title="B1 baseline"))
    without = decode(key_image_png(ct, None, title="B1 baseline"))
    assert pixels_of(with_mask, YELLOW) > 40  # the outline
    assert pixels_of(without, YELLOW) == 0  # grey image, white text: no yellow anywhere
    height, width, _ = with_mask.shape
    assert 200 <= width <= 600
    assert 200 <= height <= 700


def test_key_image_outline_surrounds_the_bright_lesion(ct: Volume, lesion_mask: LesionMask) -> None:
    rgb = decode(key_image_png(ct, lesion_mask, title=""))
    rows, cols = np.nonzero(np.all(np.abs(rgb.astype(int) - YELLOW) <= 30, axis=-1))
    inside = rgb[rows.min() + 4 : rows.max() - 4, cols.min() + 4 : cols.max() - 4]
    grey = inside.mean(axis=-1)
    # 250 HU in the window [-400, 1000] is 46 % grey; 40 HU, outside the outline, is 31 %
    assert np.median(grey) > 0.4 * 255


def test_key_image_finds_the_largest_cross_section(ct: Volume, lesion_mask: LesionMask) -> None:
    assert figures._largest_slice(ct, lesion_mask) == 10


def test_key_image_maps_a_finer_mask_through_lps(ct: Volume, lesion_mask: LesionMask) -> None:
    """A mask on a 1 mm grid over the same frame still outlines the lesion on the 2 mm CT."""
    fine = replace(
        lesion_mask.grid,
        spacing_mm=(1.25, 1.0, 1.0),
        shape=tuple(2 * n for n in lesion_mask.grid.shape),
    )
    upsampled = lesion_mask.mask.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    origin = lesion_mask.grid.index_to_lps([-0.25, -0.25, -0.25])  # first fine voxel's centre
    mask = LesionMask(lesion_id="B1", mask=upsampled, grid=replace(fine, origin_mm=tuple(origin)))
    assert mask.voxel_count == 8 * lesion_mask.voxel_count
    assert pixels_of(decode(key_image_png(ct, mask, title="fine")), YELLOW) > 40


def test_key_image_of_an_empty_or_distant_mask_shows_the_central_slice(
    ct: Volume, lesion_mask: LesionMask
) -> None:
    empty = LesionMask(lesion_id="B1", mask=np.zeros_like(lesion_mask.mask), grid=lesion_mask.grid)
    far = LesionMask(
        lesion_id="B1",
        mask=lesion_mask.mask,
        grid=replace(lesion_mask.grid, origin_mm=(500.0, 500.0, 500.0)),
    )
    for mask in (empty, far):
        assert pixels_of(decode(key_image_png(ct, mask, title="")), YELLOW) == 0


def test_key_image_refuses_a_mask_on_another_frame(ct: Volume, lesion_mask: LesionMask) -> None:
    moved = LesionMask(
        lesion_id="B1",
        mask=lesion_mask.mask,
        grid=replace(lesion_mask.grid, frame_of_reference_uid="2.25.99"),
    )
    with pytest.raises(GeometryError, match="FrameOfReferenceUID differs"):
        key_image_png(ct, moved, title="")


def test_importing_the_report_leaves_pyplot_alone() -> None:
    code = "import sys, abscopal.report; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
