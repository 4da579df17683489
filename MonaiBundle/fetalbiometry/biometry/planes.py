"""Measurements of a segmented standard plane, by plane class: HC (head), AC (abdomen), FL (femur).

Qazi et al., "Multi-Task Learning Approach for Unified Biometric Estimation from Fetal Ultrasound
Anomaly Scans" (section 2.2, shared/papers/multitask-unet-hc-ac-fl.txt): the network gives a
plane class and a mask; head and abdomen masks are fitted with an ellipse whose Ramanujan perimeter
(their Eq. 4) is HC or AC, and femur masks with a rectangle whose long side is FL (see
:mod:`fetalbiometry.biometry.rectangle` for why the long side rather than the perimeter).

A head or abdomen cut by the image border is measured: the ellipse is fitted to the boundary the
image shows (the mask's outline less its stretch along the image's edge) and extrapolated past the
border; :attr:`PlaneMeasurement.outline_inside_fraction` says how much of its outline is in the
image (1.0 for a structure seen whole).

A prediction is not always measurable. :func:`measure_plane` raises
:class:`~fetalbiometry.errors.NoMeasurementError` with the reason in its message rather than return
a number nobody should trust:

- ``empty mask``: nothing was segmented;
- ``cut by the image border``: less than :attr:`PlausibilityLimits.min_outline_inside` of the
  fitted ellipse's outline is in the image, or the femur touches the border, so too much of the
  structure is not seen;
- ``implausible shape``: axis ratio b/a below :attr:`PlausibilityLimits.min_axis_ratio`;
- ``out of range``: the measurement lies outside the limits for its kind.

With ``strict=False`` it returns the measurement anyway, the reason in
:attr:`PlaneMeasurement.refused` (``fetalbiometry hc`` writes such a best-effort ellipse and flags
it); only an empty mask, or one that no ellipse or rectangle fits, still raises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fetalbiometry.biometry.contour import largest_component
from fetalbiometry.biometry.ellipse import Ellipse, ellipse_outline, fit_ellipse_to_mask
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
    "outline_inside_fraction",
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
        min_outline_inside: smallest accepted fraction of a fitted ellipse's outline (by length)
            inside the image. 0.9, from the shipped HC model on HC18 frames cropped to leave part
            of the head out: its HC is off by −1.7 % at 90 % in view but −4 to −7 % at 85-70 %
            and −19 % at 60 % (docs/biometry.md), because a network trained on whole heads closes
            a cut skull inside the image. A femur may not touch the border at all.
    """

    min_axis_ratio: float = 0.5
    circumference_mm: tuple[float, float] = (40.0, 450.0)
    femur_length_mm: tuple[float, float] = (5.0, 90.0)
    bpd_mm: tuple[float, float] = (10.0, 125.0)
    min_outline_inside: float = 0.9


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
        outline_inside_fraction: head and abdomen: the fraction of the ellipse's outline (by
            length) inside the image (:func:`outline_inside_fraction`); 1.0 for a structure seen
            whole, less for one cut by the border, whose ellipse is extrapolated. None for a femur.
        refused: why :func:`measure_plane` would refuse this measurement (set only by
            ``measure_plane(..., strict=False)``), else None.
    """

    plane: str
    measure: str
    value_mm: float
    pixel_size_mm: float
    ellipse: Ellipse | None = None
    rectangle: Rectangle | None = None
    bpd_mm: float | None = None
    ofd_mm: float | None = None
    outline_inside_fraction: float | None = None
    refused: str | None = None

    @property
    def border_cut(self) -> bool:
        """Whether part of the ellipse's outline lies outside the image (extrapolated)."""
        return self.outline_inside_fraction is not None and self.outline_inside_fraction < 1.0

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


def outline_inside_fraction(ellipse: Ellipse, shape: Sequence[int], samples: int = 4096) -> float:
    """The fraction of an ellipse's outline, by length, inside an image of ``shape`` (rows, columns).

    The image spans its pixel edges, as in :func:`ellipse_overhang`. The outline is sampled at
    ``samples`` points evenly spaced in t (:func:`~fetalbiometry.biometry.ellipse.ellipse_outline`),
    each weighted by its length element sqrt(a² sin² t + b² cos² t) dt, so the fraction is
    exact to about 1 / ``samples``.

    Returns:
        a number in [0, 1]: 1.0 when the whole outline is in the image.
    """
    rows, columns = shape
    x, y = ellipse_outline(ellipse, samples).T
    t = np.linspace(0.0, 2.0 * np.pi, samples, endpoint=False)
    length = np.hypot(ellipse.a * np.sin(t), ellipse.b * np.cos(t))
    inside = (x >= -0.5) & (x <= columns - 0.5) & (y >= -0.5) & (y <= rows - 0.5)
    return float(length[inside].sum() / length.sum())


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


def _range_refusal(measure: str, value: float, limits: tuple[float, float]) -> str | None:
    low, high = limits
    if low <= value <= high:
        return None
    return f"no {measure.upper()}: {value:.1f} mm is out of range [{low:g}, {high:g}] mm"


def _ellipse_refusal(
    measure: str, plane: str, ellipse: Ellipse, inside: float, circumference: float, limits: PlausibilityLimits
) -> str | None:
    """Why a head or abdomen ellipse is not to be trusted, or None."""
    if inside < limits.min_outline_inside:
        return (
            f"no {measure.upper()}: the {plane} is cut by the image border (only {inside:.0%} of the fitted "
            f"ellipse's outline is in the image, below {limits.min_outline_inside:.0%})"
        )
    ratio = ellipse.b / ellipse.a
    if ratio < limits.min_axis_ratio:
        return f"no {measure.upper()}: implausible shape, axis ratio {ratio:.2f} < {limits.min_axis_ratio:g}"
    return _range_refusal(measure, circumference, limits.circumference_mm)


def _measure_ellipse(mask: np.ndarray, plane: str, pixel_size: float, limits: PlausibilityLimits) -> PlaneMeasurement:
    measure = PLANE_MEASURES[plane]
    ellipse = fit_ellipse_to_mask(mask, visible_only=True)
    inside = outline_inside_fraction(ellipse, mask.shape)
    circumference = ellipse.circumference * pixel_size
    bpd, ofd = ellipse.to_mm(pixel_size).bpd_ofd() if plane == "head" else (None, None)
    refused = _ellipse_refusal(measure, plane, ellipse, inside, circumference, limits)
    return PlaneMeasurement(
        plane,
        measure,
        circumference,
        pixel_size,
        ellipse=ellipse,
        bpd_mm=bpd,
        ofd_mm=ofd,
        outline_inside_fraction=inside,
        refused=refused,
    )


def _measure_femur(mask: np.ndarray, pixel_size: float, limits: PlausibilityLimits) -> PlaneMeasurement:
    component = largest_component(mask)
    rectangle = fit_min_area_rectangle(component)
    length = rectangle.length * pixel_size
    touches_border = component[0].any() or component[-1].any() or component[:, 0].any() or component[:, -1].any()
    refused = (
        "no FL: the femur is cut by the image border (it touches the border)"
        if touches_border
        else _range_refusal("fl", length, limits.femur_length_mm)
    )
    return PlaneMeasurement("femur", "fl", length, pixel_size, rectangle=rectangle, refused=refused)


def measure_plane(
    mask: np.ndarray,
    plane_class: str | int,
    pixel_size: float,
    limits: PlausibilityLimits = PlausibilityLimits(),
    strict: bool = True,
) -> PlaneMeasurement:
    """Measure a segmented plane by its class (Qazi et al., section 2.2).

    Head and abdomen: ellipse fitted to the outer boundary of the mask's largest component, less
    its stretch along the image's edge (:func:`~fetalbiometry.biometry.ellipse.fit_ellipse_to_mask`
    with ``visible_only``), circumference by Ramanujan; a head also gets BPD and OFD. Femur:
    minimum-area rectangle of the largest component, FL is its long side.

    Args:
        mask: 2D mask (rows, columns); non-zero pixels are the structure.
        plane_class: ``"head"``, ``"abdomen"``, ``"femur"`` or its index in :data:`PLANE_CLASSES`
            (the argmax of the multi-task U-Net's classifier).
        pixel_size: side of a square pixel of ``mask``, in mm.
        limits: what counts as measurable.
        strict: refuse a measurement outside ``limits`` (raise); with False return it, the reason
            in :attr:`PlaneMeasurement.refused`.

    Returns:
        The :class:`PlaneMeasurement`.

    Raises:
        InputError: the mask is not 2D, the class is unknown or the pixel size not positive.
        NoMeasurementError: empty mask or one too small or degenerate to fit; with ``strict``,
            also too little of the structure in the image, implausible shape or a value out of
            range. The message says which.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"expected a 2D mask, got shape {mask.shape}")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel size must be a positive number of mm, got {pixel_size}")
    plane = _plane_name(plane_class)
    try:
        if plane == "femur":
            measurement = _measure_femur(mask, pixel_size, limits)
        else:
            measurement = _measure_ellipse(mask, plane, pixel_size, limits)
    except EmptyMaskError:
        raise NoMeasurementError(f"no {PLANE_MEASURES[plane].upper()}: empty mask, nothing was segmented") from None
    if strict and measurement.refused is not None:
        raise NoMeasurementError(measurement.refused)
    return measurement
