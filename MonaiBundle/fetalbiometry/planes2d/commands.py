"""What the 2D biometry commands do: ``fetalbiometry measure`` (one standard plane) and
``fetalbiometry hc`` (a folder of HC18 frames to the challenge's submission CSV).

A frame goes through a :class:`~fetalbiometry.planes2d.predictor.PlanePredictor` (network, then
:func:`~fetalbiometry.biometry.measure_plane`). A head or abdomen cut by the image border is
measured from the boundary the image shows, its ellipse extrapolated, and flagged with the fraction
of the ellipse's outline inside the image (``outline_inside_fraction``). ``measure`` gives no
number for a frame without a trustworthy measurement: its reason (empty mask, too little in the
image, implausible shape, out of range) is reported instead, as in
:mod:`fetalbiometry.planes2d.evaluation`.

``hc`` writes a complete submission CSV: a head found but refused gets its best-effort ellipse,
and a frame without any head mask a placeholder (:func:`placeholder_ellipse`); both are flagged on
stderr and in the flags CSV (:func:`write_flags`) beside the submission. Only a frame that cannot
be read keeps an empty row.

The report of one plane (:func:`plane_report`) is the JSON object that the Slicer module reads
(``FetalHeadSegLib.results.parse_measurement``, docs/slicer.md): ``plane``; ``hc_mm``, ``ac_mm``
or ``fl_mm``; ``bpd_mm`` and ``ofd_mm`` for a head; ``ellipse`` {cx, cy, a, b, theta} in mm and
radians (HC18 convention, :mod:`fetalbiometry.biometry.ellipse`) or ``femur_endpoints``
[[x1, y1], [x2, y2]] in mm; ``ga_weeks_hadlock`` (Hadlock 1984, from the plane's measurement),
``ga_weeks_intergrowth`` (INTERGROWTH-21st dating, HC only, else null), ``centile``
(INTERGROWTH-21st fetal growth standards at a given GA, else null), ``outline_inside_fraction``
(head and abdomen: the fraction of the ellipse's outline inside the image, 1.0 for a structure seen
whole) and ``pixel_size_mm``. Without a measurement it is ``{"plane": ..., "no_measurement": reason}``.

Nothing here imports PyTorch: the commands check their input before the network is loaded.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
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
    "FLAGS_COLUMNS",
    "FrameMeasurement",
    "HCBatch",
    "HCRow",
    "PlaneImage",
    "check_ga_weeks",
    "check_overlay_path",
    "draw_measurement",
    "flags_path",
    "format_report",
    "measure_frame",
    "measure_hc_folder",
    "overlay_path",
    "placeholder_ellipse",
    "plane_report",
    "read_plane_image",
    "write_flags",
    "write_overlay",
]

CV2_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Frames read with OpenCV as grayscale (16-bit ones by their bit depth, see :func:`_from_bit_depth`);
they store no pixel size."""

MIN_FRAME_SIDE = 4
"""Fewest pixels along either side of a frame that can hold a measurable structure."""

FLAGS_COLUMNS = ("filename", "hc_mm", "outline_inside_fraction", "note")
"""Columns of the flags CSV that ``hc`` writes beside its submission (:func:`write_flags`)."""

_OVERLAY_COLOR_BGR = (0, 255, 0)  # green: a trustworthy measurement of a structure seen whole
_BORDER_CUT_COLOR_BGR = (255, 0, 255)  # magenta: an ellipse extrapolated past the image border
_REFUSED_COLOR_BGR = (0, 0, 255)  # red: a best-effort ellipse that measure refuses
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
        measurement: the trustworthy measurement, or None.
        no_measurement: why there is no measurement, else None.
        best_effort: the refused measurement behind ``no_measurement`` when the mask held a
            structure to fit (:attr:`PlaneMeasurement.refused` says why), else None.
    """

    plane: str
    measurement: PlaneMeasurement | None = None
    no_measurement: str | None = None
    best_effort: PlaneMeasurement | None = None


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
    raising, with the refused measurement when there is one.

    Raises:
        InputError: bad frame or pixel size, or a regression CNN (no mask to measure).
    """
    prediction = predictor.predict(frame)
    try:
        measurement = measure_plane(prediction.mask, prediction.plane, pixel_size, strict=False)
    except NoMeasurementError as error:
        return FrameMeasurement(prediction.plane, no_measurement=str(error))
    if measurement.refused is not None:
        return FrameMeasurement(prediction.plane, no_measurement=measurement.refused, best_effort=measurement)
    return FrameMeasurement(prediction.plane, measurement)


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
        report["outline_inside_fraction"] = measurement.outline_inside_fraction
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
    inside = report.get("outline_inside_fraction")
    if inside is not None and inside < 1.0:
        lines.append(f"border-cut: {inside:.0%} of the ellipse's outline in the image, the rest extrapolated")
    if "femur_endpoints" in report:
        (x1, y1), (x2, y2) = report["femur_endpoints"]
        lines.append(f"femur endpoints (mm): ({x1:.3f}, {y1:.3f}) - ({x2:.3f}, {y2:.3f})")
    return "\n".join(lines)


def _subpixel(points_xy: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points_xy) * (1 << _SUBPIXEL_BITS)).astype(np.int32)


def _ellipse_color(measurement: PlaneMeasurement) -> tuple[int, int, int]:
    if measurement.refused is not None:
        return _REFUSED_COLOR_BGR
    return _BORDER_CUT_COLOR_BGR if measurement.border_cut else _OVERLAY_COLOR_BGR


def draw_measurement(frame: np.ndarray, measurement: PlaneMeasurement) -> np.ndarray:
    """The frame in colour with the measurement drawn on it.

    Head and abdomen: the fitted ellipse, green when the structure is seen whole, magenta when it
    is cut by the image border (:attr:`PlaneMeasurement.border_cut`: the ellipse is extrapolated
    past it) and red for a best-effort ellipse that ``measure`` refuses
    (:attr:`PlaneMeasurement.refused`). Femur: the minimum-area rectangle (amber) and its long axis
    (the femur length, between :attr:`Rectangle.endpoints`, green).

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
        cv2.polylines(image, [_subpixel(outline)], True, _ellipse_color(measurement), **style)
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


def flags_path(submission: str | Path) -> Path:
    """Where ``fetalbiometry hc --out SUBMISSION`` writes its flags by default: ``<stem>.flags.csv`` beside it."""
    submission = Path(submission)
    return submission.with_name(f"{submission.stem}.flags.csv")


def placeholder_ellipse(shape: tuple[int, int]) -> Ellipse:
    """The ellipse ``hc`` writes for a frame where no head was found, so that its row holds numbers.

    A circle at the centre of a frame of ``shape`` (rows, columns), its radius a quarter of the
    shorter side: where and about as large as HC18 frames show a head. It is no measurement; the
    flags say so.
    """
    rows, columns = shape
    radius = min(rows, columns) / 4.0
    return Ellipse((columns - 1) / 2.0, (rows - 1) / 2.0, radius, radius, 0.0)


@dataclass(frozen=True)
class HCRow:
    """What ``hc`` wrote for one frame.

    Args:
        status: ``"measured"`` (a trustworthy head, maybe cut by the border), ``"best-effort"`` (a
            head found but refused: too little in the image, implausible shape, out of range or
            another plane), ``"placeholder"`` (no head found) or ``"error"`` (the frame could not
            be read).
        ellipse_mm: the submission ellipse in mm: the fitted head ellipse, or
            :func:`placeholder_ellipse`; None only for an error.
        hc_mm: circumference of the fitted head ellipse, else None.
        outline_inside_fraction: of the fitted head ellipse
            (:attr:`~fetalbiometry.biometry.PlaneMeasurement.outline_inside_fraction`), else None.
        note: empty for a trustworthy head seen whole, else what is flagged, in one line.
    """

    status: str
    ellipse_mm: Ellipse | None = None
    hc_mm: float | None = None
    outline_inside_fraction: float | None = None
    note: str = ""


@dataclass
class HCBatch:
    """The outcome of :func:`measure_hc_folder`: filename → :class:`HCRow`, in CSV order."""

    rows: dict[str, HCRow] = field(default_factory=dict)

    @property
    def ellipses_mm(self) -> dict[str, Ellipse | None]:
        """filename → submission ellipse in mm, or None for a frame that could not be read."""
        return {name: row.ellipse_mm for name, row in self.rows.items()}

    def count(self, status: str) -> int:
        """Number of frames of that :attr:`HCRow.status`."""
        return sum(row.status == status for row in self.rows.values())

    @property
    def exit_code(self) -> int:
        """0 when every frame was processed (measured or honestly not), 1 when some could not be read."""
        return 1 if self.count("error") else 0

    def problem_lines(self) -> list[str]:
        """One line per flagged frame: ``NAME: NOTE`` (border-cut, no measurement, error)."""
        return [f"{name}: {row.note}" for name, row in self.rows.items() if row.note]

    def summary(self) -> str:
        """How many frames were measured, cut by the border, without a measurement and unreadable."""
        border_cut = sum(row.status == "measured" and row.outline_inside_fraction < 1.0 for row in self.rows.values())
        best_effort, placeholders = self.count("best-effort"), self.count("placeholder")
        text = (
            f"{len(self.rows)} images, {self.count('measured')} measured ({border_cut} cut by the border), "
            f"{best_effort + placeholders} without a measurement ({best_effort} best-effort ellipses, "
            f"{placeholders} placeholders)"
        )
        return text + (f", {self.count('error')} could not be read" if self.count("error") else "")


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_flags(path: str | Path, rows: Mapping[str, HCRow]) -> Path:
    """Write the flags of ``hc`` as a CSV of :data:`FLAGS_COLUMNS`, one row per frame, atomically.

    ``hc_mm`` and ``outline_inside_fraction`` are empty where no head ellipse was fitted;
    ``note`` is empty for a trustworthy head seen whole.
    """
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FLAGS_COLUMNS)
        for name, row in rows.items():
            writer.writerow([name, _number(row.hc_mm), _number(row.outline_inside_fraction), row.note])
    return path


def _head_fit(result: FrameMeasurement) -> tuple[PlaneMeasurement | None, str | None]:
    """``hc``'s view of a frame: the measurement of its fitted ellipse (None without one), its
    :attr:`~PlaneMeasurement.refused` also set when the network sees another plane, and why the
    frame has no trustworthy head measurement (None when it has)."""
    reason = result.no_measurement
    if reason is None and result.plane != "head":
        reason = f"the network sees a {result.plane} plane, not a head"
    measurement = result.measurement or result.best_effort
    if measurement is None or measurement.ellipse is None:
        return None, reason
    return replace(measurement, refused=reason), reason


def _hc_row(measurement: PlaneMeasurement | None, reason: str | None, shape: tuple[int, int], pixel_size: float) -> HCRow:
    """The submission ellipse and flags of one frame, from :func:`_head_fit` (see :class:`HCRow`)."""
    if measurement is None:
        placeholder = placeholder_ellipse(shape).to_mm(pixel_size)
        return HCRow("placeholder", placeholder, note=f"no measurement: {reason}; placeholder ellipse")
    inside = measurement.outline_inside_fraction
    status, note = "measured", ""
    if measurement.refused is not None:
        status, note = "best-effort", f"no measurement: {measurement.refused}; best-effort ellipse"
    elif measurement.border_cut:
        note = f"border-cut: {inside:.0%} of the head's outline in the image, the ellipse extrapolated"
    return HCRow(status, measurement.ellipse.to_mm(pixel_size), measurement.value_mm, inside, note)


def measure_hc_folder(
    predictor: PlanePredictor,
    images_dir: str | Path,
    pixel_sizes: Mapping[str, float],
    overlays_dir: str | Path | None = None,
    progress: bool | None = None,
) -> HCBatch:
    """Fit the head ellipse of every frame of an HC18-style folder, one frame after the other.

    A frame that fails does not stop the batch. Every frame that can be read gets an ellipse
    (:class:`HCRow`): a head without a trustworthy measurement, or that the network classifies
    as another plane than a head, its best-effort ellipse; a frame without a head mask a
    placeholder. A missing or unreadable frame gets none.

    Args:
        predictor: the 2D network.
        images_dir: folder of the frames.
        pixel_sizes: filename → pixel size in mm (:func:`fetalbiometry.data.hc18.read_pixel_sizes`).
        overlays_dir: if given, a PNG per frame with a fitted ellipse (:func:`overlay_path`,
            colours of :func:`draw_measurement`).
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
        try:
            frame = read_plane_image(images_dir / name, pixel_size)
            result = measure_frame(predictor, frame.pixels, frame.pixel_size_mm)
        except FetalBiometryError as error:
            batch.rows[name] = HCRow("error", note=f"error: {error}")
            continue
        except Exception as error:  # one bad frame never stops the batch: record it and go on
            batch.rows[name] = HCRow("error", note="error: " + " ".join(f"{type(error).__name__}: {error}".split()))
            continue
        measurement, reason = _head_fit(result)
        batch.rows[name] = _hc_row(measurement, reason, frame.pixels.shape, pixel_size)
        if overlays_dir is not None and measurement is not None:
            write_overlay(overlay_path(overlays_dir, name), frame.pixels, measurement)
    return batch
