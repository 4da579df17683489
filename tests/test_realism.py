"""Tests for the skull-echo position of fetalbiometry.data.realism: where a band of echo lies
against the head outline, in mm, whatever the pixel size."""

import numpy as np
import pytest
from fetalbiometry.biometry.ellipse import Ellipse
from fetalbiometry.data.anatomy import rotation_2d
from fetalbiometry.data.realism import Frame, skull_echo_position, skull_profile
from fetalbiometry.data.ultrasound import Ellipsoid


@pytest.mark.parametrize("pixel_mm", [0.1, 0.2])
def test_a_band_of_echo_inside_the_outline_is_found_there(pixel_mm):
    """A bright band 0.5-2 mm inside a 24 × 18 mm ellipse, on a grey sector: the profile peaks
    inside it and the band's half-peak edge is 0.5 mm inside the outline."""
    shape, theta = (300, 400), 0.3
    centre_px = np.array([200.0, 150.0])
    ellipse = Ellipse(*centre_px, 24.0 / pixel_mm, 18.0 / pixel_mm, theta)
    rows, columns = np.indices(shape)
    points = np.stack([columns.ravel(), rows.ravel()]).astype(float) * pixel_mm
    outline_mm = Ellipsoid(centre_px * pixel_mm, np.array([24.0, 18.0]), rotation_2d(theta))
    distance = outline_mm.signed_distance(points).reshape(shape)
    image = np.full(shape, 60, np.uint8)
    image[(distance > -2.0) & (distance < -0.5)] = 200
    peak, outer = skull_echo_position(*skull_profile(Frame(image, pixel_mm, ellipse)))
    assert -2.0 < peak < -0.5
    assert outer == pytest.approx(-0.5)


def test_the_half_peak_edge_is_the_outer_end_of_the_run_around_the_peak():
    profile = np.full(40, 10.0)
    profile[14:18] = [60.0, 100.0, 80.0, 55.0]  # bins of 0.25 mm from -5 mm: the peak at -1.125 mm
    profile[25] = 90.0  # a separate bright bin further out is not the skull's edge
    counts = np.ones(40)
    counts[30:] = 0.0  # empty bins are skipped
    peak, outer = skull_echo_position(profile * counts, counts)
    assert peak == pytest.approx(-1.125)
    assert outer == pytest.approx(-0.5)
