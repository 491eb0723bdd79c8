"""RTDOSE, RTSTRUCT and rasterization: pydicom and dicompyler fixtures, polygons of known area."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from abscopal.errors import GeometryError, IngestError, IngestWarning
from abscopal.geometry import AXIAL, Grid
from abscopal.io.rt import RtDose, rasterize, read_rtdose, read_rtplan, read_rtstruct, sum_rtdoses
from abscopal.model import Volume

FRAME = "2.25.42"


# ---- RTDOSE ----------------------------------------------------------------------------------


def test_relative_dose_without_prescription_is_refused(fixtures_dir: Path) -> None:
    with pytest.raises(IngestError, match=r"rtdose\.dcm: DoseUnits \(3004,0002\) is 'RELATIVE'"):
        read_rtdose(fixtures_dir / "pydicom" / "rtdose.dcm")


def test_relative_dose_is_scaled_to_the_prescription(fixtures_dir: Path) -> None:
    """pydicom rtdose.dcm: 15 frames of 10 x 10, 5 mm apart, max stored 1254000 x 1e-6."""
    dose = read_rtdose(fixtures_dir / "pydicom" / "rtdose.dcm", prescription_gy=2.0)
    volume = dose.volume
    assert (volume.modality, volume.units) == ("RTDOSE", "GY")
    assert (dose.summation_type, dose.dose_type) == ("BEAM", "PHYSICAL")
    assert volume.array.max() == pytest.approx(1254000 * 1e-6 * 2.0)
    grid = volume.grid
    assert grid.shape == (15, 10, 10)
    assert grid.origin_mm == pytest.approx((189.43125, 199.43125, -761.87))
    assert grid.spacing_mm == pytest.approx((5.0, 10.0, 10.0))
    assert grid.frame_of_reference_uid == "2.22.222.2.222222.2.2222222222222222222222222222.2"


def test_absolute_dose_in_gy(dicompyler_dir: Path) -> None:
    dose = read_rtdose(dicompyler_dir / "rtdose.dcm")
    ds = pydicom.dcmread(dicompyler_dir / "rtdose.dcm")
    assert dose.summation_type == "PLAN"
    assert dose.volume.grid.shape == (98, 129, 194)
    assert dose.volume.grid.spacing_mm == pytest.approx((3.0, 2.5, 2.5))
    np.testing.assert_allclose(dose.volume.array, ds.pixel_array * float(ds.DoseGridScaling))
    last = dose.volume.grid.index_to_lps([97, 0, 0])
    assert last[2] == pytest.approx(-122.4407 + 291.0)  # IPP z + last GridFrameOffsetVector


def _edited_dose(source: Path, tmp_path: Path, **attributes: object) -> Path:
    ds = pydicom.dcmread(source)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    out = tmp_path / "edited_rtdose.dcm"
    ds.save_as(out)
    return out


def test_absolute_frame_offsets_give_the_same_grid(fixtures_dir: Path, tmp_path: Path) -> None:
    source = fixtures_dir / "pydicom" / "rtdose.dcm"
    absolute = [-761.87 + 5.0 * k for k in range(15)]  # first offset = IPP z, identity orientation
    edited = _edited_dose(source, tmp_path, GridFrameOffsetVector=absolute)
    relative = read_rtdose(source, prescription_gy=1.0).volume.grid
    assert read_rtdose(edited, prescription_gy=1.0).volume.grid.same_geometry(relative)


def test_decreasing_frame_offsets_point_the_slice_axis_backwards(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    offsets = [-5.0 * k for k in range(15)]
    edited = _edited_dose(
        fixtures_dir / "pydicom" / "rtdose.dcm", tmp_path, GridFrameOffsetVector=offsets
    )
    grid = read_rtdose(edited, prescription_gy=1.0).volume.grid
    assert grid.axes[0] == (0.0, 0.0, -1.0)
    assert grid.index_to_lps([14, 0, 0])[2] == pytest.approx(-761.87 - 70.0)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            {"GridFrameOffsetVector": [0, 5, 10, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75]},
            "not uniform",
        ),
        ({"GridFrameOffsetVector": [7.0 + 5 * k for k in range(15)]}, "neither 0"),
        ({"DoseUnits": "CGY"}, r"DoseUnits \(3004,0002\) is 'CGY'"),
    ],
)
def test_unsafe_rtdose_is_refused(fixtures_dir: Path, tmp_path: Path, attributes, message) -> None:
    edited = _edited_dose(fixtures_dir / "pydicom" / "rtdose.dcm", tmp_path, **attributes)
    with pytest.raises(IngestError, match=message):
        read_rtdose(edited, prescription_gy=1.0)


def test_prescription_for_dose_in_gy_is_ignored_with_a_warning(dicompyler_dir: Path) -> None:
    with pytest.warns(IngestWarning, match="prescription_gy=50.0 ignored"):
        read_rtdose(dicompyler_dir / "rtdose.dcm", prescription_gy=50.0)


def test_non_dose_file_is_refused(fixtures_dir: Path) -> None:
    with pytest.raises(IngestError, match=r"CT_small\.dcm: SOPClassUID .* RT Dose Storage"):
        read_rtdose(fixtures_dir / "pydicom" / "CT_small.dcm")


# ---- RTSTRUCT --------------------------------------------------------------------------------


def test_rtstruct_without_file_meta(fixtures_dir: Path) -> None:
    with pytest.warns(IngestWarning, match="no DICOM preamble"):
        structure = read_rtstruct(fixtures_dir / "pydicom" / "rtstruct.dcm")
    assert structure.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2"
    assert sorted(structure.rois) == ["Isocenter 1", "Isocenter 2", "patient"]
    assert len(structure.rois["patient"]) == 3
    assert structure.rois["Isocenter 1"] == ()  # a POINT ROI has no closed planar contour
    assert structure.roi_types["patient"] == "EXTERNAL"
    first = structure.rois["patient"][0]
    assert first.shape == (5, 3)
    assert first[0].tolist() == [-200.0, 150.0, -200.0]


def test_dicompyler_structures_match_the_planning_system(
    dicompyler_dir: Path,
) -> None:
    """Rasterized on the dose grid, volume and mean dose agree with the TPS's own DVHs.

    The RTDOSE's DVHSequence gives each ROI's volume (first cumulative bin, cm3) and mean dose.
    Its dose values are in per cent of the 14 Gy TargetPrescriptionDose of rtplan.dcm although
    its DoseUnits say GY (the grid maximum, 14.68 Gy, appears there as 104.86).
    Tolerances: volume 3 % (the TPS computes volumes on its own finer lattice, and voxel-centre
    inclusion on a 2.5 x 2.5 x 3 mm grid misplaces about half a voxel row along the outline),
    mean dose 2 %. BODY is left out: it extends beyond the dose grid. Structures under 10 mL are
    left out: one voxel is 0.019 mL, so their outline error exceeds any clinical tolerance.
    """
    dose = read_rtdose(dicompyler_dir / "rtdose.dcm").volume
    structure = read_rtstruct(dicompyler_dir / "rtss.dcm")
    plan = pydicom.dcmread(dicompyler_dir / "rtplan.dcm")
    prescription_gy = float(plan.DoseReferenceSequence[0].TargetPrescriptionDose)
    header = pydicom.dcmread(dicompyler_dir / "rtdose.dcm", stop_before_pixels=True)
    names = {
        int(r.ROINumber): r.ROIName
        for r in pydicom.dcmread(dicompyler_dir / "rtss.dcm").StructureSetROISequence
    }
    checked = []
    for dvh in header.DVHSequence:
        name = names[int(dvh.DVHReferencedROISequence[0].ReferencedROINumber)]
        tps_volume_ml = float(dvh.DVHData[1])
        if name == "BODY" or tps_volume_ml < 10:
            continue
        mask = rasterize(
            structure.rois[name], dose.grid, frame_of_reference_uid=structure.frame_of_reference_uid
        )
        volume_ml = mask.sum() * dose.grid.voxel_volume_ml
        mean_percent = 100 * dose.array[mask].mean() / prescription_gy
        assert volume_ml == pytest.approx(tps_volume_ml, rel=0.03), name
        assert mean_percent == pytest.approx(float(dvh.DVHMeanDose), rel=0.02), name
        checked.append(name)
    assert sorted(checked) == ["Breast", "Heart", "Lt Lung", "Tumor Bed", "Tumor Bed Block"]


# ---- rasterize -------------------------------------------------------------------------------


def _grid(shape: tuple[int, int, int] = (3, 20, 20), frame: str | None = FRAME) -> Grid:
    """1 mm voxels, voxel (k, j, i) centred at (x, y, z) = (i, j, k) mm."""
    return Grid(
        origin_mm=(0.0, 0.0, 0.0),
        spacing_mm=(1.0, 1.0, 1.0),
        axes=AXIAL,
        shape=shape,
        frame_of_reference_uid=frame,
    )


def _square(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)


def test_square_covers_the_voxel_centres_inside() -> None:
    """Edges on half-voxel lines: x in [2.5, 6.5] holds centres 3..6, y in [4.5, 7.5] holds 5..7."""
    mask = rasterize([_square(2.5, 6.5, 4.5, 7.5, 1.0)], _grid(), frame_of_reference_uid=FRAME)
    assert mask.sum() == 4 * 3
    assert np.argwhere(mask[1]).min(axis=0).tolist() == [5, 3]  # (row j = y, column i = x)
    assert np.argwhere(mask[1]).max(axis=0).tolist() == [7, 6]
    assert not mask[0].any() and not mask[2].any()


def test_ring_has_a_hole() -> None:
    outer = _square(2.5, 12.5, 2.5, 12.5, 1.0)  # 10 x 10 centres
    inner = _square(5.5, 9.5, 5.5, 9.5, 1.0)[::-1]  # 4 x 4 centres, any winding
    mask = rasterize([outer, inner], _grid(), frame_of_reference_uid=FRAME)
    assert mask.sum() == 100 - 16
    assert not mask[1, 7, 7]


def test_contours_go_to_the_nearest_slice_and_outside_ones_are_ignored() -> None:
    square = [
        _square(2.5, 4.5, 2.5, 4.5, 0.4),  # slice 0
        _square(2.5, 4.5, 2.5, 4.5, 2.45),  # slice 2
        _square(2.5, 4.5, 2.5, 4.5, 3.6),  # beyond the last slice's half-voxel
        _square(30.5, 34.5, 2.5, 4.5, 1.0),  # beyond the columns
    ]
    mask = rasterize(square, _grid(), frame_of_reference_uid=FRAME)
    assert [int(mask[k].sum()) for k in range(3)] == [4, 0, 4]


def test_finer_contour_planes_do_not_cancel_each_other() -> None:
    """Planes at z = 0 and 0.4 mm both map to slice 0: only the nearer is used, no XOR."""
    planes = [_square(2.5, 4.5, 2.5, 4.5, 0.0), _square(2.5, 5.5, 2.5, 4.5, 0.4)]
    mask = rasterize(planes, _grid(), frame_of_reference_uid=FRAME)
    assert int(mask[0].sum()) == 4


def test_contours_on_another_frame_are_refused() -> None:
    with pytest.raises(GeometryError, match="FrameOfReferenceUID differs"):
        rasterize([_square(2.5, 4.5, 2.5, 4.5, 1.0)], _grid(), frame_of_reference_uid="2.25.7")


def test_contour_across_slices_is_refused() -> None:
    sagittal = np.array([[3.0, 2.5, 0.0], [3.0, 6.5, 0.0], [3.0, 6.5, 2.0], [3.0, 2.5, 2.0]])
    with pytest.raises(GeometryError, match="not parallel"):
        rasterize([sagittal], _grid(), frame_of_reference_uid=FRAME)


# ---- RTPLAN and summation ----------------------------------------------------------------------


def test_rtplan_prescription_fractions_and_beam_dose(dicompyler_dir: Path) -> None:
    plan = read_rtplan(dicompyler_dir / "rtplan.dcm")
    assert plan.prescription_gy == 14.0
    assert plan.fractions == 7
    assert dict(plan.beam_dose_gy) == {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5}
    with pytest.raises(IngestError, match="RT Plan Storage"):
        read_rtplan(dicompyler_dir / "rtdose.dcm")


def test_relative_dose_scaled_by_the_plan_prescription(fixtures_dir: Path) -> None:
    dose = read_rtdose(fixtures_dir / "pydicom" / "rtdose.dcm", prescription_gy=14.0)
    assert dose.volume.array.max() == pytest.approx(1.254 * 14.0)


def test_missing_grid_scaling_is_refused(fixtures_dir: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(fixtures_dir / "pydicom" / "rtdose.dcm")
    del ds.DoseGridScaling
    out = tmp_path / "noscale.dcm"
    ds.save_as(out)
    with pytest.raises(IngestError, match=r"noscale\.dcm: DoseGridScaling \(3004,000E\)"):
        read_rtdose(out, prescription_gy=1.0)


def test_sum_of_two_grids_and_fraction_dose(dicompyler_dir: Path) -> None:
    dose = read_rtdose(dicompyler_dir / "rtdose.dcm")
    twice = sum_rtdoses([dose, dose])
    np.testing.assert_allclose(twice.volume.array, 2 * dose.volume.array)
    fraction = RtDose(volume=dose.volume, summation_type="FRACTION", dose_type="PHYSICAL")
    with pytest.raises(IngestError, match="FRACTION"):
        sum_rtdoses([fraction])
    plan = sum_rtdoses([fraction], fractions=7)
    np.testing.assert_allclose(plan.volume.array, 7 * dose.volume.array)
    other = replace(dose.volume.grid, frame_of_reference_uid="2.25.99")
    moved = RtDose(
        volume=Volume(array=dose.volume.array, grid=other, modality="RTDOSE", units="GY"),
        summation_type="PLAN",
        dose_type="PHYSICAL",
    )
    with pytest.raises(GeometryError, match="FrameOfReferenceUID differs"):
        sum_rtdoses([dose, moved])


@pytest.mark.parametrize("slice_step", [1.0, -1.0])
def test_write_rtdose_round_trip(tmp_path: Path, slice_step: float) -> None:
    """A dose written as RTDOSE reads back on the same grid (slices with or against the normal)."""
    from abscopal.io.rt import write_rtdose

    axes = ((0.0, 0.0, slice_step), AXIAL[1], AXIAL[2])
    grid = Grid(
        origin_mm=(-10.0, 20.0, 30.0),
        spacing_mm=(2.5, 1.5, 2.0),
        axes=axes,
        shape=(4, 5, 6),
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1",
    )
    values = np.random.default_rng(3).uniform(0.0, 70.0, grid.shape)
    write_rtdose(Volume(array=values, grid=grid, modality="RTDOSE", units="GY"), tmp_path / "d.dcm")
    back = read_rtdose(tmp_path / "d.dcm").volume
    assert back.grid.same_geometry(grid, tol_mm=1e-4)
    assert np.abs(back.array - values).max() <= 70.0 / 2**32 * 1.01  # one quantisation step


def test_write_rtdose_refuses_nan_and_leaves_nothing(tmp_path: Path) -> None:
    from abscopal.io.rt import write_rtdose

    grid = Grid(origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1), axes=AXIAL, shape=(2, 2, 2))
    values = np.full(grid.shape, np.nan)
    with pytest.raises(ValueError, match="NaN"):
        write_rtdose(
            Volume(array=values, grid=grid, modality="RTDOSE", units="GY"), tmp_path / "d.dcm"
        )
    assert list(tmp_path.iterdir()) == []
