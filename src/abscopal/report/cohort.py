"""The cohort report (Kaplan–Meier curve, forest plot, cohort waterfall) and table exports.

One self-contained HTML file, figures as ``data:`` PNG URIs, plus every store table and every
statistic as CSV and Parquet. It lays out `abscopal.cohort.stats` results and computes nothing.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2

from abscopal import DISCLAIMER, __version__
from abscopal.atomic import atomic_path, write_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from abscopal.cohort.stats import CohortStats, KaplanMeier

_TEMPLATE: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("abscopal.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def km_png(km: KaplanMeier) -> str:
    """Cumulative incidence of abscopal response (1 − KM) with its 95 % band."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    if km.days:
        ax.step(km.days, km.cumulative, where="post", color="#1f5f8b")
        ax.fill_between(km.days, km.lower, km.upper, step="post", alpha=0.2, color="#1f5f8b")
    ax.set_xlabel("days from local therapy")
    ax.set_ylabel("cumulative incidence")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(f"Abscopal response: {km.events} events in {km.patients} patients")
    return _png(fig)


def forest_png(incidence: pd.DataFrame) -> str:
    """Incidence with Wilson 95 % intervals, overall and by subgroup."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    rows = incidence.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(rows) + 1.0))
    y = list(range(len(rows)))[::-1]
    ax.errorbar(
        rows["proportion"],
        y,
        xerr=[rows["proportion"] - rows["ci_low"], rows["ci_high"] - rows["proportion"]],
        fmt="s",
        color="#333333",
        capsize=3,
    )
    ax.set_yticks(
        y,
        [
            f"{g}: {lv} ({e}/{n})"
            for g, lv, e, n in zip(
                rows["group"], rows["level"], rows["events"], rows["patients"], strict=True
            )
        ],
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("abscopal incidence (Wilson 95 % CI)")
    return _png(fig)


def waterfall_png(measurements: pd.DataFrame, doses: pd.DataFrame) -> str:
    """Best change from baseline of every out-of-field lesion in the cohort, sorted."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    out = doses.loc[doses["field"] == "out_of_field", ["patient_key", "lesion_id"]]
    merged = measurements.merge(out, on=["patient_key", "lesion_id"])
    best = merged.groupby(["patient_key", "lesion_id"])["pct_change_baseline"].min().dropna()
    values = sorted(best.tolist(), reverse=True)
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    colours = ["#2e7d32" if v <= -30 else "#c62828" if v >= 20 else "#9e9e9e" for v in values]
    ax.bar(range(len(values)), values, color=colours)
    for level in (-30, 20):
        ax.axhline(level, linestyle="--", linewidth=0.8, color="#555555")
    ax.set_xlabel(f"out-of-field lesions (n = {len(values)})")
    ax.set_ylabel("best change of LD (%)")
    return _png(fig)


def write_cohort_report(
    folder: Path, tables: Mapping[str, pd.DataFrame], stats: CohortStats
) -> Path:
    """Write `cohort_report.html` and the exports into `folder`; return the report's path."""
    folder = Path(folder)
    write_exports(folder / "exports", tables, stats)
    km = stats.km
    html = _TEMPLATE.get_template("cohort.html").render(
        disclaimer=DISCLAIMER,
        version=__version__,
        patients=len(stats.patients),
        failed=stats.failed,
        incidence=stats.incidence.to_dict("records"),
        km=km,
        logistic=stats.logistic,
        odds=stats.logistic.table.to_dict("records"),
        km_png=km_png(km),
        forest_png=forest_png(stats.incidence),
        waterfall_png=waterfall_png(tables["measurements"], tables["doses"]),
    )
    path = folder / "cohort_report.html"
    write_text(path, html)
    return path


def write_exports(
    folder: Path, tables: Mapping[str, pd.DataFrame], stats: CohortStats
) -> list[Path]:
    """Every table and statistic as `<name>.csv` and `<name>.parquet` (atomically)."""
    frames = dict(tables)
    frames["cohort_patients"] = stats.patients
    frames["incidence"] = stats.incidence
    frames["logistic"] = stats.logistic.table
    frames["kaplan_meier"] = _km_frame(stats.km)
    written = []
    for name, frame in frames.items():
        for suffix in (".csv", ".parquet"):
            path = folder / f"{name}{suffix}"
            with atomic_path(path) as tmp:
                if suffix == ".csv":
                    frame.to_csv(tmp, index=False)
                else:
                    frame.astype(
                        {c: "string" for c in frame.columns if frame[c].dtype == object}
                    ).to_parquet(tmp, index=False)
            written.append(path)
    return written


def _km_frame(km: KaplanMeier) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "days": km.days,
            "cumulative_incidence": km.cumulative,
            "ci_low": km.lower,
            "ci_high": km.upper,
        }
    )
