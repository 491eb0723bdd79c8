"""`abscopal measure IMAGE MASK [--label N]`: one lesion's size and intensity."""

from __future__ import annotations

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


@app.command(
    help="One lesion's voxel count, volume, RECIST and 3D diameters, and image statistics."
)
def measure(
    image: ImageArg, mask: MaskArg, label: LabelOption = 1, as_json: JsonFlag = False
) -> None:
    from abscopal.io.image import read_image, read_mask
    from abscopal.measure import describe_lesion

    volume = read_image(image)
    result = describe_lesion(read_mask(mask, label=label, reference=volume), volume)
    text = (
        f"{result['voxel_count']} voxels, {result['volume_ml']:.3f} mL; "
        f"long {result['diameter_long_mm']:.1f} mm, short {result['diameter_short_mm']:.1f} mm, "
        f"max 3D {result['diameter_max_3d_mm']:.1f} mm; "
        f"mean {result['mean']}, min {result['min']}, max {result['max']} ({volume.units})"
    )
    emit({**result, "units": volume.units}, as_json=as_json, text=text)
