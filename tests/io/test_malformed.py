"""The malformed corpus (tests/data/malformed/make.py): every defect names the file, tag and fix."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import pytest

from abscopal.errors import IngestError
from abscopal.io.dicom import index_folder, load_series, scan_folder
from abscopal.io.image import read_image, read_mask

_MAKE = Path(__file__).parents[1] / "data" / "malformed" / "make.py"


def _make_module() -> Any:
    spec = importlib.util.spec_from_file_location("malformed_make", _MAKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when it writes the NaN slope
        return dict(_make_module().write_corpus(tmp_path_factory.mktemp("malformed")))


CASES = [
    ("truncated", r"PixelData \(7FE0,0010\) holds \d+ bytes.*truncated \(copy it again\)"),
    ("missing_pixel_data", r"PixelData \(7FE0,0010\) missing.*copy the file again"),
    ("missing_image_position", r"ImagePositionPatient \(0020,0032\) missing.*Re-export"),
    (
        "rows_inconsistent",
        r"PixelData.*Rows \(0028,0010\) 8 x Columns \(0028,0011\) 4.*Rows/Columns are wrong",
    ),
    ("zero_pixel_spacing", r"PixelSpacing \(0028,0030\) is \[0\.0, 0\.8\].*re-export"),
    ("negative_slice_thickness", r"SliceThickness \(0018,0050\) is .*-2.*positive"),
    ("nan_rescale_slope", r"RescaleSlope \(0028,1053\) is .NaN.*finite, non-zero slope"),
]


@pytest.mark.parametrize(("name", "message"), CASES)
def test_each_defect_raises_naming_file_tag_and_fix(
    corpus: dict[str, Path], name: str, message: str, tmp_path: Path
) -> None:
    alone = tmp_path / "series"
    alone.mkdir()
    (alone / corpus[name].name).write_bytes(corpus[name].read_bytes())
    with (
        pytest.raises(IngestError, match=rf"{corpus[name].name}: {message}"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        load_series(index_folder(alone)[0])


def test_scan_folder_keeps_good_series_and_lists_bad_files(corpus: dict[str, Path]) -> None:
    root = corpus["good_0"].parents[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scan = scan_folder(root)
    bad = {b.path.name: b.reason for b in scan.bad_files}
    assert set(bad) == {f"{name}.dcm" for name, _ in CASES}
    assert all(reason.startswith(name) for name, reason in bad.items())
    good = [s for s in scan.series if s.modality == "CT"]
    assert len(good) == 1
    assert len(good[0].files) == 3
    assert load_series(good[0]).array.shape == (3, 4, 4)


def test_index_folder_still_raises_on_a_bad_file(corpus: dict[str, Path], tmp_path: Path) -> None:
    """The pipeline relies on `index_folder` stopping at a file that is not DICOM at all."""
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(IngestError, match=r"junk\.dcm: not a DICOM file"):
        index_folder(tmp_path)


def test_seg_drawn_on_another_series_is_refused(corpus: dict[str, Path]) -> None:
    image = read_image(corpus["good_0"].parent)
    with pytest.raises(
        IngestError, match=r"ReferencedSeriesSequence \(0008,1115\).*another series"
    ):
        read_mask(corpus["seg_other_series"], reference=image)
