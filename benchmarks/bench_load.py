"""Loading a 300-slice 512×512 CT series: abscopal `load_series` vs SimpleITK ImageSeriesReader.

Each side runs in its own process so that its peak memory (ru_maxrss) is its own; the series is
written once into a temporary folder with pydicom. Prints the time ratio and each side's peak
memory above the interpreter's baseline, as a multiple of the final float32 array. The CPU time
(user + system) ratio is printed too: on a shared machine it is steadier than wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _peer import report
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SLICES, SIZE = 300, 512

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
side, folder = sys.argv[1], Path(sys.argv[2])
import numpy as np
if side == "abscopal":
    from abscopal.io.dicom import index_folder, load_series
else:
    import SimpleITK as sitk
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times, cpus = [], []
for _ in range(3):
    start, start_cpu = time.perf_counter(), cpu()
    if side == "abscopal":
        (series,) = index_folder(folder)
        array = load_series(series).array
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        reader.SetOutputPixelType(sitk.sitkFloat32)
        image = reader.Execute()  # the view below needs the image alive
        array = sitk.GetArrayViewFromImage(image)
    times.append(time.perf_counter() - start)
    cpus.append(cpu() - start_cpu)
    checksum = float(np.asarray(array).sum(dtype=np.float64))
    del array
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "s": sorted(times)[1], "cpu_s": sorted(cpus)[1], "peak_mb": (peak - base) / 1024,
    "checksum": checksum,
}))
"""


def write_series(folder: Path) -> None:
    """A synthetic axial CT: int16 with RescaleIntercept −1024, 0.75 × 0.75 × 1 mm."""
    rng = np.random.default_rng(0)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(folder / f"CT{k:04d}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.StudyDate = "CT", "BENCH", "20240101"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-192.0, -192.0, float(k)]
        ds.PixelSpacing, ds.SliceThickness, ds.InstanceNumber = [0.75, 0.75], 1.0, SLICES - k
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = rng.integers(0, 2000, (SIZE, SIZE), dtype=np.int16).tobytes()
        ds.save_as(ds.filename, enforce_file_format=True)


def run(side: str, folder: Path) -> dict[str, float]:
    """Load the series in a child process; its median time, peak memory and checksum."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, side, str(folder)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Write the series, load it with both readers, print the ratio and memory."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_series(folder)
        ours, peer = run("abscopal", folder), run("simpleitk", folder)
    final_mb = SLICES * SIZE * SIZE * 4 / 2**20
    same = np.isclose(ours["checksum"], peer["checksum"], rtol=1e-9)
    report(
        f"load {SLICES}x{SIZE}x{SIZE} CT",
        ours["s"],
        peer["s"],
        peer="SimpleITK ImageSeriesReader",
        note=f"values equal: {bool(same)}",
    )
    print(
        f"  CPU time: abscopal {ours['cpu_s']:.2f} s, SimpleITK {peer['cpu_s']:.2f} s, "
        f"ratio {peer['cpu_s'] / ours['cpu_s']:.2f}x"
    )
    for name, r in (("abscopal", ours), ("SimpleITK", peer)):  # peak memory over the 3 runs
        print(
            f"  {name}: peak {r['peak_mb']:.0f} MB = {r['peak_mb'] / final_mb:.2f}x the {final_mb:.0f} MB array"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
