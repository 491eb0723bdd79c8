"""DICOM SEG reading against the highdicom and pydicom-data SEG fixtures (drawn on pydicom CT2)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest

from abscopal.errors import GeometryError, IngestError, IngestWarning
from abscopal.geometry import Grid
from abscopal.io.dicom import DicomSeries, index_folder, load_series
from abscopal.io.seg import read_seg
from abscopal.model import LesionMask

CT2_SERIES = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2"
CT2_FRAME = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.4"


@pytest.fixture
def ct2_grid(fixtures_dir: Path) -> Grid:
    """CT2's three contiguous slices (z 103.02..105.52 mm); its fourth slice lies 200 mm away."""
    (series,) = index_folder(fixtures_dir / "pydicom" / "dicomdirtests" / "77654033")
    kept = tuple(p for p in series.files if p.name != "17106")  # the slice at z = -99.48 mm
    return load_series(replace(series, files=kept)).grid


def _points(mask: LesionMask) -> set[tuple[float, ...]]:
    return {tuple(np.round(p, 3)) for p in mask.points_lps()}


def _seg_pixels(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def test_binary_seg_on_its_own_grid(fixtures_dir: Path) -> None:
    path = fixtures_dir / "highdicom" / "seg_image_ct_binary.dcm"
    result = read_seg(path)
    (mask,) = result.masks
    assert mask.lesion_id == "test segmentation of computed tomography image"  # TrackingID
    assert mask.voxel_count == int(_seg_pixels(path).sum())
    assert result.frame_of_reference_uid == CT2_FRAME
    assert result.referenced_series_uid == CT2_SERIES
    assert result.date == date(1995, 9, 3)
    assert len(result.referenced_sop_instance_uids) == 4
    assert mask.grid.spacing_mm == pytest.approx((1.25, 0.488281, 0.488281))
    item = pydicom.dcmread(path, stop_before_pixels=True).SegmentSequence[0]
    assert result.segment_identities == ((item.SegmentLabel, item.TrackingUID),)


def test_binary_seg_on_the_ct_grid(fixtures_dir: Path, ct2_grid: Grid) -> None:
    """On the CT it was drawn on, a mask is a sub-grid of the CT holding the same voxels."""
    path = fixtures_dir / "highdicom" / "seg_image_ct_binary.dcm"
    (own,) = read_seg(path).masks
    (mask,) = read_seg(path, reference=ct2_grid).masks
    assert _points(mask) == _points(own)
    start = ct2_grid.lps_to_index(mask.grid.origin_mm)
    np.testing.assert_allclose(start, np.round(start), atol=1e-6)  # on a CT voxel centre
    assert mask.grid.spacing_mm == ct2_grid.spacing_mm
    assert mask.grid.axes == ct2_grid.axes
    # frame n of the SEG is CT slice n: compare voxel by voxel on the full CT grid
    full = np.zeros(ct2_grid.shape, dtype=bool)
    k, j, i = np.round(ct2_grid.lps_to_index(mask.points_lps())).astype(int).T
    full[k, j, i] = True
    np.testing.assert_array_equal(full, _seg_pixels(path).astype(bool))


def test_mask_is_cropped_to_its_box_plus_one_voxel_on_a_larger_reference(
    fixtures_dir: Path, ct2_grid: Grid
) -> None:
    larger = replace(
        ct2_grid,
        origin_mm=tuple(ct2_grid.index_to_lps([-2, -3, -1])),
        shape=(9, 30, 30),
    )
    path = fixtures_dir / "highdicom" / "seg_image_ct_binary_overlap.dcm"
    bone, spine = read_seg(path).masks  # on the SEG's own grid
    with pytest.warns(IngestWarning, match="do not coincide"):  # one frame 200 mm off the grid
        read_seg(path, reference=larger)
    path = fixtures_dir / "highdicom" / "seg_image_ct_binary.dcm"
    (mask,) = read_seg(path, reference=larger).masks
    box = np.argwhere(mask.mask)
    low, high = box.min(axis=0), box.max(axis=0)
    # padded by one voxel inside the larger grid on every side (no clamping needed here)
    assert low.tolist() == [1, 1, 1]
    assert (np.asarray(mask.grid.shape) - 1 - high).tolist() == [1, 1, 1]
    assert _points(mask) == _points(read_seg(path).masks[0])
    assert bone.lesion_id == "Bone"
    assert spine.lesion_id == "Spine"


def test_overlapping_segments_each_keep_their_voxels(fixtures_dir: Path) -> None:
    path = fixtures_dir / "highdicom" / "seg_image_ct_binary_overlap.dcm"
    bone, spine = read_seg(path).masks
    assert bone.voxel_count + spine.voxel_count == int(_seg_pixels(path).sum())
    assert _points(bone) & _points(spine)  # the segments overlap


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.6])
def test_fractional_seg_is_thresholded(fixtures_dir: Path, threshold: float) -> None:
    """Stored values 0, 64 and 128 of MaximumFractionalValue 255."""
    path = fixtures_dir / "highdicom" / "seg_image_ct_true_fractional.dcm"
    expected = int((_seg_pixels(path) / 255.0 >= threshold).sum())
    if expected == 0:
        with pytest.warns(IngestWarning, match="empty"):
            (mask,) = read_seg(path, fractional_threshold=threshold).masks
    else:
        (mask,) = read_seg(path, fractional_threshold=threshold).masks
    assert mask.voxel_count == expected


def test_fractional_seg_with_binary_values(fixtures_dir: Path) -> None:
    binary = read_seg(fixtures_dir / "highdicom" / "seg_image_ct_binary.dcm").masks[0]
    fractional = read_seg(fixtures_dir / "highdicom" / "seg_image_ct_binary_fractional.dcm")
    assert _points(fractional.masks[0]) == _points(binary)


def test_multiframe_liver_seg(fixtures_dir: Path) -> None:
    path = fixtures_dir / "pydicom-data" / "liver.dcm"
    (mask,) = read_seg(path).masks
    assert mask.lesion_id == "Liver"
    assert mask.voxel_count == int(_seg_pixels(path).sum())
    assert mask.grid.spacing_mm == pytest.approx((1.0, 0.810547, 0.810547))


def test_seg_on_another_frame_of_reference_is_refused(
    fixtures_dir: Path, ct2_grid: Grid, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(fixtures_dir / "highdicom" / "seg_image_ct_binary.dcm")
    ds.FrameOfReferenceUID = "2.25.1"
    moved = tmp_path / "moved_seg.dcm"
    ds.save_as(moved)
    with pytest.raises(GeometryError, match=rf"moved_seg\.dcm: .*2\.25\.1 .*{CT2_FRAME}.*register"):
        read_seg(moved, reference=ct2_grid)
    other = replace(ct2_grid, frame_of_reference_uid="2.25.2")
    with pytest.raises(GeometryError, match="FrameOfReferenceUID"):
        read_seg(fixtures_dir / "highdicom" / "seg_image_ct_binary.dcm", reference=other)


def test_non_seg_file_is_refused(fixtures_dir: Path) -> None:
    with pytest.raises(IngestError, match=r"CT_small\.dcm: .*Segmentation Storage"):
        read_seg(fixtures_dir / "pydicom" / "CT_small.dcm")


def test_single_frame_seg_on_ct_small(fixtures_dir: Path) -> None:
    ct_small = fixtures_dir / "pydicom" / "CT_small.dcm"
    ds = pydicom.dcmread(ct_small)
    ct = load_series(
        DicomSeries(
            patient_id="",
            study_uid="",
            series_uid=ds.SeriesInstanceUID,
            modality="CT",
            sop_class_uid=ds.SOPClassUID,
            frame_of_reference_uid=ds.FrameOfReferenceUID,
            study_date=None,
            series_description="",
            files=(ct_small,),
        )
    )
    path = fixtures_dir / "highdicom" / "seg_image_ct_binary_single_frame.dcm"
    (mask,) = read_seg(path, reference=ct.grid).masks
    assert mask.voxel_count == int(_seg_pixels(path).sum())
    assert mask.grid.shape[0] == 1
    assert mask.grid.origin_mm[2] == pytest.approx(-75.699997)
    start = ct.grid.lps_to_index(mask.grid.origin_mm)
    np.testing.assert_allclose(start, np.round(start), atol=1e-6)
