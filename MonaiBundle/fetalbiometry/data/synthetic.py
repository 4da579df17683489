"""Synthetic fetal ultrasound phantoms with their ground truth: 3D whole-head volumes and 2D planes.

Users make demo cohorts with them (``fetalbiometry synth``) and the 3D model is trained on them, so
each phantom carries its exact label and measurements.

3D (:func:`make_head_volume`) follows the data of the 3D whole-head paper
(shared/papers/3d-whole-head-hybrid-attention-autocontext.txt, section 2.1 and Fig. 1): a
fetal head of 20–31 weeks in free pose (:class:`~fetalbiometry.data.anatomy.HeadAnatomy`), scanned
by a probe with a 75° scan angle, labelled as the *whole* head (skull, scalp and face: everything
above the plane through the lower jaw and the cervical spine C2). Rescans (:func:`make_rescans`)
see the same fetus from other probe directions, like the paper's reproducibility study (3 volumes
per volunteer along predefined directions, section 3).

2D (:func:`make_plane`) gives the standard planes of the multi-task paper
(shared/papers/multitask-unet-hc-ac-fl.txt): the transthalamic head plane (an axial section of
the same 3D head, so HC is the Ramanujan perimeter of the outer skull ellipse, as in HC18), the
abdominal plane and the femur, in an HC18-like sector image.

:mod:`fetalbiometry.data.anatomy` defines the tissues as functions of position in millimetres and
:mod:`fetalbiometry.data.ultrasound` the scanner (sector, depth attenuation, acoustic shadows,
speckle: the polar or Cartesian B-mode model of :func:`scan`, docs/phantoms.md); the grid only
samples them, so one subject gives the same anatomy at any shape, spacing or orientation.
Everything is deterministic by seed. :func:`write_phantoms` writes cohorts to disk.

The world frame is the image's physical space, with its origin at the centre of the volume; the
probe looks along +y.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from fetalbiometry.biometry.ellipse import Ellipse
from fetalbiometry.biometry.rectangle import Rectangle
from fetalbiometry.data.anatomy import (
    AbdomenSlice,
    FemurSlice,
    HeadAnatomy,
    HeadSlice,
    MaternalTissue,
    Posed,
    Scene,
    acoustic_properties,
    check_seed,
    rotation_2d,
)
from fetalbiometry.data.ultrasound import (
    CartesianGrid,
    FourierNoise,
    PointSpreadFunction,
    PolarGrid,
    SectorProbe,
    bmode,
    echo_amplitude,
    log_compress,
    polar_envelope,
    rayleigh_speckle,
    transmission,
)
from fetalbiometry.errors import InputError
from fetalbiometry.io import atomic_output, label_like, write_image
from fetalbiometry.metrics import volume_ml

__all__ = [
    "DEFAULT_PLANE_SHAPE",
    "DEFAULT_VOLUME_SHAPE",
    "DEFAULT_VOLUME_SPACING",
    "IMAGE_MODELS",
    "PAPER_INPUT_SHAPE",
    "PAPER_INPUT_SPACING",
    "PAPER_VOLUME_SHAPE",
    "PAPER_VOLUME_SPACING",
    "PLANE_KINDS",
    "PROBE_DIRECTIONS",
    "HeadPhantom",
    "PhantomRecord",
    "PlanePhantom",
    "make_head_volume",
    "make_plane",
    "make_rescans",
    "scan",
    "scanner_grid",
    "write_phantoms",
]

ImageModel = Literal["polar", "cartesian"]
IMAGE_MODELS: tuple[ImageModel, ...] = ("polar", "cartesian")
"""B-mode models: the polar point-spread-function model (the default), or the earlier Cartesian
speckle, kept as a fast baseline and as a second look for training (docs/phantoms.md)."""

PlaneKind = Literal["head", "abdomen", "femur"]
PLANE_KINDS: tuple[PlaneKind, ...] = ("head", "abdomen", "femur")

# Grids in (z, y, x) array order with (x, y, z) spacing in mm. The paper's volumes are 388×258×440
# voxels of 0.38 mm, down-scaled by 0.4 for the network (section 3.1).
PAPER_VOLUME_SHAPE = (440, 258, 388)
PAPER_VOLUME_SPACING = (0.38, 0.38, 0.38)
PAPER_INPUT_SHAPE = (176, 103, 155)
PAPER_INPUT_SPACING = (0.95, 0.95, 0.95)
DEFAULT_VOLUME_SHAPE = (64, 64, 64)
DEFAULT_VOLUME_SPACING = (2.6, 2.6, 2.6)
DEFAULT_PLANE_SHAPE = (160, 240)  # rows, columns: an HC18 frame (540×800) at 0.3 scale

# Scan directions relative to the fetal head: the unit vector from the head towards the probe,
# in the head frame. Rescans cycle through them, like the paper's predefined directions (Fig. 9).
PROBE_DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "lateral": (1.0, 0.0, 0.0),
    "anterior": (0.0, 1.0, 0.0),
    "superior": (0.0, 0.0, 1.0),
    "posterior": (0.0, -1.0, 0.0),
}

_GA_RANGE_2D = (20.0, 38.0)
_APEX_DEPTH_MM = 110.0  # the probe's virtual apex above the volume centre (3D)
_SKIN_RADIUS_MM = 30.0  # radius of the probe face: where the image starts
_SPECKLE_GRAIN_MM = {3: (1.2, 0.4, 0.8), 2: (0.35, 0.7)}  # Cartesian model, array order: ([z,] y, x)
_TGC_ERROR_DB = 1.5  # SD of the time-gain compensation's error along depth (polar model)
_GAIN_DB = -5.0  # overall display gain of the polar model, matched to HC18's grey levels
_GAIN_SPREAD_DB = 4.0  # the gain varies by up to this from one image to the next (sonographers set it)
_DYNAMIC_RANGE_DB = (45.0, 60.0)  # the display's dynamic range, drawn per image
# The planes' skull is drawn this much thicker than the volumes': HC18's skull echo reaches as far
# inside the head as that of a bone half again as thick (docs/experiments/2026-12-05-sim-to-real-skull-sides-early-heads.md);
# the volumes keep the bone the shipped 3D model was trained on until it is retrained.
_PLANE_SKULL_THICKENING = 1.5
_FAR_WALL_GAP_2D_MM = (-15.0, 25.0)  # planes: fluid between the structure and the far uterine wall; < 0: against it
_CLUTTER_DB = (-55.0, -37.0)  # the scanner's clutter floor (side lobes, reverberation, debris), drawn per
# image, relative to bone's echo: it shows clear fluid from black to grey, as real frames do
_RESOLUTION_MM = 0.8  # echo boundaries are blurred over at least this (point-spread function)
_CHUNK_POINTS = 1 << 20  # points evaluated at once when rendering a volume
_EXPERT_VOLUME_SD = 0.03  # relative SD of the simulated expert volumes of the study manifest


# --- small helpers ----------------------------------------------------------------------------


def _rng(*keys: int) -> np.random.Generator:
    """A generator seeded by a sequence of non-negative integers (NumPy's SeedSequence)."""
    return np.random.default_rng([int(k) for k in keys])


def _check_shape(shape: Sequence[int], dim: int) -> tuple[int, ...]:
    """``shape`` as a tuple of ``dim`` ints; InputError otherwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != dim or min(shape) < 1:
        raise InputError(f"shape must be {dim} positive sizes, got {shape}")
    return shape


def _check_spacing(spacing: Sequence[float], dim: int) -> np.ndarray:
    """``spacing`` as an array of ``dim`` positive mm; InputError otherwise."""
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (dim,) or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise InputError(f"spacing must be {dim} positive numbers in mm, got {tuple(spacing.ravel())}")
    return spacing


def _render(
    scene: Scene, tissue: MaternalTissue, probe: SectorProbe, points: np.ndarray, voxel_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Echo level, attenuation (shadows × depth), sector membership and label at (d, N) world points.

    Tissue boundaries in the echo level are ramped over the voxel size or the scanner's resolution,
    whichever is larger; labels stay crisp.
    """
    edge_mm = max(voxel_mm, _RESOLUTION_MM)
    beams, depth = probe.beams(points)
    level = tissue.echo(points, depth, probe.lateral_angle(points))
    fetal_level, weight, label = scene.echo(points, beams, edge_mm)
    level += weight * (fetal_level - level)
    attenuation = transmission(probe.apex, points, scene.bones) * probe.gain(depth)
    return level, attenuation, probe.in_sector(points), label


def _slabs(grid: CartesianGrid) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, points) of the grid by slabs of its first axis, few enough points at a time to bound memory."""
    slab = max(1, _CHUNK_POINTS // math.prod(grid.shape[1:]))
    for start in range(0, grid.shape[0], slab):
        rows = slice(start, min(start + slab, grid.shape[0]))
        yield rows, grid.points(rows)


def _render_grid(
    scene: Scene, tissue: MaternalTissue, probe: SectorProbe, grid: CartesianGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_render` at every node of ``grid``: echo level, attenuation, sector and label arrays."""
    outputs = tuple(np.empty(grid.shape, dtype) for dtype in (np.float32, np.float32, bool, np.uint8))
    for rows, points in _slabs(grid):
        for target, values in zip(outputs, _render(scene, tissue, probe, points, float(grid.spacing_mm.max()))):
            target[rows] = values.reshape(target[rows].shape)
    return outputs


def scan(
    scene: Scene,
    tissue: MaternalTissue,
    probe: SectorProbe,
    grid: CartesianGrid,
    rng: np.random.Generator,
    image_model: ImageModel = "polar",
) -> tuple[np.ndarray, np.ndarray]:
    """A scene seen by a probe, sampled on a grid: (B-mode display 0–255 float32, label uint8).

    The label is the scene's, at the grid's nodes: the image model does not change it.
    ``"polar"``: the echo level and attenuation (shadows × depth) are resampled onto the probe's
    polar grid (:meth:`~fetalbiometry.data.ultrasound.PolarGrid.imaging`), where
    :func:`~fetalbiometry.data.ultrasound.polar_envelope` forms the speckle with the tissues'
    scatterer density and attenuation (:func:`~fetalbiometry.data.anatomy.acoustic_properties`),
    then scan-converted back and log-compressed. ``"cartesian"``: the earlier model, Rayleigh speckle
    of a fixed grain on the image grid.

    Args:
        scene: the tissues, in the world (e.g. a :class:`~fetalbiometry.data.anatomy.Posed` scene).
        tissue: the maternal tissue around it (its wall sets the reverberation's period).
        probe: the probe.
        grid: the image grid.
        rng: random generator of the speckle and noise.
        image_model: one of :data:`IMAGE_MODELS`.
    """
    if image_model not in IMAGE_MODELS:
        raise InputError(f"image model must be one of {', '.join(IMAGE_MODELS)}; got {image_model!r}")
    level, attenuation, in_sector, label = _render_grid(scene, tissue, probe, grid)
    if image_model == "cartesian":
        speckle = rayleigh_speckle(grid.shape, grid.spacing_mm, _SPECKLE_GRAIN_MM[len(grid.shape)], rng)
        return bmode(level, attenuation, speckle, in_sector, rng), label
    return _polar_display(level, attenuation, in_sector, grid, probe, tissue, rng), label


def _polar_display(
    level: np.ndarray,
    attenuation: np.ndarray,
    in_sector: np.ndarray,
    grid: CartesianGrid,
    probe: SectorProbe,
    tissue: MaternalTissue,
    rng: np.random.Generator,
) -> np.ndarray:
    """The polar model of :func:`scan`: display (0–255) on ``grid`` from its echo level and attenuation."""
    polar = PolarGrid.imaging(probe, grid)
    points = polar.points()
    polar_level = grid.sample(level, points).reshape(polar.shape)
    density, attenuation_per_mm = acoustic_properties(polar_level)
    clutter = 10.0 ** (rng.uniform(*_CLUTTER_DB) / 20.0)
    amplitude = echo_amplitude(polar_level) * grid.sample(attenuation, points).reshape(polar.shape) + clutter
    tgc_error_db = _TGC_ERROR_DB * FourierNoise.random(rng, 1, (30.0, 120.0), n_waves=4)(polar.depths_mm[None])
    envelope = polar_envelope(
        amplitude, density, attenuation_per_mm, polar, PointSpreadFunction(), rng, tgc_error_db, tissue.wall_mm
    )
    scan_converted = np.empty(grid.shape, np.float32)
    for rows, cartesian in _slabs(grid):
        scan_converted[rows] = polar.sample(envelope, cartesian).reshape(scan_converted[rows].shape)
    gain_db = _GAIN_DB + rng.uniform(-_GAIN_SPREAD_DB, _GAIN_SPREAD_DB)
    return log_compress(scan_converted, in_sector, rng, rng.uniform(*_DYNAMIC_RANGE_DB), gain_db)


# --- the 3D head --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadPhantom:
    """A synthetic 3D ultrasound volume of a fetal head.

    Attributes:
        image: float32 B-mode intensities, 0–255.
        label: uint8 whole-head label on the image's grid (1 = head including the face).
        truth: ground truth: ``subject_seed``, ``sweep``, ``probe_direction``, ``ga_weeks``,
            ``hc_mm``, ``bpd_mm``, ``ofd_mm`` (axial section of the skull, outer edges),
            ``skull_height_mm``, ``skull_thickness_mm``, ``skull_volume_ml`` (the ellipsoid),
            ``volume_ml`` (the label, voxel count × voxel volume), the head pose ``pose_x_deg``,
            ``pose_y_deg``, ``pose_z_deg`` (extrinsic x-y-z Euler angles of head → world), the
            skull centre ``head_x_mm``, ``head_y_mm``, ``head_z_mm`` and the probe's virtual apex
            ``probe_x_mm``, ``probe_y_mm``, ``probe_z_mm`` (beams fan out from it along +y), in world
            coordinates, i.e. the image's physical space.
    """

    image: sitk.Image
    label: sitk.Image
    truth: dict[str, float | int | str]


def _direction_name(probe_direction: int | str) -> str:
    """The name in :data:`PROBE_DIRECTIONS` of a probe direction given by name or index."""
    names = list(PROBE_DIRECTIONS)
    if isinstance(probe_direction, str):
        if probe_direction not in PROBE_DIRECTIONS:
            raise InputError(f"probe direction must be one of {', '.join(names)}; got {probe_direction!r}")
        return probe_direction
    if not 0 <= int(probe_direction) < len(names):
        raise InputError(f"probe direction index must be 0-{len(names) - 1}, got {probe_direction}")
    return names[int(probe_direction)]


def _scan_pose(towards_probe_in_head: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Head → world rotation of one scan: the given head direction faces the probe (world −y), up to a
    random tilt of at most 20°, with a uniformly random roll about the beam."""
    towards_probe = np.array([0.0, -1.0, 0.0])
    align, _ = Rotation.align_vectors([towards_probe], [towards_probe_in_head])
    roll = Rotation.from_rotvec(rng.uniform(0.0, 2.0 * math.pi) * towards_probe)
    axis = rng.standard_normal(3)
    tilt = Rotation.from_rotvec(axis / np.linalg.norm(axis) * math.radians(rng.uniform(0.0, 20.0)))
    return (tilt * roll * align).as_matrix()


def _direction_matrix(direction: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """Image direction cosines as a 3×3 matrix (identity for None); InputError unless orthonormal."""
    if direction is None:
        return np.eye(3)
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) if np.size(direction) == 9 else None
    if matrix is None or not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-6):
        raise InputError("direction must be an orthonormal 3×3 matrix (or its 9 values, row-major)")
    return matrix


def make_head_volume(
    seed: int,
    shape: Sequence[int] = DEFAULT_VOLUME_SHAPE,
    spacing: Sequence[float] = DEFAULT_VOLUME_SPACING,
    ga_weeks: float | None = None,
    probe_direction: int | str = 0,
    direction: Sequence[float] | np.ndarray | None = None,
    sweep: int = 0,
    image_model: ImageModel = "polar",
) -> HeadPhantom:
    """A 3D ultrasound volume of a whole fetal head, with its label and measurements.

    The anatomy (:class:`HeadAnatomy`) depends on ``seed`` (and ``ga_weeks``) only; the scan —
    head pose, maternal tissue and speckle — on ``seed``, ``probe_direction`` and ``sweep``. The
    grid only samples the scene: the volume is centred on world (0, 0, 0), near the head's centre.

    Args:
        seed: subject seed (non-negative).
        shape: (z, y, x) voxels. The default 64³ at 2.6 mm holds a 31-week head with its face;
            :data:`PAPER_INPUT_SHAPE` and :data:`PAPER_VOLUME_SHAPE` with their spacings give the
            paper's grids.
        spacing: (x, y, z) voxel size in mm, as SimpleITK orders it; may be anisotropic.
        ga_weeks: gestational age; drawn from 20–31 weeks when None.
        probe_direction: side of the head facing the probe: an index or name of
            :data:`PROBE_DIRECTIONS`.
        direction: the image's direction cosines (3×3, or 9 values row-major as SimpleITK); the
            anatomy stays put in world coordinates, so only the array's orientation changes.
        sweep: index of a repeated sweep from the same direction (another pose and speckle).
        image_model: B-mode model, one of :data:`IMAGE_MODELS`; the label does not depend on it.
            The shipped 3D model (0.12.0) was trained on both (docs/phantoms.md).

    Returns:
        The :class:`HeadPhantom`. The default grid takes well under a second; the paper's network
        input grid a few seconds; its full 0.38 mm grid (44 M voxels) about a minute and 2 GB.
    """
    seed = check_seed(seed)
    shape, spacing = _check_shape(shape, 3), _check_spacing(spacing, 3)
    matrix = _direction_matrix(direction)
    name = _direction_name(probe_direction)
    anatomy = HeadAnatomy.from_seed(seed, ga_weeks)
    scan_rng = _rng(seed, 1, list(PROBE_DIRECTIONS).index(name), check_seed(sweep, "sweep"))
    rotation = _scan_pose(PROBE_DIRECTIONS[name], scan_rng)
    center = scan_rng.uniform(-6.0, 6.0, size=3)
    scene = Posed(anatomy, center, rotation)
    probe = SectorProbe(np.array([0.0, -_APEX_DEPTH_MM, 0.0]), _SKIN_RADIUS_MM)
    head_reach = 1.25 * float(anatomy.skull.semi_axes.max())
    tissue = MaternalTissue.random(scan_rng, 3, _APEX_DEPTH_MM - _SKIN_RADIUS_MM + head_reach)

    size = np.array(shape[::-1])  # (x, y, z)
    steps = matrix * spacing  # column k: world step of index k
    grid = CartesianGrid(-steps @ ((size - 1) / 2.0), steps, shape)
    display, label = scan(scene, tissue, probe, grid, scan_rng, image_model)
    image = sitk.GetImageFromArray(display)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(grid.origin.tolist())
    image.SetDirection(matrix.ravel().tolist())
    a, b, c = anatomy.skull.semi_axes
    pose = Rotation.from_matrix(rotation).as_euler("xyz", degrees=True)
    truth = {
        "subject_seed": seed,
        "sweep": int(sweep),
        "probe_direction": name,
        "ga_weeks": round(anatomy.ga_weeks, 3),
        "hc_mm": anatomy.hc_mm,
        "bpd_mm": anatomy.bpd_mm,
        "ofd_mm": anatomy.ofd_mm,
        "skull_height_mm": 2.0 * float(c),
        "skull_thickness_mm": anatomy.skull_thickness_mm,
        "skull_volume_ml": 4.0 / 3.0 * math.pi * float(a * b * c) / 1000.0,
        "volume_ml": volume_ml(label, spacing[::-1]),
        **{f"pose_{axis}_deg": float(angle) for axis, angle in zip("xyz", pose)},
        **{f"head_{axis}_mm": float(value) for axis, value in zip("xyz", center)},
        **{f"probe_{axis}_mm": float(value) for axis, value in zip("xyz", probe.apex)},
    }
    return HeadPhantom(image, label_like(label, image), truth)


def scanner_grid(spacing_mm: float) -> dict[str, tuple]:
    """``shape`` and ``spacing`` of an isotropic grid of ``spacing_mm`` over the default field of view.

    The default grid (64³ voxels of 2.6 mm, 166 mm) holds a 40-week head; scanners export the same
    field of view at 0.3-1.2 mm, e.g. 208³ voxels at 0.8 mm.
    """
    if not (math.isfinite(spacing_mm) and 0.2 <= spacing_mm <= 5.0):
        raise InputError(f"spacing must be 0.2-5 mm, got {spacing_mm}")
    field_of_view = np.asarray(DEFAULT_VOLUME_SHAPE) * np.asarray(DEFAULT_VOLUME_SPACING[::-1])
    shape = tuple(int(np.ceil(extent / spacing_mm)) for extent in field_of_view)
    return {"shape": shape, "spacing": (float(spacing_mm),) * 3}


def make_rescans(subject_seed: int, n: int = 3, **kwargs) -> list[HeadPhantom]:
    """``n`` scans of one fetus from different probe directions (the 3D paper's reproducibility set).

    Scan k looks from ``PROBE_DIRECTIONS`` number k mod 4 (lateral, anterior, superior, posterior)
    in sweep k // 4. Anatomy, GA and label volume are the subject's; pose, shadows, attenuation
    direction and speckle differ, so label volumes agree up to resampling error.

    Args:
        subject_seed: the subject.
        n: number of scans (≥ 1).
        **kwargs: passed to :func:`make_head_volume` (shape, spacing, ga_weeks, direction).

    Returns:
        The ``n`` :class:`HeadPhantom` scans, in order.
    """
    if n < 1:
        raise InputError(f"number of rescans must be at least 1, got {n}")
    count = len(PROBE_DIRECTIONS)
    return [make_head_volume(subject_seed, probe_direction=k % count, sweep=k // count, **kwargs) for k in range(n)]


# --- 2D standard planes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanePhantom:
    """A synthetic 2D standard plane.

    Attributes:
        image: uint8 B-mode image (HC18-like sector).
        mask: uint8 structure mask on the image's grid: the filled skull (head) or abdomen ellipse,
            or the femur's ossified diaphysis (a bar between the two end points).
        truth: ``kind``, ``seed``, ``ga_weeks``, ``pixel_size_mm``; for head and abdomen the ellipse
            in the HC18 convention (x = column, y = row, a along angle θ): ``center_x_px``,
            ``center_y_px``, ``semi_axes_a_px``, ``semi_axes_b_px``, ``angle_rad`` and the same in mm
            (``center_x_mm``, ... as HC18 submissions), plus ``hc_mm`` with ``bpd_mm``/``ofd_mm`` and
            ``skull_thickness_mm`` or ``ac_mm`` (Ramanujan perimeter); for the femur ``fl_mm``, ``fl_px``, ``width_mm`` and the
            end points ``x1_px``, ``y1_px``, ``x2_px``, ``y2_px``.
    """

    image: sitk.Image
    mask: sitk.Image
    truth: dict[str, float | int | str]

    @property
    def structure(self) -> Ellipse | Rectangle:
        """The measured structure in pixels, whose rasterisation is :attr:`mask`: the head or
        abdomen :class:`Ellipse`, or the femur's bar as a :class:`Rectangle` (length FL)."""
        truth = self.truth
        if truth["kind"] != "femur":
            keys = ("center_x_px", "center_y_px", "semi_axes_a_px", "semi_axes_b_px", "angle_rad")
            return Ellipse(*(float(truth[key]) for key in keys))
        x1, y1, x2, y2 = (float(truth[key]) for key in ("x1_px", "y1_px", "x2_px", "y2_px"))
        width = float(truth["width_mm"]) / float(truth["pixel_size_mm"])
        angle = math.atan2(y2 - y1, x2 - x1) % math.pi
        return Rectangle((0.5 * (x1 + x2), 0.5 * (y1 + y2)), float(truth["fl_px"]), width, angle)


def _plane_scene(kind: str, seed: int, ga_weeks: float, rng: np.random.Generator) -> Scene:
    """The scene of a standard plane, in its own frame."""
    if kind == "head":
        head = HeadAnatomy.from_seed(seed, ga_weeks)
        return HeadSlice(dataclasses.replace(head, skull_thickness_mm=_PLANE_SKULL_THICKENING * head.skull_thickness_mm))
    return (AbdomenSlice if kind == "abdomen" else FemurSlice).random(rng, ga_weeks)


def make_plane(
    kind: PlaneKind,
    seed: int,
    shape: Sequence[int] = DEFAULT_PLANE_SHAPE,
    pixel_size: float | None = None,
    ga_weeks: float | None = None,
    image_model: ImageModel = "polar",
) -> PlanePhantom:
    """A synthetic 2D standard plane with its structure mask and measurements.

    The structure is sized for GA by the INTERGROWTH-21st standards (HC, AC, FL: mean + z·SD, z drawn
    from N(0, 1) truncated to ±2), placed and rotated at random, and imaged like an HC18 frame: a
    sector with a dark outside, maternal wall at the top, amniotic fluid with 0-3 other fetal parts
    against the structure (before 24 weeks, sometimes closed on every side by the amniotic sac:
    :func:`~fetalbiometry.data.anatomy.amniotic_sac_probability`), the far uterine wall behind it or
    touching it, speckle, attenuation and
    shadows (behind the skull, spine, ribs and femur). Heads and abdomens are at any angle; femurs within 25° of
    horizontal, as sonographers measure them.

    Args:
        kind: ``"head"`` (transthalamic), ``"abdomen"`` or ``"femur"``.
        seed: non-negative seed.
        shape: (rows, columns).
        pixel_size: square pixel size in mm; by default chosen so the structure fills 55-70 % of the
            view, as a sonographer zooms in.
        ga_weeks: gestational age, 14-40 weeks (heads 10-40: :data:`~fetalbiometry.data.anatomy.HEAD_GA_RANGE_WEEKS`);
            drawn from 20-38 weeks when None.
        image_model: B-mode model, one of :data:`IMAGE_MODELS`; the mask does not depend on it.

    Returns:
        The :class:`PlanePhantom`.
    """
    if kind not in PLANE_KINDS:
        raise InputError(f"plane kind must be one of {', '.join(PLANE_KINDS)}; got {kind!r}")
    seed = check_seed(seed)
    rows, columns = shape = _check_shape(shape, 2)
    rng = _rng(seed, 2, PLANE_KINDS.index(kind))
    drawn_ga = rng.uniform(*_GA_RANGE_2D)
    ga = float(drawn_ga if ga_weeks is None else ga_weeks)
    scene = _plane_scene(kind, seed, ga, rng)  # each structure checks its own age range
    if pixel_size is None:
        pixel_size = scene.view_mm / ((columns if kind == "femur" else rows) * rng.uniform(0.55, 0.7))
    elif not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel size must be a positive number of mm, got {pixel_size}")
    pixel_size = float(pixel_size)

    angle = math.radians(rng.uniform(-25.0, 25.0)) if kind == "femur" else rng.uniform(0.0, math.pi)
    extent_mm = _rotated_half_extent(scene, angle)
    half_extent = extent_mm / pixel_size + 4.0  # 4 pixels of margin
    center_px = np.array(
        [
            _uniform_within(rng, (0.38 * columns, 0.62 * columns), (half_extent[0], columns - 1 - half_extent[0])),
            _uniform_within(rng, (0.45 * rows, 0.6 * rows), (half_extent[1], rows - 1 - half_extent[1])),
        ]
    )
    posed = Posed(scene, center_px * pixel_size, rotation_2d(angle))
    apex_depth = 0.55 * rows * pixel_size
    probe = SectorProbe(np.array([(columns - 1) / 2.0 * pixel_size, -apex_depth]), apex_depth, half_angle_deg=36.0)
    around = (center_px * pixel_size, float(np.mean(extent_mm)))
    tissue = MaternalTissue.random(rng, 2, (center_px[1] + half_extent[1]) * pixel_size, _FAR_WALL_GAP_2D_MM, around, ga)

    grid = CartesianGrid(np.zeros(2), np.eye(2) * pixel_size, shape)
    display, mask = scan(posed, tissue, probe, grid, rng, image_model)
    image = sitk.GetImageFromArray(np.round(display).astype(np.uint8))
    image.SetSpacing((pixel_size, pixel_size))
    truth: dict[str, float | int | str] = {"kind": kind, "seed": seed, "ga_weeks": round(ga, 3)}
    truth.update(pixel_size_mm=pixel_size, **_plane_truth(kind, scene, center_px, angle, pixel_size))
    return PlanePhantom(image, label_like(mask, image), truth)


def _rotated_half_extent(scene: Scene, angle: float) -> np.ndarray:
    """Half the (x, y) bounding box (mm) of a plane's structure after rotation by ``angle``."""
    if scene.ellipse is None:  # the femur's thigh: a box of the view length
        corners = np.array([[1.0, 0.4], [1.0, -0.4]]) * scene.view_mm / 2.0
        return np.abs(corners @ rotation_2d(angle).T).max(axis=0)
    e = scene.ellipse
    cos, sin = math.cos(e.theta + angle), math.sin(e.theta + angle)
    return np.array([math.hypot(e.a * cos, e.b * sin), math.hypot(e.a * sin, e.b * cos)])


def _uniform_within(rng: np.random.Generator, interval: tuple[float, float], bounds: tuple[float, float]) -> float:
    """Uniform in ``interval`` clipped to ``bounds`` (their middle if the bounds cross)."""
    if bounds[0] > bounds[1]:
        return sum(bounds) / 2.0
    return float(np.clip(rng.uniform(*interval), *bounds))


def _plane_truth(kind: str, scene: Scene, center_px: np.ndarray, angle: float, pixel_size: float) -> dict[str, float]:
    """Measurements of a plane's structure placed at ``center_px`` and rotated by ``angle``, in pixels and mm."""
    if scene.ellipse is None:
        half = scene.length_mm / 2.0 / pixel_size
        (x1, y1), (x2, y2) = center_px + np.outer((-half, half), (math.cos(angle), math.sin(angle)))
        truth = {"fl_mm": scene.length_mm, "fl_px": 2.0 * half, "width_mm": scene.width_mm}
        truth.update({"x1_px": x1, "y1_px": y1, "x2_px": x2, "y2_px": y2})
        return {key: float(value) for key, value in truth.items()}
    e = scene.ellipse
    placed = Ellipse(*center_px, e.a / pixel_size, e.b / pixel_size, e.theta + angle).normalized()
    in_mm = placed.to_mm(pixel_size)
    truth = {}
    for unit, ellipse in (("px", placed), ("mm", in_mm)):
        truth.update(
            {
                f"center_x_{unit}": ellipse.cx,
                f"center_y_{unit}": ellipse.cy,
                f"semi_axes_a_{unit}": ellipse.a,
                f"semi_axes_b_{unit}": ellipse.b,
            }
        )
    truth["angle_rad"] = placed.theta
    if kind == "head":
        bpd, ofd = in_mm.bpd_ofd()
        truth.update({"hc_mm": in_mm.circumference, "bpd_mm": bpd, "ofd_mm": ofd})
        truth["skull_thickness_mm"] = scene.anatomy.skull_thickness_mm
    else:
        truth["ac_mm"] = in_mm.circumference
    return {key: float(value) for key, value in truth.items()}


# --- cohorts on disk ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhantomRecord:
    """One phantom written by :func:`write_phantoms`.

    Attributes:
        case: file stem, e.g. ``sub-003_scan-1`` or ``abdomen-0007``.
        subject: subject identifier (rescans share it).
        image: path of the image file.
        label: path of the label (3D) or mask (2D) file.
        truth: the phantom's ``truth``.
    """

    case: str
    subject: str
    image: Path
    label: Path
    truth: dict[str, float | int | str]


def _child_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th phantom of a cohort: independent streams per (seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def write_phantoms(
    outdir: str | Path,
    dim: Literal[2, 3],
    n: int,
    seed: int = 0,
    rescans: int = 1,
    kinds: Sequence[PlaneKind] = PLANE_KINDS,
    spacing_mm: float | None = None,
    image_model: ImageModel | None = None,
) -> list[PhantomRecord]:
    """Write a synthetic cohort: images, labels, ground truth and a MONAI datalist.

    Layout (paths in the CSV and JSON files are relative to ``outdir``)::

        imagesTr/<case>.nii.gz   labelsTr/<case>.nii.gz
        truth.csv        one row per phantom: case, subject, image, label and its truth
        datalist.json    Medical Segmentation Decathlon style, {"training": [{"image", "label", "subject"}]}
                         (2D entries also name the plane "kind")
        manifest.csv     3D only: subject,image,reference,expert_volume_ml (fetalbiometry.study),
                         the expert volume being the true volume with a 3 % SD error

    Args:
        outdir: output folder (created).
        dim: 3 for whole-head volumes (default grid of :func:`make_head_volume`), 2 for planes.
        n: number of subjects (3D) or planes (2D).
        seed: cohort seed; phantom i gets an independent seed derived from (seed, i).
        rescans: 3D: scans per subject from different probe directions (:func:`make_rescans`).
        kinds: 2D: plane kinds, cycled.
        spacing_mm: 3D: isotropic voxel size of a scanner-like grid over the default field of view
            (:func:`scanner_grid`); None keeps the default 2.6 mm grid.
        image_model: B-mode model of :data:`IMAGE_MODELS`; None for the default (polar).

    Returns:
        One :class:`PhantomRecord` per image written.
    """
    seed, outdir = check_seed(seed), Path(outdir)
    if dim not in (2, 3):
        raise InputError(f"dim must be 2 or 3, got {dim}")
    if n < 1 or rescans < 1:
        raise InputError(f"need n >= 1 and rescans >= 1, got n={n}, rescans={rescans}")
    if dim == 2 and rescans != 1:
        raise InputError("rescans apply to 3D phantoms only")
    if dim == 2 and not kinds:
        raise InputError("give at least one plane kind")
    if dim == 2 and spacing_mm is not None:
        raise InputError("--spacing applies to 3D phantoms only")
    if image_model is not None and image_model not in IMAGE_MODELS:
        raise InputError(f"image model must be one of {', '.join(IMAGE_MODELS)}; got {image_model!r}")
    grid = {} if spacing_mm is None else scanner_grid(spacing_mm)
    model = {} if image_model is None else {"image_model": image_model}
    records = []
    for index in range(n):
        child = _child_seed(seed, index)
        if dim == 3:
            subject = f"sub-{index:03d}"
            scans = make_rescans(child, rescans, **grid, **model)
            phantoms = [(f"{subject}_scan-{k}", scan.image, scan.label, scan.truth) for k, scan in enumerate(scans)]
        else:
            kind = kinds[index % len(kinds)]
            subject = f"{kind}-{index:04d}"
            plane = make_plane(kind, child, **model)
            phantoms = [(subject, plane.image, plane.mask, plane.truth)]
        for case, image, label, truth in phantoms:
            image_path = write_image(image, outdir / "imagesTr" / f"{case}.nii.gz")
            label_path = write_image(label, outdir / "labelsTr" / f"{case}.nii.gz")
            records.append(PhantomRecord(case, subject, image_path, label_path, truth))
    _write_truth(outdir, records)
    _write_datalist(outdir, records, dim)
    if dim == 3:
        _write_manifest(outdir, records, seed)
    return records


def _relative_paths(outdir: Path, record: PhantomRecord) -> dict[str, str]:
    """The record's image and label paths relative to ``outdir``, with forward slashes."""
    return {key: getattr(record, key).relative_to(outdir).as_posix() for key in ("image", "label")}


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Write ``rows`` under the header ``columns`` atomically; missing cells stay empty."""
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _write_truth(outdir: Path, records: list[PhantomRecord]) -> None:
    """``truth.csv``: case, subject, image, label and every truth field (the union over records)."""
    rows = [{"case": r.case, "subject": r.subject, **_relative_paths(outdir, r), **r.truth} for r in records]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    _write_csv(outdir / "truth.csv", rows, columns)


def _write_datalist(outdir: Path, records: list[PhantomRecord], dim: int) -> None:
    """``datalist.json``, loadable with ``monai.data.load_decathlon_datalist``."""
    structures = "whole fetal head (skull, scalp and face)" if dim == 3 else "head, abdomen or femur"
    datalist = {
        "name": f"FetalHeadSeg synthetic {dim}D phantoms",
        "description": f"fetalbiometry.data.synthetic ultrasound phantoms; label 1 = {structures}",
        "tensorImageSize": f"{dim}D",
        "modality": {"0": "US"},
        "labels": {"0": "background", "1": "head" if dim == 3 else "structure"},
        "numTraining": len(records),
        "training": [
            {**_relative_paths(outdir, r), "subject": r.subject, **({"kind": r.truth["kind"]} if dim == 2 else {})}
            for r in records
        ],
    }
    with atomic_output(outdir / "datalist.json") as temporary:
        temporary.write_text(json.dumps(datalist, indent=2) + "\n", encoding="utf-8")


def _write_manifest(outdir: Path, records: list[PhantomRecord], seed: int) -> None:
    """``manifest.csv`` of :mod:`fetalbiometry.study.manifest`, with a simulated expert volume per scan:
    the label volume with a relative error drawn from N(0, 3 %), deterministic by cohort seed."""
    rows = []
    for index, r in enumerate(records):
        error = _rng(seed, 3, index).normal(0.0, _EXPERT_VOLUME_SD)
        expert = round(float(r.truth["volume_ml"]) * (1.0 + error), 2)
        paths = _relative_paths(outdir, r)
        rows.append(
            {"subject": r.subject, "image": paths["image"], "reference": paths["label"], "expert_volume_ml": expert}
        )
    _write_csv(outdir / "manifest.csv", rows, ["subject", "image", "reference", "expert_volume_ml"])
