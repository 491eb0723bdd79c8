"""Y-90 kernel dose: FFT convolution vs direct `scipy.ndimage.convolve` on 128³; 256³ time/memory.

Both sides get the same kernel (built at the map's spacing, array size printed in voxels) and the
same float64 activity map in the same process; the direct sum is the peer (BENCHMARKS.md). The FFT
side runs with float64 transforms (the default, DOSIMETRY §5.3) and float32 transforms, each checked
against the direct result (max difference as a fraction of the maximum; the bound is 1e-3). The
direct cost grows with the kernel's voxel count, the FFT cost does not, so the ratio depends on
the spacing: both 2.21 mm (13³ kernel) and 4.42 mm (9³) are shown. 256³ time and peak memory are
measured in a fresh process per dtype, so one run's peak does not hide the other's.

Needs ../shared/reference/graves2019_Y90_beta_DPK_water_to159mm.csv (skipped with a message).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import median_seconds, peak_rss_mb, report

from abscopal.dose.kernel import (
    FFT_DTYPES,
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
BOUND = 1e-3  # max |FFT − direct| as a fraction of the maximum dose


def main() -> int:
    """Print the FFT/direct ratios and maximum differences, then 256³ time and peak memory."""
    if not TABLE.exists():
        print(f"skipped: {TABLE} is absent")
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--big":
        return _big(sys.argv[2])
    table = parse_dose_point_kernel(TABLE.read_text())
    field = np.random.default_rng(0).uniform(0.0, 1.0, (128, 128, 128))
    for spacing in (2.21, 4.42):
        _compare(field, build_kernel(table, (spacing,) * 3), spacing)
    for dtype in FFT_DTYPES:
        subprocess.run([sys.executable, __file__, "--big", dtype], check=True)
    return 0


def _compare(field: np.ndarray, kernel: DoseVoxelKernel, spacing: float) -> None:
    start = time.perf_counter()
    direct = ndimage.convolve(field, kernel.array, mode="constant", cval=0.0)
    peer = time.perf_counter() - start
    shape = "x".join(str(n) for n in kernel.array.shape)
    for dtype in FFT_DTYPES:
        ours = median_seconds(lambda d=dtype: convolve(field, kernel, fft_dtype=d), repeats=5)
        diff = float(np.abs(convolve(field, kernel, fft_dtype=dtype) - direct).max() / direct.max())
        verdict = "ok" if diff < BOUND else f"ABOVE the {BOUND:g} bound"
        report(
            f"y90 dvk 128^3, kernel {shape} voxels at {spacing} mm, {dtype} FFT",
            ours,
            peer,
            peer="ndimage.convolve",
            note=f"max diff {diff:.1e} of max ({verdict})",
        )


def _big(dtype: str) -> int:
    table = parse_dose_point_kernel(TABLE.read_text())
    kernel = build_kernel(table, (4.42,) * 3, samples=400_000)  # the kernel is not what is timed
    big = np.random.default_rng(0).uniform(0.0, 1.0, (256, 256, 256))
    before = peak_rss_mb()
    start = time.perf_counter()
    convolve(big, kernel, fft_dtype=dtype)
    print(
        f"y90 dvk 256^3, {dtype} FFT: {time.perf_counter() - start:.2f} s (first call, kernel "
        f"spectrum included), peak RSS {peak_rss_mb():.0f} MB (input and interpreter {before:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
