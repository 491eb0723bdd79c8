"""Rigid (optionally affine) registration of a follow-up CT to the baseline, weighted to bone.

Bone is the stable scaffold between timepoints (soft tissue moves, lesions change), so the metric
is evaluated only where the baseline is above `bone_hu` (a fixed-image mask), when enough such
voxels exist. SimpleITK: mean squares for CT to CT (HU are absolute; Mattes mutual information
for other pairs), regular-step gradient descent, two resolution levels, initialised by aligning
the images' geometric centres.

The result maps points in the follow-up's patient coordinates to the baseline's (LPS mm), which
is what lesion matching needs (`abscopal.match`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

from abscopal.geometry import sitk_image
from abscopal.model import Volume

logger = logging.getLogger(__name__)
sitk: Any = SimpleITK  # its partial stubs leave most calls untyped; treated as untyped here

BONE_HU = 200.0  # above soft tissue and contrast-enhanced vessels' usual range, below cortex
_MIN_BONE_VOXELS = 500


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Registration:
    """x_baseline = matrix @ x_follow_up + offset (LPS mm); `metric` is the final metric value."""

    matrix: NDArray[np.float64]
    offset_mm: NDArray[np.float64]
    metric: float
    kind: str  # "identity", "rigid" or "affine"
    bone_weighted: bool

    def __post_init__(self) -> None:
        if self.matrix.shape != (3, 3) or self.offset_mm.shape != (3,):
            msg = (
                f"matrix must be 3x3 and offset 3, got {self.matrix.shape}, {self.offset_mm.shape}"
            )
            raise ValueError(msg)

    @property
    def rotation_deg(self) -> float:
        """Angle of the rotation part (degrees); for an affine, of its nearest rotation."""
        u, _, vt = np.linalg.svd(self.matrix)
        cosine = (float(np.trace(u @ vt)) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))

    def to_baseline(self, points_mm: ArrayLike) -> NDArray[np.float64]:
        """Follow-up LPS points (..., 3) in the baseline's LPS coordinates."""
        pts = np.asarray(points_mm, dtype=float)
        moved: NDArray[np.float64] = pts @ self.matrix.T + self.offset_mm
        return moved

    @classmethod
    def identity(cls) -> Registration:
        """No motion: both timepoints already share patient coordinates."""
        return cls(
            matrix=np.eye(3),
            offset_mm=np.zeros(3),
            metric=0.0,
            kind="identity",
            bone_weighted=False,
        )


def to_sitk(volume: Volume) -> Any:  # a sitk.Image; SimpleITK's stubs are partial
    """A SimpleITK image of `volume` in LPS."""
    return sitk_image(volume.array, volume.grid)


def register(
    baseline: Volume,
    follow_up: Volume,
    *,
    affine: bool = False,
    bone_hu: float | None = BONE_HU,
    iterations: int = 200,
    seed: int = 0,
) -> Registration:
    """Register `follow_up` to `baseline` (rigid, or affine after rigid); see the module docstring.

    `bone_hu=None` uses every voxel (MR, PET). The random sampling of the metric is seeded.
    """
    fixed, moving = to_sitk(baseline), to_sitk(follow_up)
    method = sitk.ImageRegistrationMethod()
    if baseline.modality == follow_up.modality == "CT":
        method.SetMetricAsMeanSquares()  # CT to CT: Hounsfield units are absolute
    else:
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.5, seed)
    bone_weighted = False
    if bone_hu is not None:
        bone = np.asarray(baseline.array) > bone_hu
        if int(bone.sum()) >= _MIN_BONE_VOXELS:
            mask = sitk.GetImageFromArray(bone.astype(np.uint8))
            mask.CopyInformation(fixed)
            method.SetMetricFixedMask(mask)
            bone_weighted = True
        else:
            logger.info(
                "fewer than %d bone voxels: registration uses the whole image", _MIN_BONE_VOXELS
            )
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, relaxationFactor=0.5
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    method.SetInitialTransform(initial, inPlace=False)
    rigid = method.Execute(fixed, moving)
    transform = rigid
    if affine:
        start = sitk.AffineTransform(3)
        start.SetMatrix(sitk.CompositeTransform(rigid).GetNthTransform(0).GetMatrix())
        inner = sitk.CompositeTransform(rigid).GetNthTransform(0)
        start.SetCenter(inner.GetCenter())
        start.SetTranslation(inner.GetTranslation())
        method.SetInitialTransform(start, inPlace=False)
        transform = method.Execute(fixed, moving)
    matrix, offset = _fixed_to_moving(transform)
    # ITK maps baseline (fixed) points to follow-up (moving) points; invert for follow-up -> baseline
    inverse = np.asarray(np.linalg.inv(matrix), dtype=np.float64)
    logger.info(
        "registration %s: metric %.4f", "affine" if affine else "rigid", method.GetMetricValue()
    )
    return Registration(
        matrix=inverse,
        offset_mm=-inverse @ offset,
        metric=float(method.GetMetricValue()),
        kind="affine" if affine else "rigid",
        bone_weighted=bone_weighted,
    )


def _fixed_to_moving(transform: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(A, b) with moving = A @ fixed + b, read off the transform at four points."""
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in points])
    offset = mapped[0]
    matrix = (mapped[1:] - offset).T
    return matrix, offset
