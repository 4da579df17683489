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
import zlib
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
    check_readable(path)
    if fmt == "NIfTI":
        check_nifti_data_complete(path)
    elif fmt in ("MetaImage", "NRRD"):
        check_itk_data_complete(path, fmt)
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
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as error:  # read-only folder, a file in the way, a full disk: say so in one line
        raise InputError(f"cannot write {path}: {(error.strerror or str(error)).lower()}") from None
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
    truncated = [line for line in lines if "not read completely" in line or "fread got only" in line]
    received = re.search(r"expected (\d+) bytes but received (\d+)", " ".join(lines))
    if received:
        return f"truncated voxel data (expected {received[1]} bytes, received {received[2]})"
    if truncated:  # ITK's MetaImage reader reports the errno of an earlier call ("No such file...")
        detail = " ".join(" ".join(lines[lines.index(truncated[0]) :]).split()[:12])
        return f"truncated voxel data ({re.sub(r'^.*?: ', '', detail)})"
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
    names = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    _refuse_files_outside_series(folder, names)
    reader.SetFileNames(names)
    image = reader.Execute()
    direction = np.reshape(image.GetDirection(), (3, 3))
    planar = np.allclose(direction[2], (0, 0, 1), atol=1e-9) and np.allclose(direction[:2, 2], 0, atol=1e-9)
    if image.GetSize()[2] == 1 and planar and abs(image.GetOrigin()[2]) < 1e-9:
        image = image[:, :, 0]  # a 2D image written by write_image
    return image


def _refuse_files_outside_series(folder: Path, names: Sequence[str]) -> None:
    """Refuse a series folder holding a file that GDCM left out of the series (a truncated or
    corrupt slice is skipped without a word, and the volume would lose a slice)."""
    members = {Path(name).resolve() for name in names}
    for path in sorted(folder.iterdir()):
        hidden_or_index = path.name.startswith(".") or path.name.upper() == "DICOMDIR"
        if path.is_file() and not hidden_or_index and path.resolve() not in members:
            raise InputError(
                f"{folder}: {path.name} is not a readable slice of its DICOM series (truncated or corrupt?); "
                f"the series would be read with {len(members)} slices"
            )


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


# --- reads that cannot lie: complete voxel data, sane headers (issue 26) ---------------------

MAX_VOXELS = 1 << 30
"""Largest number of voxel values (voxels x components) an image may claim: 1024³, far beyond a
fetal ultrasound volume. A header claiming more is refused before any memory is allocated."""

#: Most a zlib/gzip stream can shrink data (deflate's limit is about 1032:1): compressed voxel
#: data shorter than expected / this cannot be complete.
_MAX_DEFLATE_RATIO = 1100
_HEADER_PROBE_BYTES = 1 << 16


def _data_bytes_claimed(path: Path, fmt: str) -> tuple[tuple[int, ...], int]:
    """(size, bytes of voxel data) that the header of an ITK-read file announces, read without the data."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO(_format_of(path)[1])
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(f"cannot read {path} as {fmt}: {_itk_reason(error)}") from None
    size = tuple(int(n) for n in reader.GetSize())
    components = int(reader.GetNumberOfComponents())
    _refuse_absurd_size(path, size, components)
    item = sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID())).itemsize
    return size, int(np.prod(size, dtype=np.int64)) * item  # a vector pixel type's itemsize covers one value


def _refuse_absurd_size(path: Path, size: Sequence[int], components: int = 1) -> None:
    """InputError when a header claims no voxels or more than :data:`MAX_VOXELS` values."""
    values = int(np.prod([int(n) for n in size], dtype=np.int64)) * max(1, components)
    shape = "x".join(str(int(n)) for n in size)
    if values == 0:
        raise InputError(f"{path}: its header claims an empty image ({shape})")
    if values > MAX_VOXELS:
        raise InputError(
            f"{path}: its header claims {shape} voxels ({values:,} values), more than the {MAX_VOXELS:,} "
            "accepted; refusing it before allocating memory"
        )


def _header_fields(path: Path, fmt: str) -> dict[str, str]:
    """The ``key = value`` (MetaImage) or ``key: value`` (NRRD) fields of a header, lower-case keys."""
    with open(path, "rb") as stream:
        text = stream.read(_HEADER_PROBE_BYTES).decode("latin-1")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if fmt == "NRRD" and not line.strip():
            break  # a blank line ends a NRRD header
        key, separator, value = line.partition("=" if fmt == "MetaImage" else ":")
        if separator and not key.startswith("#"):
            fields.setdefault(key.strip().lower(), value.strip().lstrip("="))
        if fmt == "MetaImage" and key.strip().lower() == "elementdatafile":
            break  # the last header line of a MetaImage
    return fields


def image_files(path: PathLike) -> list[Path]:
    """Every file an image consists of: the file itself, a detached data file (``.mhd``, NRRD
    ``data file``), or the files of a DICOM series folder (the folder first).

    Used to check completeness and to never write over any part of an input.
    """
    path = Path(path)
    if path.is_dir():
        return [path, *sorted(p for p in path.rglob("*") if p.is_file())]
    files = [path]
    name = path.name.lower()
    fmt = "MetaImage" if name.endswith((".mha", ".mhd")) else "NRRD" if name.endswith(".nrrd") else None
    if fmt is not None and path.is_file():
        try:
            fields = _header_fields(path, fmt)
        except OSError:
            return files
        detached = fields.get("elementdatafile" if fmt == "MetaImage" else "data file") or fields.get("datafile")
        if detached and detached.upper() not in ("LOCAL", "LIST") and " " not in detached and "%" not in detached:
            files.append(path.parent / detached)
    return files


def _compressed(fields: dict[str, str], fmt: str) -> str | None:
    """'deflate', 'other' (bzip2) or None (raw) for a MetaImage or NRRD header."""
    if fmt == "MetaImage":
        return "deflate" if fields.get("compresseddata", "false").lower() == "true" else None
    encoding = fields.get("encoding", "raw").lower()
    if encoding in ("raw", "ascii", "text", "txt"):
        return None
    return "deflate" if encoding in ("gzip", "gz") else "other"


def check_itk_data_complete(path: Path, fmt: str) -> None:
    """Refuse a MetaImage or NRRD file whose header announces more voxel data than it can hold.

    The header's size and type give the bytes of voxel data; raw data must be at least that
    long, and deflate-compressed data at least 1/1100 of it. Reads the header only, so an absurd
    header is refused before ITK allocates its image.
    """
    size, expected = _data_bytes_claimed(path, fmt)
    fields = _header_fields(path, fmt)
    files = image_files(path)
    missing = [f for f in files[1:] if not f.is_file()]
    if missing:
        raise InputError(f"{path}: its data file {missing[0]} is missing")
    compression = _compressed(fields, fmt)
    if fields.get("encoding", "raw").lower() in ("ascii", "text", "txt") or compression == "other":
        return  # text data or bzip2: no bound from the file size; ITK's own read checks them
    available = sum(f.stat().st_size for f in files) if len(files) == 1 else sum(f.stat().st_size for f in files[1:])
    bound = available * (_MAX_DEFLATE_RATIO if compression else 1)
    if bound < expected:
        _refuse_truncated(path, size, expected, available)
    compressed_size = fields.get("compresseddatasize", "")
    if fmt == "MetaImage" and compression and compressed_size.isdigit():
        # ITK would print its complaint on stderr and then report "Reason: Success": check first
        held = available - _metaimage_header_length(path) if len(files) == 1 else available
        if held < int(compressed_size):
            raise InputError(
                f"{path} is truncated: its header announces {int(compressed_size):,} bytes of compressed "
                f"voxel data but the file holds {max(0, held):,}"
            )


def _metaimage_header_length(path: Path) -> int:
    """Bytes of a ``.mha`` header: up to the end of its ``ElementDataFile`` line."""
    with open(path, "rb") as stream:
        head = stream.read(_HEADER_PROBE_BYTES)
    match = re.search(rb"ElementDataFile\s*=\s*LOCAL[^\n]*\n", head, flags=re.IGNORECASE)
    return match.end() if match else 0


def _refuse_truncated(path: Path, size: Sequence[int], expected: int, available: int) -> None:
    shape = "x".join(str(int(n)) for n in size)
    raise InputError(
        f"{path} is truncated: its header announces {shape} voxels ({expected:,} bytes of data) but the "
        f"file holds {available:,} bytes"
    )


def check_nifti_data_complete(path: Path) -> None:
    """Refuse a NIfTI file whose voxel data is shorter than its header says, for any data type.

    ITK reads a truncated ``.nii`` or ``.nii.gz`` of integer type without a word (the missing
    voxels become 0). nibabel reads the header; the data is counted through nibabel's opener,
    streaming a ``.nii.gz`` without holding it, so an absurd header allocates nothing.
    """
    import nibabel  # only for NIfTI
    from nibabel.openers import ImageOpener

    try:
        header = nibabel.load(str(path)).header
    except Exception as error:  # nibabel raises several types for a file that is not NIfTI
        raise InputError(f"cannot read {path} as NIfTI: {_first_line(error)}") from None
    shape = header.get_data_shape()
    _refuse_absurd_size(path, shape)
    expected = int(np.prod(shape, dtype=np.int64)) * header.get_data_dtype().itemsize
    offset = int(header.get_data_offset())
    try:
        with ImageOpener(str(path), "rb") as stream:
            total = 0
            while chunk := stream.read(1 << 22):
                total += len(chunk)
                if total >= offset + expected:
                    break
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(f"{path} is truncated or corrupt: {_first_line(error)}") from None
    if total < offset + expected:
        _refuse_truncated(path, shape, expected, max(0, total - offset))


def _first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_readable(path: Path) -> None:
    """Refuse, with the true reason, an input that exists but cannot be opened (permission denied)."""
    for part in image_files(path) if path.exists() else [path]:
        if part.is_dir():
            if not os.access(part, os.R_OK | os.X_OK):
                raise InputError(f"cannot read {part}: permission denied")
            continue
        try:
            with open(part, "rb"):
                pass
        except FileNotFoundError:
            raise InputError(f"cannot read {path}: its file {part} is missing") from None
        except OSError as error:
            raise InputError(f"cannot read {part}: {(error.strerror or str(error)).lower()}") from None


# --- outputs never over inputs; honest early write checks -----------------------------------


def output_files(path: PathLike) -> list[Path]:
    """Every path writing ``path`` may create or replace: the file, its ``.mhd`` data file, or
    the folder of a DICOM series (a path without suffix)."""
    path = Path(path)
    files = [path]
    if path.name.lower().endswith(".mhd"):
        files += [path.with_suffix(".raw"), path.with_suffix(".zraw")]
    return files


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def refuse_overwriting(outputs: Collection[PathLike], inputs: Collection[PathLike]) -> None:
    """Refuse outputs that would write over, or replace a folder holding, any part of an input.

    Args:
        outputs: files (or DICOM folders) a command writes; their companions count too.
        inputs: every input: images (with their data files and series folders), CSVs, models.

    Raises:
        InputError: naming the output and the input it would destroy.
    """
    parts = {part.resolve(): Path(source) for source in inputs for part in image_files(source)}
    for output in outputs:
        for target in output_files(output):
            resolved = target.resolve()
            for part, source in parts.items():
                if resolved == part:
                    what = "is the input" if part == source.resolve() else f"is {part.name}, part of the input"
                elif resolved.is_dir() and _inside(part, resolved):
                    what = "is a folder holding the input"  # writing a series there replaces the folder
                else:
                    continue
                raise InputError(f"output {target} {what} {source}; choose another output path")


def refuse_replacing_folder(path: PathLike, overwrite: bool) -> None:
    """Refuse to replace an existing, non-empty folder (an output DICOM series) unless ``overwrite``."""
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"output {path} is an existing folder holding files; give --overwrite to replace it")
    if path.exists() and not path.is_dir() and not path.suffix:
        raise InputError(f"output {path} is an existing file; a path without suffix is a DICOM series folder")


def check_writable(path: PathLike) -> None:
    """Refuse, before any work, an output whose folder cannot be created or written."""
    path = Path(path)
    folder = path.parent if path.parent != Path("") else Path(".")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):  # outputs are renamed into place: the folder decides
        raise InputError(f"cannot write {path}: permission denied in {existing}")


def check_output_suffix(path: PathLike) -> None:
    """Refuse an output image path of an unsupported type, before any work (none: a DICOM folder)."""
    path = Path(path)
    if path.suffix and not path.is_dir():
        _format_of(path)
