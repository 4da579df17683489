"""Tests for fetalbiometry.data.anatomy: head geometry, whole-head label, sutures and plane structures.

Expected values come from the definitions in the papers (whole head = skull, scalp and face above
the jaw–C2 plane; HC/AC = Ramanujan perimeter of the ellipse) and INTERGROWTH-21st z-scores.
"""

import math

import numpy as np
import pytest

from fetalbiometry.biometry.ellipse import Ellipse, ellipse_outline, ellipse_to_mask, ramanujan_circumference
from fetalbiometry.biometry.growth import intergrowth_mean_sd, intergrowth_zscore
from fetalbiometry.data.anatomy import (
    ECHO_LEVEL,
    HEAD_GA_RANGE_WEEKS,
    SCATTERER_DENSITY,
    AbdomenSlice,
    FemurSlice,
    HeadAnatomy,
    HeadSlice,
    acoustic_properties,
    check_ga,
    check_seed,
    ellipse_signed_distance,
    size_for_age,
)
from fetalbiometry.data.synthetic import make_plane
from fetalbiometry.errors import InputError


def along(axis: int, values) -> np.ndarray:
    """(3, N) head-frame points on one axis."""
    points = np.zeros((3, len(values)))
    points[axis] = values
    return points


def test_head_is_deterministic_and_ga_only_rescales_it():
    head = HeadAnatomy.from_seed(3, 25.0)
    assert HeadAnatomy.from_seed(3, 25.0).skull.semi_axes.tolist() == head.skull.semi_axes.tolist()
    older = HeadAnatomy.from_seed(3, 30.0)
    # Same subject: same size z-score and cephalic index, larger head.
    assert older.bpd_mm / older.ofd_mm == pytest.approx(head.bpd_mm / head.ofd_mm)
    assert intergrowth_zscore("hc", older.hc_mm, 30.0) == pytest.approx(intergrowth_zscore("hc", head.hc_mm, 25.0))
    assert older.hc_mm > head.hc_mm + 30.0
    assert head.hc_mm == pytest.approx(ramanujan_circumference(head.bpd_mm / 2, head.ofd_mm / 2))
    assert 20.0 <= HeadAnatomy.from_seed(4).ga_weeks <= 31.0


def test_whole_head_label_spans_scalp_and_face_but_not_the_neck():
    head = HeadAnatomy.from_seed(2, 28.0)
    a, b, c = head.skull.semi_axes
    beams = np.tile([[0.0], [0.0], [1.0]], (1, 5))
    # vertex just outside the skull (scalp), beyond the scalp, the nose tip, the neck far below
    points = np.array([[0, 0, c + 0.5 * head.scalp_mm], [0, 0, c + head.scalp_mm + 3.0],
                       [0, 1.05 * b, -0.5 * c], [0, -0.1 * b, -2.5 * c], [0, 0, 0]]).T
    _, weight, label = head.echo(points, beams, edge_mm=1.0)
    assert label.tolist() == [True, False, True, False, True]
    assert weight[3] == 1.0  # the neck is fetus, only not head


def test_sutures_and_fontanelles_thin_the_skull():
    unit = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.25, 0.97], [0.0, -1.0, 0.0]]).T
    density = HeadAnatomy.bone_density(unit)
    assert density[0] == 1.0 and density[3] == 1.0  # parietal and occipital bone
    assert density[1] < 0.2 and density[2] < 0.2  # sagittal suture, anterior fontanelle


def test_brain_is_darker_than_bone_in_the_axial_plane():
    head = HeadAnatomy.from_seed(6, 26.0)
    a = head.skull.semi_axes[0]
    points = along(0, [0.3 * a, a - 0.5 * head.skull_thickness_mm])
    level, _, _ = head.echo(points, along(0, [1.0, 1.0]), edge_mm=0.5)  # beam perpendicular to the parietal bone
    assert level[1] > 240.0 and level[0] < 120.0


def test_plane_structures_are_sized_for_gestational_age():
    rng = np.random.default_rng(0)
    slice_ = HeadSlice(HeadAnatomy.from_seed(1, 33.0))
    assert slice_.ellipse.circumference == pytest.approx(slice_.anatomy.hc_mm)
    abdomen = AbdomenSlice.random(rng, 33.0)
    assert abs(intergrowth_zscore("ac", abdomen.ellipse.circumference, 33.0)) <= 2.0 + 1e-9
    femur = FemurSlice.random(rng, 33.0)
    assert abs(intergrowth_zscore("fl", femur.length_mm, 33.0)) <= 2.0 + 1e-9
    points = np.array([[femur.length_mm / 2 - 0.1, 0.0], [femur.length_mm / 2 + 0.1, 0.0]]).T
    _, _, label = femur.echo(points, np.array([[0.0, 0.0], [1.0, 1.0]]), edge_mm=0.5)
    assert label.tolist() == [True, False]  # the diaphysis ends at FL / 2


def test_checks_reject_bad_values():
    assert check_seed(np.int64(4)) == 4 and check_ga(20) == 20.0
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError):
            check_seed(bad)
    for bad in (10.0, 45.0, math.nan):
        with pytest.raises(InputError):
            check_ga(bad)
    with pytest.raises(InputError):
        check_ga(9.9, HEAD_GA_RANGE_WEEKS[0])


def test_heads_go_below_the_growth_standard_and_other_structures_do_not():
    """Sizes follow INTERGROWTH-21st over its 14-40 weeks and its HC curve extrapolated below, down
    to 10 weeks for heads only (HC18 holds heads from 44 mm)."""
    assert size_for_age("hc", 25.0, 1.5) == pytest.approx(sum(np.multiply(intergrowth_mean_sd("hc", 25.0), [1, 1.5])))
    hc_by_week = [size_for_age("hc", ga) for ga in (10.0, 12.0, 14.0)]
    assert 45.0 < hc_by_week[0] < hc_by_week[1] < hc_by_week[2] == pytest.approx(intergrowth_mean_sd("hc", 14.0)[0])
    head = HeadAnatomy.from_seed(5, 10.5)
    assert head.hc_mm < 70.0 and 0.0 < head.skull_thickness_mm < 1.0 and head.scalp_mm > 0.0
    assert make_plane("head", 5, (64, 96), ga_weeks=11.0).truth["hc_mm"] < 80.0
    with pytest.raises(InputError):
        make_plane("abdomen", 5, (64, 96), ga_weeks=11.0)


def test_planes_show_the_scalp_darker_than_soft_tissue_and_volumes_do_not_yet():
    """In 2D planes the scalp echoes at the brain's level, well below dense soft tissue, so the skull
    echo falls to the fluid's level just outside the skull, on its sides too, as in HC18 frames
    (fetalbiometry.data.realism); 3D volumes keep it as soft tissue until the 3D model is retrained
    on it, and the scalp's level, having no acoustic row of its own, changes nothing in them."""
    head = HeadAnatomy.from_seed(2, 28.0)
    a, b, _ = head.skull.semi_axes
    points = np.array([[0.0, b + 0.5 * head.scalp_mm], [0.3 * a, 0.0]]).T  # scalp, brain off the falx
    beams = np.tile([[0.0], [1.0]], (1, 2))
    (plane_scalp, brain), _, _ = HeadSlice(head).echo(points, beams, edge_mm=0.2)
    volume_level, _, _ = head.echo(np.vstack([points, np.zeros((1, 2))]), np.vstack([beams, np.zeros((1, 2))]), 0.2)
    assert plane_scalp < volume_level[0] - 30.0
    assert abs(plane_scalp - brain) < 20.0
    density, _ = acoustic_properties(np.array([ECHO_LEVEL["brain"], ECHO_LEVEL["soft_tissue"]]))
    assert density == pytest.approx([SCATTERER_DENSITY["brain"], SCATTERER_DENSITY["soft_tissue"]])


def test_the_skull_echo_grows_as_the_skull_ossifies():
    """Before 16 weeks the skull echoes dimmer (HC18's first-trimester skulls peak at grey 119, later
    ones at 160-172); from 16 weeks, the 3D volumes' ages included, it is mature bone."""
    young, old = HeadAnatomy.from_seed(3, 10.0), HeadAnatomy.from_seed(3, 20.0)
    assert young.ossification == pytest.approx(0.3) and old.ossification == 1.0
    assert HeadAnatomy.from_seed(3, 13.0).ossification == pytest.approx(0.65)

    def skull_top(head: HeadAnatomy) -> float:
        """The echo in the middle of the skull's wall at its top, the beam meeting it square on."""
        b = head.skull.semi_axes[1]
        point = np.array([[0.0], [b - 0.5 * head.skull_thickness_mm]])
        level, _, _ = HeadSlice(head).echo(point, np.array([[0.0], [1.0]]), edge_mm=0.05)
        return float(level[0])

    soft = ECHO_LEVEL["soft_tissue"]
    assert skull_top(young) - soft < 0.45 * (skull_top(old) - soft)


def test_signed_distance_is_exact_for_a_circle_and_near_an_ellipse_outline() -> None:
    """Negative inside; tested on the inward distance."""
    circle = -ellipse_signed_distance(Ellipse(cx=30.3, cy=20.6, a=12.0, b=12.0, theta=0.4), (41, 61))
    rows, cols = np.mgrid[:41, :61]
    assert np.allclose(circle, 12.0 - np.hypot(cols - 30.3, rows - 20.6), atol=1e-4)
    # An oblique ellipse: points sampled on its outline and moved along the normal by a known distance.
    truth = Ellipse(cx=50.0, cy=40.0, a=30.0, b=18.0, theta=0.7)
    distance = -ellipse_signed_distance(truth, (81, 101))
    assert (distance >= 0).tolist() == ellipse_to_mask(truth, (81, 101)).tolist()
    assert distance[40, 50] == pytest.approx(18.0)  # the centre: the shorter semi-axis
    t = np.linspace(0.0, 2 * math.pi, 24, endpoint=False)
    c, s = math.cos(truth.theta), math.sin(truth.theta)
    normal = np.stack([truth.b * np.cos(t) * c - truth.a * np.sin(t) * s, truth.b * np.cos(t) * s + truth.a * np.sin(t) * c])
    normal /= np.linalg.norm(normal, axis=0)
    outline = ellipse_outline(truth, 24).T
    for offset in (-1.5, -0.25, 0.25, 1.5):  # along the outward normal: a distance of minus the offset
        for x, y in (outline + offset * normal).T:
            # the ellipse moved by the point's fraction of a pixel puts the point on a pixel centre
            column, row = math.floor(x), math.floor(y)
            moved = Ellipse(truth.cx - (x - column), truth.cy - (y - row), truth.a, truth.b, truth.theta)
            value = -ellipse_signed_distance(moved, (81, 101))[row, column]
            assert value == pytest.approx(-offset, abs=0.05 * abs(offset) + 1e-3)
