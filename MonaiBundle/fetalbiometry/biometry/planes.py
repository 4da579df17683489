"""Measurements of a segmented standard plane, by plane class: HC (head), AC (abdomen), FL (femur).

Qazi et al., "Multi-Task Learning Approach for Unified Biometric Estimation from Fetal Ultrasound
Anomaly Scans" (section 2.2, shared/papers/multitask-unet-hc-ac-fl.txt): the network gives a
plane class and a mask; head and abdomen masks are fitted with an ellipse whose Ramanujan perimeter
(their Eq. 4) is HC or AC, and femur masks with a rectangle whose long side is FL (see
:mod:`fetalbiometry.biometry.rectangle` for why the long side rather than the perimeter).

A prediction is not always measurable. :func:`measure_plane` raises
:class:`~fetalbiometry.errors.NoMeasurementError` with the reason in its message rather than return
a number nobody should trust:

- ``empty mask``: nothing was segmented;
- ``cut by the image border``: the fitted ellipse runs out of the image by more than
  :attr:`PlausibilityLimits.border_tolerance_px`, or the femur touches the border, so part of the
  structure is not seen;
- ``implausible shape``: axis ratio b/a below :attr:`PlausibilityLimits.min_axis_ratio`;
- ``out of range``: the measurement lies outside the limits for its kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fetalbiometry.biometry.contour import largest_component
from fetalbiometry.biometry.ellipse import Ellipse, fit_ellipse_to_mask
from fetalbiometry.biometry.rectangle import Rectangle, fit_min_area_rectangle
from fetalbiometry.errors import EmptyMaskError, InputError, NoMeasurementError

__all__ = [
    "PLANE_CLASSES",
    "PLANE_MEASURES",
    "PlaneMeasurement",
    "PlausibilityLimits",
    "check_plausible_measurement",
    "ellipse_bounding_box",
    "ellipse_overhang",
    "measure_plane",
    "plausible_range_mm",
]

PLANE_CLASSES = ("head", "abdomen", "femur")
"""The plane classes of Qazi et al. (brain/head, abdomen, femur), in the classifier's output order."""

PLANE_MEASURES = {"head": "hc", "abdomen": "ac", "femur": "fl"}
"""The biometric measurement of each plane class."""


@dataclass(frozen=True)
class PlausibilityLimits:
    """What a measurable structure looks like.

    Args:
        min_axis_ratio: smallest accepted minor/major axis ratio of a head or abdomen ellipse
            (fetal heads are about 0.75-0.85, abdomens 0.85-0.95).
        circumference_mm: accepted (min, max) HC or AC in mm. The lower end is 40 mm rather than
            50 mm because HC18's smallest reference HC is 44.3 mm (Zhang et al., regression-cnn-hc);
            450 mm is above any term AC.
        femur_length_mm: accepted (min, max) FL in mm (about 12 weeks to beyond term).
        bpd_mm: accepted (min, max) BPD in mm: the circumference range through BPD ~ HC / 3.6
            (cephalic index 0.78), which holds INTERGROWTH-21st's 14-40 weeks +/- 4 SD (23-111 mm).
        border_tolerance_px: how far (pixels) a fitted ellipse may run out of the image before the
            structure counts as cut by the border; a femur may not touch the border at all.
    """

    min_axis_ratio: float = 0.5
    circumference_mm: tuple[float, float] = (40.0, 450.0)
    femur_length_mm: tuple[float, float] = (5.0, 90.0)
    bpd_mm: tuple[float, float] = (10.0, 125.0)
    border_tolerance_px: float = 3.0


@dataclass(frozen=True)
class PlaneMeasurement:
    """The measurement of one plane.

    Args:
        plane: ``"head"``, ``"abdomen"`` or ``"femur"``.
        measure: ``"hc"``, ``"ac"`` or ``"fl"``.
        value_mm: the measurement, in mm.
        pixel_size_mm: side of a square pixel of the mask, in mm.
        ellipse: fitted ellipse in pixels (head, abdomen), else None.
        rectangle: fitted minimum-area rectangle in pixels (femur), else None.
        bpd_mm: biparietal diameter (head only, :meth:`Ellipse.bpd_ofd`), else None.
        ofd_mm: occipito-frontal diameter (head only), else None.
    """

    plane: str
    measure: str
    value_mm: float
    pixel_size_mm: float
    ellipse: Ellipse | None = None
    rectangle: Rectangle | None = None
    bpd_mm: float | None = None
    ofd_mm: float | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain values (nested dataclasses become dicts), for CSV or JSON."""
        return asdict(self)


def ellipse_bounding_box(ellipse: Ellipse) -> tuple[float, float, float, float]:
    """Axis-aligned bounding box of an ellipse.

    The half-extents of an ellipse rotated by θ are sqrt(a²cos²θ + b²sin²θ) along x and
    sqrt(a²sin²θ + b²cos²θ) along y.

    Returns:
        (x_min, y_min, x_max, y_max), in the ellipse's unit.
    """
    cos, sin = math.cos(ellipse.theta), math.sin(ellipse.theta)
    half_x = math.hypot(ellipse.a * cos, ellipse.b * sin)
    half_y = math.hypot(ellipse.a * sin, ellipse.b * cos)
    return ellipse.cx - half_x, ellipse.cy - half_y, ellipse.cx + half_x, ellipse.cy + half_y


def ellipse_overhang(ellipse: Ellipse, shape: Sequence[int]) -> float:
    """How far an ellipse (pixels) runs out of an image of ``shape`` (rows, columns).

    The image spans x in [-0.5, columns - 0.5] and y in [-0.5, rows - 0.5] (pixel edges, pixel
    centres at integers).

    Returns:
        the largest distance in pixels by which the ellipse's bounding box passes an image edge;
        zero or negative (minus the smallest margin) when the ellipse lies inside.
    """
    rows, columns = shape
    x_min, y_min, x_max, y_max = ellipse_bounding_box(ellipse)
    return max(-0.5 - x_min, -0.5 - y_min, x_max - (columns - 0.5), y_max - (rows - 0.5))


def _plane_name(plane_class: str | int) -> str:
    if isinstance(plane_class, (int, np.integer)) and 0 <= plane_class < len(PLANE_CLASSES):
        return PLANE_CLASSES[int(plane_class)]
    if plane_class in PLANE_CLASSES:
        return str(plane_class)
    raise InputError(f"plane class must be one of {PLANE_CLASSES} or its index, got {plane_class!r}")


def plausible_range_mm(measure: str, limits: PlausibilityLimits = PlausibilityLimits()) -> tuple[float, float]:
    """The (min, max) in mm that ``measure`` ("hc", "ac", "fl" or "bpd") is accepted within."""
    ranges = {"hc": limits.circumference_mm, "ac": limits.circumference_mm, "fl": limits.femur_length_mm}
    ranges["bpd"] = limits.bpd_mm
    if measure not in ranges:
        raise InputError(f"unknown measure {measure!r}; expected one of {', '.join(ranges)}")
    return ranges[measure]


def check_plausible_measurement(measure: str, value_mm: float) -> None:
    """Refuse a measurement given by hand outside the range that ``measure`` accepts from a plane.

    ``fetalbiometry ga`` takes HC, AC, FL and BPD from the user; the same limits as
    :func:`measure_plane` keep the growth equations inside the span where they mean something
    (no 3e20 weeks, no EFW of 0 g).

    Raises:
        InputError: one line naming the measure, its value and the accepted range.
    """
    low, high = plausible_range_mm(measure)
    if not (math.isfinite(value_mm) and low <= value_mm <= high):
        raise InputError(
            f"{measure.upper()} {value_mm:g} mm is outside the plausible range {low:g}-{high:g} mm "
            "(the range measure accepts)"
        )


def _check_range(measure: str, value: float, limits: tuple[float, float]) -> None:
    low, high = limits
    if not low <= value <= high:
        raise NoMeasurementError(f"no {measure.upper()}: {value:.1f} mm is out of range [{low:g}, {high:g}] mm")


def _measure_ellipse(mask: np.ndarray, plane: str, pixel_size: float, limits: PlausibilityLimits) -> PlaneMeasurement:
    measure = PLANE_MEASURES[plane]
    ellipse = fit_ellipse_to_mask(mask)
    overhang = ellipse_overhang(ellipse, mask.shape)
    if overhang > limits.border_tolerance_px:
        raise NoMeasurementError(
            f"no {measure.upper()}: the {plane} is cut by the image border (the fitted ellipse runs "
            f"{overhang:.1f} px out of the image)"
        )
    ratio = ellipse.b / ellipse.a
    if ratio < limits.min_axis_ratio:
        raise NoMeasurementError(
            f"no {measure.upper()}: implausible shape, axis ratio {ratio:.2f} < {limits.min_axis_ratio:g}"
        )
    circumference = ellipse.circumference * pixel_size
    _check_range(measure, circumference, limits.circumference_mm)
    bpd, ofd = ellipse.to_mm(pixel_size).bpd_ofd() if plane == "head" else (None, None)
    return PlaneMeasurement(plane, measure, circumference, pixel_size, ellipse=ellipse, bpd_mm=bpd, ofd_mm=ofd)


def _measure_femur(mask: np.ndarray, pixel_size: float, limits: PlausibilityLimits) -> PlaneMeasurement:
    component = largest_component(mask)
    if component[0].any() or component[-1].any() or component[:, 0].any() or component[:, -1].any():
        raise NoMeasurementError("no FL: the femur is cut by the image border (it touches the border)")
    rectangle = fit_min_area_rectangle(component)
    length = rectangle.length * pixel_size
    _check_range("fl", length, limits.femur_length_mm)
    return PlaneMeasurement("femur", "fl", length, pixel_size, rectangle=rectangle)


def measure_plane(
    mask: np.ndarray,
    plane_class: str | int,
    pixel_size: float,
    limits: PlausibilityLimits = PlausibilityLimits(),
) -> PlaneMeasurement:
    """Measure a segmented plane by its class (Qazi et al., section 2.2).

    Head and abdomen: ellipse fitted to the outer boundary of the mask's largest component
    (:func:`~fetalbiometry.biometry.ellipse.fit_ellipse_to_mask`), circumference by Ramanujan;
    a head also gets BPD and OFD. Femur: minimum-area rectangle of the largest component, FL is
    its long side.

    Args:
        mask: 2D mask (rows, columns); non-zero pixels are the structure.
        plane_class: ``"head"``, ``"abdomen"``, ``"femur"`` or its index in :data:`PLANE_CLASSES`
            (the argmax of the multi-task U-Net's classifier).
        pixel_size: side of a square pixel of ``mask``, in mm.
        limits: what counts as measurable.

    Returns:
        The :class:`PlaneMeasurement`.

    Raises:
        InputError: the mask is not 2D, the class is unknown or the pixel size not positive.
        NoMeasurementError: empty mask, structure cut by the border, implausible shape or a value
            out of range; the message says which.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"expected a 2D mask, got shape {mask.shape}")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel size must be a positive number of mm, got {pixel_size}")
    plane = _plane_name(plane_class)
    try:
        if plane == "femur":
            return _measure_femur(mask, pixel_size, limits)
        return _measure_ellipse(mask, plane, pixel_size, limits)
    except EmptyMaskError:
        raise NoMeasurementError(f"no {PLANE_MEASURES[plane].upper()}: empty mask, nothing was segmented") from None
