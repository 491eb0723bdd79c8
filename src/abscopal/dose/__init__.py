"""Dose per lesion: EBRT dose grids, Y-90 voxel dosimetry, and field status."""
