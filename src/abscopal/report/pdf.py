"""The PDF of a patient report: the self-contained HTML page printed by WeasyPrint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from abscopal.atomic import atomic_path

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)


def write_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Render `html_path` (with its print CSS) to `pdf_path`, atomically."""
    import weasyprint  # heavy: loaded only when a PDF is asked for

    logging.getLogger("weasyprint").setLevel(logging.ERROR)  # its CSS notes are not ours to print
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    with atomic_path(pdf_path) as tmp:
        weasyprint.HTML(filename=str(html_path)).write_pdf(str(tmp))
    logger.info("PDF report %s written", pdf_path.name)
    return pdf_path
