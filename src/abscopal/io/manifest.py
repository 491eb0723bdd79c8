"""The patient manifest (YAML): local and systemic therapies, lesion overrides and lesion matches.

Paths in the manifest are relative to the manifest's folder. Unknown or misspelt fields are
errors, and each error names the field and its line, e.g.::

    manifest.yaml line 7: local_therapies.0.prescription_gy: Field required

Example::

    patient_id: SYN-0001
    primary_cancer: hcc
    local_therapies:
      - type: radioembolization
        therapy_id: Y90-1
        date: 2024-02-12
        activity_gbq: 2.1
        device: glass
        territory: right_lobe
        post_treatment_imaging: pet        # folder or file, optional
      - type: radiation
        therapy_id: RT-1
        start_date: 2024-01-29
        end_date: 2024-02-02
        prescription_gy: 24
        fractions: 3
        technique: sbrt
        target: PTV                        # ROI name in the RTSTRUCT
        rtdose: rt/rtdose.dcm
        rtstruct: rt/rtstruct.dcm
    systemic_therapies:
      - agent: pembrolizumab
        drug_class: immunotherapy
        start_date: 2023-08-01
        stop_date: null
        dose_change_dates: []
    lesions:                               # optional overrides; others come from the SEG labels
      - lesion_id: L1
        organ: liver
        kind: hcc
    matches:                               # optional: who is who where the SEGs do not track
      - date: 2024-05-14                   # a CT timepoint's date
        segment: "lesion 3"                # SegmentLabel or TrackingID in that date's SEG
        lesion_id: L1                      # a lesion seen earlier, or new
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from abscopal.errors import IngestError
from abscopal.model import (
    DrugClass,
    Lesion,
    LesionKind,
    OtherLocalTherapy,
    Patient,
    RadiationCourse,
    Radioembolization,
    SystemicTherapy,
    Timeline,
)
from abscopal.units import BQ_PER_GBQ

MANIFEST_NAME = "manifest.yaml"
_OTHER_TYPES = ("surgery", "ablation", "tace", "cementoplasty", "other_local")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RadiationEntry(_Strict):
    """An EBRT or SBRT course."""

    type: Literal["radiation"]
    therapy_id: str
    start_date: date
    end_date: date
    prescription_gy: float = Field(gt=0)
    fractions: int = Field(ge=1)
    technique: Literal["ebrt", "sbrt"] = "ebrt"
    target: str = "PTV"
    rtdose: str | None = None
    rtstruct: str | None = None

    @field_validator("end_date")
    @classmethod
    def _ends_after_start(cls, end: date, info: ValidationInfo) -> date:
        _not_before(end, info, "start_date")
        return end


def _not_before(value: date | None, info: ValidationInfo, earlier: str) -> date | None:
    start = info.data.get(earlier)
    if value is not None and start is not None and value < start:
        msg = f"{value} is before {earlier} {start}; the therapy must end after it starts"
        raise ValueError(msg)
    return value


class OtherLocalEntry(_Strict):
    """Surgery, ablation, TACE, cementoplasty or another local treatment, and the lesions it aimed at.

    A lesion it aimed at counts as treated (in field); aimed elsewhere it is recorded as a
    confounder when it falls in the window of an out-of-field response (CLINICAL §8.4).
    """

    type: Literal["surgery", "ablation", "tace", "cementoplasty", "other_local"]
    therapy_id: str
    date: date
    target_lesions: list[str] = Field(default_factory=list)
    description: str = ""


class Y90Entry(_Strict):
    """A yttrium-90 radioembolization."""

    type: Literal["radioembolization"]
    therapy_id: str
    date: date
    activity_gbq: float = Field(gt=0)
    device: Literal["glass", "resin"] = "glass"
    territory: str = "right_lobe"
    post_treatment_imaging: str | None = None


class SystemicEntry(_Strict):
    """A systemic agent."""

    agent: str
    drug_class: DrugClass
    start_date: date
    stop_date: date | None = None
    dose_change_dates: list[date] = Field(default_factory=list)

    @field_validator("stop_date")
    @classmethod
    def _stops_after_start(cls, stop: date | None, info: ValidationInfo) -> date | None:
        return _not_before(stop, info, "start_date")


class LesionEntry(_Strict):
    """Overrides for one lesion, keyed by its tracking label."""

    lesion_id: str
    organ: str = "unknown"
    kind: LesionKind = LesionKind.SOFT_TISSUE


class MatchEntry(_Strict):
    """A manual lesion match: `segment` of the SEG at `date` is lesion `lesion_id`, or "new".

    It wins over the SEG's TrackingUID and over geometric matching (`abscopal.tracking`).
    """

    date: date
    segment: str = Field(min_length=1)
    lesion_id: str = Field(min_length=1)


class Manifest(_Strict):
    """The whole manifest of one patient."""

    patient_id: str = Field(min_length=1)
    primary_cancer: str = "unknown"
    birth_date: date | None = None
    local_therapies: list[
        Annotated[RadiationEntry | Y90Entry | OtherLocalEntry, Field(discriminator="type")]
    ] = Field(default_factory=list)
    systemic_therapies: list[SystemicEntry] = Field(default_factory=list)
    lesions: list[LesionEntry] = Field(default_factory=list)
    matches: list[MatchEntry] = Field(default_factory=list)

    @field_validator("matches")
    @classmethod
    def _one_match_per_segment(cls, matches: list[MatchEntry]) -> list[MatchEntry]:
        seen: dict[tuple[date, str], int] = {}
        for i, m in enumerate(matches):
            first = seen.setdefault((m.date, m.segment), i)
            if first != i:
                msg = (
                    f"items {first} and {i} both match segment {m.segment!r} on {m.date}; keep one"
                )
                raise ValueError(msg)
        return matches

    def to_patient(self, scan_dates: tuple[date, ...] = ()) -> Patient:
        """The domain `Patient` for this manifest."""
        local: list[RadiationCourse | Radioembolization] = []
        other: list[OtherLocalTherapy] = []
        for entry in self.local_therapies:
            if isinstance(entry, OtherLocalEntry):
                other.append(
                    OtherLocalTherapy(
                        therapy_id=entry.therapy_id,
                        kind=entry.type,
                        date=entry.date,
                        target_lesion_ids=tuple(entry.target_lesions),
                    )
                )
            elif isinstance(entry, RadiationEntry):
                local.append(
                    RadiationCourse(
                        therapy_id=entry.therapy_id,
                        start_date=entry.start_date,
                        end_date=entry.end_date,
                        prescription_gy=entry.prescription_gy,
                        fractions=entry.fractions,
                        target=entry.target,
                        technique=entry.technique,
                    )
                )
            else:
                local.append(
                    Radioembolization(
                        therapy_id=entry.therapy_id,
                        date=entry.date,
                        activity_bq=entry.activity_gbq * BQ_PER_GBQ,
                        device=entry.device,
                        territory=entry.territory,
                    )
                )
        systemic = tuple(
            SystemicTherapy(
                agent=s.agent,
                drug_class=s.drug_class,
                start_date=s.start_date,
                stop_date=s.stop_date,
                dose_change_dates=tuple(s.dose_change_dates),
            )
            for s in self.systemic_therapies
        )
        lesions = tuple(
            Lesion(lesion_id=x.lesion_id, organ=x.organ, kind=x.kind) for x in self.lesions
        )
        timeline = Timeline(
            local_therapies=tuple(local),
            systemic_therapies=systemic,
            other_local_therapies=tuple(other),
            scan_dates=scan_dates,
        )
        return Patient(
            patient_id=self.patient_id,
            primary_cancer=self.primary_cancer,
            birth_date=self.birth_date,
            lesions=lesions,
            timeline=timeline,
        )


def find_manifest(path: Path) -> Path:
    """The manifest of a patient folder (or `path` itself when it is a file)."""
    if path.is_file():
        return path
    if not path.is_dir():
        msg = f"{path}: no such file or folder; give a patient folder or its {MANIFEST_NAME}"
        raise IngestError(msg)
    candidate = path / MANIFEST_NAME
    if not candidate.is_file():
        msg = (
            f"{path}: no {MANIFEST_NAME} in this folder; write one listing the local and "
            "systemic therapies (see the README, 'Inputs')"
        )
        raise IngestError(msg)
    return candidate


def read_manifest(path: Path) -> Manifest:
    """Read and validate a manifest; errors name the file, the field and its line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{path.name}: not valid YAML ({exc}); check indentation and colons"
        raise IngestError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{path.name}: expected a mapping with patient_id and local_therapies, got {type(data).__name__}"
        raise IngestError(msg)
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        lines = _line_numbers(text)
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"] if p not in {"radiation", "radioembolization"})
            where = lines.get(loc) or lines.get(loc[:-1])
            at = f" line {where}" if where else ""
            problems.append(f"{path.name}{at}: {'.'.join(loc)}: {err['msg']}")
        msg = "; ".join(problems) + " (see the README, 'Inputs', for the manifest fields)"
        raise IngestError(msg) from exc


def field_line(path: Path, loc: tuple[str, ...]) -> int | None:
    """The 1-based line of the field at `loc` (e.g. ("matches", "0", "segment")) in a manifest."""
    lines = _line_numbers(path.read_text(encoding="utf-8"))
    return lines.get(loc) or lines.get(loc[:-1])


def _line_numbers(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of a YAML document to its 1-based line number."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                out[(*path, str(key.value))] = key.start_mark.line + 1
                walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, str(i)))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if root is not None:
        walk(root, ())
    return out


def manifest_json_schema() -> str:
    """The manifest's JSON Schema, for editors and other tools."""
    schema: dict[str, Any] = Manifest.model_json_schema()
    return json.dumps(schema, indent=2)
