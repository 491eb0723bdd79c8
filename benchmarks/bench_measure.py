"""Lesion measurement on lung1 and lung2 vs pyradiomics 3.0.1 shape + first-order extraction.

pyradiomics runs in its own environment (benchmarks/.venvs/pyradiomics, ../shared/BENCHMARKS.md);
if it cannot be built, the peer is the same computation with plain scikit-image/scipy calls
(marching cubes + pdist on all vertices, numpy statistics), and the line says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from _peer import median_seconds, peer_python, report
from scipy.spatial.distance import pdist
from skimage.measure import marching_cubes

from abscopal.io.image import read_image, read_image_and_mask, read_mask
from abscopal.measure import describe_lesion

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"
PEER_STEPS = [
    ["numpy<2", "setuptools", "wheel", "SimpleITK", "PyWavelets", "pykwalify", "six"],
    ["--no-build-isolation", "pyradiomics==3.0.1"],
]
PEER_SCRIPT = """
import json, sys, time, logging
from radiomics import featureextractor
logging.getLogger("radiomics").setLevel(logging.ERROR)
ex = featureextractor.RadiomicsFeatureExtractor()
ex.disableAllFeatures(); ex.enableFeatureClassByName("shape"); ex.enableFeatureClassByName("firstorder")
image, mask = sys.argv[1], sys.argv[2]
ex.execute(image, mask)
times = []
for _ in range(5):
    t = time.perf_counter(); r = ex.execute(image, mask); times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"s": times[2], "Mean": float(r["original_firstorder_Mean"]),
  "Maximum3DDiameter": float(r["original_shape_Maximum3DDiameter"]),
  "VoxelVolume": float(r["original_shape_VoxelVolume"])}))
"""


def _fallback(image_path: Path, mask_path: Path) -> float:
    image = read_image(image_path)
    mask = read_mask(mask_path, reference=image)

    def plain() -> None:
        padded = np.pad(mask.mask.astype(float), 1)
        vertices, *_ = marching_cubes(padded, 0.5, spacing=mask.grid.spacing_mm)
        pdist(vertices).max()
        values = image.array[mask.mask]
        values.mean(), values.min(), values.max()

    return median_seconds(plain)


def main() -> int:
    """Measure lung1 and lung2 with both tools and print the ratios."""
    python = peer_python("pyradiomics", PEER_STEPS)
    for case in ("lung1", "lung2"):
        image_path, mask_path = DATA / f"{case}_image.nrrd", DATA / f"{case}_label.nrrd"

        def ours(image_path: Path = image_path, mask_path: Path = mask_path) -> dict[str, object]:
            image, mask = read_image_and_mask(image_path, mask_path)
            return describe_lesion(mask, image)

        result = ours()
        ours_s = median_seconds(ours)
        if python is not None:
            done = subprocess.run(
                [str(python), "-c", PEER_SCRIPT, str(image_path), str(mask_path)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                peer = json.loads(done.stdout.strip().splitlines()[-1])
                same = np.isclose(peer["Mean"], result["mean"], rtol=1e-9) and np.isclose(
                    peer["Maximum3DDiameter"], result["diameter_max_3d_mm"], rtol=1e-6
                )
                report(f"measure {case} (read + shape + first-order)", ours_s, peer["s"],
                       peer="pyradiomics 3.0.1", note=f"values equal: {bool(same)}")  # fmt: skip
                continue
            print(f"pyradiomics failed: {done.stderr[-500:]}", file=sys.stderr)
        report(f"measure {case}", ours_s, _fallback(image_path, mask_path),
               peer="scikit-image/scipy (pyradiomics could not be built)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
