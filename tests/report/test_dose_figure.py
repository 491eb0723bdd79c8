"""The dose figure: MIPs of a dose map with each lesion outlined in its field colour."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from abscopal.geometry import AXIAL, Grid
from abscopal.model import LesionMask, Volume
from abscopal.report.figures import FIELD_COLOURS, dose_mip_png


def _colour_count(png: bytes, hex_colour: str) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int(np.sum(np.abs(rgb - target).sum(axis=-1) < 40))


def test_lesions_are_outlined_in_their_field_colour() -> None:
    grid = Grid(
        origin_mm=(0, 0, 0),
        spacing_mm=(4, 4, 4),
        axes=AXIAL,
        shape=(30, 40, 40),
        frame_of_reference_uid="1",
    )
    dose = np.zeros(grid.shape)
    dose[10:20, 10:20, 10:20] = 30.0
    sub = grid.crop((12, 25, 25), (18, 32, 32))
    lesion = LesionMask(lesion_id="B1", mask=np.ones(sub.shape, bool), grid=sub)
    volume = Volume(array=dose, grid=grid, modality="RTDOSE", units="GY")
    blue = FIELD_COLOURS["out_of_field"]
    with_lesion = dose_mip_png(volume, [lesion], {"B1": "out_of_field"}, title="RT-1")
    without = dose_mip_png(volume, [], {}, title="RT-1")
    assert with_lesion.startswith(b"\x89PNG")
    assert _colour_count(with_lesion, blue) > 50 + _colour_count(without, blue)
