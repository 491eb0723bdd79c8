"""`abscopal y90 ACTIVITY`: Y-90 absorbed dose from a quantitative post-treatment PET/SPECT."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from abscopal.cli._app import JsonFlag, app, emit

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from abscopal.model import Volume

DPK_ENV = "ABSCOPAL_Y90_DPK"  # path of the Graves 2019 Y-90 dose point kernel table (CSV)


@app.command(help="Y-90 absorbed dose (LDM or dose-voxel kernel) from a quantitative PET/SPECT.")
def y90(
    activity: Annotated[Path, typer.Argument(help="Y-90 PET/SPECT: DICOM folder/file or NIfTI.")],
    method: Annotated[str, typer.Option("--method", help="ldm (default) or dvk.")] = "ldm",
    mask: Annotated[
        Path | None, typer.Option("--mask", help="Mask (NIfTI, SEG, RTSTRUCT) for the mean dose.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the dose map (Gy): NIfTI (.nii/.nii.gz) or RTDOSE (.dcm)."
        ),
    ] = None,
    k: Annotated[
        float, typer.Option("--k", help="Gy·kg/GBq (49.67 TG-144; 49.77, 49.38, 50).")
    ] = 49.67,
    density: Annotated[float, typer.Option("--density", help="g/mL (1.0 = water).")] = 1.0,
    kernel_table: Annotated[
        Path | None,
        typer.Option("--kernel-table", help=f"Graves 2019 Y-90 DPK CSV (else ${DPK_ENV})."),
    ] = None,
    administered_gbq: Annotated[
        float | None, typer.Option("--administered-gbq", help="Check the imaged total against it.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    import warnings
    from dataclasses import asdict

    from abscopal.dose.kernel import parse_dose_point_kernel
    from abscopal.dose.y90 import Y90DoseSettings, check_activity, y90_dose
    from abscopal.errors import IngestError
    from abscopal.io.image import read_y90_activity

    if out is not None and not out.name.endswith((".nii", ".nii.gz", ".dcm")):
        msg = f"--out {out}: the dose map is NIfTI (.nii, .nii.gz) or RTDOSE (.dcm); rename it"
        raise IngestError(msg)
    try:
        settings = Y90DoseSettings(method=method, k_gy_kg_per_gbq=k, density_g_ml=density)
    except ValueError as exc:
        raise IngestError(f"y90 options: {exc}") from exc
    table = None
    if method == "dvk":
        source = kernel_table or (Path(os.environ[DPK_ENV]) if DPK_ENV in os.environ else None)
        if source is None or not source.is_file():
            msg = f"--method dvk needs --kernel-table (or ${DPK_ENV}): the Graves 2019 Y-90 DPK CSV"
            raise IngestError(msg)
        table = parse_dose_point_kernel(source.read_text(encoding="utf-8"))
    act, decay_note = read_y90_activity(activity)
    try:
        result = y90_dose(act, settings, kernel_table=table)
    except ValueError as exc:
        raise IngestError(f"{activity.name}: {exc}") from exc
    check = None
    if administered_gbq is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check = check_activity(
                result.total_activity_bq, administered_gbq * 1e9, margin=settings.activity_margin
            )
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=1)
    dose = result.dose
    values, region = _region_values(dose, act, mask)
    if out is not None:
        _write_dose(dose, out, activity)
    payload = {
        "total_activity_bq": result.total_activity_bq,
        "dose_mean_gy": float(values.mean()),
        "dose_max_gy": float(values.max()),
        "region": region,
        "method": method,
        "energy_outside_grid_fraction": result.energy_outside_grid_fraction,
        "decay_correction": decay_note,
        "activity_check": None if check is None else asdict(check),
        "settings": result.settings_dict(),
        "out": None if out is None else str(out),
    }
    text = (
        f"{method.upper()} Dmean ({region}) {payload['dose_mean_gy']:.2f} Gy; "
        f"imaged activity {result.total_activity_bq / 1e9:.3f} GBq"
    )
    emit(payload, as_json=as_json, text=text)


def _dicom_source(activity: Path) -> Path | None:
    """A file of the DICOM activity series (patient, study, frame of reference); None for NIfTI."""
    from abscopal.io.image import find_image_series, is_itk_file

    if activity.is_file() and is_itk_file(activity):
        return None
    return find_image_series(activity).files[0]


def _region_values(dose: Volume, activity: Volume, mask: Path | None) -> tuple[NDArray[Any], str]:
    """Dose values of the whole image, or of the mask's voxels (on the activity grid)."""
    from abscopal.errors import IngestError
    from abscopal.io.image import read_mask

    if mask is None:
        return dose.array, "image"
    lesion = read_mask(mask, reference=activity)
    if not lesion.mask.any():
        msg = f"{mask.name}: the mask is empty; check the label or the segmentation"
        raise IngestError(msg)
    if not lesion.grid.same_geometry(dose.grid):
        msg = f"{mask.name}: the mask's grid differs from the activity grid; resample it first"
        raise IngestError(msg)
    return dose.array[lesion.mask], "mask"


def _write_dose(dose: Volume, out: Path, activity: Path) -> None:
    """NIfTI by default; RTDOSE (.dcm) in the activity image's study and frame of reference."""
    from abscopal.io.image import write_nifti
    from abscopal.io.rt import write_rtdose

    if out.suffix == ".dcm":
        write_rtdose(dose, out, like=_dicom_source(activity), description="Y-90 absorbed dose")
    else:
        write_nifti(dose, out)
