"""`abscopal suv PET [--mask MASK]`: the SUVbw factor and, with a mask, the lesion's uptake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from abscopal.cli._app import JsonFlag, app, emit
from abscopal.errors import IngestError

PetArg = Annotated[Path, typer.Argument(help="PET: DICOM folder or file, NIfTI or NRRD (SUVbw).")]
MaskOption = Annotated[
    Path | None,
    typer.Option("--mask", help="Lesion mask: NIfTI/NRRD label 1, DICOM SEG or RTSTRUCT."),
]
LabelOption = Annotated[int, typer.Option("--label", help="Label, segment or ROI number.")]
LbmOption = Annotated[
    str, typer.Option("--lbm", help="Lean body mass formula for SUL: janmahasatian or james.")
]


@app.command(help="PET SUV factors and, with --mask, the lesion's SUVmax, SUVmean and SULpeak.")
def suv(
    pet: PetArg,
    mask: MaskOption = None,
    label: LabelOption = 1,
    lbm: LbmOption = "janmahasatian",
    as_json: JsonFlag = False,
) -> None:
    from abscopal.io.image import read_mask, read_pet
    from abscopal.io.pet import sul_per_suv
    from abscopal.measure import pet_summary

    if lbm not in {"janmahasatian", "james"}:
        raise typer.BadParameter(f"--lbm must be janmahasatian or james, got {lbm!r}")
    formula: Literal["janmahasatian", "james"] = "james" if lbm == "james" else "janmahasatian"
    image = read_pet(pet)
    ratio = None
    if image.info is not None:
        try:
            ratio = sul_per_suv(image.info, formula=formula)
        except IngestError:  # no height or sex: SULpeak is null, the SUVs still hold
            ratio = None
    lesion = None if mask is None else read_mask(mask, label=label, reference=image.suv)
    result: dict[str, object] = {
        "suv_bw_factor": image.suv_bw_factor,
        **pet_summary(image.suv, lesion, sul_per_suv=ratio),
    }
    result["lbm_formula"] = formula if ratio is not None else None
    text = ", ".join(
        f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
    )
    emit(result, as_json=as_json, text=text)
