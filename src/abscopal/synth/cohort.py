"""A synthetic cohort with a chosen abscopal incidence and timing, drawn from the scenarios.

Each patient is an abscopal responder with probability `incidence` (a seeded Bernoulli draw, so
the realised count varies as a real cohort's would). A responder responds on the day-91 CT
(scenarios a and b, shrinking out-of-field lesions) with probability `early_fraction`, else on
the day-182 CT (scenario e, a lytic lesion turning sclerotic). Non-responders are drawn evenly
from scenarios c, d, f and g (progression, a confounded grade C, a new lesion, chemotherapy).
Every patient is followed to day 182. `cohort_truth.csv` lists what each patient was built as,
so incidence and time to response can be checked against it.
"""

from __future__ import annotations

import csv
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import numpy as np

from abscopal.synth.patient import synthesize_patient
from abscopal.synth.scenarios import CT_OFFSETS_DAYS

if TYPE_CHECKING:
    from collections.abc import Sequence

TRUTH_CSV: Final = "cohort_truth.csv"
EARLY: Final[tuple[str, ...]] = ("a", "b")  # out-of-field shrinkage read on the day-91 CT
LATE: Final[tuple[str, ...]] = ("e",)  # sclerosis of a lytic lesion read on the day-182 CT
NEGATIVE: Final[tuple[str, ...]] = ("c", "d", "f", "g")
EARLY_DAY: Final = CT_OFFSETS_DAYS[3]
LATE_DAY: Final = CT_OFFSETS_DAYS[4]
FOLLOW_UP_DAYS: Final = CT_OFFSETS_DAYS[-1]
_LOCAL: Final = {"a": "radioembolization"}  # every other scenario is external-beam radiation
_PRIMARY: Final = {"a": "hcc", "b": "nsclc", "f": "prostate"}  # the rest: breast
_IMMUNO: Final = frozenset({"b"})  # pembrolizumab


@dataclass(frozen=True, slots=True, kw_only=True)
class CohortMember:
    """What one synthetic patient of a cohort was built as."""

    index: int
    scenario: str
    abscopal: bool
    response_day: int | None  # days from the local therapy; None for non-responders
    follow_up_days: int
    local_therapy: str
    immunotherapy: bool
    primary_cancer: str


def plan_cohort(
    *, patients: int, seed: int, incidence: float, early_fraction: float = 0.5
) -> list[CohortMember]:
    """Draw the scenario of each patient; the same arguments always give the same cohort."""
    if patients < 1:
        msg = f"patients must be >= 1, got {patients}"
        raise ValueError(msg)
    for name, value in (("incidence", incidence), ("early_fraction", early_fraction)):
        if not 0.0 <= value <= 1.0:
            msg = f"{name} must be in [0, 1], got {value}"
            raise ValueError(msg)
    rng = np.random.default_rng([seed, 7_000_001])
    members = []
    for index in range(patients):
        responder = bool(rng.random() < incidence)
        if responder and rng.random() < early_fraction:
            scenario, day = EARLY[int(rng.integers(len(EARLY)))], EARLY_DAY
        elif responder:
            scenario, day = LATE[int(rng.integers(len(LATE)))], LATE_DAY
        else:
            scenario, day = NEGATIVE[int(rng.integers(len(NEGATIVE)))], None
        members.append(
            CohortMember(
                index=index,
                scenario=scenario,
                abscopal=responder,
                response_day=day,
                follow_up_days=FOLLOW_UP_DAYS,
                local_therapy=_LOCAL.get(scenario, "radiation"),
                immunotherapy=scenario in _IMMUNO,
                primary_cancer=_PRIMARY.get(scenario, "breast"),
            )
        )
    return members


def synthesize_cohort(
    out: Path,
    *,
    patients: int,
    seed: int,
    incidence: float,
    early_fraction: float = 0.5,
    size: Literal["small", "full"] = "small",
    jobs: int = 1,
) -> list[Path]:
    """Write the cohort's patient folders under `out` and `out/cohort_truth.csv`; return folders."""
    members = plan_cohort(
        patients=patients, seed=seed, incidence=incidence, early_fraction=early_fraction
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    args = [(out, m.scenario, seed, m.index, size) for m in members]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            folders = list(pool.map(_one, args))
    else:
        folders = [_one(a) for a in args]
    _write_truth(out / TRUTH_CSV, members, folders)
    return folders


def _one(args: tuple[Path, str, int, int, Literal["small", "full"]]) -> Path:
    out, scenario, seed, index, size = args
    return synthesize_patient(out, scenario=scenario, seed=seed, index=index, size=size)


def _write_truth(path: Path, members: Sequence[CohortMember], folders: Sequence[Path]) -> None:
    from abscopal.atomic import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "patient_id",
                "folder",
                "scenario",
                "abscopal",
                "response_day",
                "follow_up_days",
                "local_therapy",
                "immunotherapy",
                "primary_cancer",
            ]
        )
        for m, folder in zip(members, folders, strict=True):
            writer.writerow(
                [
                    folder.name,
                    folder.name,
                    m.scenario,
                    int(m.abscopal),
                    "" if m.response_day is None else m.response_day,
                    m.follow_up_days,
                    m.local_therapy,
                    int(m.immunotherapy),
                    m.primary_cancer,
                ]
            )
