"""Femur length (FL) from a segmentation, by a minimum-area rectangle.

Qazi et al., "Multi-Task Learning Approach for Unified Biometric Estimation from Fetal
Ultrasound Anomaly Scans" (section 2.2, shared/papers/multitask-unet-hc-ac-fl.txt),
treat the femur as a rectangle: they fit a rectangle to the segmented femur, take its
length and breadth, and compute the rectangle's perimeter. Their reference femur masks,
however, are a line of fixed width drawn between the two annotated end points (section
3.1), and clinical FL is the end-to-end length of the ossified diaphysis. So
:func:`femur_length` returns the long side of the rectangle, which for such a mask is the
distance between the end points; :attr:`Rectangle.perimeter` is kept to reproduce the
paper's figure.

Coordinates follow the HC18 convention of :mod:`fetalbiometry.biometry.ellipse`:
x = column, y = row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from fetalbiometry.biometry.contour import largest_component
from fetalbiometry.errors import InputError

__all__ = ["Rectangle", "femur_length", "fit_min_area_rectangle", "rectangle_to_mask"]


@dataclass(frozen=True)
class Rectangle:
    """An oriented rectangle.

    Args:
        center: (x, y) of the centre.
        length: the long side.
        width: the short side.
        angle: direction of the long side from +x towards +y, in radians, in [0, π).
    """

    center: tuple[float, float]
    length: float
    width: float
    angle: float

    @property
    def perimeter(self) -> float:
        """2·(length + width), the "rectangle perimeter" of Qazi et al. (section 2.2)."""
        return 2.0 * (self.length + self.width)

    @property
    def endpoints(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The two ends of the long axis, through the centre: ((x0, y0), (x1, y1))."""
        half_x = 0.5 * self.length * math.cos(self.angle)
        half_y = 0.5 * self.length * math.sin(self.angle)
        cx, cy = self.center
        return (cx - half_x, cy - half_y), (cx + half_x, cy + half_y)

    @property
    def corners(self) -> np.ndarray:
        """The four corners, (4, 2) as (x, y), going round the rectangle."""
        along = 0.5 * self.length * np.array([math.cos(self.angle), math.sin(self.angle)])
        across = 0.5 * self.width * np.array([-math.sin(self.angle), math.cos(self.angle)])
        signs = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        return np.asarray(self.center) + signs[:, :1] * along + signs[:, 1:] * across


def fit_min_area_rectangle(mask: np.ndarray) -> Rectangle:
    """Minimum-area rectangle enclosing the largest connected component of a mask.

    The rectangle (``cv2.minAreaRect``, rotating calipers) encloses the centres of the
    component's pixels. A bar drawn between two end points given as pixel coordinates,
    the way Qazi et al. (section 3.1) build their femur masks, thus measures the distance
    between the end points; an axis-aligned bar n pixels long measures n − 1. An enclosing
    rectangle takes the extreme pixels, so it is not sub-pixel: rasterisation of rotated
    ends can shorten it by up to about 0.7 pixel.

    Args:
        mask: 2D array; non-zero pixels are the structure.

    Returns:
        The rectangle, in pixels.

    Raises:
        InputError: the mask is not 2D.
        EmptyMaskError: the mask is empty.
    """
    points = cv2.findNonZero(largest_component(mask).astype(np.uint8))
    box = cv2.minAreaRect(points)
    # Read length and direction from the corners rather than from (size, angle), whose
    # conventions have changed between OpenCV releases.
    corners = cv2.boxPoints(box).astype(np.float64)
    sides = (corners[1] - corners[0], corners[2] - corners[1])
    lengths = [float(np.hypot(*side)) for side in sides]
    long_index = int(np.argmax(lengths))
    long_side = sides[long_index]
    angle = math.atan2(long_side[1], long_side[0]) % math.pi
    center = corners.mean(axis=0)
    return Rectangle(
        center=(float(center[0]), float(center[1])),
        length=lengths[long_index],
        width=lengths[1 - long_index],
        angle=angle,
    )


def femur_length(mask: np.ndarray, pixel_size: float) -> float:
    """Femur length: the long side of the minimum-area rectangle of the femur mask.

    This is the end-to-end length of the segmented diaphysis, the quantity annotated as
    two end points in Qazi et al. (section 3.1); their rectangle perimeter is available as
    ``fit_min_area_rectangle(mask).perimeter``.

    Args:
        mask: 2D femur mask; non-zero pixels are femur.
        pixel_size: side of a square pixel, in mm.

    Returns:
        FL in mm.

    Raises:
        InputError: the mask is not 2D or the pixel size is not positive.
        EmptyMaskError: the mask is empty.
    """
    if not pixel_size > 0:
        raise InputError(f"pixel size must be positive, got {pixel_size}")
    return fit_min_area_rectangle(mask).length * pixel_size


def rectangle_to_mask(rectangle: Rectangle, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a filled rectangle: the pixels whose centres lie inside or on it.

    The same rule as :func:`~fetalbiometry.biometry.ellipse.ellipse_to_mask`, and as the femur
    masks of the phantom generator (the bar ``|u| ≤ length/2, |v| ≤ width/2`` along and across
    the femur) and of Qazi et al. (a line of fixed width between the two end points).

    Args:
        rectangle: rectangle in pixels.
        shape: (rows, columns) of the output.

    Returns:
        Boolean array of ``shape``.
    """
    if len(shape) != 2:
        raise InputError(f"expected a 2D shape, got {tuple(shape)}")
    rows, columns = np.ogrid[: shape[0], : shape[1]]
    dx, dy = columns - rectangle.center[0], rows - rectangle.center[1]
    cos, sin = math.cos(rectangle.angle), math.sin(rectangle.angle)
    along, across = dx * cos + dy * sin, dy * cos - dx * sin
    return (np.abs(along) <= 0.5 * rectangle.length) & (np.abs(across) <= 0.5 * rectangle.width)
