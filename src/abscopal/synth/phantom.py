"""The torso phantom: tissue labels in LPS mm, their HU, and the grids it is imaged on.

The phantom spans the femoral heads to the lower chest (S = −160 … +160 mm) in a body ellipse of
340 × 240 mm (L × P) centred on the origin. Patient right is −L, anterior is −P, head is +S.

- Liver on the patient's right, 60 HU. The fissure plane L = −15 mm (6 mm of fat) splits it:
  the **right lobe** (Y-90 territory ``right_lobe``) is the liver at L < −18 mm, the left lobe
  the liver at L > −12 mm.
- Lumbar and lower thoracic vertebral bodies (L5 … T12) on the midline at P = +45 mm, 3 mm
  cortical shell (1000 HU) around trabecular bone (250 HU), with discs, canal and arch.
- Ribs in four axial bands (S = 52.5, 82.5, 112.5, 142.5 mm), lungs (−850 HU) above S ≈ 95 mm,
  sacrum, iliac wings, pubic rami, acetabula and femoral heads and necks.

`labels_slice` evaluates the labels at any (L, P) points of one axial plane, so every grid
(CT small or full, PET, dose) sees the same anatomy in mm.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import TYPE_CHECKING, Final, Literal

import numpy as np

from abscopal.geometry import AXIAL, Grid

if TYPE_CHECKING:
    from numpy.typing import NDArray

Size = Literal["small", "full"]


class Tissue(IntEnum):
    """Tissue labels of the phantom."""

    AIR = 0
    FAT = 1
    SOFT_TISSUE = 2
    LUNG = 3
    LIVER_RIGHT = 4
    LIVER_LEFT = 5
    CORTICAL_BONE = 6
    TRABECULAR_BONE = 7
    DENSE_BONE = 8  # ribs, vertebral arches, pubic rami, acetabular rims
    DISC = 9
    CSF = 10
    FATTY_MARROW = 11


HU: Final[dict[Tissue, float]] = {
    Tissue.AIR: -1000.0,
    Tissue.FAT: -100.0,
    Tissue.SOFT_TISSUE: 40.0,
    Tissue.LUNG: -850.0,
    Tissue.LIVER_RIGHT: 60.0,
    Tissue.LIVER_LEFT: 60.0,
    Tissue.CORTICAL_BONE: 1000.0,
    Tissue.TRABECULAR_BONE: 250.0,
    Tissue.DENSE_BONE: 600.0,
    Tissue.DISC: 90.0,
    Tissue.CSF: 10.0,
    Tissue.FATTY_MARROW: 20.0,
}
HU_TABLE: Final = np.array([HU[t] for t in Tissue], dtype=np.float32)
BONE: Final = frozenset(
    {Tissue.CORTICAL_BONE, Tissue.TRABECULAR_BONE, Tissue.DENSE_BONE, Tissue.FATTY_MARROW}
)

# Field of view and slab, the same in mm for every size.
FOV_MM: Final = 384.0
FIRST_SLICE_S_MM: Final = -157.5  # lesion centres sit on S = −157.5 + 5·n, a slice centre
SLAB_MM: Final = 320.0
CT_SIZES: Final[dict[str, tuple[int, float, float]]] = {
    # columns = rows, pixel spacing (mm), slice spacing (mm)
    "small": (128, 3.0, 5.0),
    "full": (512, 0.75, 2.5),
}

BODY_SEMI_MM: Final = (170.0, 120.0)
FAT_RIM_MM: Final = 12.0
VERTEBRAE: Final[dict[str, float]] = {  # S of each body's centre (a slice centre)
    "L5": -32.5,
    "L4": 2.5,
    "L3": 37.5,
    "L2": 72.5,
    "L1": 107.5,
    "T12": 142.5,
}
VERTEBRA_CENTRE_LP_MM: Final = (0.0, 45.0)
VERTEBRA_SEMI_MM: Final = (22.0, 17.0)
VERTEBRA_HALF_HEIGHT_MM: Final = 13.0
VERTEBRA_PITCH_MM: Final = 35.0
CORTEX_MM: Final = 3.0
RIB_BANDS_S_MM: Final = (52.5, 82.5, 112.5, 142.5)
RIB_HALF_HEIGHT_MM: Final = 6.0
RIB_INSET_MM: Final = (14.0, 24.0)  # from the skin: outer and inner edge of a rib
ILIAC_S_MM: Final = (-105.0, -35.0)
ILIAC_CENTRE_MM: Final = (95.0, 22.0)  # left wing; the right is its mirror
ILIAC_SEMI_MM: Final = (62.0, 11.0)
ILIAC_ANGLE_DEG: Final = -43.4  # left wing, SI joint (posterior-medial) → ASIS (anterior-lateral)
FEMORAL_HEAD_MM: Final = (92.0, 10.0, -127.5)  # left head; the right is its mirror
FEMORAL_HEAD_RADIUS_MM: Final = 24.0
LIVER_RIGHT_ELLIPSOID: Final = ((-70.0, -15.0, 85.0), (70.0, 80.0, 65.0))
LIVER_LEFT_ELLIPSOID: Final = ((20.0, -45.0, 105.0), (48.0, 38.0, 35.0))
LIVER_FISSURE_L_MM: Final = (-18.0, -12.0)
LUNG_ELLIPSOID: Final = ((90.0, 15.0, 190.0), (62.0, 80.0, 95.0))  # left lung; right mirrored


def ct_grid(size: Size, *, frame_of_reference_uid: str | None = None) -> Grid:
    """The CT grid of a size: slices feet → head, rows +P, columns +L."""
    if size not in CT_SIZES:
        msg = f"size must be one of {sorted(CT_SIZES)}, got {size!r}"
        raise ValueError(msg)
    n, pixel_mm, slice_mm = CT_SIZES[size]
    corner = -FOV_MM / 2.0 + pixel_mm / 2.0
    slices = round(SLAB_MM / slice_mm)
    return Grid(
        origin_mm=(corner, corner, FIRST_SLICE_S_MM),
        spacing_mm=(slice_mm, pixel_mm, pixel_mm),
        axes=AXIAL,
        shape=(slices, n, n),
        frame_of_reference_uid=frame_of_reference_uid,
    )


def axial_grid(
    *, pixel_mm: float, slice_mm: float, slices: int, frame_of_reference_uid: str | None
) -> Grid:
    """An axial grid over the whole field of view (dose, PET), from the first CT slice up."""
    n = round(FOV_MM / pixel_mm)
    corner = -FOV_MM / 2.0 + pixel_mm / 2.0
    return Grid(
        origin_mm=(corner, corner, FIRST_SLICE_S_MM),
        spacing_mm=(slice_mm, pixel_mm, pixel_mm),
        axes=AXIAL,
        shape=(slices, n, n),
        frame_of_reference_uid=frame_of_reference_uid,
    )


def _ellipse(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    centre: tuple[float, float],
    semi: tuple[float, float],
    angle_deg: float = 0.0,
) -> NDArray[np.bool_]:
    if semi[0] <= 0.0 or semi[1] <= 0.0:
        return np.zeros(x.shape, dtype=bool)
    dx, dy = x - centre[0], y - centre[1]
    if angle_deg:
        cos, sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        dx, dy = cos * dx + sin * dy, -sin * dx + cos * dy
    return np.asarray((dx / semi[0]) ** 2 + (dy / semi[1]) ** 2 <= 1.0)


def _ellipsoid_section(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    z: float,
    ellipsoid: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> NDArray[np.bool_]:
    (cx, cy, cz), (a, b, c) = ellipsoid
    r2 = 1.0 - ((z - cz) / c) ** 2
    if r2 <= 0.0:
        return np.zeros(x.shape, dtype=bool)
    r = math.sqrt(r2)
    return _ellipse(x, y, (cx, cy), (a * r, b * r))


def _shell(
    labels: NDArray[np.uint8],
    outer: NDArray[np.bool_],
    inner: NDArray[np.bool_],
    *,
    inside: Tissue,
    shell: Tissue = Tissue.CORTICAL_BONE,
) -> None:
    labels[outer] = shell
    labels[inner] = inside


def _bone_ellipse(
    labels: NDArray[np.uint8],
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    centre: tuple[float, float],
    semi: tuple[float, float],
    *,
    angle_deg: float = 0.0,
    cortex_mm: float = CORTEX_MM,
    inside: Tissue = Tissue.TRABECULAR_BONE,
) -> None:
    outer = _ellipse(x, y, centre, semi, angle_deg)
    inner_semi = (semi[0] - cortex_mm, semi[1] - cortex_mm)
    _shell(labels, outer, _ellipse(x, y, centre, inner_semi, angle_deg), inside=inside)


def _spine(
    labels: NDArray[np.uint8], x: NDArray[np.float64], y: NDArray[np.float64], z: float
) -> None:
    nearest = min(VERTEBRAE.values(), key=lambda s: abs(z - s))
    dz = abs(z - nearest)
    lowest = min(VERTEBRAE.values())
    if z < lowest - VERTEBRA_HALF_HEIGHT_MM - 4.5:  # below the L5/S1 disc: the sacrum
        return
    body = _ellipse(x, y, VERTEBRA_CENTRE_LP_MM, VERTEBRA_SEMI_MM)
    canal_centre = (0.0, VERTEBRA_CENTRE_LP_MM[1] + 31.0)
    if dz <= VERTEBRA_HALF_HEIGHT_MM:
        _bone_ellipse(labels, x, y, VERTEBRA_CENTRE_LP_MM, VERTEBRA_SEMI_MM)
        labels[_ellipse(x, y, canal_centre, (16.0, 16.0))] = Tissue.DENSE_BONE
        labels[_ellipse(x, y, (0.0, canal_centre[1] + 24.0), (5.0, 9.0))] = Tissue.DENSE_BONE
    else:
        labels[body] = Tissue.DISC
    labels[_ellipse(x, y, canal_centre, (10.0, 10.0))] = Tissue.CSF


def _pelvis(
    labels: NDArray[np.uint8], x: NDArray[np.float64], y: NDArray[np.float64], z: float
) -> None:
    if -115.0 <= z <= -47.5:  # sacrum
        _bone_ellipse(labels, x, y, (0.0, 62.0), (42.0, 20.0), cortex_mm=2.5)
    if ILIAC_S_MM[0] <= z <= ILIAC_S_MM[1]:
        for side in (1.0, -1.0):
            centre = (side * ILIAC_CENTRE_MM[0], ILIAC_CENTRE_MM[1])
            angle = ILIAC_ANGLE_DEG if side > 0 else -ILIAC_ANGLE_DEG
            _bone_ellipse(labels, x, y, centre, ILIAC_SEMI_MM, angle_deg=angle, cortex_mm=2.5)
    if -150.0 <= z <= -115.0:  # pubic rami
        for side in (1.0, -1.0):
            labels[_ellipse(x, y, (side * 40.0, -55.0), (30.0, 9.0), side * 20.0)] = (
                Tissue.DENSE_BONE
            )
    hx, hy, hz = FEMORAL_HEAD_MM
    for side in (1.0, -1.0):
        cx = side * hx
        dz = z - hz
        if abs(dz) <= 40.0:  # acetabular rim, medial to the head
            r_out = math.sqrt(max(0.0, 32.0**2 - dz**2))
            rim = _ellipse(x, y, (cx, hy), (r_out, r_out)) & (side * x < hx + 5.0)
            labels[rim & (abs(dz) <= 22.0)] = Tissue.DENSE_BONE
        if abs(dz) <= FEMORAL_HEAD_RADIUS_MM:
            r = math.sqrt(FEMORAL_HEAD_RADIUS_MM**2 - dz**2)
            _bone_ellipse(labels, x, y, (cx, hy), (r, r), cortex_mm=2.0)
        if dz < -FEMORAL_HEAD_RADIUS_MM * 0.5:  # neck and shaft, running down and lateral
            shaft_x = cx + side * 0.9 * (-dz)
            _bone_ellipse(
                labels, x, y, (shaft_x, hy), (15.0, 15.0), cortex_mm=4.0, inside=Tissue.FATTY_MARROW
            )


def _ribs(
    labels: NDArray[np.uint8], x: NDArray[np.float64], y: NDArray[np.float64], z: float
) -> None:
    if not any(abs(z - s) <= RIB_HALF_HEIGHT_MM for s in RIB_BANDS_S_MM):
        return
    a, b = BODY_SEMI_MM
    outer = _ellipse(x, y, (0.0, 0.0), (a - RIB_INSET_MM[0], b - RIB_INSET_MM[0]))
    inner = _ellipse(x, y, (0.0, 0.0), (a - RIB_INSET_MM[1], b - RIB_INSET_MM[1]))
    posterior_gap = (np.abs(x) < 30.0) & (y > 0)
    anterior_gap = (np.abs(x) < 60.0) & (y < 0)
    labels[outer & ~inner & ~posterior_gap & ~anterior_gap] = Tissue.DENSE_BONE


def labels_slice(x: NDArray[np.float64], y: NDArray[np.float64], z: float) -> NDArray[np.uint8]:
    """Tissue labels at points (x = L, y = P, in mm) of the axial plane S = `z` mm."""
    labels = np.full(x.shape, Tissue.AIR, dtype=np.uint8)
    a, b = BODY_SEMI_MM
    labels[_ellipse(x, y, (0.0, 0.0), (a, b))] = Tissue.FAT
    labels[_ellipse(x, y, (0.0, 0.0), (a - FAT_RIM_MM, b - FAT_RIM_MM))] = Tissue.SOFT_TISSUE
    (lx, ly, lz), semi = LUNG_ELLIPSOID
    for side in (1.0, -1.0):
        labels[_ellipsoid_section(x, y, z, ((side * lx, ly, lz), semi))] = Tissue.LUNG
    liver = _ellipsoid_section(x, y, z, LIVER_RIGHT_ELLIPSOID) | _ellipsoid_section(
        x, y, z, LIVER_LEFT_ELLIPSOID
    )
    labels[liver] = Tissue.FAT  # the fissure; the lobes overwrite it below
    labels[liver & (x < LIVER_FISSURE_L_MM[0])] = Tissue.LIVER_RIGHT
    labels[liver & (x > LIVER_FISSURE_L_MM[1])] = Tissue.LIVER_LEFT
    _ribs(labels, x, y, z)
    _spine(labels, x, y, z)
    _pelvis(labels, x, y, z)
    return labels


def label_volume(grid: Grid) -> NDArray[np.uint8]:
    """Tissue labels at every voxel centre of an axial `grid` (slice, row, column)."""
    _, rows, cols = grid.shape
    jj, ii = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    out = np.empty(grid.shape, dtype=np.uint8)
    for k in range(grid.shape[0]):
        kji = np.stack([np.full(jj.shape, k), jj, ii], axis=-1).astype(float)
        points = grid.index_to_lps(kji)
        out[k] = labels_slice(points[..., 0], points[..., 1], float(points[0, 0, 2]))
    return out


def hu_volume(labels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Noise-free HU of a label volume."""
    return HU_TABLE[labels]


def vertebral_body_centre(level: str) -> tuple[float, float, float]:
    """LPS mm of the centre of a vertebral body (`level` in VERTEBRAE)."""
    return (*VERTEBRA_CENTRE_LP_MM, VERTEBRAE[level])


def rib_lateral_point(
    side: Literal["left", "right"], band_s_mm: float
) -> tuple[float, float, float]:
    """LPS mm of the most lateral point of a rib band's mid-line (the rib runs along P there)."""
    mid_inset = (RIB_INSET_MM[0] + RIB_INSET_MM[1]) / 2.0
    sign = 1.0 if side == "left" else -1.0
    return (sign * (BODY_SEMI_MM[0] - mid_inset), 0.0, band_s_mm)


def iliac_wing(side: Literal["left", "right"]) -> tuple[tuple[float, float, float], float]:
    """LPS mm of an iliac wing's centre (at S = −67.5 mm) and its in-plane angle (degrees)."""
    sign = 1.0 if side == "left" else -1.0
    return (sign * ILIAC_CENTRE_MM[0], ILIAC_CENTRE_MM[1], -67.5), sign * ILIAC_ANGLE_DEG


def femoral_head_centre(side: Literal["left", "right"]) -> tuple[float, float, float]:
    """LPS mm of a femoral head's centre."""
    sign = 1.0 if side == "left" else -1.0
    return (sign * FEMORAL_HEAD_MM[0], FEMORAL_HEAD_MM[1], FEMORAL_HEAD_MM[2])
