"""Y-90 dose-voxel kernel from a radial dose point kernel, and its FFT convolution (DOSIMETRY §5.3).

The kernel K is an energy-fraction kernel (Σ K = 1) built by Monte Carlo from the Graves 2019
shell energies at the image's own voxel size: emission uniform in the source voxel, shell drawn ∝
its energy, radius uniform in volume inside the shell, isotropic direction, the end point scores
in the voxel that contains it. It is then symmetrised and renormalised. Kernels are cached by
(spacing, radius, samples, seed, table hash), their spectra by transform shape. The table is parsed
from text: this module reads no file (the caller passes `Path.read_text()`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from scipy import fft as sp_fft

if TYPE_CHECKING:
    from numpy.typing import NDArray

MM_PER_CM: Final = 10.0
KERNEL_RADIUS_MM: Final = 11.0  # 99.6 % of the Y-90 beta energy in water
KERNEL_SAMPLES: Final = 4_000_000
KERNEL_SEED: Final = 20190
Y90_MEAN_ENERGY_MEV: Final = 0.9336  # sum of the complete Graves 2019 kernel
J_PER_MEV: Final = 1.602176634e-13
_CHUNK: Final = 1_000_000
_CACHE: dict[tuple[object, ...], DoseVoxelKernel] = {}
FFT_DTYPES: Final = ("float64", "float32")
# Relative level below which FFT output is round-off (possibly negative) and reads as 0.
_FFT_FLOOR: Final = {"float64": 1e-9, "float32": 1e-6}
_SPECTRA_MAX: Final = 4  # cached kernel spectra (a 256³ map's one is ~150 MB in float64)
# Kernel spectrum per (kernel, transform shape, dtype); the kernel is kept so its id stays unique.
_SPECTRA: dict[
    tuple[int, tuple[int, ...], str],
    tuple[DoseVoxelKernel, NDArray[np.complexfloating[Any, Any]]],
] = {}
_SPECTRA_LOCK = threading.Lock()  # cohort workers may share the cache


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DosePointKernel:
    """Energy per decay (MeV) deposited in spherical shells of outer radius `r_outer_mm`."""

    r_outer_mm: NDArray[np.float64]
    energy_mev: NDArray[np.float64]
    sha256: str

    def __post_init__(self) -> None:
        r, e = self.r_outer_mm, self.energy_mev
        if r.ndim != 1 or r.shape != e.shape or r.size == 0:
            msg = "r_outer_mm and energy_mev must be 1-D arrays of one length"
            raise ValueError(msg)
        if np.any(np.diff(r) <= 0) or r[0] <= 0 or np.any(e < 0) or not np.all(np.isfinite(e)):
            msg = "shell radii must increase from > 0 and energies be finite and >= 0"
            raise ValueError(msg)

    @property
    def r_inner_mm(self) -> NDArray[np.float64]:
        """Inner radius of every shell (the previous row's outer radius, 0 first)."""
        return np.concatenate([[0.0], self.r_outer_mm[:-1]])

    def energy_within_mev(self, radius_mm: float) -> float:
        """Σ E of the shells with r_outer ≤ `radius_mm`."""
        return float(self.energy_mev[self.r_outer_mm <= radius_mm + 1e-9].sum())


def parse_dose_point_kernel(text: str) -> DosePointKernel:
    """Parse a kernel CSV (`#` comments, header, then `r_outer_cm, E_MeV...` columns)."""
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(rows) < 2 or not rows[0].lower().startswith("r_outer_cm"):
        msg = "a dose point kernel table needs a header starting with r_outer_cm and data rows"
        raise ValueError(msg)
    data = np.array([[float(v) for v in ln.split(",")[:2]] for ln in rows[1:]])
    return DosePointKernel(
        r_outer_mm=data[:, 0] * MM_PER_CM,
        energy_mev=data[:, 1],
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DoseVoxelKernel:
    """An energy-fraction kernel (Σ = 1) in the image's axis order, with its identity."""

    array: NDArray[np.float64]
    spacing_mm: tuple[float, float, float]
    radius_mm: float
    samples: int
    seed: int
    table_sha256: str
    energy_in_kernel_mev: float

    def identity(self) -> dict[str, object]:
        """Everything that makes this kernel: stored with every DVK result."""
        return {
            "table_sha256": self.table_sha256,
            "radius_mm": self.radius_mm,
            "spacing_mm": list(self.spacing_mm),
            "samples": self.samples,
            "seed": self.seed,
            "energy_in_kernel_mev": self.energy_in_kernel_mev,
        }

    def s_value_mgy_per_mbq_s(self, density_g_ml: float = 1.0) -> NDArray[np.float64]:
        """MIRD 17 voxel S values: K·E_K·1.602e-13·1e9/m_voxel[kg] (for comparison only)."""
        mass_kg = density_g_ml * float(np.prod(self.spacing_mm)) / 1e6
        return self.array * self.energy_in_kernel_mev * J_PER_MEV * 1e9 / mass_kg


def build_kernel(
    table: DosePointKernel,
    spacing_mm: tuple[float, float, float],
    *,
    radius_mm: float = KERNEL_RADIUS_MM,
    samples: int = KERNEL_SAMPLES,
    seed: int = KERNEL_SEED,
) -> DoseVoxelKernel:
    """Monte Carlo dose-voxel kernel at `spacing_mm` (array axis order), cached."""
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(s > 0 for s in spacing) or samples < 1 or radius_mm <= 0:
        msg = f"spacing_mm must be 3 positive values, samples >= 1, radius_mm > 0; got {spacing_mm}"
        raise ValueError(msg)
    key = (spacing, float(radius_mm), int(samples), int(seed), table.sha256)
    if key in _CACHE:
        return _CACHE[key]
    keep = table.r_outer_mm <= radius_mm + 1e-9
    r_o, r_i, energy = table.r_outer_mm[keep], table.r_inner_mm[keep], table.energy_mev[keep]
    if energy.sum() <= 0:
        msg = f"no kernel shell lies within radius_mm={radius_mm}"
        raise ValueError(msg)
    cdf = np.cumsum(energy) / energy.sum()
    s = np.asarray(spacing)
    half = np.array([math.ceil(radius_mm / a) + 1 for a in spacing])
    counts = np.zeros(tuple(2 * half + 1), dtype=np.float64)
    rng = np.random.default_rng(seed)
    done = 0
    while done < samples:
        n = min(_CHUNK, samples - done)
        start = (rng.random((n, 3)) - 0.5) * s
        shell = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), cdf.size - 1)
        lo3, hi3 = r_i[shell] ** 3, r_o[shell] ** 3
        radius = np.cbrt(lo3 + rng.random(n) * (hi3 - lo3))
        cos_t = 2.0 * rng.random(n) - 1.0
        phi = 2.0 * math.pi * rng.random(n)
        sin_t = np.sqrt(1.0 - cos_t**2)
        direction = np.column_stack([cos_t, sin_t * np.cos(phi), sin_t * np.sin(phi)])
        end = start + radius[:, None] * direction
        index = np.rint(end / s).astype(np.int64) + half
        _bincount_into(counts, index)
        done += n
    kernel = _symmetrise(counts / samples, isotropic=len(set(spacing)) == 1)
    kernel /= kernel.sum()
    result = DoseVoxelKernel(
        array=kernel,
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        radius_mm=float(radius_mm),
        samples=int(samples),
        seed=int(seed),
        table_sha256=table.sha256,
        energy_in_kernel_mev=float(energy.sum()),
    )
    _CACHE[key] = result
    return result


def _bincount_into(counts: NDArray[np.float64], index: NDArray[np.int64]) -> None:
    flat = np.ravel_multi_index(tuple(index.T), counts.shape)
    counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)


def _symmetrise(kernel: NDArray[np.float64], *, isotropic: bool) -> NDArray[np.float64]:
    """Mean over the 48 signed axis permutations (isotropic) or the 8 reflections.

    The reflections are applied as successive pairwise means, so the result is exactly
    reflection-symmetric in floating point.
    """
    out = kernel
    if isotropic:
        out = np.mean([np.transpose(out, p) for p in itertools.permutations(range(3))], axis=0)
    for axis in range(3):
        out = 0.5 * (out + np.flip(out, axis=axis))
    return np.asarray(out)


def convolve(
    field: NDArray[np.float64],
    kernel: DoseVoxelKernel,
    *,
    padded: bool = False,
    fft_dtype: str = "float64",
) -> NDArray[np.float64]:
    """Linear convolution of `field` with the kernel by real FFT, clipped at 0.

    `padded=False` returns the input's shape; `padded=True` returns the grid grown by one kernel
    half-width on each side, which closes the energy. `scipy.fft` on all cores, each axis padded
    only as far as linearity needs (n + m − 1, or n + half-width when the rim is cropped) and then
    to a fast length; the kernel's spectrum is cached per transform shape. `fft_dtype="float32"`
    saves time and memory at about 1e-6 of the maximum (DOSIMETRY §5.3 asks for float64, the
    default). Values below 1e-9·max (float32: 1e-6·max), round-off and possibly negative, become 0.
    """
    if fft_dtype not in FFT_DTYPES:
        msg = f"fft_dtype must be one of {', '.join(FFT_DTYPES)}, got {fft_dtype!r}"
        raise ValueError(msg)
    data = np.asarray(field, dtype=fft_dtype)
    k = kernel.array
    half = [(m - 1) // 2 for m in k.shape]
    full = [n + m - 1 for n, m in zip(data.shape, k.shape, strict=True)]
    # Cropping the rim tolerates wrap-around beyond index n + half − 1 (it lands in the crop).
    need = full if padded else [n + h for n, h in zip(data.shape, half, strict=True)]
    shape = tuple(sp_fft.next_fast_len(n, real=True) for n in need)
    spectrum = sp_fft.rfftn(data, shape, workers=-1)
    spectrum *= _kernel_spectrum(kernel, shape, fft_dtype)
    out = sp_fft.irfftn(spectrum, shape, workers=-1, overwrite_x=True)
    start = [0] * 3 if padded else half
    size = full if padded else list(data.shape)
    window = tuple(slice(a, a + n) for a, n in zip(start, size, strict=True))
    result = np.array(out[window], dtype=np.float64)  # a compact copy frees the padded grid
    del out, spectrum
    peak = max(float(result.max()), -float(result.min())) if result.size else 0.0
    np.putmask(result, result < _FFT_FLOOR[fft_dtype] * peak, 0.0)
    return result


def _kernel_spectrum(
    kernel: DoseVoxelKernel, shape: tuple[int, ...], fft_dtype: str
) -> NDArray[np.complexfloating[Any, Any]]:
    """The kernel's real FFT, zero-padded to `shape`; cached, one transform per grid shape."""
    key = (id(kernel), shape, fft_dtype)
    with _SPECTRA_LOCK:
        hit = _SPECTRA.get(key)
    if hit is not None:
        return hit[1]
    spectrum = np.asarray(sp_fft.rfftn(kernel.array.astype(fft_dtype), shape, workers=-1))
    with _SPECTRA_LOCK:
        while len(_SPECTRA) >= _SPECTRA_MAX:
            del _SPECTRA[next(iter(_SPECTRA))]  # oldest first
        _SPECTRA[key] = (kernel, spectrum)
    return spectrum


def f_planar(
    table: DosePointKernel, distance_mm: float, *, mean_energy_mev: float = Y90_MEAN_ENERGY_MEV
) -> float:
    """D(x)/D_inside at `distance_mm` outside a uniformly loaded half-space (DOSIMETRY §8.1)."""
    mid = 0.5 * (table.r_inner_mm + table.r_outer_mm)
    fraction = np.maximum(0.0, (mid - distance_mm) / (2.0 * mid))
    return float((table.energy_mev * fraction).sum() / mean_energy_mev)
