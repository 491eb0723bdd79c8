"""Figures of one patient's result, drawn with matplotlib and returned as PNG bytes.

No pyplot: every figure is a `matplotlib.figure.Figure` printed by the Agg canvas, so importing
this module neither selects a backend nor keeps global state. The figures draw what the result
holds (its dates, % changes and field statuses); days from the local therapy are an axis, not a
measurement.

Field-status colours are the same in every figure and in the HTML report (`FIELD_COLOURS`).
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from skimage.measure import find_contours

from abscopal.errors import GeometryError
from abscopal.model import FieldStatus
from abscopal.report._result import (
    OUT_OF_FIELD_GROUP,
    as_date,
    field_of,
    local_therapies,
    mapping,
    number,
    records,
    reference_start,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import date

    from matplotlib.axes import Axes
    from numpy.typing import NDArray

    from abscopal.model import LesionMask, Volume

FIELD_COLOURS: Final[Mapping[str, str]] = MappingProxyType(
    {
        FieldStatus.IN_FIELD: "#c0392b",  # red-ish
        FieldStatus.LOW_DOSE: "#e67e22",  # orange
        FieldStatus.OUT_OF_FIELD: "#2166ac",  # blue
        FieldStatus.OUTSIDE_GRID: "#7b3294",  # purple
        FieldStatus.UNCERTAIN: "#8c8c8c",  # grey
    }
)
FIELD_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        FieldStatus.IN_FIELD: "in-field",
        FieldStatus.LOW_DOSE: "low dose",
        FieldStatus.OUT_OF_FIELD: "out-of-field",
        FieldStatus.OUTSIDE_GRID: "outside dose grid",
        FieldStatus.UNCERTAIN: "uncertain",
    }
)
RESPONSE_LINE_PCT: Final = -30.0  # RECIST 1.1 partial response: -30 % of the long diameter
PROGRESSION_LINE_PCT: Final = 20.0  # RECIST 1.1 progression: +20 %
CROP_MARGIN_MM: Final = 40.0  # key images show the lesion ± 40 mm
_LOCAL_COLOUR: Final = "#3b3b3b"
_CLASS_COLOURS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "immunotherapy": "#1b9e77",
        "chemotherapy": "#a6761d",
        "targeted": "#66a61e",
        "hormonal": "#e7298a",
        "bone_active": "#b8a26b",
        "g_csf": "#7570b3",
        "steroid": "#e6ab02",
    }
)
_OTHER_CLASS_COLOUR: Final = "#999999"
_CONTOUR_COLOUR: Final = "#ffd400"  # yellow: visible on grey, whatever the lesion's field
_DPI: Final = 110


def _png(fig: Figure, *, dpi: int = _DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def _x(day: date) -> float:
    """Place `day` on a matplotlib date axis."""
    return float(mdates.date2num(day))  # type: ignore[no-untyped-call]  # untyped in matplotlib


def _placeholder(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.4", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _field_legend(fig: Figure, fields: Sequence[str]) -> None:
    """Add the field-status legend below the plot, in vocabulary order."""
    shown = [f for f in FieldStatus if f in set(fields)]
    handles = [
        Line2D([], [], color=FIELD_COLOURS[f], marker="s", linestyle="none", markersize=8)
        for f in shown
    ]
    if handles:
        labels = [FIELD_LABELS[f] for f in shown]
        fig.legend(
            handles, labels, loc="outside lower center", ncols=len(shown), fontsize=8, frameon=False
        )


# --- timeline (swimmer plot) -------------------------------------------------------------------


def _spans(
    items: object, end_key: str, *, what: str
) -> list[tuple[date, date | None, Mapping[str, Any]]]:
    """List (start, end or None, record) of each therapy that has a start date."""
    out = []
    for item in records(items):
        start = as_date(item.get("start_date"), what=f"{what} start_date")
        if start is not None:
            out.append((start, as_date(item.get(end_key), what=f"{what} {end_key}"), item))
    return out


def timeline_png(result: Mapping[str, Any]) -> bytes:
    """Draw a swimmer plot of local and systemic therapies and scan dates, on a calendar axis.

    One row per local therapy (a bar from start to end, a diamond on the first day, its label),
    one per systemic therapy (a bar labelled agent and class; an arrow and "ongoing" where it has
    no stop date) and one row of ticks at the scan dates.
    """
    timeline = mapping(result.get("timeline"))
    local = _spans(timeline.get("local_therapies"), "end_date", what="local therapy")
    systemic = _spans(timeline.get("systemic_therapies"), "stop_date", what="systemic therapy")
    scans = [
        d
        for d in (as_date(v, what="scan date") for v in timeline.get("scan_dates") or ())
        if d is not None
    ]
    rows = len(local) + len(systemic) + 1
    fig = Figure(figsize=(9.0, 1.2 + 0.42 * rows), layout="constrained")
    ax = fig.add_subplot()
    known = [d for row in (*local, *systemic) for d in row[:2] if d is not None] + scans
    if not known:
        _placeholder(ax, "no therapies or scan dates in the result")
        return _png(fig)
    first, last = min(known), max(known)
    pad = timedelta(days=max(7, (last - first).days // 12))
    right = _x(last + pad)

    labels: list[str] = []
    y = rows - 1
    for start, end, therapy in local:
        x0 = _x(start)
        x1 = _x((end or start) + timedelta(days=1))
        ax.broken_barh([(x0, x1 - x0)], (y - 0.28, 0.56), color=_LOCAL_COLOUR)
        ax.plot([x0], [y], marker="D", color=_LOCAL_COLOUR, markersize=7)
        text = str(therapy.get("label") or therapy.get("kind") or "")
        ax.annotate(text, (x1, y), xytext=(8, 0), textcoords="offset points", va="center", size=8)
        kind = therapy.get("kind")
        name = str(therapy.get("therapy_id") or "local therapy")
        labels.append(f"{name}\n({kind})" if kind else name)
        y -= 1
    for start, stop, therapy in systemic:
        drug_class = str(therapy.get("drug_class") or "other")
        colour = _CLASS_COLOURS.get(drug_class, _OTHER_CLASS_COLOUR)
        x0 = _x(start)
        x1 = right if stop is None else _x(stop + timedelta(days=1))
        ax.broken_barh([(x0, x1 - x0)], (y - 0.22, 0.44), color=colour, alpha=0.85)
        if stop is None:
            ax.plot([right], [y], marker=">", color=colour, markersize=9, clip_on=False)
            ax.annotate(
                "ongoing",
                (right, y),
                xytext=(-6, 9),
                textcoords="offset points",
                ha="right",
                size=7,
            )
        labels.append(f"{therapy.get('agent') or 'systemic therapy'}\n({drug_class})")
        y -= 1
    scan_x = [_x(d) for d in scans]
    for x in scan_x:
        ax.axvline(x, color="0.75", linewidth=0.6, zorder=0)
    ax.plot(scan_x, [0] * len(scan_x), linestyle="none", marker="|", markersize=16, color="black")
    labels.append("scans")

    ax.set_yticks(range(rows - 1, -1, -1), labels, fontsize=8)
    ax.set_ylim(-0.7, rows - 0.3)
    ax.set_xlim(_x(first - pad), right)
    ax.xaxis_date()
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]  # untyped in matplotlib
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Timeline: local therapies, systemic therapies and scans", fontsize=10, loc="left")
    return _png(fig)


# --- spider plot -------------------------------------------------------------------------------


def _spider_day0(result: Mapping[str, Any]) -> tuple[date | None, str]:
    """Return day 0 of the spider plot and the x-axis label that names it."""
    reference = reference_start(result)
    if reference is not None:
        return reference[0], f"days from start of local therapy ({reference[1]})"
    dates = [
        d
        for lesion in records(result.get("lesions"))
        for m in records(lesion.get("measurements"))
        if (d := as_date(m.get("date"), what="measurement date")) is not None
    ]
    return (min(dates) if dates else None), "days from baseline"


def _spider_line(ax: Axes, lesion: Mapping[str, Any], day0: date) -> bool:
    """Draw one lesion's line; False when it has no dated % change to draw."""
    points = []
    for m in records(lesion.get("measurements")):
        when = as_date(m.get("date"), what="measurement date")
        pct = number(m.get("pct_change_baseline"))
        if when is not None and pct is not None:
            points.append(((when - day0).days, pct, m.get("present") is not False))
    if not points:
        return False
    points.sort()
    colour = FIELD_COLOURS[field_of(lesion)]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    ax.plot(xs, ys, color=colour, linewidth=1.6, marker="o", markersize=4)
    gone = [(p[0], p[1]) for p in points if not p[2]]
    if gone:
        ax.plot(*zip(*gone, strict=True), linestyle="none", marker="x", color=colour, ms=8)
    ax.annotate(
        str(lesion.get("lesion_id", "?")),
        (xs[-1], ys[-1]),
        xytext=(5, 0),
        textcoords="offset points",
        va="center",
        size=8,
        color=colour,
    )
    return True


def _therapy_bands(ax: Axes, result: Mapping[str, Any], day0: date) -> None:
    """Shade each local therapy from its first to its last day (inclusive)."""
    for therapy in local_therapies(result):
        start = as_date(therapy.get("start_date"), what="local therapy start_date")
        if start is None:
            continue
        end = as_date(therapy.get("end_date"), what="local therapy end_date") or start
        x0, x1 = (start - day0).days, (end - day0).days + 1
        ax.axvspan(x0, x1, color="0.55", alpha=0.25, linewidth=0, zorder=0)
        ax.annotate(
            str(therapy.get("therapy_id") or ""),
            (x0, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -10),
            textcoords="offset points",
            size=8,
            color="0.3",
        )


def _threshold_lines(ax: Axes) -> None:
    ax.axhline(0.0, color="0.55", linewidth=0.8)
    for level, text in ((RESPONSE_LINE_PCT, "\u221230 %"), (PROGRESSION_LINE_PCT, "+20 %")):
        ax.axhline(level, color="0.25", linestyle="--", linewidth=0.9)
        ax.annotate(
            text,
            (1.0, level),
            xycoords=("axes fraction", "data"),
            xytext=(-2, 3),
            textcoords="offset points",
            ha="right",
            size=8,
            color="0.25",
        )


def spider_png(result: Mapping[str, Any]) -> bytes:
    """Draw each lesion's % change of long diameter from baseline against days from therapy.

    One line per lesion, coloured by field status; absent lesions are marked x. Dashed lines at
    -30 % and +20 %; each local therapy is a shaded band. Day 0 is the start of the earliest local
    therapy, or the earliest measurement when the result has no local therapy.
    """
    day0, xlabel = _spider_day0(result)
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    lesions = records(result.get("lesions"))
    drawn = [x for x in lesions if day0 is not None and _spider_line(ax, x, day0)]
    if day0 is None or not drawn:
        _placeholder(ax, "no % change from baseline in the result")
        return _png(fig)
    _therapy_bands(ax, result, day0)
    _threshold_lines(ax)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -40.0), max(high, 30.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("change in long diameter from baseline (%)")
    ax.set_title("Spider plot: response of each lesion over time", fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    _field_legend(fig, [field_of(x) for x in drawn])
    return _png(fig)


# --- waterfall ---------------------------------------------------------------------------------


def _waterfall_panel(ax: Axes, lesions: Sequence[Mapping[str, Any]], *, title: str) -> None:
    ax.set_title(title, fontsize=9, loc="left")
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.axhline(RESPONSE_LINE_PCT, color="0.25", linestyle="--", linewidth=0.9)
    ax.axhline(PROGRESSION_LINE_PCT, color="0.25", linestyle=":", linewidth=0.9)
    ax.spines[["top", "right"]].set_visible(False)
    if not lesions:
        ax.text(
            0.5, 0.5, "no lesions", ha="center", va="center", color="0.4", transform=ax.transAxes
        )
        ax.set_xticks([])
        return
    ordered = sorted(  # largest growth left, deepest shrinkage right; no value last
        lesions,
        key=lambda x: (
            number(x.get("best_pct_change")) is None,
            -(number(x.get("best_pct_change")) or 0),
        ),
    )
    for i, lesion in enumerate(ordered):
        value = number(lesion.get("best_pct_change"))
        colour = FIELD_COLOURS[field_of(lesion)]
        if value is None:
            ax.text(i, 2.0, "n/a", ha="center", va="bottom", size=7, color="0.4")
            continue
        ax.bar(i, value, color=colour, width=0.7)
        ax.annotate(
            f"{value:+.0f} %".replace("-", "\u2212"),
            (i, value),
            xytext=(0, 3 if value >= 0 else -3),
            textcoords="offset points",
            ha="center",
            va="bottom" if value >= 0 else "top",
            size=7,
        )
    ax.set_xticks(range(len(ordered)), [str(x.get("lesion_id", "?")) for x in ordered])
    ax.tick_params(axis="x", labelsize=8, rotation=45 if len(ordered) > 8 else 0)
    ax.set_xlim(-0.7, len(ordered) - 0.3)


def waterfall_png(result: Mapping[str, Any]) -> bytes:
    """Draw the best % change of each lesion as sorted bars, out-of-field beside in-field.

    The out-of-field panel holds every lesion not known to be in the field (low dose, outside
    the dose grid, uncertain). Bars are coloured by field status; a dashed line marks -30 %, a
    dotted one +20 %.
    """
    lesions = records(result.get("lesions"))
    outside = [x for x in lesions if field_of(x) in OUT_OF_FIELD_GROUP]
    inside = [x for x in lesions if field_of(x) not in OUT_OF_FIELD_GROUP]
    fig = Figure(figsize=(9.0, 4.0), layout="constrained")
    if not lesions:
        _placeholder(fig.add_subplot(), "no lesions in the result")
        return _png(fig)
    axes = fig.subplots(
        1, 2, sharey=True, gridspec_kw={"width_ratios": [max(len(outside), 2), max(len(inside), 2)]}
    )
    _waterfall_panel(
        axes[0], outside, title="Out-of-field (incl. low dose, outside grid, uncertain)"
    )
    _waterfall_panel(axes[1], inside, title="In-field")
    values = [v for x in lesions if (v := number(x.get("best_pct_change"))) is not None]
    axes[0].set_ylim(min([-40.0, *values]) - 12.0, max([30.0, *values]) + 12.0)
    axes[0].set_ylabel("best change in long diameter (%)")
    _field_legend(fig, [field_of(x) for x in lesions])
    fig.suptitle("Waterfall: best response of each lesion", fontsize=10, x=0.01, ha="left")
    return _png(fig)


# --- key images --------------------------------------------------------------------------------


def _largest_slice(image: Volume, mask: LesionMask) -> int | None:
    """Find the image slice holding most of the mask's voxels (mapped through LPS), or None."""
    idx = np.rint(image.grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((idx >= 0) & (idx < np.asarray(image.grid.shape)), axis=1)
    if not inside.any():
        return None
    counts = Counter(int(k) for k in idx[inside, 0])
    return max(counts, key=lambda k: (counts[k], -k))


def _mask_on_slice(
    image: Volume, mask: LesionMask, k: int, rows: slice, cols: slice
) -> NDArray[np.bool_]:
    """Sample the mask (nearest voxel) at the centres of image slice `k`, rows by cols."""
    j, i = np.mgrid[rows, cols]
    index = np.stack([np.full(j.shape, k), j, i], axis=-1).astype(float)
    at = np.rint(mask.grid.lps_to_index(image.grid.index_to_lps(index))).astype(int)
    inside = np.all((at >= 0) & (at < np.asarray(mask.grid.shape)), axis=-1)
    out = np.zeros(j.shape, dtype=bool)
    hit = at[inside]
    out[inside] = mask.mask[hit[:, 0], hit[:, 1], hit[:, 2]]
    return out


def key_image_png(
    image: Volume,
    mask: LesionMask | None,
    *,
    title: str,
    window: tuple[float, float] = (-400.0, 1000.0),
    colour: str = _CONTOUR_COLOUR,
) -> bytes:
    """Draw an axial slice through the lesion's largest cross-section with its contour.

    The mask's grid is mapped onto the image's grid through LPS (they must share a frame of
    reference); the slice is cropped to the lesion ± 40 mm and shown in the grey `window` (HU).
    Without a mask, or with a mask outside the image, the central slice is shown whole. Rows and
    columns are drawn as stored: for an axial DICOM series, anterior up and the patient's right on
    the left (radiological convention).
    """
    grid = image.grid
    if (
        mask is not None
        and grid.frame_of_reference_uid is not None
        and mask.grid.frame_of_reference_uid is not None
        and grid.frame_of_reference_uid != mask.grid.frame_of_reference_uid
    ):
        msg = (
            f"key image of lesion {mask.lesion_id}: FrameOfReferenceUID differs between image "
            f"({grid.frame_of_reference_uid}) and mask ({mask.grid.frame_of_reference_uid}); "
            "register the mask onto the image first (abscopal.register)"
        )
        raise GeometryError(msg)
    rows, cols = slice(0, grid.shape[1]), slice(0, grid.shape[2])
    outline: NDArray[np.bool_] | None = None
    k = _largest_slice(image, mask) if mask is not None and mask.voxel_count else None
    full = None if mask is None or k is None else _mask_on_slice(image, mask, k, rows, cols)
    if k is not None and full is not None and full.any():
        j, i = np.nonzero(full)
        margin_j = round(CROP_MARGIN_MM / grid.spacing_mm[1])
        margin_i = round(CROP_MARGIN_MM / grid.spacing_mm[2])
        rows = slice(
            max(int(j.min()) - margin_j, 0), min(int(j.max()) + margin_j + 1, grid.shape[1])
        )
        cols = slice(
            max(int(i.min()) - margin_i, 0), min(int(i.max()) + margin_i + 1, grid.shape[2])
        )
        outline = full[rows, cols]
        note = ""
    else:
        k = grid.shape[0] // 2
        note = "no mask: central slice" if mask is None else "mask not on this image: central slice"
    pixels = np.asarray(image.array[k, rows, cols], dtype=float)

    height_mm = pixels.shape[0] * grid.spacing_mm[1]
    width_mm = pixels.shape[1] * grid.spacing_mm[2]
    side = 3.3
    fig = Figure(figsize=(side, side * height_mm / width_mm + 0.35), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(
        pixels,
        cmap="gray",
        vmin=window[0],
        vmax=window[1],
        interpolation="nearest",
        aspect=grid.spacing_mm[1] / grid.spacing_mm[2],
    )
    if outline is not None:
        padded = np.pad(outline, 1).astype(float)  # closes contours that touch the crop's edge
        for contour in find_contours(padded, 0.5):
            ax.plot(contour[:, 1] - 1, contour[:, 0] - 1, color=colour, linewidth=1.4)
    bar_px = 10.0 / grid.spacing_mm[2]  # a 10 mm scale bar, bottom left
    x0, y0 = 0.04 * pixels.shape[1], 0.94 * pixels.shape[0]
    ax.plot([x0, x0 + bar_px], [y0, y0], color="white", linewidth=2)
    ax.text(x0, y0 - 0.02 * pixels.shape[0], "10 mm", color="white", size=7, va="bottom")
    corner = f"slice {k + 1}/{grid.shape[0]}  window [{window[0]:g}, {window[1]:g}] {image.units}"
    ax.text(0.98, 0.02, corner, color="white", size=6, ha="right", transform=ax.transAxes)
    if note:
        ax.text(0.02, 0.98, note, color="white", size=7, va="top", transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    return _png(fig, dpi=120)


def field_colour(lesion: Mapping[str, Any]) -> str:
    """Return the colour of the lesion's field status (grey when it has none)."""
    return FIELD_COLOURS[field_of(lesion)]


def dose_mip_png(
    dose: Volume,
    masks: Sequence[LesionMask],
    fields: Mapping[str, str],
    *,
    title: str,
    units: str = "Gy",
) -> bytes:
    """Axial and coronal maximum-intensity projections of a dose (or activity) map.

    Every lesion (masks on the same frame of reference) is outlined in its field-status colour and
    labelled. The axial panel projects along the slice axis, the coronal one along the rows
    (anterior–posterior for an axial series).
    """
    grid = dose.grid
    fig = Figure(figsize=(10.0, 4.6))
    axes = fig.subplots(1, 2)
    volume = np.asarray(dose.array, dtype=float)
    top = float(np.nanmax(volume)) if volume.size else 0.0
    for ax, axis, name in ((axes[0], 0, "axial MIP"), (axes[1], 1, "coronal MIP")):
        mip = np.nanmax(volume, axis=axis)
        spacing = [s for a, s in enumerate(grid.spacing_mm) if a != axis]
        shown = mip if axis == 0 else mip[::-1]  # coronal: head up (slices run feet to head)
        image = ax.imshow(
            shown, cmap="inferno", vmin=0.0, vmax=top or 1.0, aspect=spacing[0] / spacing[1]
        )
        for mask in masks:
            _outline_projection(
                ax,
                mask,
                grid,
                axis=axis,
                colour=FIELD_COLOURS.get(fields.get(mask.lesion_id, ""), "#8c8c8c"),
            )
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=units)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def _outline_projection(ax: Axes, mask: LesionMask, grid: Any, *, axis: int, colour: str) -> None:
    """Outline of a lesion's projection along `axis` of `grid`, with its label."""
    index = np.rint(grid.lps_to_index(mask.points_lps())).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(grid.shape)), axis=1)
    if not inside.any():
        return
    keep = [a for a in range(3) if a != axis]
    plane = np.zeros([grid.shape[a] for a in keep], dtype=float)
    plane[index[inside][:, keep[0]], index[inside][:, keep[1]]] = 1.0
    if axis == 1:
        plane = plane[::-1]
    for contour in find_contours(np.pad(plane, 1), 0.5):
        ax.plot(contour[:, 1] - 1, contour[:, 0] - 1, color=colour, linewidth=1.2)
    rows, cols = np.nonzero(plane)
    ax.text(cols.max() + 2, rows.min(), mask.lesion_id, color=colour, fontsize=8, fontweight="bold")
