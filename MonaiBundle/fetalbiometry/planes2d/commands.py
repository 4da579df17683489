"""What the 2D biometry commands do: ``fetalbiometry measure`` (one standard plane) and
``fetalbiometry hc`` (a folder of HC18 frames to the challenge's submission CSV).

A frame goes through a :class:`~fetalbiometry.planes2d.predictor.PlanePredictor` (network, then
:func:`~fetalbiometry.biometry.measure_plane`). A frame the network cannot measure is not given a
number: its reason (empty mask, cut by the border, implausible shape, out of range) is reported
instead, as in :mod:`fetalbiometry.planes2d.evaluation`.

The report of one plane (:func:`plane_report`) is the JSON object that the Slicer module reads
(``FetalHeadSegLib.results.parse_measurement``, docs/slicer.md): ``plane``; ``hc_mm``, ``ac_mm``
or ``fl_mm``; ``bpd_mm`` and ``ofd_mm`` for a head; ``ellipse`` {cx, cy, a, b, theta} in mm and
radians (HC18 convention, :mod:`fetalbiometry.biometry.ellipse`) or ``femur_endpoints``
[[x1, y1], [x2, y2]] in mm; ``ga_weeks_hadlock`` (Hadlock 1984, from the plane's measurement),
``ga_weeks_intergrowth`` (INTERGROWTH-21st dating, HC only, else null), ``centile``
(INTERGROWTH-21st fetal growth standards at a given GA, else null) and ``pixel_size_mm``. Without a
measurement it is ``{"plane": ..., "no_measurement": reason}``.

Nothing here imports PyTorch: the commands check their input before the network is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from fetalbiometry.biometry.ellipse import Ellipse, ellipse_outline
from fetalbiometry.biometry.growth import INTERGROWTH_GA_RANGE_WEEKS, ga_hadlock, ga_intergrowth_hc, intergrowth_centile
from fetalbiometry.biometry.planes import PlaneMeasurement, measure_plane
from fetalbiometry.biometry.rectangle import Rectangle
from fetalbiometry.errors import FetalBiometryError, InputError, NoMeasurementError
from fetalbiometry.io import array_spacing, atomic_output, check_readable, read_image

if TYPE_CHECKING:
    from fetalbiometry.planes2d.predictor import PlanePredictor

__all__ = [
    "FrameMeasurement",
    "HCBatch",
    "PlaneImage",
    "check_ga_weeks",
    "check_overlay_path",
    "draw_measurement",
    "format_report",
    "measure_frame",
    "measure_hc_folder",
    "overlay_path",
    "plane_report",
    "read_plane_image",
    "write_overlay",
]

CV2_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Frames read with OpenCV as grayscale (16-bit ones by their bit depth, see :func:`_from_bit_depth`);
they store no pixel size."""

MIN_FRAME_SIDE = 4
"""Fewest pixels along either side of a frame that can hold a measurable structure."""

_OVERLAY_COLOR_BGR = (0, 255, 0)
_RECTANGLE_COLOR_BGR = (0, 200, 255)
_SUBPIXEL_BITS = 4  # cv2 drawing with 1/16-pixel coordinates


@dataclass(frozen=True)
class PlaneImage:
    """A standard-plane frame ready for a :class:`~fetalbiometry.planes2d.predictor.PlanePredictor`.

    Args:
        pixels: 2D uint8 array (rows, columns).
        pixel_size_mm: side of a square pixel, mm.
    """

    pixels: np.ndarray
    pixel_size_mm: float


@dataclass(frozen=True)
class FrameMeasurement:
    """What one frame gave: a measurement, or the reason there is none.

    Args:
        plane: the plane the network sees (its classifier) or was told.
        measurement: the measurement, or None.
        no_measurement: why there is no measurement, else None.
    """

    plane: str
    measurement: PlaneMeasurement | None = None
    no_measurement: str | None = None


def _check_pixel_size(pixel_size: float, path: Path) -> float:
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"{path}: pixel size must be a positive number of mm, got {pixel_size}")
    return float(pixel_size)


def _eight_bit(array: np.ndarray) -> np.ndarray:
    """uint8 unchanged; any other type mapped linearly from its [min, max] to [0, 255] (as the
    Slicer module writes a plane, ``FetalHeadSegLib.results.write_slice_png``)."""
    if array.dtype == np.uint8:
        return array
    low, high = float(array.min()), float(array.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((array.astype(np.float64) - low) * scale).astype(np.uint8)


def _from_bit_depth(array: np.ndarray) -> np.ndarray:
    """A 16-bit frame as 8-bit by the bit depth its values use (at least 8 bits): 12-bit data
    (0-4095) stored in a 16-bit PNG gives the same frame as the 8-bit original."""
    if array.dtype != np.uint16:
        return _eight_bit(array)
    bits = max(8, int(array.max()).bit_length()) if array.size else 8
    return np.round(array.astype(np.float64) * (255.0 / ((1 << bits) - 1))).astype(np.uint8)


def _check_frame_size(pixels: np.ndarray, path: Path) -> np.ndarray:
    """``pixels`` unless a side is shorter than :data:`MIN_FRAME_SIDE` (InputError)."""
    if pixels.ndim != 2 or min(pixels.shape) < MIN_FRAME_SIDE:
        raise InputError(
            f"{path} is {'x'.join(map(str, pixels.shape[::-1]))} pixels; a frame needs at least "
            f"{MIN_FRAME_SIDE} pixels a side"
        )
    return pixels


def _read_with_itk(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A 2D image, or a 3D one with a single slice, as a 2D array and its (row, column) spacing."""
    image = read_image(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        components = image.GetNumberOfComponentsPerPixel()
        raise InputError(f"{path} has {components} components per pixel; convert it to grayscale")
    array, spacing = sitk.GetArrayFromImage(image), array_spacing(image)
    if array.ndim == 3:
        in_plane = [axis for axis, size in enumerate(array.shape) if size != 1]
        if len(in_plane) != 2:
            raise InputError(
                f"{path} is a 3D volume of size {image.GetSize()}; measure needs one 2D plane (a single slice)"
            )
        array = array.reshape([array.shape[axis] for axis in in_plane])
        spacing = tuple(spacing[axis] for axis in in_plane)
    return array, spacing


def read_plane_image(path: str | Path, pixel_size: float | None = None) -> PlaneImage:
    """Read a standard-plane frame.

    PNG, JPEG, BMP and TIFF are read by OpenCV as 8-bit grayscale and need ``pixel_size``. Any
    other file :func:`fetalbiometry.io.read_image` reads (NRRD, NIfTI, MetaImage, DICOM) may be 2D
    or a 3D image with a single slice (as 3D Slicer saves a plane); without ``pixel_size`` its
    in-plane spacing is the pixel size, and must then be the same along rows and columns.
    Intensities other than uint8 are mapped linearly from [min, max] to [0, 255].

    Args:
        path: the image file.
        pixel_size: side of a square pixel in mm; overrides the file's spacing.

    Returns:
        the frame and its pixel size.

    Raises:
        InputError: missing or unreadable file, a 3D volume, colour pixels, NaN/Inf values, no or
            non-square pixel size, or a pixel size that is not a positive number.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.suffix.lower() in CV2_IMAGE_SUFFIXES:
        check_readable(path)  # "permission denied", not "cannot read as an image"
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
        if pixels is None:
            raise InputError(f"cannot read {path} as an image")
        if pixel_size is None:
            raise InputError(f"{path}: {path.suffix} files store no pixel size; give it in mm (--pixel-size)")
        pixels = _check_frame_size(_from_bit_depth(pixels), path)
        return PlaneImage(pixels, _check_pixel_size(pixel_size, path))
    array, spacing = _read_with_itk(path)
    if pixel_size is None:
        if not math.isclose(spacing[0], spacing[1], rel_tol=1e-4):
            raise InputError(
                f"{path}: pixels are not square (spacing {spacing[1]:g} x {spacing[0]:g} mm); "
                "give the pixel size (--pixel-size)"
            )
        pixel_size = spacing[0]
    return PlaneImage(_check_frame_size(_eight_bit(array), path), _check_pixel_size(pixel_size, path))


def check_ga_weeks(ga_weeks: float | None) -> None:
    """Raise :class:`InputError` unless ``ga_weeks`` is None or within the INTERGROWTH-21st fetal
    growth standards' 14-40 weeks (the centile is defined there only)."""
    low, high = INTERGROWTH_GA_RANGE_WEEKS
    if ga_weeks is not None and not low <= ga_weeks <= high:
        raise InputError(
            f"gestational age must be within {low:g}-{high:g} weeks for an INTERGROWTH-21st centile, got {ga_weeks}"
        )


def check_overlay_path(path: str | Path) -> None:
    """Raise :class:`InputError` unless ``path`` names a PNG file (overlays are PNG)."""
    if Path(path).suffix.lower() != ".png":
        raise InputError(f"the overlay is a PNG image: give a .png path, not {path}")


def measure_frame(predictor: PlanePredictor, frame: np.ndarray, pixel_size: float) -> FrameMeasurement:
    """Run the network on a frame and measure its plane (Qazi et al., section 2.2).

    As :meth:`PlanePredictor.measure`, but a frame without a trustworthy measurement gives its
    plane and the reason (:class:`~fetalbiometry.errors.NoMeasurementError`'s message) instead of
    raising.

    Raises:
        InputError: bad frame or pixel size, or a regression CNN (no mask to measure).
    """
    prediction = predictor.predict(frame)
    try:
        return FrameMeasurement(prediction.plane, measure_plane(prediction.mask, prediction.plane, pixel_size))
    except NoMeasurementError as error:
        return FrameMeasurement(prediction.plane, no_measurement=str(error))


def _femur_endpoints_mm(rectangle: Rectangle, pixel_size: float) -> list[list[float]]:
    return [[x * pixel_size, y * pixel_size] for x, y in rectangle.endpoints]


def plane_report(result: FrameMeasurement, ga_weeks: float | None = None) -> dict[str, Any]:
    """The JSON object of one plane (keys in the module docstring).

    Args:
        result: what the frame gave (:func:`measure_frame`).
        ga_weeks: gestational age for the INTERGROWTH-21st centile (14-40 weeks), or None.

    Returns:
        the report; ``{"plane", "no_measurement"}`` only when there is no measurement.
    """
    measurement = result.measurement
    if measurement is None:
        return {"plane": result.plane, "no_measurement": result.no_measurement}
    value, pixel_size = measurement.value_mm, measurement.pixel_size_mm
    report: dict[str, Any] = {"plane": measurement.plane, f"{measurement.measure}_mm": value}
    if measurement.plane == "head":
        report.update(bpd_mm=measurement.bpd_mm, ofd_mm=measurement.ofd_mm)
    if measurement.ellipse is not None:
        report["ellipse"] = asdict(measurement.ellipse.to_mm(pixel_size))
    if measurement.rectangle is not None:
        report["femur_endpoints"] = _femur_endpoints_mm(measurement.rectangle, pixel_size)
    report["ga_weeks_hadlock"] = float(ga_hadlock(measurement.measure, value))
    report["ga_weeks_intergrowth"] = float(ga_intergrowth_hc(value)) if measurement.measure == "hc" else None
    report["centile"] = None if ga_weeks is None else float(intergrowth_centile(measurement.measure, value, ga_weeks))
    report["pixel_size_mm"] = pixel_size
    return report


# key -> (label, unit) of the text report, in print order
_TEXT_FIELDS = {
    "plane": ("plane", ""),
    "hc_mm": ("HC", "mm"),
    "ac_mm": ("AC", "mm"),
    "fl_mm": ("FL", "mm"),
    "bpd_mm": ("BPD", "mm"),
    "ofd_mm": ("OFD", "mm"),
    "ga_weeks_hadlock": ("GA (Hadlock)", "weeks"),
    "ga_weeks_intergrowth": ("GA (INTERGROWTH-21st)", "weeks"),
    "centile": ("centile (INTERGROWTH-21st)", ""),
    "pixel_size_mm": ("pixel size", "mm"),
}


def format_report(report: Mapping[str, Any]) -> str:
    """The report of :func:`plane_report` as text lines (``no measurement: reason`` if none)."""
    if "no_measurement" in report:
        return f"no measurement: {report['no_measurement']}"
    lines = []
    for key, (label, unit) in _TEXT_FIELDS.items():
        value = report.get(key)
        if value is not None:
            text = value if isinstance(value, str) else f"{value:.2f} {unit}".rstrip()
            lines.append(f"{label}: {text}")
    if "ellipse" in report:
        ellipse = report["ellipse"]
        lines.append(
            "ellipse (mm, HC18 convention): "
            + ", ".join(f"{key}={ellipse[key]:.3f}" for key in ("cx", "cy", "a", "b"))
            + f", theta={ellipse['theta']:.4f} rad"
        )
    if "femur_endpoints" in report:
        (x1, y1), (x2, y2) = report["femur_endpoints"]
        lines.append(f"femur endpoints (mm): ({x1:.3f}, {y1:.3f}) - ({x2:.3f}, {y2:.3f})")
    return "\n".join(lines)


def _subpixel(points_xy: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points_xy) * (1 << _SUBPIXEL_BITS)).astype(np.int32)


def draw_measurement(frame: np.ndarray, measurement: PlaneMeasurement) -> np.ndarray:
    """The frame in colour with the measurement drawn on it.

    Head and abdomen: the fitted ellipse. Femur: the minimum-area rectangle and its long axis
    (the femur length, between :attr:`Rectangle.endpoints`).

    Args:
        frame: 2D uint8 array (rows, columns).
        measurement: a measurement of that frame (pixel coordinates).

    Returns:
        BGR uint8 image (rows, columns, 3).
    """
    image = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_GRAY2BGR)
    thickness = max(1, round(min(frame.shape) / 270))
    style = {"thickness": thickness, "lineType": cv2.LINE_AA, "shift": _SUBPIXEL_BITS}
    if measurement.ellipse is not None:
        outline = ellipse_outline(measurement.ellipse, 360)
        cv2.polylines(image, [_subpixel(outline)], True, _OVERLAY_COLOR_BGR, **style)
    if measurement.rectangle is not None:
        corners = _subpixel(measurement.rectangle.corners)
        cv2.polylines(image, [corners], True, _RECTANGLE_COLOR_BGR, **style)
        start, end = (tuple(int(v) for v in _subpixel(point)) for point in measurement.rectangle.endpoints)
        cv2.line(image, start, end, _OVERLAY_COLOR_BGR, **style)
    return image


def write_overlay(path: str | Path, frame: np.ndarray, measurement: PlaneMeasurement) -> Path:
    """Write :func:`draw_measurement` of the frame as a PNG, atomically.

    Raises:
        InputError: ``path`` is not a .png path.
    """
    path = Path(path)
    check_overlay_path(path)
    encoded, png = cv2.imencode(".png", draw_measurement(frame, measurement))
    if not encoded:
        raise InputError(f"cannot encode the overlay {path} as PNG")
    with atomic_output(path) as temporary:
        temporary.write_bytes(png.tobytes())
    return path


def overlay_path(overlays_dir: str | Path, image_name: str) -> Path:
    """Where ``fetalbiometry hc --overlays DIR`` draws an image: ``DIR/<stem>_overlay.png``."""
    return Path(overlays_dir) / f"{Path(image_name).stem}_overlay.png"


@dataclass
class HCBatch:
    """The outcome of :func:`measure_hc_folder`, in CSV order.

    Args:
        ellipses_mm: filename → fitted head ellipse in mm (HC18 submission convention), or None.
        no_measurement: filename → why the frame has no measurement.
        errors: filename → why the frame could not be processed (missing, unreadable).
    """

    ellipses_mm: dict[str, Ellipse | None] = field(default_factory=dict)
    no_measurement: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def measured(self) -> int:
        """Number of frames with an ellipse."""
        return sum(ellipse is not None for ellipse in self.ellipses_mm.values())

    @property
    def exit_code(self) -> int:
        """0 when every frame was processed (measured or honestly not), 1 when some could not be read."""
        return 1 if self.errors else 0

    def problem_lines(self) -> list[str]:
        """One line per frame without an ellipse: ``NAME: no measurement: reason`` or ``NAME: error: ...``."""
        lines = []
        for name in self.ellipses_mm:
            if name in self.no_measurement:
                lines.append(f"{name}: no measurement: {self.no_measurement[name]}")
            elif name in self.errors:
                lines.append(f"{name}: error: {self.errors[name]}")
        return lines

    def summary(self) -> str:
        """``N images, M measured, K without a measurement`` (and the unreadable ones, if any)."""
        text = (
            f"{len(self.ellipses_mm)} images, {self.measured} measured, "
            f"{len(self.no_measurement)} without a measurement"
        )
        return text + (f", {len(self.errors)} could not be read" if self.errors else "")


def measure_hc_folder(
    predictor: PlanePredictor,
    images_dir: str | Path,
    pixel_sizes: Mapping[str, float],
    overlays_dir: str | Path | None = None,
    progress: bool | None = None,
) -> HCBatch:
    """Fit the head ellipse of every frame of an HC18-style folder, one frame after the other.

    A frame that fails does not stop the batch: a frame without a trustworthy measurement, or
    that the network classifies as another plane than a head, goes to ``no_measurement``; a
    missing or unreadable one to ``errors``.

    Args:
        predictor: the 2D network.
        images_dir: folder of the frames.
        pixel_sizes: filename → pixel size in mm (:func:`fetalbiometry.data.hc18.read_pixel_sizes`).
        overlays_dir: if given, a PNG per measured frame with its ellipse (:func:`overlay_path`).
        progress: show a tqdm bar on stderr; None shows it on a terminal only.

    Returns:
        the :class:`HCBatch`.

    Raises:
        InputError: an overlay would overwrite one of the input frames.
    """
    images_dir = Path(images_dir)
    inputs = {(images_dir / name).resolve() for name in pixel_sizes}
    if overlays_dir is not None:
        clash = next((name for name in pixel_sizes if overlay_path(overlays_dir, name).resolve() in inputs), None)
        if clash is not None:
            raise InputError(f"the overlay of {clash} would overwrite the input {overlay_path(overlays_dir, clash)}")
    batch = HCBatch()
    disable = None if progress is None else not progress
    for name, pixel_size in tqdm(pixel_sizes.items(), desc="hc", unit="image", disable=disable):
        batch.ellipses_mm[name] = None
        try:
            frame = read_plane_image(images_dir / name, pixel_size)
            result = measure_frame(predictor, frame.pixels, frame.pixel_size_mm)
        except FetalBiometryError as error:
            batch.errors[name] = str(error)
            continue
        except Exception as error:  # one bad frame never stops the batch: record it and go on
            batch.errors[name] = " ".join(f"{type(error).__name__}: {error}".split())
            continue
        if result.measurement is None:
            batch.no_measurement[name] = str(result.no_measurement)
        elif result.plane != "head":
            batch.no_measurement[name] = f"the network sees a {result.plane} plane, not a head"
        else:
            batch.ellipses_mm[name] = result.measurement.ellipse.to_mm(pixel_size)
            if overlays_dir is not None:
                write_overlay(overlay_path(overlays_dir, name), frame.pixels, result.measurement)
    return batch
