"""A head or abdomen cut by the image border: the ellipse is fitted to the boundary the image shows,
extrapolated past the border, and flagged with the fraction of its outline inside the image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fetalbiometry.biometry import Ellipse, PlausibilityLimits, ellipse_to_mask, fit_ellipse_to_mask, measure_plane
from fetalbiometry.biometry.contour import boundary_points_xy, visible_boundary_points_xy
from fetalbiometry.biometry.planes import outline_inside_fraction
from fetalbiometry.errors import NoMeasurementError

SHAPE = (540, 800)  # an HC18 frame
PIXEL_SIZE = 0.15

# heads running out of the left, bottom and right edges and a corner, 70-85 % of their outline inside
CUT_HEADS = {
    "left": Ellipse(100.0, 270.0, 180.0, 140.0, 0.3),
    "bottom": Ellipse(400.0, 440.0, 170.0, 130.0, 1.2),
    "right": Ellipse(690.0, 250.0, 160.0, 130.0, 2.8),
    "corner": Ellipse(650.0, 420.0, 170.0, 140.0, 2.2),
}


def _arc_length_inside(ellipse: Ellipse, shape: tuple[int, int], samples: int = 200_000) -> float:
    """The truth, by brute force: the polygon through many outline points, its segments inside the image."""
    rows, columns = shape
    t = np.linspace(0.0, 2.0 * np.pi, samples + 1)
    x = ellipse.cx + ellipse.a * np.cos(t) * math.cos(ellipse.theta) - ellipse.b * np.sin(t) * math.sin(ellipse.theta)
    y = ellipse.cy + ellipse.a * np.cos(t) * math.sin(ellipse.theta) + ellipse.b * np.sin(t) * math.cos(ellipse.theta)
    segments = np.hypot(np.diff(x), np.diff(y))
    mid_x, mid_y = 0.5 * (x[1:] + x[:-1]), 0.5 * (y[1:] + y[:-1])
    inside = (mid_x >= -0.5) & (mid_x <= columns - 0.5) & (mid_y >= -0.5) & (mid_y <= rows - 0.5)
    return float(segments[inside].sum() / segments.sum())


@pytest.mark.parametrize("edge", CUT_HEADS)
def test_visible_boundary_fit_recovers_a_head_cut_by_the_border(edge):
    truth = CUT_HEADS[edge]
    assert 0.70 <= _arc_length_inside(truth, SHAPE) <= 0.85  # the premise
    mask = ellipse_to_mask(truth, SHAPE)
    visible = fit_ellipse_to_mask(mask, visible_only=True)
    whole_outline = fit_ellipse_to_mask(mask)  # the fit before: the straight border stretch pulls it in
    assert visible.circumference == pytest.approx(truth.circumference, rel=0.02)
    assert abs(whole_outline.circumference / truth.circumference - 1.0) > 0.03  # outside that tolerance


def test_a_mask_stopping_short_of_the_edge_is_fitted_by_its_visible_boundary():
    truth = CUT_HEADS["left"]
    mask = ellipse_to_mask(truth, SHAPE)
    mask[:, :2] = False  # a network's mask often ends a pixel or two before the edge
    visible = fit_ellipse_to_mask(mask, visible_only=True)
    assert visible.circumference == pytest.approx(truth.circumference, rel=0.02)
    assert abs(fit_ellipse_to_mask(mask).circumference / truth.circumference - 1.0) > 0.03


@pytest.mark.parametrize("edge", CUT_HEADS)
def test_measured_with_the_fraction_of_the_outline_inside(edge):
    truth = CUT_HEADS[edge]
    mask = ellipse_to_mask(truth, SHAPE)
    with pytest.raises(NoMeasurementError, match="cut by the image border"):  # below the default 90 %
        measure_plane(mask, "head", PIXEL_SIZE)
    measurement = measure_plane(mask, "head", PIXEL_SIZE, PlausibilityLimits(min_outline_inside=0.5))
    assert measurement.value_mm == pytest.approx(truth.circumference * PIXEL_SIZE, rel=0.02)
    assert measurement.outline_inside_fraction == pytest.approx(_arc_length_inside(truth, SHAPE), abs=0.02)
    assert measurement.border_cut and measurement.refused is None


def test_a_head_seen_whole_is_flagged_fully_inside():
    head = Ellipse(400.0, 270.0, 180.0, 140.0, 0.3)
    mask = ellipse_to_mask(head, SHAPE)
    np.testing.assert_array_equal(visible_boundary_points_xy(mask), boundary_points_xy(mask))
    measurement = measure_plane(mask, "head", PIXEL_SIZE)
    assert measurement.outline_inside_fraction == 1.0 and not measurement.border_cut


def test_outline_inside_fraction_of_circles_on_an_edge():
    # a circle centred on the left edge (x = -0.5) has half its outline inside; one on a corner a quarter
    assert outline_inside_fraction(Ellipse(-0.5, 270.0, 100.0, 100.0, 0.0), SHAPE) == pytest.approx(0.5, abs=1e-3)
    assert outline_inside_fraction(Ellipse(-0.5, -0.5, 100.0, 100.0, 0.0), SHAPE) == pytest.approx(0.25, abs=1e-3)
    assert outline_inside_fraction(Ellipse(-500.0, 270.0, 100.0, 100.0, 0.0), SHAPE) == 0.0


def test_too_little_of_the_outline_inside_is_refused_unless_best_effort():
    head = Ellipse(-40.0, 270.0, 180.0, 140.0, 0.0)  # about 40 % of its outline inside
    mask = ellipse_to_mask(head, SHAPE)
    with pytest.raises(NoMeasurementError, match=r"cut by the image border \(only 4\d% .* below 90%\)"):
        measure_plane(mask, "head", PIXEL_SIZE)
    best_effort = measure_plane(mask, "head", PIXEL_SIZE, strict=False)
    assert best_effort.refused is not None and "cut by the image border" in best_effort.refused
    assert best_effort.outline_inside_fraction < 0.5


def test_best_effort_keeps_other_refusals_and_an_empty_mask_still_raises():
    flat = ellipse_to_mask(Ellipse(400.0, 270.0, 180.0, 60.0, 0.0), SHAPE)
    assert "axis ratio" in measure_plane(flat, "head", PIXEL_SIZE, strict=False).refused
    with pytest.raises(NoMeasurementError, match="empty mask"):
        measure_plane(np.zeros(SHAPE, np.uint8), "head", PIXEL_SIZE, strict=False)
