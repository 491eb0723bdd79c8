"""PET header facts for quantification: the SUVbw factor (QIBA vendor-neutral) and decay factors.

`read_pet_info` reads headers only; `suv_bw_factor` multiplies a voxel in the image's Units
(Bq/mL for BQML) to give SUVbw (g/mL); `decay_factor_to` converts the image's activity to another
reference time (e.g. a Y-90 administration) by physical decay.

QIBA vendor-neutral rules (QIBA FDG-PET/CT profile, SUV calculation pseudo-code; as implemented
by cornerstonejs/calculate-suv): the scan start is SeriesDate/SeriesTime unless that is later than
the earliest AcquisitionDate/AcquisitionTime of the series, in which case the earliest acquisition
is used; fractional seconds are kept; the injected dose is decayed to the scan start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal

from pydicom.multival import MultiValue
from pydicom.valuerep import DA, DT, TM

from abscopal.errors import IngestError
from abscopal.io.dicom import DicomSeries, read_dataset
from abscopal.model import Volume

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from pydicom.dataset import Dataset

PHILIPS_PRIVATE_CREATOR: Final = "Philips PET Private Group"
_PHILIPS_SUV_SCALE: Final = (0x7053, 0x1000)  # SUV Scale Factor: stored CNTS -> SUVbw
_LN2: Final = math.log(2.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PetInfo:
    """SUV-relevant header facts of one PET series. Times are naive local datetimes."""

    units: str
    decay_correction: str
    corrected_image: tuple[str, ...]
    series_datetime: datetime | None
    acquisition_datetime: datetime | None  # earliest across the instances
    radionuclide_half_life_s: float | None
    injected_dose_bq: float | None
    injection_datetime: datetime | None
    patient_weight_kg: float | None
    radiopharmaceutical: str = ""
    philips_suv_scale_factor: float | None = None  # (7053,1000), for Units CNTS
    patient_size_m: float | None = None  # PatientSize (0010,1020), for the lean body mass
    patient_sex: str = ""  # PatientSex (0010,0040): M, F, O or empty

    def __post_init__(self) -> None:
        half_life = self.radionuclide_half_life_s
        if half_life is not None and not half_life > 0:
            msg = f"radionuclide_half_life_s must be > 0, got {half_life}"
            raise ValueError(msg)
        for name in ("injected_dose_bq", "patient_weight_kg"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                msg = f"{name} must be > 0 when given, got {value}"
                raise ValueError(msg)

    @property
    def scan_start(self) -> datetime | None:
        """QIBA scan start: SeriesDateTime unless later than the earliest acquisition."""
        series, acquisition = self.series_datetime, self.acquisition_datetime
        if series is None:
            return acquisition
        if acquisition is not None and series > acquisition:
            return acquisition
        return series


def read_pet_info(files: Sequence[Path]) -> PetInfo:
    """The `PetInfo` of one PET series from the headers of its files."""
    if not files:
        msg = "read_pet_info: no files given; pass the files of one PET series"
        raise IngestError(msg)
    datasets = [read_dataset(path, stop_before_pixels=True) for path in files]
    for ds, path in zip(datasets, files, strict=True):
        if str(ds.get("Modality", "")) != "PT":
            msg = f"{path.name}: Modality (0008,0060) is {ds.get('Modality')!r}, expected 'PT'"
            raise IngestError(msg)
    return pet_info_from_datasets(datasets)


def _datetime(date_text: object, time_text: object) -> datetime | None:
    day, clock = str(date_text or "").strip(), str(time_text or "").strip().replace(":", "")
    if not day or not clock:
        return None
    try:
        d, t = DA(day), TM(clock)
    except ValueError:
        return None
    if d is None or t is None:
        return None
    return datetime.combine(d, t).replace(tzinfo=None)


def _dt(text: object) -> datetime | None:
    value = str(text or "").strip()
    if not value:
        return None
    try:
        parsed = DT(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) if parsed is not None else None  # all times local


def _float(value: object) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    number = float(str(value))
    return number if math.isfinite(number) else None


def _philips_suv_scale(ds: Dataset) -> float | None:
    try:
        element = ds.private_block(0x7053, PHILIPS_PRIVATE_CREATOR)[0x00]
    except KeyError:
        element = ds.get(_PHILIPS_SUV_SCALE)  # creator missing: the usual block position
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="ignore").strip("\x00 ")
    return _float(value)


# Attributes that must agree across the instances of a series for one SUV factor to hold.
_SERIES_CONSTANT: Final = (
    "Units", "DecayCorrection", "PatientWeight", "SeriesDate", "SeriesTime", "CorrectedImage",
)  # fmt: skip
_DRUG_CONSTANT: Final = (
    "RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
    "RadiopharmaceuticalStartDateTime",
)  # fmt: skip


def _drug_item(ds: Dataset) -> Dataset | None:
    item: Dataset | None = (ds.get("RadiopharmaceuticalInformationSequence") or [None])[0]
    return item


def _text(value: object) -> str:
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v).strip() for v in value)
    return str(value if value is not None else "").strip()


def _require_consistent(datasets: Sequence[Dataset]) -> None:
    first = datasets[0]
    for n, ds in enumerate(datasets[1:], start=2):
        pairs = [(k, first.get(k), ds.get(k)) for k in _SERIES_CONSTANT]
        drug_a, drug_b = _drug_item(first), _drug_item(ds)
        pairs += [
            (
                k,
                None if drug_a is None else drug_a.get(k),
                None if drug_b is None else drug_b.get(k),
            )
            for k in _DRUG_CONSTANT
        ]
        for keyword, a, b in pairs:
            if _text(a) != _text(b):
                msg = (
                    f"PET series: {keyword} differs between instances (1: {_text(a)!r}, "
                    f"{n}: {_text(b)!r}); one SUV factor cannot serve the series: split it or "
                    "re-export it from the scanner"
                )
                raise IngestError(msg)


def pet_info_from_datasets(datasets: Sequence[Dataset]) -> PetInfo:
    """The `PetInfo` of one PET series from its (header) datasets.

    Raises `IngestError` when an SUV-relevant attribute differs between instances.
    """
    if not datasets:
        msg = "pet_info_from_datasets: no datasets given"
        raise IngestError(msg)
    _require_consistent(datasets)
    first = datasets[0]
    acquisitions = [
        t
        for t in (
            _datetime(ds.get("AcquisitionDate"), ds.get("AcquisitionTime")) for ds in datasets
        )
        if t is not None
    ]
    series_dt = _datetime(first.get("SeriesDate"), first.get("SeriesTime"))
    drug = (first.get("RadiopharmaceuticalInformationSequence") or [None])[0]
    injection = None
    half_life = dose = None
    name = ""
    if drug is not None:
        injection = _dt(drug.get("RadiopharmaceuticalStartDateTime"))
        if injection is None:  # time only: QIBA takes the date of the series
            injection = _datetime(first.get("SeriesDate"), drug.get("RadiopharmaceuticalStartTime"))
        half_life = _float(drug.get("RadionuclideHalfLife"))
        dose = _float(drug.get("RadionuclideTotalDose"))
        name = str(drug.get("Radiopharmaceutical", "") or "")
    weight = _float(first.get("PatientWeight"))
    size = _float(first.get("PatientSize"))
    return PetInfo(
        units=str(first.get("Units", "")).strip().upper(),
        decay_correction=str(first.get("DecayCorrection", "")).strip().upper(),
        corrected_image=tuple(
            str(v).strip().upper() for v in first.get("CorrectedImage", []) or []
        ),
        series_datetime=series_dt,
        acquisition_datetime=min(acquisitions) if acquisitions else None,
        radionuclide_half_life_s=half_life if half_life and half_life > 0 else None,
        injected_dose_bq=dose if dose and dose > 0 else None,
        injection_datetime=injection,
        patient_weight_kg=weight if weight and weight > 0 else None,
        radiopharmaceutical=name,
        philips_suv_scale_factor=_philips_suv_scale(first),
        patient_size_m=size if size and size > 0 else None,
        patient_sex=str(first.get("PatientSex", "") or "").strip().upper(),
    )


def suv_bw_factor(info: PetInfo) -> float:
    """SUVbw factor (g/mL per image unit): SUVbw = pixel value x factor.

    BQML: patient weight (g) / injected dose decayed to the scan start (Bq). GML: 1 (the image is
    SUVbw already). CNTS: the Philips private SUV Scale Factor (7053,1000).
    """
    if info.units == "GML":
        return 1.0
    if info.units == "CNTS":
        if info.philips_suv_scale_factor is None or not info.philips_suv_scale_factor > 0:
            msg = (
                "PET Units (0054,1001) is 'CNTS' and the Philips SUV Scale Factor (7053,1000) is "
                "absent; SUV needs Bq/mL: export the series with Units BQML"
            )
            raise IngestError(msg)
        return info.philips_suv_scale_factor
    if info.units != "BQML":
        msg = (
            f"PET Units (0054,1001) is {info.units!r}; SUVbw is defined here for BQML, GML and "
            "Philips CNTS: export the series in Bq/mL"
        )
        raise IngestError(msg)
    missing = [tag for tag in ("ATTN", "DECY") if tag not in info.corrected_image]
    if missing:
        msg = (
            f"PET CorrectedImage (0028,0051) {list(info.corrected_image)} lacks {missing}; SUV "
            "needs attenuation- and decay-corrected images: use the corrected (AC) series"
        )
        raise IngestError(msg)
    if info.patient_weight_kg is None:
        msg = "PET PatientWeight (0010,1030) is missing or zero; SUVbw needs the weight in kg"
        raise IngestError(msg)
    if info.injected_dose_bq is None:
        msg = (
            "PET RadionuclideTotalDose (0018,1074) is missing or zero; SUVbw needs the injected "
            "activity in Bq"
        )
        raise IngestError(msg)
    weight_g = info.patient_weight_kg * 1000.0
    if info.decay_correction == "ADMIN":  # already decay-corrected to the injection
        return weight_g / info.injected_dose_bq
    if info.decay_correction != "START":
        msg = (
            f"PET DecayCorrection (0054,1102) is {info.decay_correction!r}; a single SUV factor "
            "needs START or ADMIN"
        )
        raise IngestError(msg)
    decay_s = _seconds_from_injection(info, _required_scan_start(info))
    return weight_g / (info.injected_dose_bq * math.exp(-_LN2 * decay_s / _half_life(info)))


def _half_life(info: PetInfo) -> float:
    if info.radionuclide_half_life_s is None:
        msg = "PET RadionuclideHalfLife (0018,1075) is missing; decay correction needs it in s"
        raise IngestError(msg)
    return info.radionuclide_half_life_s


def _required_scan_start(info: PetInfo) -> datetime:
    start = info.scan_start
    if start is None:
        msg = "PET SeriesDate/SeriesTime and AcquisitionDate/AcquisitionTime are missing"
        raise IngestError(msg)
    return start


def _seconds_from_injection(info: PetInfo, when: datetime) -> float:
    if info.injection_datetime is None:
        msg = (
            "PET RadiopharmaceuticalStartDateTime/StartTime (0018,1078)/(0018,1072) is missing; "
            "decay correction needs the injection time"
        )
        raise IngestError(msg)
    seconds = (when - info.injection_datetime).total_seconds()
    if seconds < 0:
        msg = (
            f"PET scan start {when.isoformat()} is before the injection "
            f"{info.injection_datetime.isoformat()} (negative decay time); check "
            "RadiopharmaceuticalStartTime (0018,1072) and the series date"
        )
        raise IngestError(msg)
    return seconds


def image_reference_datetime(info: PetInfo) -> datetime:
    """The time the image's activity refers to: DecayCorrection START, ADMIN or NONE."""
    if info.decay_correction == "START":
        return _required_scan_start(info)
    if info.decay_correction == "ADMIN":
        if info.injection_datetime is None:
            msg = "PET DecayCorrection is ADMIN but the injection time (0018,1072) is missing"
            raise IngestError(msg)
        return info.injection_datetime
    if info.decay_correction == "NONE":
        if info.acquisition_datetime is None:
            msg = "PET DecayCorrection is NONE but AcquisitionDate/AcquisitionTime is missing"
            raise IngestError(msg)
        return info.acquisition_datetime
    msg = (
        f"PET DecayCorrection (0054,1102) is {info.decay_correction!r}, expected START, ADMIN or "
        "NONE"
    )
    raise IngestError(msg)


def decay_factor_to(info: PetInfo, reference: datetime) -> float:
    """Multiplier from the image's activity to activity at `reference` (physical decay only).

    A(reference) = A(image reference) * exp(ln 2 * (image reference - reference) / T1/2); the image
    reference is the scan start (START), the injection (ADMIN) or the earliest acquisition (NONE).
    """
    image_time = image_reference_datetime(info)
    seconds = (image_time - reference.replace(tzinfo=None)).total_seconds()
    return math.exp(_LN2 * seconds / _half_life(info))


def lean_body_mass_kg(
    weight_kg: float,
    height_m: float,
    sex: str,
    *,
    formula: Literal["janmahasatian", "james"] = "janmahasatian",
) -> float:
    """Lean body mass (kg) for SUL (PERCIST 1.0 uses SUV normalised to lean body mass).

    Janmahasatian S et al., Clin Pharmacokinet 2005;44:1051: men 9270·W / (6680 + 216·BMI),
    women 9270·W / (8780 + 244·BMI). James WPT, HMSO 1976: men 1.10·W − 128·(W/H_cm)², women
    1.07·W − 148·(W/H_cm)² (falls for heavy patients; the reason Janmahasatian is the default).
    """
    if not weight_kg > 0 or not height_m > 0:
        msg = f"lean body mass needs weight_kg and height_m > 0, got {weight_kg}, {height_m}"
        raise IngestError(msg)
    sex = sex.strip().upper()
    if sex not in {"M", "F"}:
        msg = (
            f"PatientSex (0010,0040) is {sex!r}; the lean body mass needs M or F: pass the sex "
            "explicitly"
        )
        raise IngestError(msg)
    if formula == "james":
        ratio = weight_kg / (height_m * 100.0)
        return (
            1.10 * weight_kg - 128.0 * ratio**2
            if sex == "M"
            else 1.07 * weight_kg - 148.0 * ratio**2
        )
    if formula != "janmahasatian":
        msg = f"formula must be 'janmahasatian' or 'james', got {formula!r}"
        raise ValueError(msg)
    bmi = weight_kg / height_m**2
    if sex == "M":
        return 9270.0 * weight_kg / (6680.0 + 216.0 * bmi)
    return 9270.0 * weight_kg / (8780.0 + 244.0 * bmi)


def sul_per_suv(
    info: PetInfo, *, formula: Literal["janmahasatian", "james"] = "janmahasatian"
) -> float:
    """Lean body mass / weight: SUL = SUVbw x this. Raises when weight, height or sex is missing."""
    if info.patient_weight_kg is None or info.patient_size_m is None:
        msg = (
            "PET PatientWeight (0010,1030) or PatientSize (0010,1020) is missing; SUL needs both "
            "(lean body mass)"
        )
        raise IngestError(msg)
    lbm = lean_body_mass_kg(
        info.patient_weight_kg, info.patient_size_m, info.patient_sex, formula=formula
    )
    return lbm / info.patient_weight_kg


def y90_activity_at_admin(series: DicomSeries) -> tuple[Volume, float]:
    """A quantitative Y-90 PET series as Bq/mL at the administration time, and the factor used.

    Units must be BQML and the header must give the administration time
    (RadiopharmaceuticalStartDateTime); permanent trapping, physical decay only (DOSIMETRY §5.1).
    """
    from abscopal.io.dicom import load_series

    info = read_pet_info(series.files)
    first = series.files[0].name
    if info.units != "BQML":
        msg = f"{first}: Units (0054,1001) is {info.units!r}; Y-90 dose needs BQML (Bq/mL)"
        raise IngestError(msg)
    if info.injection_datetime is None:
        msg = (
            f"{first}: no RadiopharmaceuticalStartDateTime (0018,1078); the Y-90 "
            "administration time is needed to decay-correct the activity"
        )
        raise IngestError(msg)
    factor = decay_factor_to(info, info.injection_datetime)
    volume = load_series(series)
    activity = Volume(
        array=volume.array * factor,
        grid=volume.grid,
        modality="PT",
        units="BQML",
        acquisition_date=volume.acquisition_date,
        series_uid=volume.series_uid,
    )
    return activity, factor
