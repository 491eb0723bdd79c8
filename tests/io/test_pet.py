"""SUVbw factors against cornerstonejs/calculate-suv's vendor cases; decay factors by hand."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from abscopal.errors import IngestError
from abscopal.io.image import read_pet
from abscopal.io.pet import (
    PetInfo,
    decay_factor_to,
    lean_body_mass_kg,
    pet_info_from_datasets,
    read_pet_info,
    sul_per_suv,
    suv_bw_factor,
)

_TOP_LEVEL = (
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "DecayCorrection",
    "Units",
    "CorrectedImage",
    "PatientWeight",
    "PatientSize",
    "PatientSex",
)
_DRUG = (
    "RadionuclideTotalDose",
    "RadionuclideHalfLife",
    "RadiopharmaceuticalStartTime",
    "RadiopharmaceuticalStartDateTime",
)


def _dataset(attributes: dict[str, Any]) -> Dataset:
    """A PET header from calculate-suv's JSON: top-level tags, the radiopharmaceutical item, and
    the Philips private group (7053,00xx) under its creator "Philips PET Private Group"."""
    ds = Dataset()
    for keyword in _TOP_LEVEL:
        if attributes.get(keyword) is not None:
            setattr(ds, keyword, attributes[keyword])
    drug = Dataset()
    for keyword in _DRUG:
        if attributes.get(keyword) is not None:
            setattr(drug, keyword, str(attributes[keyword]).strip())
    ds.RadiopharmaceuticalInformationSequence = [drug]
    philips = attributes.get("PhilipsPETPrivateGroup") or {}
    if philips:
        block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
        if "SUVScaleFactor" in philips:
            block.add_new(0x00, "DS", philips["SUVScaleFactor"].strip())
        if "ActivityConcentrationScaleFactor" in philips:
            block.add_new(0x09, "DS", philips["ActivityConcentrationScaleFactor"].strip())
    return ds


def _info(suv_dir: Path, case: str) -> PetInfo:
    instances = json.loads((suv_dir / "metadata" / f"{case}-instances.json").read_text())
    return pet_info_from_datasets([_dataset(a) for a in instances])


def _expected(suv_dir: Path) -> dict[str, float]:
    with (suv_dir / "expected_suvbw_factor.csv").open(newline="") as table:
        return {
            row["case"]: float(row["suvbw_factor_g_per_ml_per_bq_ml"])
            for row in csv.DictReader(table)
        }


@pytest.mark.parametrize(
    "case", ["SIEMENS", "PHILIPS_BQML", "PHILIPS_CNTS_AND_SUV", "CPS_AND_BQML_AC_DT_-_S_DT"]
)
def test_suv_bw_factor_matches_calculate_suv(suv_dir: Path, case: str) -> None:
    """Relative tolerance 1e-6 (the issue's bar; 1e-4 would already pin the times to a second): F-18 decays by ln2/6586 s = 1.05e-4 per second, so this checks
    the scan-start and injection times to about one second (fractional seconds kept). Units
    CNTS uses the Philips SUV Scale Factor (7053,1000) as is. In CPS_AND_BQML_AC_DT_-_S_DT the
    series time (13:49:18) is later than the acquisition (13:03:48.234), so the scan starts at
    the acquisition."""
    assert suv_bw_factor(_info(suv_dir, case)) == pytest.approx(_expected(suv_dir)[case], rel=1e-6)


def test_scan_start_rule_keeps_fractional_seconds(suv_dir: Path) -> None:
    """Acquisition 12:35:14.999995 precedes the series time 12:35:15 by 5 microseconds."""
    info = _info(suv_dir, "BQML_AC_DT_lessThan_S_DT_SIEMENS")
    assert info.scan_start == datetime(2020, 12, 17, 12, 35, 14, 999995)
    decay_s = (info.scan_start - datetime(2020, 12, 17, 11, 41)).total_seconds()
    expected = 65_000 / (225e6 * math.exp(-math.log(2) * decay_s / 6586.2))
    assert suv_bw_factor(info) == pytest.approx(expected, rel=1e-12)


def test_ge_case_by_hand(suv_dir: Path) -> None:
    """GE: RadiopharmaceuticalStartDateTime '20201217084500.00 ' (trailing space), 71 min."""
    info = _info(suv_dir, "GE_MEDICAL_AND_BQML")
    assert info.injection_datetime == datetime(2020, 12, 17, 8, 45)
    expected = 52_000 / (152022720 * 2 ** (-(71 * 60 + 21) / 6586.2001953125))
    assert suv_bw_factor(info) == pytest.approx(expected, rel=1e-12)


def _bqml() -> PetInfo:
    return PetInfo(
        units="BQML",
        decay_correction="START",
        corrected_image=("ATTN", "DECY"),
        series_datetime=datetime(2024, 3, 1, 11, 0),
        acquisition_datetime=datetime(2024, 3, 1, 11, 0, 5),
        radionuclide_half_life_s=6586.2,
        injected_dose_bq=300e6,
        injection_datetime=datetime(2024, 3, 1, 10, 0),
        patient_weight_kg=70.0,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"patient_weight_kg": None}, r"PatientWeight \(0010,1030\)"),
        ({"injected_dose_bq": None}, r"RadionuclideTotalDose \(0018,1074\)"),
        ({"units": "PROPCNTS"}, r"Units \(0054,1001\) is 'PROPCNTS'"),
        ({"units": "CNTS"}, r"SUV Scale Factor \(7053,1000\) is absent"),
        ({"corrected_image": ("DECY",)}, r"lacks \['ATTN'\]"),
        ({"corrected_image": ("ATTN",)}, r"lacks \['DECY'\]"),
        ({"injection_datetime": datetime(2024, 3, 1, 12, 0)}, "negative decay time"),
        ({"decay_correction": "NONE"}, "START or ADMIN"),
    ],
)
def test_unusable_headers_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(IngestError, match=message):
        suv_bw_factor(replace(_bqml(), **change))


def test_other_units_and_admin_decay() -> None:
    assert suv_bw_factor(replace(_bqml(), units="GML")) == 1.0
    assert suv_bw_factor(replace(_bqml(), units="CNTS", philips_suv_scale_factor=7e-4)) == 7e-4
    admin = replace(_bqml(), decay_correction="ADMIN")  # corrected to the injection: no decay
    assert suv_bw_factor(admin) == pytest.approx(70_000 / 300e6)


@pytest.mark.parametrize(("hours", "factor"), [(2.2, 1.024075), (24.0, 1.296314)])
def test_decay_factor_to_administration(hours: float, factor: float) -> None:
    """DOSIMETRY.md §5.1: Y-90 (T1/2 = 64.1 h) activity back to the administration time."""
    given = datetime(2024, 3, 1, 9, 0)
    info = replace(
        _bqml(),
        radionuclide_half_life_s=64.1 * 3600,
        series_datetime=given + timedelta(hours=hours),
        acquisition_datetime=given + timedelta(hours=hours),
        injection_datetime=given,
    )
    assert decay_factor_to(info, given) == pytest.approx(factor, abs=1e-6)


def test_decay_reference_follows_decay_correction() -> None:
    info = _bqml()  # scan start 11:00, injection 10:00, first acquisition 11:00:05
    assert decay_factor_to(replace(info, decay_correction="ADMIN"), info.injection_datetime) == 1.0
    at_acquisition = decay_factor_to(
        replace(info, decay_correction="NONE"), datetime(2024, 3, 1, 11, 0)
    )
    assert at_acquisition == pytest.approx(2 ** (5 / 6586.2))
    assert decay_factor_to(info, datetime(2024, 3, 1, 12, 0)) == pytest.approx(
        0.5 ** (3600 / 6586.2)
    )


def test_read_pet_info_from_files(tmp_path: Path, write_slice) -> None:
    uid = generate_uid()
    drug = Dataset()
    drug.Radiopharmaceutical = "Fluorodeoxyglucose"
    drug.RadionuclideTotalDose = 350e6
    drug.RadionuclideHalfLife = 6586.2
    drug.RadiopharmaceuticalStartDateTime = "20240301093000.5"
    files = [
        write_slice(
            tmp_path / f"{n}.dcm",
            position=(0, 0, 2.0 * n),
            series_uid=uid,
            modality="PT",
            pixels=np.zeros((2, 2)),
            Units="BQML",
            DecayCorrection="START",
            CorrectedImage=["ATTN", "DECY"],
            PatientWeight=80,
            SeriesDate="20240301",
            SeriesTime="103000",
            AcquisitionDate="20240301",
            AcquisitionTime=time,
            RadiopharmaceuticalInformationSequence=[drug],
        )
        for n, time in enumerate(("103010.25", "103002.75"))
    ]
    info = read_pet_info(files)
    assert info.acquisition_datetime == datetime(2024, 3, 1, 10, 30, 2, 750000)  # earliest
    assert info.injection_datetime == datetime(2024, 3, 1, 9, 30, 0, 500000)
    assert info.radiopharmaceutical == "Fluorodeoxyglucose"
    assert info.patient_weight_kg == 80.0
    assert suv_bw_factor(info) == pytest.approx(80_000 / (350e6 * 0.5 ** (3599.5 / 6586.2)))


def test_read_pet_info_refuses_other_modalities(fixtures_dir: Path) -> None:
    with pytest.raises(IngestError, match=r"CT_small\.dcm: Modality \(0008,0060\) is 'CT'"):
        read_pet_info([fixtures_dir / "pydicom" / "CT_small.dcm"])


_ALL_CASES = [
    "BQML_AC_DT_lessThan_S_DT_SIEMENS",
    "CPS_AND_BQML_AC_DT_-_S_DT",
    "GE_MEDICAL_AND_BQML",
    "PHILIPS_BQML",
    "PHILIPS_CNTS_AND_BQML_SUV",
    "PHILIPS_CNTS_AND_SUV",
    "RADIOPHARM_DATETIME_UNDEFINED",
    "SIEMENS",
]


def _write_case(suv_dir: Path, case: str, folder: Path, write_slice) -> list[Path]:
    """The case's three instances as real PET DICOM files (2 × 2 pixels of 1000 Bq/mL or counts)."""
    instances = json.loads((suv_dir / "metadata" / f"{case}-instances.json").read_text())
    uid = generate_uid()
    folder.mkdir()
    files = []
    for n, attributes in enumerate(instances):
        path = write_slice(
            folder / f"{n}.dcm",
            position=(0.0, 0.0, 2.0 * n),
            series_uid=uid,
            modality="PT",
            pixels=np.full((2, 2), 1000),
            PatientSize=1.70,
        )
        ds = pydicom.dcmread(path)
        ds.update(_dataset(attributes))
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@pytest.mark.parametrize("case", _ALL_CASES)
def test_every_vendor_header_loads_from_dicom(
    suv_dir: Path, tmp_path: Path, case: str, write_slice
) -> None:
    """All eight cases written as DICOM load with pixels; the four with answers match the SUVbw
    factor to 1e-6 relative, the other four equal the factor computed from the JSON headers."""
    _write_case(suv_dir, case, tmp_path / "pet", write_slice)
    pet = read_pet(tmp_path / "pet")
    expected = _expected(suv_dir).get(case, suv_bw_factor(_info(suv_dir, case)))
    assert pet.suv_bw_factor == pytest.approx(expected, rel=1e-6)
    assert pet.suv.units == "SUVBW"
    assert float(pet.suv.array.max()) == pytest.approx(1000 * expected, rel=1e-6)


def test_series_with_differing_suv_attributes_is_refused(
    suv_dir: Path, tmp_path: Path, write_slice
) -> None:
    files = _write_case(suv_dir, "SIEMENS", tmp_path / "pet", write_slice)
    ds = pydicom.dcmread(files[1])
    ds.PatientWeight = 99
    ds.save_as(files[1])
    with pytest.raises(IngestError, match=r"PatientWeight differs between instances"):
        read_pet_info(files)


@pytest.mark.parametrize(
    ("sex", "formula", "expected"),
    [
        # Janmahasatian 2005: 9270 W / (6680 + 216 BMI), women 9270 W / (8780 + 244 BMI)
        ("M", "janmahasatian", 9270 * 80 / (6680 + 216 * 80 / 1.8**2)),
        ("F", "janmahasatian", 9270 * 60 / (8780 + 244 * 60 / 1.65**2)),
        ("M", "james", 1.10 * 80 - 128 * (80 / 180) ** 2),
        ("F", "james", 1.07 * 60 - 148 * (60 / 165) ** 2),
    ],
)
def test_lean_body_mass(sex: str, formula: str, expected: float) -> None:
    weight, height = (80.0, 1.8) if sex == "M" else (60.0, 1.65)
    assert lean_body_mass_kg(weight, height, sex, formula=formula) == pytest.approx(expected)  # type: ignore[arg-type]


def test_sul_needs_height_and_sex() -> None:
    info = replace(_bqml(), patient_size_m=1.8, patient_sex="M")
    assert sul_per_suv(info) == pytest.approx(lean_body_mass_kg(70.0, 1.8, "M") / 70.0)
    with pytest.raises(IngestError, match=r"PatientSize \(0010,1020\)"):
        sul_per_suv(replace(info, patient_size_m=None))
    with pytest.raises(IngestError, match=r"PatientSex \(0010,0040\) is 'O'"):
        sul_per_suv(replace(info, patient_sex="O"))
