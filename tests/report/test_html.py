from __future__ import annotations

import base64
import re
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from abscopal import DISCLAIMER
from abscopal.model import LesionMask, Volume
from abscopal.report import figures
from abscopal.report.html import KeyImage, write_index, write_patient_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG_SRC = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", re.IGNORECASE)
RESOURCE = re.compile(r"\b(?:src|href)\s*=\s*[\"']?\s*([^\"'\s>]*)", re.IGNORECASE)
HREF = re.compile(r"<a\b[^>]*\bhref=\"([^\"]*)\"", re.IGNORECASE)


@pytest.fixture
def key_images(ct: Volume, lesion_mask: LesionMask) -> list[KeyImage]:
    return [
        KeyImage("B1", date(2024, 8, 12), "last follow-up", ct, lesion_mask),
        KeyImage("B1", date(2023, 11, 20), "baseline", ct, lesion_mask),
        KeyImage("H1", date(2023, 11, 20), "baseline", ct, None),
    ]


def render(tmp_path: Path, result: dict[str, Any], key_images: list[KeyImage] = ()) -> str:
    path = write_patient_report(tmp_path / "SYN-0001-000", result, key_images)
    assert path == tmp_path / "SYN-0001-000" / "report.html"
    return path.read_text(encoding="utf-8")


def test_report_states_verdict_disclaimer_and_every_lesion(
    tmp_path: Path, result: dict[str, Any], key_images: list[KeyImage]
) -> None:
    html = render(tmp_path, result, key_images)
    assert html.count(DISCLAIMER) >= 2  # at the top and in the footer
    assert html.index(DISCLAIMER) < html.index("Verdict") < html.index("Timeline")
    assert "Abscopal response" in html
    assert "(abscopal)" in html
    assert "A (probable)" in html
    for lesion in result["lesions"]:
        assert f">{lesion['lesion_id']}<" in html
    for reason in result["abscopal"]["reasons"]:
        assert reason.replace("->", "-&gt;") in html
    assert "F5: Dmean 0.02 Gy &lt; 1 Gy" in html  # a finding reason, escaped
    assert "182.40" in html  # Dmean of H1
    assert "-48.1 %" in html  # best % change of B1
    assert "24.1" not in html  # no value the result does not hold
    assert '<td class="num">absent</td>' in html  # N1 not seen on 2024-05-13
    assert "typical_timing" in html
    assert "RECIST 1.1" in html  # provenance
    assert "window_months" in html


@pytest.mark.parametrize(
    ("status", "text"),
    [("not_abscopal", "No abscopal response"), ("indeterminate", "Indeterminate")],
)
def test_report_shows_each_status(
    tmp_path: Path, result: dict[str, Any], status: str, text: str
) -> None:
    result["abscopal"]["status"] = status
    html = render(tmp_path, result)
    assert text in html
    assert f"({status})" in html


def test_report_is_self_contained(
    tmp_path: Path, result: dict[str, Any], key_images: list[KeyImage]
) -> None:
    html = render(tmp_path, result, key_images)
    sources = IMG_SRC.findall(html)
    assert len(sources) == 3 + len(key_images)  # timeline, spider, waterfall, key images
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE
    for target in RESOURCE.findall(html):
        assert not target.lower().startswith(("http:", "https:", "//")), target
    assert "http://" not in html
    assert "https://" not in html
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()


def test_key_images_sit_side_by_side_baseline_first(
    tmp_path: Path, result: dict[str, Any], key_images: list[KeyImage]
) -> None:
    html = render(tmp_path, result, key_images)
    section = html[html.index('id="key-images"') : html.index('id="findings"')]
    assert section.index("baseline, 2023-11-20") < section.index("last follow-up, 2024-08-12")
    assert section.index(">H1<") < section.index(">B1<")  # in the result's lesion order


def test_report_escapes_what_the_result_says(tmp_path: Path, result: dict[str, Any]) -> None:
    result["abscopal"]["reasons"].append("<script>alert(1)</script>")
    result["lesions"][0]["organ"] = '<img src="https://example.org/x.png">'
    html = render(tmp_path, result)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    assert len(IMG_SRC.findall(html)) == 3


@pytest.mark.parametrize(
    "partial",
    [
        {"patient_id": "SYN-0002-000"},
        {"patient_id": "SYN-0002-000", "abscopal": None, "lesions": None, "provenance": None},
        {
            "patient_id": "SYN-0002-000",
            "abscopal": {"status": "indeterminate", "certainty": None, "lesions": []},
            "timeline": {"local_therapies": [], "systemic_therapies": [], "scan_dates": []},
            "lesions": [{"lesion_id": "B7", "field": "uncertain", "finding": {"grade": None}}],
        },
    ],
)
def test_report_renders_a_sparse_result(tmp_path: Path, partial: dict[str, Any]) -> None:
    html = render(tmp_path, partial)
    assert DISCLAIMER in html
    assert "SYN-0002-000" in html
    assert "No key images were supplied." in html
    assert len(IMG_SRC.findall(html)) == 3


def test_report_write_leaves_no_temporary_file(tmp_path: Path, result: dict[str, Any]) -> None:
    render(tmp_path, result)
    render(tmp_path, result)  # a second write replaces the first
    assert [p.name for p in (tmp_path / "SYN-0001-000").iterdir()] == ["report.html"]


def test_failed_rendering_writes_nothing(
    tmp_path: Path, result: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: object) -> bytes:
        msg = "figure failed"
        raise RuntimeError(msg)

    monkeypatch.setattr(figures, "spider_png", broken)
    out = tmp_path / "SYN-0001-000"
    with pytest.raises(RuntimeError, match="figure failed"):
        write_patient_report(out, result)
    assert not (out / "report.html").exists()
    assert not out.exists() or not any(out.iterdir())


def test_failed_rendering_keeps_the_previous_report(
    tmp_path: Path, result: dict[str, Any], ct: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = render(tmp_path, result)

    def broken(*_: object, **__: object) -> bytes:
        msg = "key image failed"
        raise RuntimeError(msg)

    monkeypatch.setattr(figures, "key_image_png", broken)
    out = tmp_path / "SYN-0001-000"
    with pytest.raises(RuntimeError, match="key image failed"):
        write_patient_report(out, result, [KeyImage("B1", date(2024, 1, 1), "baseline", ct)])
    assert (out / "report.html").read_text(encoding="utf-8") == previous
    assert [p.name for p in out.iterdir()] == ["report.html"]


def test_key_image_label_is_checked(ct: Volume) -> None:
    with pytest.raises(ValueError, match="label must be one of"):
        KeyImage("B1", date(2024, 1, 1), "follow-up", ct)


def test_index_links_each_report_relatively(tmp_path: Path, result: dict[str, Any]) -> None:
    second = {**result, "patient_id": "SYN-0002-000", "abscopal": {"status": "not_abscopal"}}
    reports = [
        write_patient_report(tmp_path / "patients" / "SYN-0001-000", result),
        write_patient_report(tmp_path / "patients" / "SYN 0002 000", second),  # a space, quoted
    ]
    for out in (tmp_path / "index.html", tmp_path / "site" / "index.html"):
        assert write_index(out, [result, second], reports) == out
        html = out.read_text(encoding="utf-8")
        links = HREF.findall(html)
        assert len(links) == 2
        for link, report in zip(links, reports, strict=True):
            assert not urlparse(link).scheme
            assert not link.startswith("/")
            assert (out.parent / unquote(link)).resolve() == report.resolve()
            assert (out.parent / unquote(link)).exists()
        assert DISCLAIMER in html
        assert "SYN-0001-000" in html
        assert "SYN-0002-000" in html
        assert "(not_abscopal)" in html
        assert "B1" in html
        assert ">5<" in html  # number of lesions
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_index_refuses_unpaired_reports(tmp_path: Path, result: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="pair up one to one"):
        write_index(tmp_path / "index.html", [result], [])
    assert not (tmp_path / "index.html").exists()
