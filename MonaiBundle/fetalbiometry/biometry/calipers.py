"""Reference structures from a sonographer's caliper points.

Biometry is recorded as caliper pairs: BPD and OFD on the head plane, the transverse (TAD) and
antero-posterior (APAD) abdominal diameters on the abdominal plane, the two ends of the femur's
diaphysis for FL. The networks are trained on the structures these stand for:

- head and abdomen: the ellipse with the two diameters as its axes
  (:func:`ellipse_from_diameters`), whose Ramanujan perimeter is HC or AC, the way ultrasound
  machines compute HC and AC from two diameters;
- femur: the bar of the diaphysis between the two end points (:func:`femur_from_endpoints`), as
  Qazi et al. (``shared/papers/multitask-unet-hc-ac-fl.txt``, section 3.1) draw their femur masks.

Coordinates follow the HC18 convention of :mod:`fetalbiometry.biometry.ellipse`: x = column,
y = row, in pixels (centres at integers). The diameters must be measured outer edge to outer
edge, as the HC18 ellipses are fitted to the outer skull contour (:meth:`Ellipse.bpd_ofd`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fetalbiometry.biometry.ellipse import Ellipse
from fetalbiometry.biometry.rectangle import Rectangle
from fetalbiometry.errors import InputError

__all__ = ["MAX_CENTRE_OFFSET", "MAX_SKEW_DEG", "caliper_segment", "ellipse_from_diameters", "femur_from_endpoints"]

MAX_SKEW_DEG = 20.0
"""How far (degrees) the two diameters of an ellipse may be from perpendicular."""

MAX_CENTRE_OFFSET = 0.2
"""How far apart the midpoints of the two diameters may be, as a fraction of the longer one."""


def caliper_segment(points: Sequence[Sequence[float]], name: str = "calipers") -> np.ndarray:
    """Two caliper points as a (2, 2) array of (x, y).

    Args:
        points: ``[[x1, y1], [x2, y2]]`` in pixels.
        name: what they measure, for the error message (e.g. ``"bpd"``).

    Returns:
        float64 array (2, 2).

    Raises:
        InputError: not two finite (x, y) points, or the two points coincide.
    """
    try:
        segment = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        segment = None
    if segment is None or segment.shape != (2, 2) or not np.all(np.isfinite(segment)):
        raise InputError(f"{name} must be two points [[x1, y1], [x2, y2]] of finite numbers, got {points!r}")
    if np.hypot(*(segment[1] - segment[0])) == 0.0:
        raise InputError(f"{name}: the two points coincide")
    return segment


def ellipse_from_diameters(
    first: Sequence[Sequence[float]], second: Sequence[Sequence[float]], names: tuple[str, str] = ("first", "second")
) -> Ellipse:
    """The ellipse whose axes are two caliper diameters (OFD and BPD, or TAD and APAD).

    The centre is the mean of the two diameters' midpoints; one semi-axis is half the first
    diameter, along it, the other half the second. The second diameter's direction only serves
    the check: calipers are placed perpendicular to each other, crossing near their middles.

    Args:
        first: the two end points (x, y) of the first diameter, pixels.
        second: those of the second diameter.
        names: the diameters' names, for error messages (e.g. ``("ofd", "bpd")``).

    Returns:
        the ellipse in pixels, normalised (a >= b, θ in [0, π)).

    Raises:
        InputError: a diameter is not two distinct finite points; the diameters are more than
            :data:`MAX_SKEW_DEG` from perpendicular, or their midpoints further apart than
            :data:`MAX_CENTRE_OFFSET` of the longer diameter.
    """
    first_segment, second_segment = caliper_segment(first, names[0]), caliper_segment(second, names[1])
    first_vector, second_vector = first_segment[1] - first_segment[0], second_segment[1] - second_segment[0]
    first_length, second_length = float(np.hypot(*first_vector)), float(np.hypot(*second_vector))
    cosine = abs(float(first_vector @ second_vector)) / (first_length * second_length)
    skew = 90.0 - math.degrees(math.acos(min(cosine, 1.0)))
    if skew > MAX_SKEW_DEG:
        raise InputError(f"{names[0]} and {names[1]} must be perpendicular diameters; they are {skew:.0f}° off")
    first_middle, second_middle = first_segment.mean(axis=0), second_segment.mean(axis=0)
    offset = float(np.hypot(*(first_middle - second_middle)))
    if offset > MAX_CENTRE_OFFSET * max(first_length, second_length):
        raise InputError(
            f"{names[0]} and {names[1]} must cross near their middles; their midpoints are {offset:.1f} px apart"
        )
    cx, cy = 0.5 * (first_middle + second_middle)
    angle = math.atan2(first_vector[1], first_vector[0])
    return Ellipse(float(cx), float(cy), 0.5 * first_length, 0.5 * second_length, angle).normalized()


def femur_from_endpoints(endpoints: Sequence[Sequence[float]], width: float) -> Rectangle:
    """The femur's diaphysis: the bar of ``width`` between its two end points.

    Args:
        endpoints: ``[[x1, y1], [x2, y2]]`` in pixels; their distance is FL.
        width: thickness of the bar, pixels.

    Returns:
        the :class:`Rectangle` (length = FL in pixels, angle in [0, π)).

    Raises:
        InputError: bad end points or a width that is not positive.
    """
    segment = caliper_segment(endpoints, "fl")
    if not (math.isfinite(width) and width > 0):
        raise InputError(f"femur width must be a positive number of pixels, got {width}")
    vector = segment[1] - segment[0]
    cx, cy = segment.mean(axis=0)
    angle = math.atan2(vector[1], vector[0]) % math.pi
    return Rectangle((float(cx), float(cy)), float(np.hypot(*vector)), float(width), angle)
