"""`abscopal measure IMAGE MASK [--label N]`: one lesion's size and intensity."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from abscopal.cli._app import JsonFlag, app, emit

ImageArg = Annotated[Path, typer.Argument(help="Image: DICOM folder or file, NIfTI or NRRD.")]
MaskArg = Annotated[
    Path, typer.Argument(help="Mask: NIfTI or NRRD label map, DICOM SEG or RTSTRUCT.")
]
LabelOption = Annotated[
    int,
    typer.Option(
        "--label", help="Label value (NIfTI/NRRD), segment number (SEG) or ROI number (RTSTRUCT)."
    ),
]


class AdcUnit(StrEnum):
    """Units an ADC map is stored in."""

    UM2_S = "um2_s"
    MM2_S = "mm2_s"


AdcOption = Annotated[
    AdcUnit | None,
    typer.Option(
        "--adc",
        help="IMAGE is an ADC map in this unit (um2_s = 10^-6 mm²/s, mm2_s); adds adc_mean_um2_s.",
    ),
]


@app.command(
    help="One lesion's voxel count, volume, RECIST and 3D diameters, and image statistics."
)
def measure(
    image: ImageArg,
    mask: MaskArg,
    label: LabelOption = 1,
    adc_unit: AdcOption = None,
    as_json: JsonFlag = False,
) -> None:
    from abscopal.io.image import read_image_and_mask
    from abscopal.measure import adc_mean_um2_s, describe_lesion

    volume, lesion = read_image_and_mask(image, mask, label=label)
    result = describe_lesion(lesion, volume)
    if adc_unit is not None:
        result["adc_mean_um2_s"] = adc_mean_um2_s(volume, lesion, unit=adc_unit.value)
    text = (
        f"{result['voxel_count']} voxels, {result['volume_ml']:.3f} mL; "
        f"long {result['diameter_long_mm']:.1f} mm, short {result['diameter_short_mm']:.1f} mm, "
        f"max 3D {result['diameter_max_3d_mm']:.1f} mm; "
        f"mean {result['mean']}, min {result['min']}, max {result['max']} ({volume.units})"
    )
    emit({**result, "units": volume.units}, as_json=as_json, text=text)
