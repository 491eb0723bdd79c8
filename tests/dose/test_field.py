"""Field rules F1–F5 and Y1–Y3 (CLINICAL.md §8.1) with DOSIMETRY §8.3 evidence and coverage."""

from __future__ import annotations

import numpy as np
import pytest

from abscopal.dose.dvh import structure_dvh_from_mask
from abscopal.dose.field import (
    FieldSettings,
    classify_ebrt,
    classify_y90,
    distance_to_ptv_mm,
    gap_mm,
    mask_on_grid,
    min_distance_mm,
    ptv_overlap_voxels,
    region_distance,
    worst,
)
from abscopal.geometry import AXIAL, Grid
from abscopal.model import FieldStatus, LesionMask, Volume

GRID = Grid(
    origin_mm=(0, 0, 0),
    spacing_mm=(2.0, 2.0, 2.0),
    axes=AXIAL,
    shape=(20, 20, 40),
    frame_of_reference_uid="1.2",
)


def box_mask(lo: tuple[int, int, int], hi: tuple[int, int, int]) -> LesionMask:
    sub = GRID.crop(lo, hi)
    return LesionMask(lesion_id="L", mask=np.ones(sub.shape, bool), grid=sub)


def ebrt(
    dose: float | None,
    *,
    rx: float = 35.0,
    overlap: int = 0,
    fraction: float = 1.0,
    distance: float = 150.0,
) -> FieldStatus:
    return classify_ebrt(
        lesion_id="L",
        therapy_id="RT",
        prescription_gy=rx,
        overlap_voxels=overlap,
        fraction_in_grid=fraction,
        dose_mean_gy=dose,
        dose_max_gy=dose,
        min_distance_to_ptv_mm=distance,
    ).field


def test_clinical_md_worked_example() -> None:
    """Prescription 35 Gy: 18 → in_field, 17.4 and 1.0 → low_dose, 0.99 → out_of_field."""
    assert [ebrt(d) for d in (18.0, 17.4, 1.0, 0.99)] == [
        FieldStatus.IN_FIELD,
        FieldStatus.LOW_DOSE,
        FieldStatus.LOW_DOSE,
        FieldStatus.OUT_OF_FIELD,
    ]
    above = classify_ebrt(
        lesion_id="L",
        therapy_id="RT",
        prescription_gy=50.0,
        overlap_voxels=0,
        fraction_in_grid=1.0,
        dose_mean_gy=22.0,
        dose_max_gy=22.0,
        min_distance_to_ptv_mm=30.0,
    )
    assert (above.field, above.flags) == (FieldStatus.LOW_DOSE, ("above_low_dose_range",))


def test_exactly_half_the_prescription_is_in_field() -> None:
    assert ebrt(17.5) is FieldStatus.IN_FIELD


def test_partly_outside_the_grid_is_outside_grid_with_unknown_dose() -> None:
    assert ebrt(None, fraction=0.4) is FieldStatus.OUTSIDE_GRID
    assert ebrt(0.1, overlap=1, fraction=0.4) is FieldStatus.IN_FIELD  # F1 before F2


def test_lesion_dose_reports_coverage_and_f2_keeps_the_bound_not_the_in_grid_mean() -> None:
    dose = Volume(array=np.full(GRID.shape, 3.0), grid=GRID, modality="RTDOSE", units="GY")
    inside = box_mask((2, 2, 2), (5, 5, 5))
    whole = structure_dvh_from_mask("L", dose, inside.mask, inside.grid)
    assert (whole.grid_coverage, whole.dose_mean_gy) == (1.0, pytest.approx(3.0))
    straddling = GRID.crop((0, 0, 35), (4, 4, 45))  # columns 40–44 lie beyond the grid
    mask = LesionMask(lesion_id="L", mask=np.ones(straddling.shape, bool), grid=straddling)
    partial = structure_dvh_from_mask("L", dose, mask.mask, mask.grid)
    assert partial.grid_coverage == pytest.approx(0.5)
    assert partial.dose_mean_gy == pytest.approx(3.0)  # the covered half only
    assert partial.max_boundary_dose_gy == pytest.approx(3.0)
    field = classify_ebrt(
        lesion_id="L",
        therapy_id="RT",
        prescription_gy=35.0,
        overlap_voxels=0,
        fraction_in_grid=partial.grid_coverage,
        dose_mean_gy=None,  # CLINICAL F2: the whole lesion's dose is unknown
        dose_max_gy=None,
        min_distance_to_ptv_mm=150.0,
        dose_mean_in_grid_gy=partial.dose_mean_gy,
        max_boundary_dose_gy=partial.max_boundary_dose_gy,
    )
    assert (field.field, field.rule) == (FieldStatus.OUTSIDE_GRID, "F2")
    assert field.flags == ("dose_unknown", "strict_distance")
    assert field.dose_mean_gy is None
    assert (field.fraction_in_grid, field.dose_mean_in_grid_gy) == (0.5, pytest.approx(3.0))
    assert field.dose_mean_upper_gy == pytest.approx(3.0)  # 0.5 × 3.0 + 0.5 × 3.0 (boundary)


def test_overlap_and_distance_to_ptv() -> None:
    ptv = np.zeros(GRID.shape, bool)
    ptv[5:10, 5:10, 5:10] = True
    distance = distance_to_ptv_mm(ptv, GRID)
    touching = box_mask((8, 8, 8), (12, 12, 12))
    far = box_mask((5, 5, 30), (8, 8, 33))
    assert ptv_overlap_voxels(touching, ptv, GRID) == 8
    assert ptv_overlap_voxels(far, ptv, GRID) == 0
    assert min_distance_mm(far, distance, GRID) == pytest.approx((30 - 9) * 2.0)


def test_y90_rules() -> None:
    def y90(organ: str, imaged: bool, dose: float | None) -> FieldStatus:
        return classify_y90(
            lesion_id="L", therapy_id="Y", organ=organ, imaging_available=imaged, dose_mean_gy=dose
        ).field

    assert y90("liver", True, 120.0) is FieldStatus.IN_FIELD  # Y1
    assert y90("vertebra", True, 5.0) is FieldStatus.UNCERTAIN  # Y2: extrahepatic deposition
    assert y90("vertebra", False, None) is FieldStatus.UNCERTAIN  # Y2: no imaging
    assert y90("vertebra", True, 0.01) is FieldStatus.OUT_OF_FIELD  # Y3
    assert y90("liver", True, 0.2) is FieldStatus.OUT_OF_FIELD  # Y3: untreated lobe


def test_worst_status_of_several_courses() -> None:
    make = lambda status: classify_ebrt(  # noqa: E731
        lesion_id="L",
        therapy_id=status,
        prescription_gy=10.0,
        overlap_voxels=0,
        fraction_in_grid=1.0,
        dose_mean_gy={"low": 2.0, "out": 0.1}[status],
        dose_max_gy=None,
        min_distance_to_ptv_mm=None,
    )
    assert worst([make("out"), make("low")]).field is FieldStatus.LOW_DOSE


def test_y90_activity_within_the_margin_is_uncertain() -> None:
    """Y2: activity above the noise floor within 11 mm of a bone lesion leaves deposition possible."""

    def y90(gap_mm: float | None) -> FieldStatus:
        return classify_y90(
            lesion_id="L",
            therapy_id="Y",
            organ="rib",
            imaging_available=True,
            dose_mean_gy=0.2,
            distance_to_loaded_mm=gap_mm,
        ).field

    assert y90(0.0) is FieldStatus.UNCERTAIN  # touching
    assert y90(11.0) is FieldStatus.UNCERTAIN  # the margin itself still counts
    assert y90(11.5) is FieldStatus.OUT_OF_FIELD
    assert y90(None) is FieldStatus.OUT_OF_FIELD  # not checked: the dose rule alone
    custom = classify_y90(
        lesion_id="L",
        therapy_id="Y",
        organ="rib",
        imaging_available=True,
        dose_mean_gy=0.2,
        distance_to_loaded_mm=11.5,
        settings=FieldSettings(y90_margin_mm=15.0),
    )
    assert custom.field is FieldStatus.UNCERTAIN
    assert custom.settings.y90_margin_mm == 15.0  # the threshold travels with the result


def test_gap_to_activity_on_a_grid() -> None:
    """A hot voxel 8 mm (centres) from a 2 mm lesion voxel is a 6 mm surface gap; 20 mm → 18 mm."""
    activity = np.zeros(GRID.shape)
    activity[10, 10, 10] = 1000.0
    loaded = region_distance(activity > 1.0, GRID)
    near = box_mask((10, 10, 14), (11, 11, 15))  # 4 voxels = 8 mm away
    far = box_mask((10, 10, 20), (11, 11, 21))  # 20 mm away
    assert gap_mm(mask_on_grid(near, GRID), loaded) == pytest.approx(6.0)
    assert gap_mm(mask_on_grid(far, GRID), loaded) == pytest.approx(18.0)
