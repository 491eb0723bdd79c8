"""Reports of results: figures (matplotlib, PNG) and self-contained HTML pages (Jinja2).

The report draws and lays out what a result holds; it computes nothing that changes a number.
"""

from abscopal.report.figures import (
    FIELD_COLOURS,
    key_image_png,
    spider_png,
    timeline_png,
    waterfall_png,
)
from abscopal.report.html import KeyImage, render_patient_report, write_index, write_patient_report

__all__ = [
    "FIELD_COLOURS",
    "KeyImage",
    "key_image_png",
    "render_patient_report",
    "spider_png",
    "timeline_png",
    "waterfall_png",
    "write_index",
    "write_patient_report",
]
