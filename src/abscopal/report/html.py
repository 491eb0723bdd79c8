"""The per-patient HTML report and the cohort index, rendered with Jinja2.

A report is one self-contained file: CSS inline, every figure a ``data:image/png;base64`` URI, no
script and no external URL, so it can be mailed, archived or printed as it is. The verdict and
its reasons come first, the research-use disclaimer at the top and in the footer. The report lays
out what the result holds and computes no number of its own (days from the local therapy label a
date, they measure nothing).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import jinja2

from abscopal import DISCLAIMER, __version__
from abscopal.atomic import write_text
from abscopal.model import FieldStatus, LesionMask, Volume
from abscopal.report import figures
from abscopal.report._result import (
    as_date,
    field_of,
    mapping,
    number,
    records,
    reference_start,
    texts,
)

KEY_IMAGE_LABELS: Final = ("baseline", "best response", "last follow-up")  # left to right
STATUS_TEXT: Final[Mapping[str, str]] = {
    "abscopal": "Abscopal response",
    "not_abscopal": "No abscopal response",
    "indeterminate": "Indeterminate",
}
GRADE_TEXT: Final[Mapping[str, str]] = {  # CLINICAL.md §8.5, the project's own scale
    "A": "A (probable)",
    "B": "B (possible)",
    "C": "C (indeterminate)",
}
_MISSING: Final = "\u2014"  # an em dash where the result holds no value


@dataclass(frozen=True, slots=True, eq=False)
class KeyImage:
    """One CT image of a lesion at one date, with the lesion's mask where there is one.

    `label` is one of "baseline", "best response" or "last follow-up"; the report shows a
    lesion's key images side by side in that order. `mask` may lie on its own (cropped) grid: it
    is mapped onto the image through LPS and must share the image's frame of reference.
    """

    lesion_id: str
    date: date
    label: str
    image: Volume
    mask: LesionMask | None = None

    def __post_init__(self) -> None:
        if self.label not in KEY_IMAGE_LABELS:
            allowed = ", ".join(repr(x) for x in KEY_IMAGE_LABELS)
            msg = (
                f"key image of lesion {self.lesion_id!r}: label must be one of {allowed}, "
                f"got {self.label!r}"
            )
            raise ValueError(msg)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("abscopal.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value: object, spec: str, *, suffix: str = "") -> str:
    """Format a number from the result with `spec`; an em dash where there is none."""
    x = number(value)
    return _MISSING if x is None else f"{x:{spec}}{suffix}"


def _text(value: object) -> str:
    return _MISSING if value is None or value == "" else str(value)


def _show(value: object) -> str:
    """Show a provenance value: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _verdict(result: Mapping[str, Any]) -> dict[str, Any]:
    verdict = mapping(result.get("abscopal"))
    status = verdict.get("status")
    certainty = verdict.get("certainty")
    rate = number(verdict.get("out_of_field_response_rate"))
    return {
        "status": _text(status),
        "status_text": STATUS_TEXT.get(str(status), "No verdict in the result"),
        "css": status if status in STATUS_TEXT else "none",
        "certainty": GRADE_TEXT.get(str(certainty), _text(certainty)),
        "lesions": texts(verdict.get("lesions")),
        "reasons": texts(verdict.get("reasons")),
        "abscopal_response": _text(verdict.get("abscopal_response")),
        "response_rate": _MISSING if rate is None else f"{rate:.0%}",
    }


def _lesion_table(result: Mapping[str, Any]) -> dict[str, Any]:
    """Rows of the lesion table and the dates of its long-diameter columns."""
    lesions = records(result.get("lesions"))
    abscopal_ids = set(texts(mapping(result.get("abscopal")).get("lesions")))
    reference = reference_start(result)
    by_lesion: list[dict[date, Mapping[str, Any]]] = []
    for lesion in lesions:
        dated: dict[date, Mapping[str, Any]] = {}
        for m in records(lesion.get("measurements")):
            when = as_date(m.get("date"), what="measurement date")
            if when is not None:
                dated.setdefault(when, m)
        by_lesion.append(dated)
    dates = sorted({d for dated in by_lesion for d in dated})
    columns = [
        {
            "date": d.isoformat(),
            "day": "" if reference is None else f"day {(d - reference[0]).days:+d}",
        }
        for d in dates
    ]
    rows = []
    for lesion, dated in zip(lesions, by_lesion, strict=True):
        finding = mapping(lesion.get("finding"))
        field = field_of(lesion)
        cells = []
        for d in dates:
            seen = dated.get(d)
            if seen is None:
                cells.append(_MISSING)
            elif seen.get("present") is False:
                cells.append("absent")
            else:
                cells.append(_fmt(seen.get("diameter_long_mm"), ".1f"))
        rows.append(
            {
                "lesion_id": _text(lesion.get("lesion_id")),
                "abscopal": lesion.get("lesion_id") in abscopal_ids,
                "organ": _text(lesion.get("organ")),
                "kind": _text(lesion.get("kind")),
                "field": _text(lesion.get("field")),
                "colour": figures.FIELD_COLOURS[field],
                "dose_mean_gy": _fmt(lesion.get("dose_mean_gy"), ".2f"),
                "dose_max_gy": _fmt(lesion.get("dose_max_gy"), ".2f"),
                "best_response": _text(lesion.get("best_response")),
                "best_pct_change": _fmt(lesion.get("best_pct_change"), "+.1f", suffix=" %"),
                "grade": _text(finding.get("grade")),
                "ld": cells,
            }
        )
    return {"columns": columns, "rows": rows}


def _findings(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for lesion in records(result.get("lesions")):
        finding = mapping(lesion.get("finding"))
        field = field_of(lesion)
        out.append(
            {
                "lesion_id": _text(lesion.get("lesion_id")),
                "field": _text(lesion.get("field")),
                "colour": figures.FIELD_COLOURS[field],
                "dose": _fmt(lesion.get("dose_mean_gy"), ".2f", suffix=" Gy"),
                "field_reasons": texts(lesion.get("field_reasons")),
                "outcome": _text(finding.get("outcome")),
                "grade": GRADE_TEXT.get(str(finding.get("grade")), _text(finding.get("grade"))),
                "t1": _text(finding.get("t1")),
                "flags": texts(finding.get("flags")),
                "reasons": texts(finding.get("reasons")),
            }
        )
    return out


def _key_images(result: Mapping[str, Any], key_images: Sequence[KeyImage]) -> list[dict[str, Any]]:
    """Key images grouped by lesion (in the result's lesion order), labels left to right."""
    order = [str(x.get("lesion_id")) for x in records(result.get("lesions"))]
    order += [k.lesion_id for k in key_images if k.lesion_id not in order]
    groups = []
    for lesion_id in dict.fromkeys(order):
        shown = sorted(
            (k for k in key_images if k.lesion_id == lesion_id),
            key=lambda k: (KEY_IMAGE_LABELS.index(k.label), k.date),
        )
        if not shown:
            continue
        panels = []
        for k in shown:
            title = f"{lesion_id} \u00b7 {k.label} \u00b7 {k.date.isoformat()}"
            png = figures.key_image_png(k.image, k.mask, title=title)
            panels.append({"label": k.label, "date": k.date.isoformat(), "src": _data_uri(png)})
        groups.append({"lesion_id": lesion_id, "panels": panels})
    return groups


def _provenance(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for key, value in mapping(result.get("provenance")).items():
        if key == "input_sha256" and isinstance(value, Mapping):  # hundreds of files: a digest
            digest = hashlib.sha256("".join(f"{k}{v}" for k, v in sorted(value.items())).encode())
            summary = (
                f"{len(value)} input files; digest {digest.hexdigest()[:16]} (each in results.json)"
            )
            items.append({"name": str(key), "value": summary, "rows": []})
        elif isinstance(value, Mapping):
            rows = [(str(k), _show(v)) for k, v in value.items()]
            items.append({"name": str(key), "value": None, "rows": rows})
        else:
            items.append({"name": str(key), "value": _show(value), "rows": []})
    return items


def _disclaimers(result: Mapping[str, Any]) -> list[str]:
    """The package's disclaimer, and the result's own where it says something else."""
    own = result.get("disclaimer")
    return [DISCLAIMER] + ([str(own)] if own and str(own) != DISCLAIMER else [])


def _legend() -> list[dict[str, str]]:
    return [
        {"field": f.value, "label": figures.FIELD_LABELS[f], "colour": figures.FIELD_COLOURS[f]}
        for f in FieldStatus
    ]


@dataclass(frozen=True, slots=True, eq=False)
class DoseMap:
    """A dose or activity map to draw as MIPs, with the lesion masks on its frame of reference."""

    label: str
    volume: Volume
    masks: Sequence[LesionMask] = ()
    units: str = "Gy"


def _dose_maps(result: Mapping[str, Any], dose_maps: Sequence[DoseMap]) -> list[dict[str, str]]:
    fields = {str(x.get("lesion_id")): str(x.get("field")) for x in records(result.get("lesions"))}
    return [
        {
            "label": d.label,
            "src": _data_uri(
                figures.dose_mip_png(d.volume, d.masks, fields, title=d.label, units=d.units)
            ),
        }
        for d in dose_maps
    ]


def render_patient_report(
    result: Mapping[str, Any],
    key_images: Sequence[KeyImage] = (),
    dose_maps: Sequence[DoseMap] = (),
) -> str:
    """Render the patient's report as one self-contained HTML document (no file is written)."""
    context = {
        "dose_maps": _dose_maps(result, dose_maps),
        "patient_id": _text(result.get("patient_id")),
        "primary_cancer": _text(result.get("primary_cancer")),
        "disclaimers": _disclaimers(result),
        "verdict": _verdict(result),
        "timeline_src": _data_uri(figures.timeline_png(result)),
        "spider_src": _data_uri(figures.spider_png(result)),
        "waterfall_src": _data_uri(figures.waterfall_png(result)),
        "table": _lesion_table(result),
        "findings": _findings(result),
        "key_images": _key_images(result, key_images),
        "legend": _legend(),
        "provenance": _provenance(result),
        "report_version": __version__,
    }
    return _environment().get_template("patient.html").render(context)


def write_patient_report(
    out_dir: Path,
    result: Mapping[str, Any],
    key_images: Sequence[KeyImage] = (),
    dose_maps: Sequence[DoseMap] = (),
) -> Path:
    """Write ``out_dir/report.html`` for one patient's result, atomically; return its path.

    Everything is rendered before the file is opened: if a figure or the template fails, no
    report.html is left behind (and an earlier one is kept as it was).
    """
    html = render_patient_report(result, key_images, dose_maps)
    path = Path(out_dir) / "report.html"
    write_text(path, html)
    return path


def _href(target: Path, *, start: Path) -> str:
    """A relative URL from the folder `start` to `target` (POSIX separators, quoted)."""
    relative = os.path.relpath(Path(target).resolve(), Path(start).resolve())
    return quote(Path(relative).as_posix())


def write_index(out: Path, results: Sequence[Mapping[str, Any]], reports: Sequence[Path]) -> Path:
    """Write the cohort index to `out` (an index.html path), atomically; return its path.

    `results[n]` is the result whose report is `reports[n]`; each patient's ID links to its
    report by a path relative to the index, so the folder can be moved as a whole.
    """
    if len(results) != len(reports):
        msg = f"results and reports must pair up one to one, got {len(results)} and {len(reports)}"
        raise ValueError(msg)
    out = Path(out)
    patients = []
    for result, report in zip(results, reports, strict=True):
        verdict = _verdict(result)
        patients.append(
            {
                "patient_id": _text(result.get("patient_id")),
                "href": _href(report, start=out.parent),
                "primary_cancer": _text(result.get("primary_cancer")),
                "status": verdict["status"],
                "status_text": verdict["status_text"],
                "css": verdict["css"],
                "certainty": _text(mapping(result.get("abscopal")).get("certainty")),
                "lesions": verdict["lesions"],
                "lesion_count": len(records(result.get("lesions"))),
            }
        )
    counts = {
        text: sum(p["status"] == status for p in patients) for status, text in STATUS_TEXT.items()
    }
    html = (
        _environment()
        .get_template("index.html")
        .render(
            patients=patients,
            counts=counts,
            disclaimers=[DISCLAIMER],
            report_version=__version__,
        )
    )
    write_text(out, html)
    return out
