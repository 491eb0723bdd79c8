"""mRECIST for hepatocellular carcinoma (CLINICAL.md §3).

Source: Lencioni R, Llovet JM, Semin Liver Dis 2010;30:52–60, doi:10.1055/s-0030-1247132.
HCC targets are measured by the longest diameter of their arterially enhancing (viable) part; a
target that no longer enhances counts 0. Porta hepatis nodes are malignant at SA ≥ 20 mm. Order:
CR (no enhancement in any target) → PD (viable sum ≥ 1.20 × nadir, no absolute floor) → PR
(≤ 0.70 × baseline) → SD; new lesions need ≥ 10 mm and the typical pattern (APHE + washout).
Overall response and BOR follow R-OV and R-BOR of RECIST 1.1. Extrahepatic lesions as RECIST 1.1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from abscopal.criteria._base import ResponseCategory, coerce_params
from abscopal.criteria.recist import RecistParams, run_recist

if TYPE_CHECKING:
    from collections.abc import Collection

    from abscopal.criteria._base import SeriesAssessment
    from abscopal.readings import PatientSeries

C = ResponseCategory
MRECIST_SOURCE = "mRECIST (Lencioni R, Llovet JM, Semin Liver Dis 2010;30:52–60)"


@dataclass(frozen=True, slots=True, kw_only=True)
class MrecistParams(RecistParams):
    """mRECIST parameters (CLINICAL.md §3); RECIST 1.1 defaults otherwise."""

    viable_hcc: bool = True
    pd_min_abs_mm: Decimal = Decimal(0)  # no absolute PD floor
    porta_hepatis_node_sa_mm: Decimal | None = Decimal(20)


@dataclass(frozen=True, slots=True)
class Mrecist:
    """mRECIST (Lencioni & Llovet 2010; CLINICAL.md §3, with R-OV and R-BOR of §1).

    Viable (arterially enhancing) diameters of HCC targets; PD ≥ +20 % against the nadir with no
    absolute floor, checked before PR ≤ −30 % against baseline.
    """

    params: MrecistParams = field(default_factory=MrecistParams)
    key: str = "mrecist"
    name: str = "mRECIST"
    version: str = "2010"
    citation: str = MRECIST_SOURCE
    categories: frozenset[ResponseCategory] = frozenset(
        {C.CR, C.PR, C.SD, C.PD, C.NON_CR_NON_PD, C.NE}
    )

    def with_params(self, **changes: object) -> Mrecist:
        """The same criterion with some parameters changed (strings are converted)."""
        return dataclasses.replace(self, params=coerce_params(self.params, changes))

    def assess(
        self, series: PatientSeries, *, lesion_ids: Collection[str] | None = None
    ) -> SeriesAssessment:
        """Per-timepoint response and BOR, on all lesions or only `lesion_ids`."""
        return run_recist(
            series.restricted(lesion_ids),
            self.params,
            name=self.name,
            version=self.version,
            source=self.citation,
        )


MRECIST = Mrecist()
