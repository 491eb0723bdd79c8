"""DICOM image series: index the series in a folder, load a CT, MR, PET or SPECT series as a Volume.

`index_folder` reads headers only and groups files by SeriesInstanceUID (`scan_folder` sets bad
files aside instead of raising); `load_series` reads the pixels of one series (single-frame files,
Enhanced multi-frame or NM tomography), applies RescaleSlope/Intercept per slice, sorts the slices
along the slice normal and returns a `Volume` on a `Grid` (voxel-centre origin, LPS mm,
(slice, row, column)). Modules, each importing only those before it:

- `index`: file discovery and header reading (`read_dataset`, `series_date`, `DicomSeries`);
- `planes`: where each frame lies (single-frame, Enhanced multi-frame, NM);
- `pixels`: the pixels of a series, read or decoded, and rescaled;
- `stack`: `load_series`, with its duplicate, spacing and gantry-tilt handling.
"""

from abscopal.io.dicom.index import (
    IMAGE_MODALITIES,
    DicomSeries,
    index_folder,
    orientation_axes,
    parse_date,
    read_dataset,
    scan_folder,
    series_date,
)
from abscopal.io.dicom.stack import load_series

__all__ = [
    "IMAGE_MODALITIES",
    "DicomSeries",
    "index_folder",
    "load_series",
    "orientation_axes",
    "parse_date",
    "read_dataset",
    "scan_folder",
    "series_date",
]
