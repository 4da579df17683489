"""Tests for fetalbiometry.data.synthetic: 3D whole-head phantoms, 2D planes and cohorts on disk.

Expected values are computed independently of the generator: label volumes by counting voxels,
head-frame geometry from the phantom's own truth (pose, centre, semi-axes) with SciPy rotations,
ellipses and femur lengths by OpenCV fits of the masks, sizes against INTERGROWTH-21st z-scores.
"""

import csv
import json
import math

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from monai.data import load_decathlon_datalist
from scipy.spatial.transform import Rotation

from fetalbiometry.biometry.ellipse import ramanujan_circumference
from fetalbiometry.biometry.growth import intergrowth_zscore
from fetalbiometry.data.anatomy import HeadAnatomy
from fetalbiometry.data.synthetic import (
    PLANE_KINDS,
    make_head_volume,
    make_plane,
    make_rescans,
    write_phantoms,
)
from fetalbiometry.errors import InputError
from fetalbiometry.io import check_same_grid, read_image
from fetalbiometry.study.manifest import read_manifest

# A 22-week head on a 1.4 mm grid: fine enough to resolve the skull, small enough to be quick.
FINE = dict(shape=(64, 64, 64), spacing=(1.4, 1.4, 1.4), ga_weeks=22.0)


@pytest.fixture(scope="module")
def default_phantom():
    return make_head_volume(5)


@pytest.fixture(scope="module")
def fine_phantom():
    return make_head_volume(5, probe_direction="lateral", **FINE)


def world_points(image: sitk.Image) -> np.ndarray:
    """(3, N) physical coordinates of the voxels, in numpy (z, y, x) ravel order."""
    k, j, i = np.indices(tuple(reversed(image.GetSize()))).reshape(3, -1)
    steps = np.reshape(image.GetDirection(), (3, 3)) * np.array(image.GetSpacing())
    return np.array(image.GetOrigin())[:, None] + steps @ np.stack([i, j, k]).astype(float)


def head_frame(truth: dict, points: np.ndarray) -> np.ndarray:
    """World points in the head frame, from the pose and centre the truth reports."""
    rotation = Rotation.from_euler("xyz", [truth[f"pose_{a}_deg"] for a in "xyz"], degrees=True).as_matrix()
    centre = np.array([truth[f"head_{a}_mm"] for a in "xyz"])
    return rotation.T @ (points - centre[:, None])


def skull_semi_axes(truth: dict) -> np.ndarray:
    return np.array([truth["bpd_mm"], truth["ofd_mm"], truth["skull_height_mm"]]) / 2.0


def skull_radius(truth: dict, points: np.ndarray) -> np.ndarray:
    """Normalised radius of the skull ellipsoid (1 on its outer surface)."""
    q = head_frame(truth, points) / skull_semi_axes(truth)[:, None]
    return np.sqrt((q**2).sum(axis=0))


def arrays(phantom):
    return sitk.GetArrayFromImage(phantom.image), sitk.GetArrayFromImage(phantom.label)


# --- 3D -------------------------------------------------------------------------------------------


def test_volume_is_deterministic_by_seed(default_phantom):
    image, label = arrays(default_phantom)
    again_image, again_label = arrays(make_head_volume(5))
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(label, again_label)
    other_image, other_label = arrays(make_head_volume(6))
    assert not np.array_equal(image, other_image)
    assert not np.array_equal(label, other_label)


def test_volume_types_and_grid(default_phantom):
    image, label = arrays(default_phantom)
    assert image.dtype == np.float32 and image.shape == (64, 64, 64)
    assert 0.0 <= image.min() and image.max() <= 255.0
    radius = skull_radius(default_phantom.truth, world_points(default_phantom.image)).reshape(image.shape)
    assert np.mean(image[(radius > 0.9) & (radius < 1.05)]) > 2.0 * np.median(image[radius < 0.6])  # bright bone
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
    check_same_grid(default_phantom.image, default_phantom.label)
    assert default_phantom.image.GetSpacing() == pytest.approx((2.6, 2.6, 2.6))
    centre = default_phantom.image.TransformContinuousIndexToPhysicalPoint((31.5, 31.5, 31.5))
    assert centre == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_truth_volume_is_voxel_count_times_voxel_volume(default_phantom, fine_phantom):
    for phantom in (default_phantom, fine_phantom):
        _, label = arrays(phantom)
        expected = np.count_nonzero(label) * np.prod(phantom.image.GetSpacing()) / 1000.0
        assert phantom.truth["volume_ml"] == pytest.approx(expected, rel=1e-9)


def test_head_size_is_realistic_for_gestational_age(fine_phantom):
    truth = fine_phantom.truth
    assert truth["ga_weeks"] == 22.0
    assert abs(intergrowth_zscore("hc", truth["hc_mm"], truth["ga_weeks"])) <= 2.0 + 1e-9
    assert truth["hc_mm"] == pytest.approx(ramanujan_circumference(truth["bpd_mm"] / 2, truth["ofd_mm"] / 2))
    assert 0.72 <= truth["bpd_mm"] / truth["ofd_mm"] <= 0.88  # cephalic index
    # The whole head (skull, scalp, face) holds more than the skull ellipsoid, but not twice as much.
    assert truth["skull_volume_ml"] < truth["volume_ml"] < 1.6 * truth["skull_volume_ml"]


def test_label_includes_the_face(fine_phantom):
    _, label = arrays(fine_phantom)
    points = world_points(fine_phantom.image)
    beyond_skull = label.ravel().astype(bool) & (skull_radius(fine_phantom.truth, points) > 1.0 + 4.0 / 26.0)
    assert np.count_nonzero(beyond_skull) > 0.004 * np.count_nonzero(label)
    q = head_frame(fine_phantom.truth, points[:, beyond_skull])
    assert np.median(q[1]) > 0.0 and np.median(q[2]) < 0.0  # in front of and below the cranium


def test_skull_is_bright_and_brain_dark(fine_phantom):
    image, _ = arrays(fine_phantom)
    truth = fine_phantom.truth
    radius = skull_radius(truth, world_points(fine_phantom.image))
    shell = (radius <= 1.0) & (radius > 1.0 - truth["skull_thickness_mm"] / skull_semi_axes(truth).min())
    brain = radius < 0.5
    values = image.ravel()
    assert values[shell].mean() > 1.4 * values[brain].mean()
    assert np.percentile(values[brain], 90) > 10.0  # hypoechoic with spotty speckle, not all black


def test_skull_casts_acoustic_shadows():
    """The far uterine wall is darker where the beam from the probe crossed the skull."""
    phantom = make_head_volume(8, shape=(64, 96, 64), spacing=(3.0, 3.0, 3.0), ga_weeks=22.0, probe_direction="lateral")
    truth, image = phantom.truth, sitk.GetArrayFromImage(phantom.image).ravel()
    points = world_points(phantom.image)
    apex = np.array([truth[f"probe_{a}_mm"] for a in "xyz"])
    distance = np.linalg.norm(points - apex[:, None], axis=0)
    far_wall = np.flatnonzero((distance > 200.0) & (distance < 240.0) & (image > 0))
    # Does the segment apex -> voxel cross the skull ellipsoid? |u(t)| = 1 is a quadratic in t.
    axes = skull_semi_axes(truth)[:, None]
    u_apex = head_frame(truth, apex[:, None]) / axes
    step = head_frame(truth, points[:, far_wall]) / axes - u_apex
    a, half_b, c = (step**2).sum(0), (u_apex * step).sum(0), float((u_apex**2).sum()) - 1.0
    crosses = half_b**2 - a * c > 0.0
    assert 20 < np.count_nonzero(crosses) < len(far_wall) - 20
    shadowed, clear = image[far_wall[crosses]].mean(), image[far_wall[~crosses]].mean()
    assert shadowed < clear - 25.0


def test_rescans_see_the_same_fetus_from_other_directions():
    scans = make_rescans(11, n=3)
    truths = [scan.truth for scan in scans]
    assert [t["probe_direction"] for t in truths] == ["lateral", "anterior", "superior"]
    assert len({t["ga_weeks"] for t in truths}) == 1 and len({t["hc_mm"] for t in truths}) == 1
    volumes = np.array([t["volume_ml"] for t in truths])
    assert volumes.max() / volumes.min() < 1.03
    poses = np.array([[t[f"pose_{a}_deg"] for a in "xyz"] for t in truths])
    assert np.abs(poses[0] - poses[1]).max() > 5.0
    images = [sitk.GetArrayFromImage(scan.image) for scan in scans]
    assert not np.array_equal(images[0], images[1])


def test_anatomy_does_not_depend_on_the_grid(default_phantom):
    """Anisotropic spacing and a rotated grid sample the same head: equal label volumes."""
    anisotropic = make_head_volume(5, shape=(56, 80, 72), spacing=(2.3, 2.1, 3.0))
    turned = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    rotated = make_head_volume(5, direction=turned)
    reference = default_phantom.truth["volume_ml"]
    for phantom in (anisotropic, rotated):
        assert phantom.truth["volume_ml"] == pytest.approx(reference, rel=0.03)
        assert phantom.truth["hc_mm"] == default_phantom.truth["hc_mm"]
    assert rotated.image.GetDirection() == pytest.approx(tuple(turned.ravel()))
    assert anisotropic.image.GetSpacing() == pytest.approx((2.3, 2.1, 3.0))


def test_volume_rejects_bad_input():
    with pytest.raises(InputError):
        make_head_volume(-1)
    with pytest.raises(InputError):
        make_head_volume(1, ga_weeks=50.0)
    with pytest.raises(InputError):
        make_head_volume(1, probe_direction="below")
    with pytest.raises(InputError):
        make_head_volume(1, shape=(64, 64))
    with pytest.raises(InputError):
        make_head_volume(1, direction=np.ones((3, 3)))


# --- 2D -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PLANE_KINDS)
def test_plane_is_deterministic_and_typed(kind):
    plane = make_plane(kind, 4)
    image, mask = sitk.GetArrayFromImage(plane.image), sitk.GetArrayFromImage(plane.mask)
    assert image.dtype == np.uint8 and image.shape == (160, 240)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    check_same_grid(plane.image, plane.mask)
    assert plane.image.GetSpacing() == pytest.approx((plane.truth["pixel_size_mm"],) * 2)
    assert image[0, 0] == 0 and image[0, -1] == 0  # outside the sector
    assert plane.truth["kind"] == kind and 20.0 <= plane.truth["ga_weeks"] <= 38.0
    np.testing.assert_array_equal(image, sitk.GetArrayFromImage(make_plane(kind, 4).image))
    assert not np.array_equal(image, sitk.GetArrayFromImage(make_plane(kind, 5).image))


@pytest.mark.parametrize("kind, measure", [("head", "hc"), ("abdomen", "ac")])
@pytest.mark.parametrize("seed", [0, 1])
def test_plane_mask_matches_truth_ellipse(kind, measure, seed):
    plane = make_plane(kind, seed)
    truth = plane.truth
    contours, _ = cv2.findContours(sitk.GetArrayFromImage(plane.mask), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (cx, cy), (width, height), angle = cv2.fitEllipse(max(contours, key=len))
    assert (cx, cy) == pytest.approx((truth["center_x_px"], truth["center_y_px"]), abs=1.0)
    semi_axes = sorted((truth["semi_axes_a_px"], truth["semi_axes_b_px"]))
    assert sorted((width / 2, height / 2)) == pytest.approx(semi_axes, abs=1.0)
    if truth["semi_axes_a_px"] > 1.05 * truth["semi_axes_b_px"]:
        major = math.radians(angle if width >= height else angle + 90.0)
        assert abs(math.remainder(major - truth["angle_rad"], math.pi)) < math.radians(3.0)
    a_mm, b_mm = truth["semi_axes_a_mm"], truth["semi_axes_b_mm"]
    assert truth[f"{measure}_mm"] == pytest.approx(ramanujan_circumference(a_mm, b_mm))
    assert a_mm == pytest.approx(truth["semi_axes_a_px"] * truth["pixel_size_mm"])
    assert abs(intergrowth_zscore(measure, truth[f"{measure}_mm"], truth["ga_weeks"])) <= 2.0 + 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_femur_mask_matches_truth_length(seed):
    plane = make_plane("femur", seed)
    truth = plane.truth
    (cx, cy), (width, height), _ = cv2.minAreaRect(cv2.findNonZero(sitk.GetArrayFromImage(plane.mask)))
    assert max(width, height) == pytest.approx(truth["fl_px"], abs=1.0)
    ends = np.array([[truth["x1_px"], truth["y1_px"]], [truth["x2_px"], truth["y2_px"]]])
    assert np.linalg.norm(ends[1] - ends[0]) == pytest.approx(truth["fl_px"])
    assert (cx, cy) == pytest.approx(tuple(ends.mean(axis=0)), abs=1.0)
    assert truth["fl_mm"] == pytest.approx(truth["fl_px"] * truth["pixel_size_mm"])
    assert abs(intergrowth_zscore("fl", truth["fl_mm"], truth["ga_weeks"])) <= 2.0 + 1e-9


def test_femur_casts_a_shadow():
    """Below the bone (deeper along the beams) the thigh is darker than above it."""
    plane = make_plane("femur", 3, ga_weeks=30.0)
    image, mask = sitk.GetArrayFromImage(plane.image).astype(float), sitk.GetArrayFromImage(plane.mask)
    columns = np.flatnonzero(mask.any(axis=0))
    band = max(2, int(4.0 / plane.truth["pixel_size_mm"]))  # 4 mm of thigh above and below the bone
    above, below = [], []
    for column in columns[len(columns) // 3 : 2 * len(columns) // 3]:  # the middle third of the bone
        rows = np.flatnonzero(mask[:, column])
        above.append(image[rows[0] - 2 - band : rows[0] - 2, column].mean())
        below.append(image[rows[-1] + 3 : rows[-1] + 3 + band, column].mean())
    assert np.mean(below) < np.mean(above) - 25.0


def test_planes_draw_the_skull_thicker_than_volumes():
    """HC18's skull echo reaches further inside the head than the phantom bone's: the planes' skull
    is 1.5 times the volumes' (which the shipped 3D model knows), the outline, the HC, unchanged."""
    plane = make_plane("head", 5, (64, 96), ga_weeks=25.0)
    volume_bone = HeadAnatomy.from_seed(5, 25.0).skull_thickness_mm
    assert plane.truth["skull_thickness_mm"] == pytest.approx(1.5 * volume_bone)
    assert plane.truth["hc_mm"] == pytest.approx(HeadAnatomy.from_seed(5, 25.0).hc_mm, rel=1e-6)


def test_plane_rejects_bad_input():
    with pytest.raises(InputError):
        make_plane("knee", 0)
    with pytest.raises(InputError):
        make_plane("head", 0, pixel_size=0.0)


# --- cohorts ------------------------------------------------------------------------------------


def test_write_3d_cohort_with_rescans(tmp_path):
    records = write_phantoms(tmp_path, dim=3, n=2, seed=3, rescans=2)
    assert [r.subject for r in records] == ["sub-000", "sub-000", "sub-001", "sub-001"]
    image = read_image(records[0].image)
    check_same_grid(image, read_image(records[0].label))
    assert image.GetSpacing() == pytest.approx((2.6, 2.6, 2.6))

    datalist = json.loads((tmp_path / "datalist.json").read_text(encoding="utf-8"))
    assert datalist["numTraining"] == 4
    for entry in datalist["training"]:
        assert not entry["image"].startswith("/") and (tmp_path / entry["image"]).is_file()
    loaded = load_decathlon_datalist(tmp_path / "datalist.json", data_list_key="training", base_dir=tmp_path)
    assert [item["label"] for item in loaded] == [str(r.label) for r in records]

    with open(tmp_path / "truth.csv", newline="") as handle:
        truth_rows = list(csv.DictReader(handle))
    assert [row["case"] for row in truth_rows] == [r.case for r in records]
    assert float(truth_rows[1]["volume_ml"]) == pytest.approx(records[1].truth["volume_ml"])

    with open(tmp_path / "manifest.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["subject", "image", "reference", "expert_volume_ml"]
    rows = read_manifest(tmp_path / "manifest.csv")
    assert [row.subject for row in rows] == ["sub-000", "sub-000", "sub-001", "sub-001"]
    for row, record in zip(rows, records):
        assert row.image_path == record.image and row.reference_path == record.label
        assert row.expert_volume_ml == pytest.approx(record.truth["volume_ml"], rel=0.15)
        assert row.expert_volume_ml != pytest.approx(record.truth["volume_ml"], rel=1e-6)
    again = write_phantoms(tmp_path / "again", dim=3, n=1, seed=3)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(read_image(again[0].image)), sitk.GetArrayFromImage(image)
    )


def test_write_2d_cohort(tmp_path):
    records = write_phantoms(tmp_path, dim=2, n=4, seed=1)
    assert [r.truth["kind"] for r in records] == ["head", "abdomen", "femur", "head"]
    mask = read_image(records[2].label)
    assert mask.GetDimension() == 2 and np.count_nonzero(sitk.GetArrayFromImage(mask)) > 0
    with open(tmp_path / "truth.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["hc_mm"] and rows[1]["ac_mm"] and rows[2]["fl_mm"] and not rows[2]["hc_mm"]
    assert not (tmp_path / "manifest.csv").exists()
    with pytest.raises(InputError):
        write_phantoms(tmp_path, dim=2, n=1, rescans=2)
