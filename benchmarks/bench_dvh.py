"""DVH of all ten structures of ../shared/data/dicompyler: abscopal vs dicompyler-core 0.5.6.

dicompyler-core runs in its own environment (benchmarks/.venvs/dicompyler, pydicom<3); both sides'
mean doses are printed side by side before the time ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import median_seconds, peer_python, report

from abscopal.dose.dvh import structure_dvh_from_contours
from abscopal.io.rt import read_rtdose, read_rtstruct

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicompyler"
MEAN_TOLERANCE = 0.01  # relative; dicompyler-core bins at 1 cGy, abscopal does not bin
PEER = """
import json, sys, time
from dicompylercore import dicomparser, dvhcalc
d = sys.argv[1]
rtss = dicomparser.DicomParser(d + "/rtss.dcm")
structures = rtss.GetStructures()
def run():
    return {s["name"]: dvhcalc.get_dvh(d + "/rtss.dcm", d + "/rtdose.dcm", k) for k, s in structures.items()}
run()
times = []
for _ in range(3):
    t = time.perf_counter(); out = run(); times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"seconds": times[1], "mean": {n: float(v.mean) for n, v in out.items()}}))
"""


def main() -> int:
    """Time both sides on all structures and print the ratio and the mean-dose differences."""
    if not DATA.exists():
        print(f"skipped: {DATA} is absent")
        return 0
    dose = read_rtdose(DATA / "rtdose.dcm").volume
    struct = read_rtstruct(DATA / "rtss.dcm")

    def ours() -> dict[str, float | None]:
        return {
            name: structure_dvh_from_contours(
                name, dose, contours, frame_of_reference_uid=struct.frame_of_reference_uid
            ).dose_mean_gy
            for name, contours in struct.rois.items()
        }

    ours_s = median_seconds(ours, repeats=5)
    means = ours()
    python = peer_python("dicompyler", [["dicompyler-core==0.5.6", "pydicom<3"]])
    if python is None:
        print(f"dvh all structures: abscopal {ours_s * 1000:.0f} ms; peer not installable here")
        return 0
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), "-c", PEER, str(DATA)], check=True, capture_output=True, text=True
    )
    print(f"(peer process {time.perf_counter() - start:.1f} s incl. start-up)")
    peer = json.loads(done.stdout.strip().splitlines()[-1])
    worst = 0.0
    for name, mine in means.items():
        theirs = peer["mean"].get(name)
        rel = abs(mine - theirs) / theirs if mine is not None and theirs else None
        worst = max(worst, rel or 0.0)
        diff = "" if rel is None else f" ({100 * rel:.2f} %)"
        print(f"  {name:16s} mean abscopal {mine} Gy, dicompyler-core {theirs} Gy{diff}")
    agree = "ok" if worst <= MEAN_TOLERANCE else f"ABOVE {100 * MEAN_TOLERANCE:g} %"
    report(
        "dvh all 10 structures",
        ours_s,
        peer["seconds"],
        peer="dicompyler-core 0.5.6",
        note=f"(largest mean-dose difference {100 * worst:.2f} %, {agree})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
