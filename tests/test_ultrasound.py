"""Tests for fetalbiometry.data.ultrasound, against closed-form geometry and speckle statistics."""

import math

import numpy as np
import pytest

from fetalbiometry.data.ultrasound import (
    Bone,
    Ellipsoid,
    FourierNoise,
    SectorProbe,
    bmode,
    rayleigh_speckle,
    transmission,
)


def sphere(radius: float, dim: int = 3) -> Ellipsoid:
    return Ellipsoid(np.zeros(dim), np.full(dim, radius), np.eye(dim))


def columns(*points) -> np.ndarray:
    return np.array(points, dtype=float).T


def test_signed_distance_is_exact_for_a_sphere_and_culling_keeps_it():
    points = columns((0, 0, 0), (3, 4, 0), (0, 0, 25), (100, 0, 0))
    expected = [-10.0, -5.0, 15.0, 90.0]
    np.testing.assert_allclose(sphere(10.0).signed_distance(points), expected)
    culled = sphere(10.0).signed_distance(points, cull_mm=20.0)
    np.testing.assert_allclose(culled[:3], expected[:3])
    assert culled[3] == np.inf


def test_rotated_ellipse_distance_is_zero_on_its_outline():
    angle = 0.6
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    ellipse = Ellipsoid(np.array([5.0, -2.0]), np.array([8.0, 3.0]), rotation)
    t = np.linspace(0, 2 * math.pi, 50)
    outline = ellipse.center[:, None] + rotation @ np.stack([8.0 * np.cos(t), 3.0 * np.sin(t)])
    np.testing.assert_allclose(ellipse.signed_distance(outline), 0.0, atol=1e-9)
    assert ellipse.signed_distance(ellipse.center[:, None])[0] < 0


@pytest.mark.parametrize("dim", [2, 3])
def test_shell_optical_depth_is_attenuation_times_bone_crossed(dim):
    """A shell of radii 10 and 8 mm seen from 50 mm above: the beam to the centre crosses 2 mm
    of bone, to a point behind the shell 4 mm, to a point inside the near wall 1 mm."""
    apex = np.zeros(dim)
    apex[1] = -50.0
    bone = Bone(sphere(10.0, dim), 0.5, inner=sphere(8.0, dim))
    points = np.zeros((dim, 5))
    points[1] = [0.0, 20.0, -9.0, 0.0, -60.0]
    points[0, 3] = 30.0  # beside the shell: the beam misses it
    expected = np.array([1.0, 2.0, 0.5, 0.0, 0.0])  # 0.5/mm × (2, 4, 1, 0, 0) mm
    np.testing.assert_allclose(bone.optical_depth(apex, points), expected, atol=1e-9)
    np.testing.assert_allclose(transmission(apex, points, [bone, bone]), np.exp(-2 * expected))


def test_bone_density_scales_the_shadow_and_moving_keeps_the_geometry():
    apex = np.array([0.0, -50.0, 0.0])
    half_density = Bone(sphere(10.0), 0.5, inner=sphere(8.0), density=lambda local: np.full(local.shape[1], 0.5))
    assert half_density.optical_depth(apex, columns((0, 20, 0)))[0] == pytest.approx(1.0)
    solid = Bone(sphere(5.0), 1.0)
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    moved = solid.moved(np.array([0.0, 10.0, 0.0]), turn)
    assert moved.optical_depth(apex, columns((0, 30, 0)))[0] == pytest.approx(10.0)  # a 10 mm chord


def test_fourier_noise_is_smooth_unit_variance_and_deterministic():
    noise = FourierNoise.random(np.random.default_rng(0), 3, (5.0, 20.0), n_waves=12)
    points = np.random.default_rng(1).uniform(-500, 500, size=(3, 20000))
    values = noise(points)
    assert abs(values.mean()) < 0.05 and values.std() == pytest.approx(1.0, abs=0.1)
    nearby = noise(points + 0.01)
    assert np.abs(nearby - values).max() < 0.05
    again = FourierNoise.random(np.random.default_rng(0), 3, (5.0, 20.0), n_waves=12)
    np.testing.assert_array_equal(again(points), values)


def test_sector_probe_geometry():
    probe = SectorProbe(np.array([0.0, -100.0]), skin_radius_mm=30.0, half_angle_deg=30.0)
    points = columns((0, 0), (0, -80), (70, 0), (50, 0))
    directions, depth = probe.beams(points)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0)
    assert depth[0] == pytest.approx(70.0)
    # above the skin; outside 30° (tan 30° · 100 = 57.7 mm); inside
    np.testing.assert_array_equal(probe.in_sector(points), [True, False, False, True])
    assert probe.lateral_angle(points)[3] == pytest.approx(math.atan2(50, 100))
    assert probe.gain(np.array([0.0, 100.0])) == pytest.approx([1.0, math.exp(-0.4)])


def test_speckle_is_rayleigh_and_compounding_lowers_its_contrast():
    rng = np.random.default_rng(2)
    single = rayleigh_speckle((256, 256), (1.0, 1.0), (1.0, 1.0), rng, looks=1)
    assert single.dtype == np.float32 and single.mean() == pytest.approx(1.0, abs=1e-4)
    rayleigh_contrast = math.sqrt(4.0 / math.pi - 1.0)  # std / mean of a Rayleigh variable: 0.523
    assert single.std() == pytest.approx(rayleigh_contrast, abs=0.03)
    compounded = rayleigh_speckle((256, 256), (1.0, 1.0), (1.0, 1.0), rng, looks=4)
    assert compounded.std() == pytest.approx(rayleigh_contrast / 2.0, abs=0.03)
    coarse = rayleigh_speckle((256, 256), (1.0, 1.0), (3.0, 3.0), rng, looks=1)

    def neighbour_correlation(field):
        return np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]

    assert neighbour_correlation(coarse) > neighbour_correlation(single) + 0.1


def test_bmode_log_compression_and_sector():
    levels = np.array([255.0, 0.0, 200.0, 200.0, 200.0])
    attenuation = np.array([1.0, 1.0, 1.0, 0.1, 1.0])
    inside = np.array([True, True, True, True, False])
    image = bmode(levels, attenuation, np.ones(5, np.float32), inside, np.random.default_rng(0))
    assert image.dtype == np.float32
    assert image[0] > 250.0 and image[1] < 5.0 and image[4] == 0.0
    # an attenuation of 0.1 is -20 dB: 20/50 of the 255-level display range
    assert image[2] - image[3] == pytest.approx(0.4 * 255.0, abs=2.0)
