"""Synthetic patients written as real DICOM, with a manifest and the truth they were built from.

Seven scenarios (``SCENARIOS``, CLINICAL.md §8) cover Y-90 and EBRT/SBRT, an abscopal response
graded A, B or C, out-of-field progression, a new lesion, confounding systemic therapy and a
lytic lesion turning sclerotic. The same seed always writes the same files.

>>> from abscopal.synth import synthesize
>>> folders = synthesize(Path("out"), patients=7, seed=1)  # doctest: +SKIP
"""

from abscopal.synth.patient import synthesize, synthesize_patient
from abscopal.synth.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "synthesize", "synthesize_patient"]
