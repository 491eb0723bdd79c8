"""`abscopal dvh RTDOSE RTSTRUCT`: dose–volume statistics per structure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from abscopal.cli._app import JsonFlag, app, emit


@app.command(help="Dose–volume statistics per structure of an RTSTRUCT on an RTDOSE grid.")
def dvh(
    rtdose: Annotated[Path, typer.Argument(help="RTDOSE file (dose in Gy, or RELATIVE + --plan).")],
    rtstruct: Annotated[Path, typer.Argument(help="RTSTRUCT file on the dose's frame.")],
    structure: Annotated[
        list[str] | None, typer.Option("--structure", help="Only this ROI (repeatable).")
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", help="RTPLAN: prescription for RELATIVE dose.")
    ] = None,
    supersample: Annotated[
        int, typer.Option("--supersample", min=1, help="In-plane samples per pixel axis.")
    ] = 1,
    end_cap: Annotated[
        str, typer.Option("--end-cap", help="none (full slab per plane) or half.")
    ] = "none",
    vx: Annotated[
        list[float] | None, typer.Option("--vx", help="Report V_x Gy (mL) at this dose.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    from abscopal.dose.dvh import DvhOptions, structure_dvh_from_contours
    from abscopal.errors import IngestError
    from abscopal.io.rt import read_rtdose, read_rtplan, read_rtstruct

    try:
        options = DvhOptions(
            supersample=supersample, end_cap=end_cap, vx_thresholds_gy=tuple(vx or ())
        )
    except ValueError as exc:
        raise IngestError(f"dvh options: {exc}") from exc
    rx = read_rtplan(plan).prescription_gy if plan is not None else None
    dose = read_rtdose(rtdose, prescription_gy=rx) if rx is not None else read_rtdose(rtdose)
    struct = read_rtstruct(rtstruct)
    names = list(structure or struct.rois)
    missing = [n for n in names if n not in struct.rois]
    if missing:
        msg = f"{rtstruct.name}: no ROI named {missing}; found {sorted(struct.rois)}"
        raise IngestError(msg)
    results = [
        structure_dvh_from_contours(
            name,
            dose.volume,
            struct.rois[name],
            frame_of_reference_uid=struct.frame_of_reference_uid,
            options=options,
        ).to_dict()
        for name in names
    ]
    payload = {
        "structures": results,
        "summation_type": dose.summation_type,
        "prescription_gy": rx,
        "settings": {"supersample": supersample, "end_cap": end_cap, "method": "rtdose"},
    }
    lines = [
        f"{r['name']}: {r['volume_ml']:.1f} mL, mean "
        + ("n/a" if r["dose_mean_gy"] is None else f"{r['dose_mean_gy']:.2f} Gy")
        + f", coverage {r['grid_coverage']:.2f}"
        for r in results
    ]
    emit(payload, as_json=as_json, text="\n".join(lines))
