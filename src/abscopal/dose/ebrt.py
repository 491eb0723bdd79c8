"""RTDOSE grid helpers (DOSIMETRY.md §7.1).

Dose inside a lesion or structure is computed once, by `abscopal.dose.dvh` (explicit coverage,
bounds for the part outside the grid); this module keeps what the DVH and the field rules share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from abscopal.model import Volume


def max_boundary_dose_gy(dose: Volume) -> float:
    """Maximum dose over the six faces of the grid: a bound for dose just outside it."""
    a = dose.array
    faces = (a[0], a[-1], a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1])
    bound = float(max(face.max() for face in faces))
    if not np.isfinite(bound):
        msg = "the dose grid holds NaN or infinite values on its faces; re-export the RTDOSE"
        raise ValueError(msg)
    return bound
