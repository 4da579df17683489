"""Geometry of the measurements: ellipse fits (HC, AC, BPD, OFD) and rectangle fits (FL)."""

import math

import cv2
import numpy as np
import pytest
from scipy.special import ellipe

from fetalbiometry.biometry import (
    Ellipse,
    Rectangle,
    bpd_ofd,
    ellipse_outline,
    ellipse_to_mask,
    femur_length,
    fit_ellipse,
    fit_ellipse_to_mask,
    fit_ellipse_to_outline,
    fit_min_area_rectangle,
    ramanujan_circumference,
)
from fetalbiometry.errors import EmptyMaskError, InputError, NoMeasurementError


def angle_difference_mod_pi(first: float, second: float) -> float:
    """Distance between two axis directions (undirected lines), in radians."""
    return abs((first - second + math.pi / 2) % math.pi - math.pi / 2)


def exact_perimeter(a: float, b: float) -> float:
    """4·a·E(e²), the complete elliptic integral of the second kind, for a >= b."""
    a, b = max(a, b), min(a, b)
    return 4.0 * a * ellipe(1.0 - (b / a) ** 2)


ANGLES = [0.0, 1e-3, 0.3, math.pi / 4, 1.2, math.pi / 2 - 1e-3, math.pi / 2, 2.0, 2.9, math.pi - 1e-3]


@pytest.mark.parametrize("theta", ANGLES)
@pytest.mark.parametrize("ratio", [0.2, 0.35, 0.7, 0.95])
def test_fit_ellipse_recovers_parameters(theta, ratio):
    truth = Ellipse(cx=210.3, cy=145.8, a=90.0, b=90.0 * ratio, theta=theta)
    fitted = fit_ellipse(ellipse_outline(truth, n=200))
    # OpenCV fits in single precision: 1e-3 pixel is far below what an image resolves.
    expected = [truth.cx, truth.cy, truth.a, truth.b]
    np.testing.assert_allclose([fitted.cx, fitted.cy, fitted.a, fitted.b], expected, atol=1e-3)
    assert fitted.a >= fitted.b and 0.0 <= fitted.theta < math.pi
    assert angle_difference_mod_pi(fitted.theta, theta) < 1e-5


@pytest.mark.parametrize("theta", [0.0, 0.4, math.pi / 2, 2.5])
def test_fit_ellipse_with_b_along_theta_returns_the_same_outline(theta):
    # a < b describes the same point set as (b, a, theta + pi/2): the fit normalises to a >= b.
    truth = Ellipse(cx=50.0, cy=60.0, a=20.0, b=35.0, theta=theta)
    fitted = fit_ellipse(ellipse_outline(truth, n=100))
    assert fitted.a == pytest.approx(35.0, abs=1e-3) and fitted.b == pytest.approx(20.0, abs=1e-3)
    assert angle_difference_mod_pi(fitted.theta, theta + math.pi / 2) < 1e-5


def test_fit_ellipse_with_noise_is_unbiased():
    rng = np.random.default_rng(0)
    truth = Ellipse(cx=300.0, cy=200.0, a=120.0, b=95.0, theta=0.7)
    points = ellipse_outline(truth, n=2000) + rng.normal(0.0, 0.5, size=(2000, 2))
    fitted = fit_ellipse(points)
    assert fitted.circumference == pytest.approx(truth.circumference, rel=2e-3)
    assert abs(fitted.cx - 300.0) < 0.1 and abs(fitted.cy - 200.0) < 0.1
    assert angle_difference_mod_pi(fitted.theta, 0.7) < 0.01


def test_fit_ellipse_to_outline_drawn_by_opencv():
    # cv2.ellipse draws with its own, independent, code: angle in degrees from +x towards +y.
    outline = np.zeros((300, 400), np.uint8)
    cv2.ellipse(outline, (200, 150), (110, 70), 30.0, 0.0, 360.0, 255, thickness=1)
    fitted = fit_ellipse_to_outline(outline)
    assert fitted.cx == pytest.approx(200.0, abs=0.1) and fitted.cy == pytest.approx(150.0, abs=0.1)
    assert fitted.a == pytest.approx(110.0, abs=0.5) and fitted.b == pytest.approx(70.0, abs=0.5)
    assert math.degrees(angle_difference_mod_pi(fitted.theta, math.radians(30.0))) < 0.5


def test_ramanujan_matches_elliptic_integral():
    for ratio in np.linspace(0.3, 0.99, 15):
        a, b = 50.0, 50.0 * ratio
        exact = exact_perimeter(a, b)
        relative_error = (exact - ramanujan_circumference(a, b)) / exact
        # The series of the exact perimeter and of Ramanujan's formula first differ at h³/512,
        # h = ((a − b)/(a + b))²; the formula underestimates.
        h = ((a - b) / (a + b)) ** 2
        assert h**3 / 512 * 0.999 - 1e-15 <= relative_error <= h**3 / 512 * 1.15 + 1e-15
        assert relative_error < 6e-5


def test_ramanujan_is_exact_for_a_circle():
    assert ramanujan_circumference(7.5, 7.5) == pytest.approx(2 * math.pi * 7.5, rel=1e-14)
    assert Ellipse(0.0, 0.0, 3.0, 3.0, 1.0).circumference == pytest.approx(6 * math.pi, rel=1e-14)


def test_to_mm_scales_lengths_and_keeps_angle():
    ellipse = Ellipse(cx=100.0, cy=50.0, a=40.0, b=30.0, theta=0.25)
    in_mm = ellipse.to_mm(0.1)
    assert (in_mm.cx, in_mm.cy, in_mm.a, in_mm.b, in_mm.theta) == pytest.approx((10.0, 5.0, 4.0, 3.0, 0.25))
    assert in_mm.circumference == pytest.approx(0.1 * ellipse.circumference)
    with pytest.raises(InputError):
        ellipse.to_mm(0.0)


def test_bpd_ofd_are_minor_and_major_axes():
    ellipse = Ellipse(cx=0.0, cy=0.0, a=30.0, b=40.0, theta=0.3)
    assert ellipse.bpd_ofd() == (60.0, 80.0)
    assert bpd_ofd(ellipse) == (60.0, 80.0)


def test_invalid_ellipse_is_rejected():
    with pytest.raises(InputError):
        Ellipse(0.0, 0.0, -1.0, 2.0, 0.0)
    with pytest.raises(InputError):
        Ellipse(0.0, float("nan"), 1.0, 2.0, 0.0)


def test_fit_ellipse_rejects_bad_points():
    with pytest.raises(InputError):
        fit_ellipse(np.zeros((4, 2)))
    with pytest.raises(NoMeasurementError):
        fit_ellipse(np.stack([np.arange(10.0), 2 * np.arange(10.0)], axis=1))


def test_ellipse_outline_starts_on_the_a_axis():
    ellipse = Ellipse(cx=10.0, cy=20.0, a=5.0, b=2.0, theta=math.pi / 6)
    points = ellipse_outline(ellipse, n=8)
    np.testing.assert_allclose(points[0], [10.0 + 5.0 * math.cos(math.pi / 6), 20.0 + 5.0 * math.sin(math.pi / 6)])
    np.testing.assert_allclose(points[2], [10.0 - 2.0 * math.sin(math.pi / 6), 20.0 + 2.0 * math.cos(math.pi / 6)])


def test_ellipse_to_mask_area_and_orientation():
    # theta = pi/2 puts the long axis along the rows.
    mask = ellipse_to_mask(Ellipse(cx=60.0, cy=50.0, a=40.0, b=15.0, theta=math.pi / 2), (101, 121))
    assert mask.sum() == pytest.approx(math.pi * 40 * 15, rel=0.01)
    rows, cols = np.nonzero(mask)
    assert rows.max() - rows.min() == 80 and cols.max() - cols.min() == 30


@pytest.mark.parametrize("theta", [0.0, 0.5, math.pi / 2, 2.2])
def test_mask_round_trip(theta):
    truth = Ellipse(cx=100.4, cy=80.7, a=60.0, b=42.0, theta=theta)
    fitted = fit_ellipse_to_mask(ellipse_to_mask(truth, (170, 210)))
    assert abs(fitted.cx - truth.cx) < 0.05 and abs(fitted.cy - truth.cy) < 0.05
    assert abs(fitted.a - 60.0) < 0.1 and abs(fitted.b - 42.0) < 0.1
    assert angle_difference_mod_pi(fitted.theta, theta) < 0.01
    assert fitted.circumference == pytest.approx(truth.circumference, rel=1e-3)


def test_mask_fit_uses_the_largest_component():
    mask = ellipse_to_mask(Ellipse(cx=60.0, cy=60.0, a=40.0, b=30.0, theta=0.0), (120, 160))
    mask[5:15, 140:155] = True  # a false positive far from the head
    fitted = fit_ellipse_to_mask(mask)
    assert fitted.cx == pytest.approx(60.0, abs=0.05) and fitted.a == pytest.approx(40.0, abs=0.1)


def test_empty_masks_raise():
    with pytest.raises(EmptyMaskError):
        fit_ellipse_to_mask(np.zeros((20, 20), bool))
    with pytest.raises(EmptyMaskError):
        fit_ellipse_to_outline(np.zeros((20, 20), np.uint8))
    with pytest.raises(EmptyMaskError):
        fit_min_area_rectangle(np.zeros((20, 20), bool))
    with pytest.raises(InputError):
        fit_ellipse_to_mask(np.ones((4, 4, 4), bool))


def bar_between(start: np.ndarray, end: np.ndarray, width: float, shape: tuple[int, int]) -> np.ndarray:
    """Pixel centres within ``width``/2 of the segment start–end, flat ends (Qazi et al. 3.1)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    direction = (end - start) / np.linalg.norm(end - start)
    dx, dy = cols - start[0], rows - start[1]
    along = dx * direction[0] + dy * direction[1]
    across = dy * direction[0] - dx * direction[1]
    return (along >= 0) & (along <= np.linalg.norm(end - start)) & (np.abs(across) <= width / 2)


@pytest.mark.parametrize("degrees", range(0, 180, 15))
def test_min_area_rectangle_of_rotated_bar(degrees):
    start = np.array([64.0, 64.0])
    end = start + np.round(50.0 * np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]))
    length = float(np.linalg.norm(end - start))
    rectangle = fit_min_area_rectangle(bar_between(start, end, 7.0, (128, 128)))
    assert abs(rectangle.length - length) <= 0.5
    assert 5.0 <= rectangle.width <= 7.0
    direction = math.atan2(end[1] - start[1], end[0] - start[0])
    assert math.degrees(angle_difference_mod_pi(rectangle.angle, direction)) < 1.0
    ends = np.array(rectangle.endpoints)
    assert min(np.abs(ends - [start, end]).max(), np.abs(ends - [end, start]).max()) < 0.5


def test_axis_aligned_bar_and_femur_length():
    mask = np.zeros((40, 80), bool)
    mask[20:26, 10:50] = True  # pixel centres span 39 columns and 5 rows
    rectangle = fit_min_area_rectangle(mask)
    assert rectangle.length == pytest.approx(39.0) and rectangle.width == pytest.approx(5.0)
    assert rectangle.center == pytest.approx((29.5, 22.5))
    assert rectangle.perimeter == pytest.approx(2 * (39.0 + 5.0))
    assert femur_length(mask, pixel_size=0.2) == pytest.approx(39.0 * 0.2)
    with pytest.raises(InputError):
        femur_length(mask, pixel_size=0.0)


def test_rectangle_endpoints():
    rectangle = Rectangle(center=(10.0, 5.0), length=8.0, width=2.0, angle=math.pi / 2)
    (x0, y0), (x1, y1) = rectangle.endpoints
    assert (x0, y0, x1, y1) == pytest.approx((10.0, 1.0, 10.0, 9.0))
