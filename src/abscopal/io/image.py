"""Images and masks from any input the commands accept: a DICOM folder, a DICOM file, NIfTI, NRRD.

NIfTI stores RAS world coordinates; SimpleITK converts them to LPS on reading (it flips the first
two axes of the qform/sform), so `Grid` receives LPS directly: the origin is ITK's origin and the
axes are the columns of ITK's direction matrix, reversed to (slice, row, column) order. NRRD files
declare their space; SimpleITK reads "left-posterior-superior" as is and converts RAS spaces.

Files without a FrameOfReferenceUID (NIfTI, NRRD) receive a pseudo UID derived from the file name
("file:<name>"); a mask without one adopts the image's, since both come from the same world space.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import SimpleITK as sitk  # noqa: N813  (the library's own convention)

from abscopal.errors import IngestError, IngestWarning
from abscopal.geometry import Grid, resample, sitk_image
from abscopal.io.dicom import IMAGE_MODALITIES, index_folder, load_series, read_dataset
from abscopal.io.pet import PetInfo, read_pet_info, suv_bw_factor
from abscopal.model import LesionMask, Volume

if TYPE_CHECKING:
    from abscopal.io.dicom import DicomSeries

logger = logging.getLogger(__name__)

ITK_SUFFIXES: Final = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
SEG_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.481.3"


def is_itk_file(path: Path) -> bool:
    """True for NIfTI, NRRD and MetaImage file names."""
    return path.name.lower().endswith(ITK_SUFFIXES)


def grid_from_sitk(image: Any, *, frame_of_reference_uid: str | None) -> Grid:
    """The LPS `Grid` of a 3D SimpleITK image (array order slice, row, column = z, y, x)."""
    if image.GetDimension() != 3:
        msg = f"expected a 3D image, got {image.GetDimension()}D; pass a volume"
        raise IngestError(msg)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    sx, sy, sz = (float(s) for s in image.GetSpacing())
    nx, ny, nz = (int(n) for n in image.GetSize())
    axes = tuple(tuple(float(v) for v in direction[:, a]) for a in (2, 1, 0))
    try:
        return Grid(
            origin_mm=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
            spacing_mm=(sz, sy, sx),
            axes=axes,  # type: ignore[arg-type]
            shape=(nz, ny, nx),
            frame_of_reference_uid=frame_of_reference_uid,
        )
    except ValueError as exc:
        msg = f"image geometry is invalid ({exc}); fix the header's spacing or direction"
        raise IngestError(msg) from exc


def _read_itk(path: Path) -> Any:  # a sitk.Image; SimpleITK's stubs are partial
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        msg = f"{path}: cannot be read as NIfTI/NRRD ({first}); check the file is complete"
        raise IngestError(msg) from exc


def read_itk_volume(path: Path, *, modality: str = "OT", units: str = "AU") -> Volume:
    """A NIfTI/NRRD/MetaImage file as a float `Volume` in LPS (see the module docstring)."""
    image = _read_itk(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        msg = f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel, expected 1"
        raise IngestError(msg)
    grid = grid_from_sitk(image, frame_of_reference_uid=f"file:{path.name}")
    view = sitk.GetArrayViewFromImage(image)  # converted in one copy, not two
    dtype = view.dtype if np.issubdtype(view.dtype, np.floating) else np.float32
    array = np.array(view, dtype=dtype)
    return Volume(array=array, grid=grid, modality=modality, units=units)


def _image_series(series: list[DicomSeries], where: Path) -> DicomSeries:
    images = [s for s in series if s.modality in IMAGE_MODALITIES]
    if not images:
        found = sorted({s.modality for s in series})
        msg = f"{where}: no CT, MR or PT series (found {found}); pass the image folder"
        raise IngestError(msg)
    if len(images) > 1:
        warnings.warn(
            f"{where}: {len(images)} image series; using {images[0].series_uid} "
            f"({images[0].modality}); pass a single series folder to choose",
            IngestWarning,
            stacklevel=3,
        )
    return images[0]


def find_image_series(path: Path) -> DicomSeries:
    """The DICOM image series at `path`: a folder (its first image series) or one of its files."""
    path = Path(path)
    if path.is_dir():
        return _image_series(index_folder(path), path)
    uid = str(read_dataset(path, stop_before_pixels=True).get("SeriesInstanceUID", ""))
    same = [s for s in index_folder(path.parent) if s.series_uid == uid]
    if not same:
        msg = f"{path}: SeriesInstanceUID (0020,000E) missing or not an image; pass a CT/MR/PT file"
        raise IngestError(msg)
    return _image_series(same, path)


def read_image(path: Path) -> Volume:
    """An image from a DICOM folder, a DICOM file (its whole series) or a NIfTI/NRRD file."""
    path = Path(path)
    if not path.exists():
        msg = f"{path}: no such file or folder; pass an image (DICOM folder, NIfTI or NRRD)"
        raise IngestError(msg)
    if path.is_file() and is_itk_file(path):
        return read_itk_volume(path)
    return load_series(find_image_series(path))


def read_image_and_mask(image: Path, mask: Path, *, label: int = 1) -> tuple[Volume, LesionMask]:
    """An image and one of its masks (see `read_image`, `read_mask`).

    Two NIfTI/NRRD files are decoded at the same time: SimpleITK releases the GIL, and
    decompressing a gzip NRRD is most of the time of a measurement.
    """
    image, mask = Path(image), Path(mask)
    if not (image.is_file() and mask.is_file() and is_itk_file(image) and is_itk_file(mask)):
        volume = read_image(image)
        return volume, read_mask(mask, label=label, reference=volume)
    with ThreadPoolExecutor(max_workers=1) as pool:
        raw_mask = pool.submit(_read_itk, mask)
        volume = read_image(image)
        return volume, _itk_mask(mask, label=label, reference=volume, image=raw_mask.result())


def read_mask(path: Path, *, label: int = 1, reference: Volume | None = None) -> LesionMask:
    """One mask from NIfTI/NRRD (voxels equal to `label`), SEG or RTSTRUCT (the `label`-th item).

    A DICOM SEG gives segment number `label`; an RTSTRUCT its `label`-th ROI with contours,
    rasterized on `reference`.

    A NIfTI/NRRD mask takes the reference image's frame of reference; when its grid differs from
    the reference's, it is resampled onto the reference grid (nearest neighbour, IngestWarning).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: no such file; pass a mask (NIfTI, NRRD, DICOM SEG or RTSTRUCT)"
        raise IngestError(msg)
    if is_itk_file(path):
        return _itk_mask(path, label=label, reference=reference)
    sop = str(read_dataset(path, stop_before_pixels=True).get("SOPClassUID", ""))
    if sop == SEG_SOP_CLASS:
        from abscopal.io.seg import read_seg

        seg = read_seg(
            path,
            reference=None if reference is None else reference.grid,
            series_uid=None if reference is None else reference.series_uid,
        )
        if not 1 <= label <= len(seg.masks):
            msg = f"{path.name}: --label {label} but the SEG holds {len(seg.masks)} segment(s)"
            raise IngestError(msg)
        return seg.masks[label - 1]
    if sop == RTSTRUCT_SOP_CLASS:
        return _rtstruct_mask(path, label=label, reference=reference)
    msg = f"{path.name}: SOPClassUID {sop or 'none'} is neither SEG nor RTSTRUCT; pass a mask"
    raise IngestError(msg)


def _rtstruct_mask(path: Path, *, label: int, reference: Volume | None) -> LesionMask:
    from abscopal.io.rt import rasterize, read_rtstruct

    if reference is None:
        msg = f"{path.name}: an RTSTRUCT needs the image it was drawn on to be rasterized"
        raise IngestError(msg)
    rt = read_rtstruct(path)
    names = [name for name, contours in rt.rois.items() if contours]
    if not 1 <= label <= len(names):
        msg = f"{path.name}: --label {label} but the RTSTRUCT has {len(names)} ROI(s) {names}"
        raise IngestError(msg)
    name = names[label - 1]
    mask = rasterize(
        rt.rois[name], reference.grid, frame_of_reference_uid=rt.frame_of_reference_uid
    )
    return LesionMask(lesion_id=name, mask=mask, grid=reference.grid)


def _itk_mask(path: Path, *, label: int, reference: Volume | None, image: Any = None) -> LesionMask:
    image = _read_itk(path) if image is None else image
    frame = reference.grid.frame_of_reference_uid if reference else f"file:{path.name}"
    grid = grid_from_sitk(image, frame_of_reference_uid=frame)
    mask = sitk.GetArrayFromImage(image) == label
    if not mask.any():
        warnings.warn(f"{path.name}: no voxel has label {label}", IngestWarning, stacklevel=3)
    if reference is not None and not grid.same_geometry(reference.grid, tol_mm=0.01):
        warnings.warn(
            f"{path.name}: the mask's grid differs from the image's; resampled onto the image "
            "grid (nearest neighbour)",
            IngestWarning,
            stacklevel=3,
        )
        onto = reference.grid
        mask = resample(mask, grid, onto, order=0) > 0.5
        grid = onto
    return LesionMask(lesion_id=f"label {label}", mask=mask, grid=grid)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PetImage:
    """A PET in SUVbw (g/mL) with the factor applied and its header facts (None for NIfTI/NRRD)."""

    suv: Volume
    suv_bw_factor: float
    info: PetInfo | None


def read_pet(path: Path) -> PetImage:
    """A PET (DICOM folder or file, NIfTI, NRRD) converted to SUVbw.

    DICOM: the QIBA vendor-neutral SUVbw factor of its headers (`abscopal.io.pet`). NIfTI/NRRD
    carry no PET header: the values are taken as SUVbw already (factor 1, IngestWarning).
    """
    path = Path(path)
    if path.is_file() and is_itk_file(path):
        warnings.warn(
            f"{path.name}: NIfTI/NRRD has no PET header; values are taken as SUVbw (factor 1)",
            IngestWarning,
            stacklevel=2,
        )
        volume = read_itk_volume(path, modality="PT", units="SUVBW")
        return PetImage(suv=volume, suv_bw_factor=1.0, info=None)
    if not path.exists():
        msg = f"{path}: no such file or folder; pass a PET (DICOM folder, NIfTI or NRRD)"
        raise IngestError(msg)
    series = find_image_series(path)
    if series.modality != "PT":
        msg = f"{path}: Modality (0008,0060) is {series.modality!r}, expected 'PT'; pass the PET"
        raise IngestError(msg)
    info = read_pet_info(series.files)
    factor = suv_bw_factor(info)
    volume = load_series(series)
    suv = replace(volume, array=(volume.array * factor).astype(np.float32), units="SUVBW")
    return PetImage(suv=suv, suv_bw_factor=factor, info=info)


def read_y90_activity(path: Path) -> tuple[Volume, str]:
    """Y-90 activity (Bq/mL at administration) from a DICOM PET folder/file or NIfTI/NRRD.

    NIfTI/NRRD carry no timing, so they are taken as already decay-corrected to administration;
    the returned note says which correction was made.
    """
    from abscopal.io.pet import y90_activity_at_admin

    if path.is_file() and is_itk_file(path):
        volume = read_itk_volume(path)
        note = "NIfTI/NRRD taken as Bq/mL decay-corrected to administration"
        return Volume(array=volume.array, grid=volume.grid, modality="PT", units="BQML"), note
    activity, factor = y90_activity_at_admin(find_image_series(path))
    return activity, f"decay-corrected to administration (x{factor:.6f})"


def write_nifti(volume: Volume, out: Path) -> None:
    """Write `volume` as NIfTI/NRRD (by suffix), atomically: staged beside `out`, then renamed."""
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / out.name
        sitk.WriteImage(sitk_image(volume.array, volume.grid), str(staged))
        staged.replace(out)
