"""Tests of fetalbiometry.metrics against analytic shapes and an independent scipy computation.

Expectations are hand counts, exact geometric facts (a translate, parallel sheets, a voxel
segment) or continuous formulas within half a voxel; the boundary-distance cross-check uses
scipy's exact Euclidean distance transform with ``sampling``, independent of MONAI's KD-tree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import integrate, ndimage
from scipy.spatial.distance import cdist

from fetalbiometry.errors import EmptyMaskError, GeometryMismatchError, InputError
from fetalbiometry.metrics import (
    SegmentationMetrics,
    SegmentationMetricsAccumulator,
    average_boundary_distance,
    circumference_difference,
    compute_segmentation_metrics,
    conformity,
    conformity_from_dice,
    dice,
    evaluate_images,
    hausdorff_boundary_distance,
    jaccard,
    volume_ml,
)

METRIC_NAMES = ["dice", "jaccard", "conformity", "adb_mm", "hdb_mm", "volume_pred_ml", "volume_ref_ml"]


def _ball(shape, spacing, centre_mm, radius_mm) -> np.ndarray:
    """Voxels whose centre (index × spacing, mm) lies within ``radius_mm`` of ``centre_mm``."""
    axes = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((x - c) ** 2 for x, c in zip(axes, centre_mm)) <= radius_mm**2


def _scipy_boundary_distances(pred, ref, spacing):
    """(ref boundary -> pred boundary, pred boundary -> ref boundary) distances with scipy's EDT."""
    edge_pred = pred & ~ndimage.binary_erosion(pred, border_value=0)
    edge_ref = ref & ~ndimage.binary_erosion(ref, border_value=0)
    to_pred = ndimage.distance_transform_edt(~edge_pred, sampling=spacing)
    to_ref = ndimage.distance_transform_edt(~edge_ref, sampling=spacing)
    return to_pred[edge_ref], to_ref[edge_pred]


def _sphere_shift_adb(radius, shift):
    """Continuous Adb of two spheres of one radius whose centres are ``shift`` apart."""
    # a point at polar angle θ on one sphere lies |sqrt(R² + d² - 2Rd cosθ) - R| from the other;
    # cosθ is uniform on [-1, 1] over the sphere's area
    def distance(c):
        return abs(math.sqrt(radius**2 + shift**2 - 2 * radius * shift * c) - radius) / 2

    return integrate.quad(distance, -1, 1, points=[shift / (2 * radius)])[0]


def _circle_shift_adb(radius, shift):
    """Continuous Adb of two circles of one radius whose centres are ``shift`` apart."""

    def distance(t):
        return abs(math.sqrt(radius**2 + shift**2 - 2 * radius * shift * math.cos(t)) - radius) / (2 * math.pi)

    return integrate.quad(distance, 0, 2 * math.pi, points=[math.acos(shift / (2 * radius))])[0]


# ---------------------------------------------------------------------------------------------
# overlap criteria


@pytest.mark.parametrize("shape", [(20, 24), (16, 18, 20)])
def test_identical_masks_are_perfect(shape):
    mask = _ball(shape, [0.7] * len(shape), [6.1] * len(shape), 4.0)
    metrics = compute_segmentation_metrics(mask, mask, [0.7, 1.3, 0.4][: len(shape)])
    assert metrics.dice == 1.0 and metrics.jaccard == 1.0 and metrics.conformity == 1.0
    assert metrics.adb_mm == 0.0 and metrics.hdb_mm == 0.0
    assert metrics.volume_pred_ml == metrics.volume_ref_ml > 0


def test_dice_jaccard_of_boxes_3d_hand_counts():
    ref = np.zeros((12, 12, 12), dtype=np.uint8)
    pred = np.zeros_like(ref)
    ref[2:6, 3:8, 1:7] = 1  # 4 × 5 × 6 = 120 voxels
    pred[3:7, 3:8, 1:7] = 1  # the same box one voxel further along axis 0: overlap 3 × 5 × 6 = 90
    assert dice(pred, ref) == pytest.approx(2 * 90 / 240)
    assert jaccard(pred, ref) == pytest.approx(90 / 150)
    assert conformity(pred, ref) == pytest.approx((3 * 0.75 - 2) / 0.75)


def test_dice_jaccard_of_rectangles_2d_hand_counts():
    ref = np.zeros((8, 8), dtype=bool)
    pred = np.zeros_like(ref)
    ref[0:3, 0:4] = True  # 12 pixels
    pred[1:5, 1:4] = True  # 12 pixels; overlap rows 1-2 × cols 1-3 = 6
    assert dice(pred, ref) == pytest.approx(12 / 24)
    assert jaccard(pred, ref) == pytest.approx(6 / 18)
    assert conformity(pred, ref) == pytest.approx(-1.0)


def test_disjoint_masks():
    ref = np.zeros((10, 10, 10), dtype=bool)
    pred = np.zeros_like(ref)
    ref[2, 3, 4] = True
    pred[5, 7, 4] = True
    spacing = (0.5, 2.0, 0.3)
    metrics = compute_segmentation_metrics(pred, ref, spacing)
    assert metrics.dice == 0.0 and metrics.jaccard == 0.0
    assert metrics.conformity == -math.inf
    distance = math.hypot(3 * 0.5, 4 * 2.0)  # single voxels: every distance is this one
    assert metrics.hdb_mm == pytest.approx(distance) and metrics.adb_mm == pytest.approx(distance)


@pytest.mark.parametrize(("dsc", "expected"), [(1.0, 1.0), (2 / 3, 0.0), (0.5, -1.0), (0.8, 0.5), (0.0, -math.inf)])
def test_conformity_formula(dsc, expected):
    assert conformity_from_dice(dsc) == pytest.approx(expected, abs=1e-12)


def test_conformity_rejects_dice_outside_unit_interval():
    with pytest.raises(InputError):
        conformity_from_dice(1.2)


# ---------------------------------------------------------------------------------------------
# boundary distances: exact cases


@pytest.mark.parametrize(("ndim", "axis"), [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)])
def test_segment_against_its_end_voxel_each_axis(ndim, axis):
    # G: 5 voxels in a line along `axis` (all are boundary); E: the first of them. Spacing 0.5 mm
    # along `axis`, 2 mm elsewhere: from G to E the distances are 0, 0.5, 1, 1.5, 2 mm (mean 1),
    # from E to G 0. Swapping the spacing order would give steps of 2 mm instead.
    ref = np.zeros((9,) * ndim, dtype=bool)
    pred = np.zeros_like(ref)
    line = [4] * ndim
    line[axis] = slice(2, 7)
    ref[tuple(line)] = True
    start = [4] * ndim
    start[axis] = 2
    pred[tuple(start)] = True
    spacing = [2.0] * ndim
    spacing[axis] = 0.5
    assert average_boundary_distance(pred, ref, spacing) == pytest.approx(0.5 * (1.0 + 0.0))
    assert hausdorff_boundary_distance(pred, ref, spacing) == pytest.approx(2.0)
    # median of [0, .5, 1, 1.5, 2] is 1; of [0] is 0; the larger directed value is kept
    assert hausdorff_boundary_distance(pred, ref, spacing, percentile=50) == pytest.approx(1.0)


@pytest.mark.parametrize(("ndim", "axis"), [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)])
def test_parallel_sheets_each_axis(ndim, axis):
    # one-voxel-thick sheets normal to `axis`, 3 voxels apart: every voxel is boundary and its
    # nearest voxel of the other sheet is its translate, at 3 × spacing[axis] whatever the rest
    spacing = [1.7, 0.35, 2.9][:ndim]
    spacing[axis] = 0.6
    ref = np.zeros((12,) * ndim, dtype=bool)
    pred = np.zeros_like(ref)
    sheet = [slice(2, 10)] * ndim
    sheet[axis] = 4
    ref[tuple(sheet)] = True
    sheet[axis] = 7
    pred[tuple(sheet)] = True
    assert average_boundary_distance(pred, ref, spacing) == pytest.approx(1.8)
    assert hausdorff_boundary_distance(pred, ref, spacing) == pytest.approx(1.8)


OTHER_SPACINGS = [(0.6, 1.1), (1.3, 0.45)]


@pytest.mark.parametrize("other", OTHER_SPACINGS)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_balls_shifted_3mm_along_each_axis_3d(axis, other):
    # 3 mm = 4 voxels of 0.75 mm, so the second ball is an exact translate of the first; the
    # boundary voxel of the first ball farthest back along `axis` is 3 mm from any voxel of the
    # second, and every voxel has its translate 3 mm away: Hdb = 3 mm exactly.
    spacing = list(other)
    spacing.insert(axis, 0.75)
    shape = [int(round(24 / s)) for s in spacing]
    centre = np.array([11.3, 12.1, 10.7])
    shifted = centre.copy()
    shifted[axis] += 3.0
    ref = _ball(shape, spacing, centre, 6.0)
    pred = _ball(shape, spacing, shifted, 6.0)
    assert np.array_equal(np.roll(ref, 4, axis=axis), pred)  # precondition: an exact translate

    metrics = compute_segmentation_metrics(pred, ref, spacing)
    assert metrics.hdb_mm == pytest.approx(3.0, abs=1e-6)
    assert metrics.adb_mm == pytest.approx(_sphere_shift_adb(6.0, 3.0), abs=0.5 * max(spacing))
    hd95 = hausdorff_boundary_distance(pred, ref, spacing, percentile=95)
    assert 0.0 < hd95 <= metrics.hdb_mm
    assert hausdorff_boundary_distance(pred, ref, spacing, percentile=100) == pytest.approx(metrics.hdb_mm)


@pytest.mark.parametrize("other", [0.6, 1.3])
@pytest.mark.parametrize("axis", [0, 1])
def test_discs_shifted_3mm_along_each_axis_2d(axis, other):
    spacing = [other, other]
    spacing[axis] = 0.75
    shape = [int(round(24 / s)) for s in spacing]
    centre = np.array([11.3, 12.1])
    shifted = centre.copy()
    shifted[axis] += 3.0
    ref = _ball(shape, spacing, centre, 6.0)
    pred = _ball(shape, spacing, shifted, 6.0)
    assert np.array_equal(np.roll(ref, 4, axis=axis), pred)

    assert hausdorff_boundary_distance(pred, ref, spacing) == pytest.approx(3.0, abs=1e-6)
    assert average_boundary_distance(pred, ref, spacing) == pytest.approx(
        _circle_shift_adb(6.0, 3.0), abs=0.5 * max(spacing)
    )


@pytest.mark.parametrize(("shape", "spacing"), [((34, 30, 28), (0.7, 1.3, 0.9)), ((70, 64), (0.35, 0.8))])
def test_random_blobs_match_scipy_distance_transform(shape, spacing):
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 3)
    ref = field > 0.02
    pred = (field + 0.5 * ndimage.gaussian_filter(rng.standard_normal(shape), 2)) > 0.0
    ref_to_pred, pred_to_ref = _scipy_boundary_distances(pred, ref, spacing)

    metrics = compute_segmentation_metrics(pred, ref, spacing, hd_percentile=95)
    assert metrics.adb_mm == pytest.approx(0.5 * (ref_to_pred.mean() + pred_to_ref.mean()), rel=1e-5)
    assert metrics.hdb_mm == pytest.approx(
        max(np.percentile(ref_to_pred, 95), np.percentile(pred_to_ref, 95)), rel=1e-5
    )
    assert hausdorff_boundary_distance(pred, ref, spacing) == pytest.approx(
        max(ref_to_pred.max(), pred_to_ref.max()), rel=1e-5
    )
    assert metrics.dice == pytest.approx(2 * (pred & ref).sum() / (pred.sum() + ref.sum()))


def test_mask_touching_the_array_border_keeps_its_border_voxels_as_boundary():
    # the reference fills the array; its boundary is the array's outer layer, so a prediction
    # that is the interior minus one layer lies one voxel inside along each axis
    ref = np.ones((6, 7), dtype=bool)
    pred = np.zeros_like(ref)
    pred[1:5, 1:6] = True
    spacing = (0.4, 1.5)
    # ref's outer-layer voxels are 0.4 mm (along axis 0) or 1.5 mm (along axis 1) from pred's
    # boundary, except its corners, whose nearest pred voxel is diagonal: the farthest
    assert hausdorff_boundary_distance(pred, ref, spacing) == pytest.approx(math.hypot(0.4, 1.5))


# ---------------------------------------------------------------------------------------------
# volumes and circumference


def test_volume_of_box_is_exact_with_anisotropic_spacing():
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[1:5, 2:7, 3:9] = 1  # 120 voxels of 2 × 2.5 × 4 = 20 mm³
    assert volume_ml(mask, (2.0, 2.5, 4.0)) == pytest.approx(2.4)
    area = np.zeros((6, 6), dtype=bool)
    area[0:3, 1:5] = True  # 12 pixels of 0.5 × 0.2 = 0.1 mm²
    assert volume_ml(area, (0.5, 0.2)) == pytest.approx(12 * 0.1 / 1000)


def test_volume_of_sphere_within_discretisation():
    spacing = (0.5, 0.8, 1.0)
    radius = 10.0
    mask = _ball((48, 30, 24), spacing, (12.1, 12.3, 11.9), radius)
    # voxels whose centre lies in the ball cover the ball shrunk by half the voxel diagonal and
    # lie within it grown by as much
    half_diagonal = 0.5 * math.sqrt(sum(s * s for s in spacing))
    volume = volume_ml(mask, spacing)
    assert 4 / 3 * math.pi * (radius - half_diagonal) ** 3 / 1000 <= volume
    assert volume <= 4 / 3 * math.pi * (radius + half_diagonal) ** 3 / 1000
    assert volume == pytest.approx(4 / 3 * math.pi * radius**3 / 1000, rel=0.01)


def test_volume_of_empty_mask_is_zero():
    assert volume_ml(np.zeros((4, 4, 4)), (1.0, 1.0, 1.0)) == 0.0


def test_circumference_difference_scalars_and_arrays():
    assert circumference_difference(180.5, 175.0) == (pytest.approx(5.5), pytest.approx(5.5))
    assert circumference_difference(170.0, 175.0) == (pytest.approx(-5.0), pytest.approx(5.0))
    df, adf = circumference_difference(np.array([100.0, 200.0, 150.0]), np.array([110.0, 190.0, 150.0]))
    np.testing.assert_allclose(df, [-10.0, 10.0, 0.0])
    np.testing.assert_allclose(adf, [10.0, 10.0, 0.0])
    with pytest.raises(InputError):
        circumference_difference(np.ones(3), np.ones(2))


# ---------------------------------------------------------------------------------------------
# empty masks and bad input


def test_empty_reference_raises():
    pred = np.zeros((8, 8), dtype=bool)
    pred[2:4, 2:4] = True
    empty = np.zeros_like(pred)
    for call in (
        lambda: dice(pred, empty),
        lambda: jaccard(empty, empty),
        lambda: average_boundary_distance(pred, empty, (1.0, 1.0)),
        lambda: hausdorff_boundary_distance(empty, empty, (1.0, 1.0)),
        lambda: compute_segmentation_metrics(pred, empty, (1.0, 1.0)),
    ):
        with pytest.raises(EmptyMaskError):
            call()


def test_empty_prediction_is_a_complete_miss():
    ref = np.zeros((8, 8, 8), dtype=bool)
    ref[2:5, 2:5, 2:5] = True
    metrics = compute_segmentation_metrics(np.zeros_like(ref), ref, (1.0, 1.0, 2.0), hd_percentile=95)
    assert metrics.dice == 0.0 and metrics.jaccard == 0.0
    assert metrics.conformity == -math.inf
    assert metrics.adb_mm == math.inf and metrics.hdb_mm == math.inf
    assert metrics.volume_pred_ml == 0.0
    assert metrics.volume_ref_ml == pytest.approx(27 * 2.0 / 1000)


def test_bad_input_is_rejected():
    mask = np.zeros((6, 6), dtype=bool)
    mask[2:4, 2:4] = True
    with pytest.raises(GeometryMismatchError):
        dice(mask, np.ones((6, 7), dtype=bool))
    with pytest.raises(InputError):
        average_boundary_distance(mask, mask, (1.0, 1.0, 1.0))  # one spacing per axis
    with pytest.raises(InputError):
        volume_ml(mask, (1.0, 0.0))
    with pytest.raises(InputError, match="not binary"):
        dice(mask * 255, mask)
    with pytest.raises(InputError):
        volume_ml(np.ones(5, dtype=bool), (1.0,))
    with pytest.raises(InputError):
        hausdorff_boundary_distance(mask, mask, (1.0, 1.0), percentile=120)


# ---------------------------------------------------------------------------------------------
# result container and accumulation


def test_as_dict_has_exactly_the_metric_names():
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:4, 1:4] = True
    metrics = compute_segmentation_metrics(mask, mask, (1.0, 1.0))
    assert list(metrics.as_dict()) == METRIC_NAMES
    assert all(isinstance(value, float) for value in metrics.as_dict().values())


def test_accumulator_mean_and_sample_sd():
    first = SegmentationMetrics(0.9, 0.8, 0.7, 1.0, 3.0, 10.0, 11.0)
    second = SegmentationMetrics(0.7, 0.6, 0.1, 2.0, 5.0, 12.0, 11.0)
    accumulator = SegmentationMetricsAccumulator()
    accumulator.append(first)
    assert math.isnan(accumulator.aggregate()["dice"]["sd"])
    accumulator.append(second)
    summary = accumulator.aggregate()
    assert list(summary) == METRIC_NAMES and len(accumulator) == 2
    assert summary["dice"]["mean"] == pytest.approx(0.8)
    assert summary["dice"]["sd"] == pytest.approx(math.sqrt(2) * 0.1)  # |a - b| / sqrt(2)
    assert summary["hdb_mm"] == {"mean": pytest.approx(4.0), "sd": pytest.approx(math.sqrt(2))}
    assert summary["volume_ref_ml"]["sd"] == 0.0
    accumulator.reset()
    with pytest.raises(InputError):
        accumulator.aggregate()


# ---------------------------------------------------------------------------------------------
# SimpleITK images


def _label_image(array: np.ndarray, spacing_xyz, origin, direction) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def test_evaluate_images_reverses_simpleitk_spacing():
    ref = np.zeros((9, 9), dtype=bool)  # (y, x)
    pred = np.zeros_like(ref)
    ref[4, 2:7] = True  # five pixels along x
    pred[4, 2] = True
    spacing_xyz = (0.5, 2.0)  # x: 0.5 mm, y: 2 mm
    metrics = evaluate_images(
        _label_image(pred, spacing_xyz, (3.0, -2.0), (1, 0, 0, 1)),
        _label_image(ref, spacing_xyz, (3.0, -2.0), (1, 0, 0, 1)),
    )
    assert metrics.hdb_mm == pytest.approx(4 * 0.5)
    assert metrics.adb_mm == pytest.approx(0.5)
    assert metrics.volume_ref_ml == pytest.approx(5 * 1.0 / 1000)


def test_evaluate_images_with_oblique_direction_matches_physical_points():
    shape_zyx, spacing_xyz = (12, 14, 16), (0.7, 1.3, 0.9)
    rotation = sitk.VersorTransform((0.3, -0.5, 0.8), 0.7).GetMatrix()  # an oblique orthonormal direction
    spacing_zyx = spacing_xyz[::-1]
    ref = _ball(shape_zyx, spacing_zyx, (5.1, 8.2, 7.3), 3.5)
    pred = _ball(shape_zyx, spacing_zyx, (5.9, 9.4, 6.1), 3.0)
    pred_image = _label_image(pred, spacing_xyz, (-20.0, 4.0, 31.0), rotation)
    ref_image = _label_image(ref, spacing_xyz, (-20.0, 4.0, 31.0), rotation)

    def boundary_points(mask):
        edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
        return np.array(
            [ref_image.TransformIndexToPhysicalPoint([int(i) for i in zyx[::-1]]) for zyx in np.argwhere(edge)]
        )

    distances = cdist(boundary_points(ref), boundary_points(pred))  # brute force, in world space
    ref_to_pred, pred_to_ref = distances.min(axis=1), distances.min(axis=0)
    metrics = evaluate_images(pred_image, ref_image)
    assert metrics.hdb_mm == pytest.approx(max(ref_to_pred.max(), pred_to_ref.max()), rel=1e-5)
    assert metrics.adb_mm == pytest.approx(0.5 * (ref_to_pred.mean() + pred_to_ref.mean()), rel=1e-5)
    assert metrics.volume_pred_ml == pytest.approx(pred.sum() * np.prod(spacing_xyz) / 1000)


def test_evaluate_images_refuses_different_grids():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 2:5] = True
    ref = _label_image(mask, (1.0, 1.0), (0.0, 0.0), (1, 0, 0, 1))
    with pytest.raises(GeometryMismatchError):
        evaluate_images(_label_image(mask, (1.0, 1.0), (0.001, 0.0), (1, 0, 0, 1)), ref)
    with pytest.raises(GeometryMismatchError):
        evaluate_images(_label_image(mask, (1.0, 1.1), (0.0, 0.0), (1, 0, 0, 1)), ref)
