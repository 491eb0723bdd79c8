"""The pixels of a DICOM image series, rescaled, straight into one float32 array.

`read_stack` parses each file's header (pixel data left in the file), then puts its frames into
a preallocated array: uncompressed pixel data is read frame by frame from the file, compressed
pixel data is decoded by pydicom; each frame is rescaled (RescaleSlope/Intercept of its `Plane`)
in float32 when that is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
from pydicom.pixels.utils import iter_pixels
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from abscopal.errors import IngestError
from abscopal.io.dicom.index import PIXEL_DATA
from abscopal.io.dicom.planes import Plane, check_same, header_planes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

_NATIVE_SYNTAXES: Final = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
)


def read_stack(
    files: list[Path], headers_read: list[Dataset | None], uid: str
) -> tuple[list[Dataset], list[Plane], NDArray[np.float32]]:
    """Headers, planes and rescaled pixels (float32, one slice per plane, file order) of `files`.

    Each file is read once: its header is parsed with the pixel data left in the file
    (`defer_size`), then its pixels go straight into one preallocated array. Peak memory is the
    final array plus one frame. The array is sized from the first file; when later files hold
    another number of frames, the pixels are read again into an array of the right size.
    (A reader thread beside the header parser was slower: each hand-over of the GIL costs more
    than reading and rescaling a slice.)
    """
    headers: list[tuple[Dataset, list[Plane]]] = []
    array = np.empty((0, 0, 0), dtype=np.float32)
    fits = True
    for n, path in enumerate(files):
        ds, planes = header_planes(path, n, headers_read[n])
        headers.append((ds, planes))
        shape = (int(ds.Rows), int(ds.Columns))
        if n == 0:
            array = np.empty((len(files) * len(planes), *shape), dtype=np.float32)
        check_same([array.shape[1:], shape], [files[0].name, path.name], "matrix size", uid)
        fits = fits and len(planes) * len(files) == len(array)
        if fits:
            _read_pixels(path, ds, planes, array[n * len(planes) : (n + 1) * len(planes)])
    if not fits:  # files with different numbers of frames
        array = np.empty((sum(len(p) for _, p in headers), *shape), dtype=np.float32)
        starts = np.cumsum([0] + [len(p) for _, p in headers])
        for n, (path, (ds, planes)) in enumerate(zip(files, headers, strict=True)):
            _read_pixels(path, ds, planes, array[starts[n] : starts[n + 1]])
    planes = [plane for _, file_planes in headers for plane in file_planes]
    return [ds for ds, _ in headers], planes, array


def _read_pixels(path: Path, ds: Dataset, planes: list[Plane], out: NDArray[np.float32]) -> None:
    """Rescaled pixels of every frame of `path` into `out` (frames, rows, columns)."""
    frames = _native_frames(path, ds, out.shape)
    if frames is None:  # compressed (or unusual) pixel data: pydicom's decoders
        frames = _decoded_frames(path)
    count = 0
    for n, frame in enumerate(frames):
        if n >= len(planes) or frame.shape != out.shape[1:]:
            count = -1
            break
        _rescale_into(out[n], frame, planes[n].slope, planes[n].intercept)
        count += 1
    if count != len(planes):
        msg = (
            f"{path.name}: pixel data does not decode to NumberOfFrames (0028,0008) "
            f"{len(planes)} x Rows x Columns {out.shape[1:]}; the file is corrupt, re-export it"
        )
        raise IngestError(msg)


def _native_dtype(ds: Dataset) -> np.dtype[Any] | None:
    """The numpy type of uncompressed integer PixelData, None when pydicom must decode it."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if (syntax is not None and syntax not in _NATIVE_SYNTAXES) or "PixelData" not in ds:
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    little = syntax.is_little_endian if syntax is not None else ds.original_encoding[1]
    if bits not in (8, 16, 32) or (bits == 8 and not little):  # 8-bit OW big endian: swapped
        return None
    kind = "i" if int(ds.get("PixelRepresentation", 0) or 0) == 1 else "u"
    return np.dtype(f"{'<' if little else '>'}{kind}{bits // 8}")


def _native_frames(
    path: Path, ds: Dataset, shape: tuple[int, ...]
) -> Iterator[NDArray[Any]] | None:
    """Frames of uncompressed pixel data as stored (what `pixel_array` gives), None if compressed."""
    dtype = _native_dtype(ds)
    if dtype is None:
        return None
    element: Any = ds.get_item(PIXEL_DATA, keep_deferred=True)  # a RawDataElement when deferred
    if element.value is not None:  # small enough to have been read with the header
        values = np.frombuffer(element.value, dtype=dtype, count=int(np.prod(shape)))
        return iter(values.reshape(shape))
    return _frames_in_file(path, int(element.value_tell), dtype, shape)


def _frames_in_file(
    path: Path, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...]
) -> Iterator[NDArray[Any]]:
    """Each frame read from `offset` into one reused buffer (valid until the next frame)."""
    buffer = np.empty(shape[1:], dtype=dtype)
    with path.open("rb") as fp:
        fp.seek(offset)
        for _ in range(shape[0]):
            if fp.readinto(buffer) != buffer.nbytes:  # type: ignore[arg-type]
                return  # truncated: the caller counts the frames
            yield buffer


def _decoded_frames(path: Path) -> Iterator[NDArray[Any]]:
    """Frames decoded by pydicom's pixel handlers (RLE, JPEG, JPEG-LS, JPEG 2000, deflate)."""
    try:
        yield from iter_pixels(path)
    except Exception as exc:  # any decoder failure means the same thing here
        msg = f"{path.name}: pixel data cannot be decoded ({exc}); re-export it uncompressed"
        raise IngestError(msg) from exc


def _rescale_into(
    out: NDArray[np.float32], stored: NDArray[Any], slope: float, intercept: float
) -> None:
    """`out` = stored · slope + intercept, in float32 when that is exact, else via float64."""
    if _exact_in_float32(stored.dtype, slope, intercept):
        if slope == 1:
            out[...] = stored
        else:
            np.multiply(stored, np.float32(slope), out=out, dtype=np.float32)
        if intercept:
            out += np.float32(intercept)
    else:
        out[...] = stored.astype(np.float64) * slope + intercept


def _exact_in_float32(dtype: np.dtype[Any], slope: float, intercept: float) -> bool:
    """True when integer stored values, slope and intercept keep every result below 2**24."""
    if dtype.kind not in "iu" or not (slope.is_integer() and intercept.is_integer()):
        return False
    info = np.iinfo(dtype)
    largest = max(abs(int(info.min)), int(info.max)) * abs(slope) + abs(intercept)
    return bool(largest < 2**24)
