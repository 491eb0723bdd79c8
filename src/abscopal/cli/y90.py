"""`abscopal y90 ACTIVITY`: Y-90 absorbed dose from a quantitative post-treatment PET/SPECT."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from abscopal.cli._app import JsonFlag, app, emit

DPK_ENV = "ABSCOPAL_Y90_DPK"  # path of the Graves 2019 Y-90 dose point kernel table (CSV)


def _activity_at_admin(path: Path) -> tuple[Any, str]:
    """Activity in Bq/mL at administration and how it was decay-corrected."""
    from abscopal.io.dicom import load_series
    from abscopal.io.image import find_image_series, is_itk_file, read_itk_volume
    from abscopal.io.pet import decay_factor_to, read_pet_info
    from abscopal.model import Volume

    if path.is_file() and is_itk_file(path):
        volume = read_itk_volume(path)
        note = "NIfTI/NRRD taken as Bq/mL decay-corrected to administration"
        return Volume(array=volume.array, grid=volume.grid, modality="PT", units="BQML"), note
    series = find_image_series(path)
    info = read_pet_info(series.files)
    if info.units != "BQML":
        msg = f"{series.files[0].name}: Units (0054,1001) is {info.units!r}; Y-90 dose needs BQML"
        raise _ingest(msg)
    if info.injection_datetime is None:
        msg = (
            f"{series.files[0].name}: no RadiopharmaceuticalStartDateTime (0018,1078); the Y-90 "
            "administration time is needed to decay-correct the activity"
        )
        raise _ingest(msg)
    factor = decay_factor_to(info, info.injection_datetime)
    volume = load_series(series)
    activity = Volume(
        array=volume.array * factor,
        grid=volume.grid,
        modality="PT",
        units="BQML",
        acquisition_date=volume.acquisition_date,
        series_uid=volume.series_uid,
    )
    return activity, f"decay-corrected to administration (x{factor:.6f})"


def _ingest(msg: str) -> Exception:
    from abscopal.errors import IngestError

    return IngestError(msg)


def _write_nifti(volume: Any, out: Path) -> None:
    """Write the dose as NIfTI atomically (a temporary folder beside it, then a rename)."""
    import tempfile

    import SimpleITK as sitk  # noqa: N813

    from abscopal.register import to_sitk

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / out.name
        sitk.WriteImage(to_sitk(volume), str(staged))
        staged.replace(out)


@app.command(help="Y-90 absorbed dose (LDM or dose-voxel kernel) from a quantitative PET/SPECT.")
def y90(
    activity: Annotated[Path, typer.Argument(help="Y-90 PET/SPECT: DICOM folder/file or NIfTI.")],
    method: Annotated[str, typer.Option("--method", help="ldm (default) or dvk.")] = "ldm",
    mask: Annotated[
        Path | None, typer.Option("--mask", help="Mask (NIfTI, SEG, RTSTRUCT) for the mean dose.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the dose map (Gy) as NIfTI (.nii/.nii.gz).")
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
    from abscopal.io.image import read_mask

    if out is not None and not out.name.endswith((".nii", ".nii.gz")):
        msg = f"--out {out}: the dose map is written as NIfTI; use a .nii or .nii.gz name"
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
    act, decay_note = _activity_at_admin(activity)
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
    region = "image"
    values = dose.array
    if mask is not None:
        lesion = read_mask(mask, reference=act)
        if not lesion.mask.any():
            msg = f"{mask.name}: the mask is empty; check the label or the segmentation"
            raise IngestError(msg)
        if not lesion.grid.same_geometry(dose.grid):
            msg = f"{mask.name}: the mask's grid differs from the activity grid; resample it first"
            raise IngestError(msg)
        values = dose.array[lesion.mask]
        region = "mask"
    if out is not None:
        _write_nifti(dose, out)
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
