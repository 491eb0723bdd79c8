"""Y-90 kernel dose: FFT convolution vs direct `scipy.ndimage.convolve` on 128³; 256³ time/memory.

Needs ../shared/reference/graves2019_Y90_beta_DPK_water_to159mm.csv (skipped with a message).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import peak_rss_mb, report

from abscopal.dose.kernel import (
    DoseVoxelKernel,
    build_kernel,
    convolve,
    parse_dose_point_kernel,
)

TABLE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "reference"
    / "graves2019_Y90_beta_DPK_water_to159mm.csv"
)


def main() -> int:
    """Print the FFT/direct ratio and maximum difference, then 256³ time and peak memory."""
    if not TABLE.exists():
        print(f"skipped: {TABLE} is absent")
        return 0
    table = parse_dose_point_kernel(TABLE.read_text())
    rng = np.random.default_rng(0)
    field = rng.uniform(0.0, 1.0, (128, 128, 128))
    for spacing in (2.21, 4.42):
        kernel = build_kernel(table, (spacing,) * 3)
        _compare(field, kernel, spacing)
    big = rng.uniform(0.0, 1.0, (256, 256, 256))
    before = peak_rss_mb()
    start = time.perf_counter()
    convolve(big, kernel)
    print(
        f"y90 dvk 256^3: {time.perf_counter() - start:.2f} s, peak RSS {peak_rss_mb():.0f} MB "
        f"(was {before:.0f} MB before)"
    )
    return 0


def _compare(field: np.ndarray, kernel: DoseVoxelKernel, spacing: float) -> None:
    convolve(field, kernel)  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fft = convolve(field, kernel)
        times.append(time.perf_counter() - start)
    ours = float(np.median(times))
    start = time.perf_counter()
    direct = ndimage.convolve(field, kernel.array, mode="constant", cval=0.0)
    peer = time.perf_counter() - start
    diff = float(np.abs(fft - direct).max() / direct.max())
    shape = "x".join(str(n) for n in kernel.array.shape)
    report(
        f"y90 dvk 128^3, kernel {shape} at {spacing} mm",
        ours,
        peer,
        peer="ndimage.convolve",
        note=f"max diff {diff:.2e} of max",
    )


if __name__ == "__main__":
    sys.exit(main())
