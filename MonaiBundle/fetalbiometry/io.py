"""Images in and out, with their geometry kept.

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.seg.nrrd``), MetaImage (``.mha``,
``.mhd``), a DICOM series folder, and 2D grayscale PNG (whose pixel size the caller supplies).
Images are ``SimpleITK.Image``: sizes, spacings and origins are in ITK order (x, y, z), while
``sitk.GetArrayFromImage`` gives arrays in (z, y, x) order; :func:`array_spacing` bridges the
two. Every file is written through :func:`atomic_output`, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from fetalbiometry.errors import GeometryMismatchError, InputError

PathLike = str | os.PathLike

# file-name suffix -> (format name, ITK ImageIO); longest suffixes first so ".nii.gz" wins over ".gz"
_FORMATS: dict[str, tuple[str, str]] = {
    ".nii.gz": ("NIfTI", "NiftiImageIO"),
    ".nii": ("NIfTI", "NiftiImageIO"),
    ".seg.nrrd": ("NRRD", "NrrdImageIO"),
    ".nrrd": ("NRRD", "NrrdImageIO"),
    ".mha": ("MetaImage", "MetaImageIO"),
    ".mhd": ("MetaImage", "MetaImageIO"),
    ".png": ("PNG", "PNGImageIO"),
}
_PNG_TYPES = (np.uint8, np.uint16)
_DICOM = ("DICOM", "GDCMImageIO")  # a folder holding one series
_DICOM_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)
_DICOM_DS_LENGTH = 16  # a DICOM decimal string (DS) holds at most 16 characters


@dataclass(frozen=True)
class Geometry:
    """The grid of an image, in ITK order (x, y, z); ``direction`` is row-major, as in SimpleITK."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def from_image(cls, image: sitk.Image) -> Geometry:
        """Read the grid of ``image``."""
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def describe(self) -> str:
        """One line: size, spacing and origin (mm, 6 significant digits) and direction (4 decimals)."""

        def numbers(values: Sequence[float], decimals: int) -> str:
            return ", ".join(f"{round(v, decimals) + 0.0:.6g}" for v in values)  # + 0.0 drops "-0"

        return (
            f"size {'x'.join(map(str, self.size))}, spacing ({numbers(self.spacing, 6)}) mm, "
            f"origin ({numbers(self.origin, 6)}) mm, direction ({numbers(self.direction, 4)})"
        )

    def differences(self, other: Geometry, atol: float = 1e-4) -> list[str]:
        """Names of the properties (size, spacing, origin, direction) that differ by more than ``atol``."""
        differ = [] if self.size == other.size else ["size"]
        for name in ("spacing", "origin", "direction"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if len(mine) != len(theirs) or not np.allclose(mine, theirs, rtol=0.0, atol=atol):
                differ.append(name)
        return differ

    def matches(self, other: Geometry, atol: float = 1e-4) -> bool:
        """Whether ``other`` is the same grid, within ``atol`` (mm for spacing and origin)."""
        return not self.differences(other, atol)


def array_spacing(image: sitk.Image) -> tuple[float, ...]:
    """Spacing in numpy array axis order (z, y, x), i.e. SimpleITK's (x, y, z) spacing reversed."""
    return tuple(reversed(image.GetSpacing()))


def check_same_grid(a: sitk.Image, b: sitk.Image, names: tuple[str, str] = ("a", "b"), atol: float = 1e-4) -> None:
    """Raise :class:`GeometryMismatchError` naming both grids and what differs, unless they match."""
    first, second = Geometry.from_image(a), Geometry.from_image(b)
    differ = first.differences(second, atol)
    if differ:
        raise GeometryMismatchError(
            f"{names[0]} and {names[1]} are not on the same grid ({', '.join(differ)} differ"
            f" by more than {atol:g}): {names[0]}: {first.describe()}; {names[1]}: {second.describe()}"
        )


def check_finite(image: sitk.Image, name: str = "image") -> None:
    """Raise :class:`InputError` if ``image`` holds NaN or infinite values."""
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.inexact):
        count = int(np.count_nonzero(~np.isfinite(array)))
        if count:
            raise InputError(f"{name} holds {count} NaN or infinite value(s)")


def check_dimension(image: sitk.Image, dims: Collection[int], name: str = "image") -> None:
    """Raise :class:`InputError` unless ``image`` has one of the dimensionalities ``dims``, e.g. ``(3,)``."""
    if image.GetDimension() not in dims:
        expected = " or ".join(f"{d}D" for d in sorted(dims))
        raise InputError(f"{name} is a {image.GetDimension()}D image; expected {expected}")


def label_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Put a label array on the grid of ``reference``.

    Args:
        array: labels in numpy order, (z, y, x) or (y, x); booleans become uint8.
        reference: the image whose size, spacing, origin and direction the label takes.

    Returns:
        The label image. Raises :class:`GeometryMismatchError` if the shape does not fit the grid.
    """
    array = np.asarray(array)
    expected = tuple(reversed(reference.GetSize()))
    if array.shape != expected:
        raise GeometryMismatchError(
            f"label array of shape {array.shape} does not fit the reference grid of array shape "
            f"{expected} ({Geometry.from_image(reference).describe()})"
        )
    label = sitk.GetImageFromArray(array.astype(np.uint8) if array.dtype == bool else array, isVector=False)
    label.CopyInformation(reference)
    return label


def read_image(path: PathLike, pixel_size: float | Sequence[float] | None = None) -> sitk.Image:
    """Read a 2D or 3D image and check that its values are finite.

    Args:
        path: a NIfTI, NRRD, MetaImage or PNG file, or a folder holding one DICOM series. A series
            of one slice in the z = 0 plane (as :func:`write_image` writes a 2D image) reads as 2D.
        pixel_size: PNG only, which stores no geometry: the pixel size in mm, one number or (x, y).
            PNG colour is converted to grayscale (ITU-R BT.601 luma, via OpenCV); alpha is dropped.

    Returns:
        The image. Raises :class:`InputError` (one line naming the file) if the file is missing,
        corrupt, of an unsupported type, not 2D/3D, or holds NaN/Inf values.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    fmt, image_io = _DICOM if path.is_dir() else _format_of(path)
    if pixel_size is not None and fmt != "PNG":
        raise InputError(f"{path}: pixel_size applies to PNG only; {fmt} stores its own spacing")
    try:
        image = _read_dicom_series(path) if fmt == "DICOM" else sitk.ReadImage(str(path), imageIO=image_io)
    except RuntimeError as error:
        raise InputError(f"cannot read {path} as {fmt}: {_itk_reason(error)}") from None
    if fmt == "PNG":
        image = _png_grayscale(image, path, pixel_size)
    check_dimension(image, (2, 3), name=str(path))
    check_finite(image, name=str(path))
    if fmt == "NIfTI":
        _check_nifti_finite(path)
    return image


def _check_nifti_finite(path: Path) -> None:
    """Look for NaN/Inf in a NIfTI file's own voxels, with nibabel.

    ITK's NIfTI reader (up to ITK 5.4, so SimpleITK 2.5) silently replaces every NaN and
    +/-Inf voxel with 0 (fixed in ITK PR #6683), so :func:`check_finite` cannot see them after
    ``sitk.ReadImage``; nibabel reads the stored values as they are.
    """
    import nibabel  # only for NIfTI

    header = nibabel.load(str(path))
    if np.issubdtype(header.get_data_dtype(), np.inexact):
        count = int(np.count_nonzero(~np.isfinite(np.asanyarray(header.dataobj))))
        if count:
            raise InputError(f"{path} holds {count} NaN or infinite value(s)")


def write_image(image: sitk.Image, path: PathLike) -> Path:
    """Write ``image`` atomically, in the format its suffix names; a path without suffix is a DICOM folder.

    DICOM holds integer pixels (narrowed to the smallest fitting type where needed, e.g. int64 labels);
    PNG holds a 2D uint8/uint16 image and no origin or direction. Spacing, origin and direction survive
    the other formats to their precision: NIfTI stores float32, DICOM 16-character decimal strings.

    Returns:
        ``path``. Raises :class:`InputError` for an unsupported suffix or an image the format cannot hold.
    """
    path = Path(path)
    check_dimension(image, (2, 3), name=f"image for {path}")
    dicom = path.is_dir() or not path.suffix
    fmt, image_io = _DICOM if dicom else _format_of(path)
    try:
        if dicom:
            _write_dicom_series(image, path)
        else:
            _write_file(image, path, fmt, image_io)
    except RuntimeError as error:
        raise InputError(f"cannot write {path} as {fmt}: {_itk_reason(error)}") from None
    return path


def write_label(array: np.ndarray, reference: sitk.Image, path: PathLike) -> Path:
    """Write a label array (numpy order) on the grid of ``reference``; see :func:`label_like`."""
    return write_image(label_like(array, reference), path)


@contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; it replaces ``path`` only on success.

    The temporary path has the same name, inside a hidden folder beside ``path`` (same file system, so
    the final move is an atomic ``os.replace``). Writers that choose a format by suffix (``.nii.gz``,
    ``.seg.nrrd``) therefore choose the same one, and companion files (the ``.raw`` of a ``.mhd``) move
    too, before the main file. The writer may create a file or a folder (a folder replaces a folder).
    On any exception, KeyboardInterrupt included, the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        temporary = staging / path.name
        yield temporary
        for companion in staging.iterdir():
            if companion != temporary:
                os.replace(companion, path.parent / companion.name)
        if temporary.is_dir() and path.is_dir():  # a directory cannot replace a non-empty one: swap
            previous = staging / ".previous"
            os.rename(path, previous)
            try:
                os.rename(temporary, path)
            except BaseException:
                os.rename(previous, path)
                raise
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _format_of(path: Path) -> tuple[str, str]:
    """(format name, ITK ImageIO) for the suffix of ``path``; InputError if unsupported."""
    name = path.name.lower()
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    supported = ", ".join(_FORMATS)
    raise InputError(f"unsupported image type for {path}; expected a DICOM folder or one of {supported}")


def _write_file(image: sitk.Image, path: Path, fmt: str, image_io: str) -> None:
    """Write one file (plus its companion, for ``.mhd``) with the ImageIO its suffix names."""
    if fmt == "PNG":
        check_dimension(image, (2,), name=f"image for {path}")
        image = _integer_pixels(image, _PNG_TYPES, fmt, path)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO(image_io)
    writer.UseCompressionOn()  # gzip inside NRRD/MetaImage; NIfTI follows the ".gz" suffix
    with atomic_output(path) as temporary:
        writer.SetFileName(str(temporary))
        writer.Execute(image)


def _itk_reason(error: RuntimeError) -> str:
    """The message of an ITK exception on one line, without the source location and object address."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = " ".join(lines[1:] or lines)
    return re.sub(r"^.*?ERROR: \w+\(0x[0-9a-fA-F]+\):\s*", "", reason)


def _png_grayscale(image: sitk.Image, path: Path, pixel_size: float | Sequence[float] | None) -> sitk.Image:
    """A PNG as a grayscale image whose spacing is ``pixel_size`` (x, y) in mm."""
    spacing = np.asarray(pixel_size if pixel_size is not None else np.nan, dtype=float).ravel()
    spacing = np.repeat(spacing, 2) if spacing.size == 1 else spacing
    if spacing.size != 2 or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise InputError(f"{path}: PNG stores no pixel size; give pixel_size > 0 in mm (got {pixel_size})")
    channels = image.GetNumberOfComponentsPerPixel()
    if channels > 1:
        array = sitk.GetArrayFromImage(image)
        gray = cv2.cvtColor(array, cv2.COLOR_RGB2GRAY) if channels in (3, 4) else array[..., 0]
        image = sitk.GetImageFromArray(np.ascontiguousarray(gray))
    image.SetSpacing(spacing.tolist())
    return image


def _integer_pixels(image: sitk.Image, allowed: Sequence[type], fmt: str, path: Path) -> sitk.Image:
    """``image`` if its pixel type is ``allowed``, else cast to the first allowed type holding its values."""
    array = sitk.GetArrayViewFromImage(image)
    if image.GetNumberOfComponentsPerPixel() != 1 or not np.issubdtype(array.dtype, np.integer):
        pixel_type = image.GetPixelIDTypeAsString()
        raise InputError(f"cannot write {path}: {fmt} holds scalar integer pixels, not {pixel_type}")
    if array.dtype in allowed:
        return image
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    for dtype in allowed:
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            cast = sitk.GetImageFromArray(array.astype(dtype))
            cast.CopyInformation(image)
            return cast
    raise InputError(f"cannot write {path}: values {low}..{high} do not fit the integer types {fmt} holds")


def _read_dicom_series(folder: Path) -> sitk.Image:
    """The one DICOM series in ``folder``, geometry from ImagePositionPatient/ImageOrientationPatient."""
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series; expected exactly one")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    image = reader.Execute()
    direction = np.reshape(image.GetDirection(), (3, 3))
    planar = np.allclose(direction[2], (0, 0, 1), atol=1e-9) and np.allclose(direction[:2, 2], 0, atol=1e-9)
    if image.GetSize()[2] == 1 and planar and abs(image.GetOrigin()[2]) < 1e-9:
        image = image[:, :, 0]  # a 2D image written by write_image
    return image


def _decimal_string(value: float) -> str:
    """``value`` as a DICOM decimal string, with as many significant digits as fit in 16 characters."""
    texts = (f"{value:.{digits}g}" for digits in range(_DICOM_DS_LENGTH, 0, -1))
    return next(text for text in texts if len(text) <= _DICOM_DS_LENGTH)


def _write_dicom_series(image: sitk.Image, folder: Path) -> None:
    """Write one file per slice, with the geometry tags of SimpleITK's "DICOM Series From Array" example.

    Each slice carries ImagePositionPatient (0020|0032), the series ImageOrientationPatient (0020|0037),
    PixelSpacing (0028|0030, row then column spacing) and SliceThickness (0018|0050), so the series reads
    back on the same grid. A 2D image becomes a single slice in the z = 0 plane.
    """
    replaceable = folder.is_dir() and all(p.is_file() and p.suffix.lower() == ".dcm" for p in folder.iterdir())
    if folder.exists() and not replaceable:
        raise InputError(f"cannot write a DICOM series to {folder}: it exists and is not a folder of .dcm files")
    volume = _integer_pixels(image, _DICOM_TYPES, "DICOM", folder)
    if volume.GetDimension() == 2:
        volume = sitk.JoinSeries(volume)
    d, spacing = volume.GetDirection(), volume.GetSpacing()
    series_tags = {
        "0008|0060": "OT",  # modality: other
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|103e": "fetalbiometry",
        "0020|000d": f"2.25.{uuid.uuid4().int}",  # study and series UIDs derived from UUIDs (PS3.5 B.2)
        "0020|000e": f"2.25.{uuid.uuid4().int}",
        "0020|0037": "\\".join(map(_decimal_string, (d[0], d[3], d[6], d[1], d[4], d[7]))),
        "0028|0030": f"{_decimal_string(spacing[1])}\\{_decimal_string(spacing[0])}",
        "0018|0050": _decimal_string(spacing[2]),
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # use the UIDs above rather than new ones per file
    with atomic_output(folder) as temporary:
        temporary.mkdir()
        for k in range(volume.GetSize()[2]):
            slice_k = volume[:, :, k]
            position = volume.TransformIndexToPhysicalPoint((0, 0, k))
            tags = {**series_tags, "0020|0032": "\\".join(map(_decimal_string, position)), "0020|0013": str(k + 1)}
            for tag, value in tags.items():
                slice_k.SetMetaData(tag, value)
            writer.SetFileName(str(temporary / f"slice_{k:04d}.dcm"))
            writer.Execute(slice_k)
