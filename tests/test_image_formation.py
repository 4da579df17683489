"""Tests for the polar B-mode model (fetalbiometry.data.ultrasound.polar_envelope and
fetalbiometry.data.synthetic.scan): what it must show, not its pixel values.

The expectations are the physics the model stands for (docs/phantoms.md): speckle grain that grows
with depth and is larger laterally than axially, shadows behind bone, enhancement behind fluid,
reverberation at multiples of the wall's depth, labels untouched by the image formation.
"""

import math
from dataclasses import dataclass

import numpy as np
import pytest
import SimpleITK as sitk
from fetalbiometry.data.anatomy import ECHO_LEVEL, LIMB_BONE_LEVEL, MaternalTissue, amniotic_sac_probability
from fetalbiometry.data.realism import correlation_length
from fetalbiometry.data.synthetic import (
    IMAGE_MODELS,
    make_head_volume,
    make_plane,
    scan,
)
from fetalbiometry.data.ultrasound import (
    Bone,
    CartesianGrid,
    Ellipsoid,
    FourierNoise,
    PointSpreadFunction,
    PolarGrid,
    SectorProbe,
    depth_dependent_blur,
    polar_envelope,
    reverberation,
    time_gain_compensated,
)
from fetalbiometry.errors import InputError


def disk(x: float, y: float, radius: float) -> Ellipsoid:
    return Ellipsoid(np.array([x, y]), np.array([radius, radius]), np.eye(2))


@dataclass(frozen=True)
class Inclusions:
    """Soft tissue everywhere, a solid bone disk and a fluid disk (the label)."""

    bone: Ellipsoid
    cyst: Ellipsoid

    @property
    def bones(self) -> tuple[Bone, ...]:
        return (Bone(self.bone, 0.9),)

    def echo(self, points, beams, edge_mm):
        level = np.full(points.shape[1], ECHO_LEVEL["soft_tissue"])
        level[self.bone.signed_distance(points) <= 0.0] = ECHO_LEVEL["bone"]
        cyst = self.cyst.signed_distance(points) <= 0.0
        level[cyst] = ECHO_LEVEL["fluid"]
        return level, np.ones(points.shape[1]), cyst


PIXEL_MM = 0.4
GRID = CartesianGrid(np.zeros(2), np.eye(2) * PIXEL_MM, (200, 240))  # 80 mm deep, 96 mm wide
PROBE = SectorProbe(np.array([48.0, -40.0]), 40.0, half_angle_deg=36.0)
SCENE = Inclusions(bone=disk(32.0, 25.0, 4.0), cyst=disk(64.0, 25.0, 8.0))


def scanned(seed: int, model: str = "polar") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return scan(SCENE, MaternalTissue.random(rng, 2, 100.0), PROBE, GRID, rng, model)


def window_mean(images: list[np.ndarray], x_mm: float, y_mm: float, half_mm: float = 2.5) -> float:
    """Mean intensity of the images in a square window around (x, y) mm."""
    c, r, h = round(x_mm / PIXEL_MM), round(y_mm / PIXEL_MM), round(half_mm / PIXEL_MM)
    return float(np.mean([image[r - h : r + h + 1, c - h : c + h + 1].mean() for image in images]))


def behind(centre: Ellipsoid, y_mm: float) -> float:
    """x (mm) at depth ``y_mm`` of the beam from the probe through ``centre``."""
    direction = centre.center - PROBE.apex
    return float(PROBE.apex[0] + direction[0] * (y_mm - PROBE.apex[1]) / direction[1])


@pytest.fixture(scope="module")
def polar_images() -> list[np.ndarray]:
    return [scanned(seed)[0] for seed in range(3)]


def test_bone_casts_a_shadow(polar_images):
    depth = 55.0
    shadow = window_mean(polar_images, behind(SCENE.bone, depth), depth)
    beside = window_mean(polar_images, 48.0, depth)
    assert shadow < beside - 30.0


def test_fluid_enhances_the_echoes_behind_it(polar_images):
    depth = 55.0
    enhanced = window_mean(polar_images, behind(SCENE.cyst, depth), depth)
    beside = window_mean(polar_images, 48.0, depth)
    assert enhanced > beside + 5.0


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_label_is_the_scene_and_the_image_deterministic(model):
    image, label = scanned(7, model)
    rows, columns = np.indices(GRID.shape)
    inside = np.hypot(columns * PIXEL_MM - 64.0, rows * PIXEL_MM - 25.0) <= 8.0
    np.testing.assert_array_equal(label, inside)
    np.testing.assert_array_equal(image, scanned(7, model)[0])
    assert not np.array_equal(image, scanned(8, model)[0])


def test_fetal_parts_fill_the_fluid_but_not_the_walls():
    undulation = FourierNoise.random(np.random.default_rng(0), 2, (40.0, 150.0))
    parts = ((disk(0.0, 60.0, 5.0), 140.0), (disk(0.0, 5.0, 8.0), 140.0))  # one in the fluid, one in the wall
    bare, crowded = (MaternalTissue(12.0, 100.0, None, undulation, fetal_parts) for fetal_parts in ((), parts))
    points = np.array([[0.0, 0.0, 0.0], [60.0, 80.0, 5.0]])
    depth, angle = points[1], np.zeros(3)
    with_parts, without = crowded.echo(points, depth, angle), bare.echo(points, depth, angle)
    assert without[0] == ECHO_LEVEL["fluid"] and with_parts[0] > 90.0  # the part, textured
    assert with_parts[1] == without[1] == ECHO_LEVEL["fluid"]  # fluid beside it
    assert with_parts[2] == without[2] != ECHO_LEVEL["fluid"]  # the wall in front stays


def test_random_fetal_parts_lie_against_the_structure():
    centre, radius = np.array([60.0, 70.0]), 30.0
    tissues = [MaternalTissue.random(np.random.default_rng(seed), 2, 100.0, around=(centre, radius)) for seed in range(20)]
    outlines = [outline for tissue in tissues for outline, level in tissue.fetal_parts if level != LIMB_BONE_LEVEL]
    assert 10 <= len(outlines) and any(not tissue.fetal_parts for tissue in tissues)
    for outline in outlines:  # each part's soft tissue comes as near as the structure's edge or nearer
        assert np.linalg.norm(outline.center - centre) - outline.semi_axes.min() <= radius + 1e-9
    assert not MaternalTissue.random(np.random.default_rng(0), 2, 100.0).fetal_parts


def test_a_planes_structure_lies_in_the_fluid_below_the_wall_and_placenta():
    """However small and shallow the structure (a 10-week head 9 mm in radius, its centre 15 mm
    deep), the maternal wall and the placenta end above it, by up to half its radius; a deep one
    leaves them as drawn; volumes (no structure given) too."""
    def near_layers(centre_depth: float, radius: float) -> list[tuple[float, float]]:
        drawn = [MaternalTissue.random(np.random.default_rng(seed), 2, 100.0, around=(np.array([0.0, centre_depth]), radius)) for seed in range(30)]
        return [(t.wall_mm, t.wall_mm + (t.placenta[2] if t.placenta else 0.0)) for t in drawn]

    shallow = near_layers(15.0, 9.0)
    assert all(3.0 <= wall and end <= 6.0 + 1e-9 for wall, end in shallow)
    deep = near_layers(120.0, 30.0)
    assert all(9.0 <= wall <= 16.0 and end <= 90.0 for wall, end in deep)
    assert any(end > 30.0 for _, end in deep)  # placentas as thick as drawn
    volume = MaternalTissue.random(np.random.default_rng(0), 3, 100.0)
    assert 9.0 <= volume.wall_mm <= 16.0


def test_an_amniotic_sac_closes_the_fluid_on_every_side():
    undulation = FourierNoise.random(np.random.default_rng(0), 2, (40.0, 150.0))
    sac = (disk(0.0, 60.0, 20.0), 2.0)
    part_outside = ((disk(0.0, 88.0, 3.0), 110.0),)  # a fetal part drawn past the sac's wall
    open_fluid, closed = (MaternalTissue(12.0, 150.0, None, undulation, part_outside, s) for s in (None, sac))
    points = np.array([[0.0, 0.0, 0.0, 30.0], [60.0, 88.0, 5.0, 60.0]])  # sac centre, beyond it, wall, beside
    depth, angle = points[1], np.zeros(4)
    without, with_sac = open_fluid.echo(points, depth, angle), closed.echo(points, depth, angle)
    assert without[0] == with_sac[0] == ECHO_LEVEL["fluid"]  # inside the sac: fluid
    assert without[1] > 90.0 and with_sac[1] != without[1] and with_sac[1] > 90.0  # uterine wall, not the part
    assert with_sac[3] > 90.0 and without[3] == ECHO_LEVEL["fluid"]  # beside the sac: wall, not fluid
    assert with_sac[2] == without[2] != ECHO_LEVEL["fluid"]  # the maternal wall under the probe stays


def test_the_sac_is_seen_whole_early_and_holds_the_structure():
    assert amniotic_sac_probability(14.0) == pytest.approx(0.8)
    assert amniotic_sac_probability(24.0) == amniotic_sac_probability(38.0) == 0.0
    assert amniotic_sac_probability(16.0) > amniotic_sac_probability(20.0) > 0.0
    centre, radius = np.array([60.0, 70.0]), 15.0

    def tissues(ga: float | None, around=(centre, radius)) -> list[MaternalTissue]:
        return [MaternalTissue.random(np.random.default_rng(seed), 2, 100.0, around=around, ga_weeks=ga) for seed in range(40)]

    early = [tissue.amniotic_sac for tissue in tissues(14.0) if tissue.amniotic_sac is not None]
    assert 20 <= len(early) < 40
    for outline, wall_mm in early:  # the structure lies whole inside the sac
        assert np.linalg.norm(outline.center - centre) + radius <= outline.semi_axes.min() + 1e-9
        assert 1.0 <= wall_mm <= 3.0
    assert all(tissue.amniotic_sac is None for tissue in tissues(30.0) + tissues(14.0, None) + tissues(None))


def test_scan_rejects_an_unknown_model():
    with pytest.raises(InputError):
        scanned(0, "field-ii")


@pytest.mark.parametrize("kind", ["head", "abdomen", "femur"])
def test_plane_masks_do_not_depend_on_the_image_model(kind):
    planes = [make_plane(kind, 3, shape=(64, 96), image_model=model) for model in IMAGE_MODELS]
    masks = [sitk.GetArrayFromImage(plane.mask) for plane in planes]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert planes[0].truth == planes[1].truth
    images = [sitk.GetArrayFromImage(plane.image) for plane in planes]
    assert not np.array_equal(images[0], images[1])


def test_volume_labels_do_not_depend_on_the_image_model():
    kwargs = {"shape": (24, 24, 24), "spacing": (7.0, 7.0, 7.0)}
    volumes = [make_head_volume(2, image_model=model, **kwargs) for model in IMAGE_MODELS]
    labels = [sitk.GetArrayFromImage(volume.label) for volume in volumes]
    np.testing.assert_array_equal(labels[0], labels[1])
    assert volumes[0].truth == volumes[1].truth


# --- the polar model's parts -------------------------------------------------------------------


@pytest.fixture(scope="module")
def uniform_speckle() -> tuple[PolarGrid, np.ndarray]:
    """The envelope of a uniform medium on a fine polar grid, 100 mm deep, 50° wide."""
    probe = SectorProbe(np.array([0.0, -30.0]), 30.0, half_angle_deg=25.0)
    grid = PolarGrid.covering(probe, 100.0, 0.1, 50.0)
    ones = np.ones(grid.shape, np.float32)
    envelope = polar_envelope(
        ones, ones, 0.03 * ones, grid, PointSpreadFunction(), np.random.default_rng(0), np.zeros(grid.shape[0]), 0.0
    )
    return grid, envelope


def grain_mm(grid: PolarGrid, envelope: np.ndarray, depth_mm: float) -> tuple[float, float]:
    """Axial and lateral speckle grain (autocorrelation half-width, mm) around a depth."""
    row = round(depth_mm / grid.depth_step_mm)
    band = envelope[row - 64 : row + 64, : envelope.shape[1] // 32 * 32]
    patches = band.reshape(4, 32, -1, 32).transpose(0, 2, 1, 3).reshape(-1, 32, 32)
    arc = (grid.probe.skin_radius_mm + depth_mm) * grid.angle_step
    return correlation_length(patches, 1) * grid.depth_step_mm, correlation_length(patches, 2) * arc


def test_speckle_grain_grows_with_depth_and_is_wider_than_long(uniform_speckle):
    near_axial, near_lateral = grain_mm(*uniform_speckle, 10.0)
    far_axial, far_lateral = grain_mm(*uniform_speckle, 90.0)
    assert far_axial > 1.1 * near_axial
    assert far_lateral > 1.3 * near_lateral
    assert far_lateral > 1.5 * far_axial


def test_speckle_envelope_keeps_the_echo_amplitude_at_every_depth(uniform_speckle):
    _, envelope = uniform_speckle
    depth_means = envelope[: envelope.shape[0] // 5 * 5].reshape(5, -1).mean(axis=1)  # five depth bands
    np.testing.assert_allclose(depth_means, 1.0, rtol=0.08)
    contrast = envelope.std() / envelope.mean()
    assert contrast < math.sqrt(4.0 / math.pi - 1.0)  # compounding lowers the Rayleigh contrast


def test_depth_dependent_blur_keeps_white_noise_at_unit_power():
    noise = np.random.default_rng(1).standard_normal((400, 300)).astype(np.float32)
    blurred = depth_dependent_blur(noise, np.array([[0.8, 1.0], [1.5, 2.0], [3.0, 4.0]]))
    np.testing.assert_allclose(blurred.reshape(8, -1).var(axis=1), 1.0, rtol=0.15)


def test_time_gain_compensation_leaves_the_difference_between_beams():
    attenuation = np.full((50, 4), 0.05, np.float32)
    attenuation[10:20, 0] = 0.002  # fluid on beam 0
    factor = time_gain_compensated(attenuation, 1.0, np.zeros(50))
    assert factor[5] == pytest.approx(np.ones(4))
    assert factor[30, 0] > 1.3 and factor[30, 1] < 1.0  # enhanced behind the fluid, others a little darker
    np.testing.assert_allclose(np.log(factor).mean(axis=1), 0.0, atol=1e-5)


def test_reverberation_repeats_the_near_field_one_wall_deeper():
    amplitude = np.zeros((30, 2), np.float32)
    amplitude[2, 0] = 1.0
    echoed = reverberation(amplitude, period=10, bounces=2, loss_db=12.0)
    assert echoed[2, 0] == pytest.approx(1.0)
    assert echoed[12, 0] == pytest.approx(10 ** (-12.0 / 20.0), rel=1e-5)
    assert echoed[22, 0] == pytest.approx(10 ** (-24.0 / 20.0), rel=1e-5)
    assert np.count_nonzero(echoed) == 3


def test_polar_grid_round_trips_points():
    probe = SectorProbe(np.array([10.0, -40.0, 5.0]), 30.0)
    points = np.array([[10.0, 0.0, 5.0], [30.0, 20.0, -10.0], [-5.0, 60.0, 20.0]]).T
    np.testing.assert_allclose(probe.cartesian(probe.polar(points)), points, atol=1e-9)
    grid = CartesianGrid(np.array([-20.0, -10.0, -20.0]), np.eye(3) * 2.0, (20, 40, 25))
    polar = PolarGrid.imaging(probe, grid)
    values = np.random.default_rng(0).random(polar.shape).astype(np.float32)
    np.testing.assert_allclose(polar.sample(values, polar.points()[:, :50]), values.ravel()[:50], atol=1e-5)
