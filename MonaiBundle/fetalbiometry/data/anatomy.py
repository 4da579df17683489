"""Fetal anatomy for the synthetic phantoms: tissues and their echo levels, as functions of position.

A scene answers, at any points in millimetres of its own frame, three questions: the echo level of
the tissue there (what a scanner would display, unattenuated and without speckle), how much of the
point is fetus (0–1, ramped at boundaries by the partial-volume effect) and whether it is in the
ground-truth label. It also lists its bones, which cast acoustic shadows. :class:`Posed` places a
scene in the world; :class:`MaternalTissue` fills the rest; :mod:`fetalbiometry.data.synthetic`
renders them through :mod:`fetalbiometry.data.ultrasound`.

- :class:`HeadAnatomy`: the whole fetal head of the 3D paper
  (shared/papers/3d-whole-head-hybrid-attention-autocontext.txt, Fig. 1b): skull shell with
  sutures and fontanelles, scalp, brain with falx, lateral ventricles, choroid plexus, cavum septi
  pellucidi, thalami, cerebellum and cisterna magna, the face (orbits, maxilla, mandible, nose) with
  a fuzzy surface, neck, trunk and spine; the label is the head above the plane through the lower
  jaw and C2.
- :class:`HeadSlice`, :class:`AbdomenSlice`, :class:`FemurSlice`: the standard planes of the
  multi-task paper (shared/papers/multitask-unet-hc-ac-fl.txt): the transthalamic plane (the
  axial section of a :class:`HeadAnatomy`), the abdominal circumference plane and the femur.

Sizes follow the INTERGROWTH-21st fetal growth standards (Papageorghiou et al., Lancet 2014) through
:func:`fetalbiometry.biometry.growth.intergrowth_mean_sd`. Points and directions are (d, N) arrays,
as in :mod:`fetalbiometry.data.ultrasound`.

The head frame has x from the fetus's right to left, y from the occiput to the face and z from the
neck to the vertex, in mm from the centre of the skull ellipsoid; the axial (HC/BPD/OFD) plane is
z = 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from fetalbiometry.biometry.ellipse import Ellipse, ramanujan_circumference
from fetalbiometry.biometry.growth import INTERGROWTH_FETAL_GROWTH, INTERGROWTH_GA_RANGE_WEEKS
from fetalbiometry.data.ultrasound import Bone, Ellipsoid, FourierNoise
from fetalbiometry.errors import InputError

__all__ = [
    "ATTENUATION_PER_MM",
    "ECHO_LEVEL",
    "HEAD_GA_RANGE_WEEKS",
    "LIMB_BONE_LEVEL",
    "SCATTERER_DENSITY",
    "AbdomenSlice",
    "FemurSlice",
    "HeadAnatomy",
    "HeadSlice",
    "MaternalTissue",
    "PlaneScene",
    "Posed",
    "Scene",
    "acoustic_properties",
    "amniotic_sac_probability",
    "check_ga",
    "check_seed",
    "ellipse_signed_distance",
    "femur_diaphysis_width_mm",
    "rotation_2d",
    "size_for_age",
]

# Display level (0-255) of each tissue as a scanner shows it unattenuated, before speckle.
ECHO_LEVEL: dict[str, float] = {
    "fluid": 0.0,
    "csf": 25.0,
    "eye": 40.0,
    "thalamus": 65.0,
    "brain": 100.0,
    "cartilage": 90.0,
    "cerebellum": 125.0,
    "fat": 115.0,
    "scalp": 100.0,  # 2D planes only, for now: the skull echo falls where HC18's does, on its sides too (realism)
    "myometrium": 140.0,
    "soft_tissue": 150.0,
    "muscle": 155.0,
    "placenta": 165.0,
    "skin": 190.0,
    "falx": 195.0,
    "choroid": 205.0,
    "bone": 255.0,
}

# Fraction (0-1) of the polar image samples holding a scatterer (fetalbiometry.data.ultrasound.scatterers):
# 1 for dense tissue (fully developed speckle); brain and fat are sparse, so their speckle is spotty.
# The scalp has no row: a display level, it takes the acoustic properties of the levels around it, so
# that it changes nothing where it is not drawn (the 3D volumes).
SCATTERER_DENSITY: dict[str, float] = {
    "fluid": 1.0,
    "csf": 1.0,
    "eye": 1.0,
    "thalamus": 0.5,
    "brain": 0.12,
    "cartilage": 0.5,
    "cerebellum": 0.5,
    "fat": 0.4,
    "myometrium": 0.8,
    "soft_tissue": 1.0,
    "muscle": 0.8,
    "placenta": 1.0,
    "skin": 1.0,
    "falx": 1.0,
    "choroid": 1.0,
    "bone": 1.0,
}

# Pulse-echo (round trip) amplitude attenuation in nepers/mm: about 0.5 dB/cm/MHz at 2.5 MHz for soft
# tissue, little for fluid. Bones are not here: their shadows are computed from their geometry
# (fetalbiometry.data.ultrasound.Bone), so bone counts as soft tissue in this table.
ATTENUATION_PER_MM: dict[str, float] = {
    **{tissue: 0.03 for tissue in SCATTERER_DENSITY},
    "fluid": 0.002,
    "csf": 0.002,
    "eye": 0.004,
    "brain": 0.02,
}

# Ages a phantom head may have: below INTERGROWTH-21st's 14 weeks its HC curve is extrapolated (HC 49.5 mm
# at 10 weeks, 61 mm at 11, 85.5 mm at 13), so that phantoms cover HC18's first-trimester heads (146 of
# its 799 heads are under the 14-week mean of 97.9 mm, the smallest 44 mm).
HEAD_GA_RANGE_WEEKS = (10.0, 40.0)
_GA_RANGE_3D = (20.0, 31.0)  # the 3D paper's volunteers (section 2.1)
_SIZE_Z_LIMIT = 2.0  # subjects' size z-scores are drawn from N(0, 1) truncated to ±2
# The skull's echo above soft tissue, as a share of mature bone's, grows from 30 % at 10 weeks, when the
# calvarium starts to ossify, to all of it at 16 weeks (HC18's heads under 120 mm echo at grey 119 at
# their peak, larger ones at 160-172: docs/experiments/2026-12-05-sim-to-real-skull-sides-early-heads.md).
_OSSIFICATION_WEEKS = (10.0, 16.0)
_OSSIFICATION_AT_10_WEEKS = 0.3
_THINNEST_WALL_MM = 3.0  # the maternal wall over a small, shallow structure (first trimester)
_SKULL_ATTENUATION_PER_MM = 0.45  # pulse-echo (round trip) amplitude: a 2.5 mm wall costs 10 dB
_SOLID_BONE_ATTENUATION_PER_MM = 0.9
_FACE_SURFACE_NOISE_MM = 2.0  # SD of the face surface's unevenness
_SUBARACHNOID_MM = 1.2  # fluid between skull and brain
_SAC_GA_WEEKS = (14.0, 24.0)  # weeks over which a 2D plane's chance to show the whole amniotic sac falls to 0
_SAC_PROBABILITY_AT_14_WEEKS = 0.8
_FALX_HALF_WIDTH_MM = 0.6
LIMB_BONE_LEVEL = 0.8 * ECHO_LEVEL["bone"]  # a limb's bone cut across, as a 2D plane's fetal part shows it


# --- helpers ----------------------------------------------------------------------------------


def _inside(distance: np.ndarray, edge_mm: float) -> np.ndarray:
    """Membership (0–1) from a signed distance (negative inside), ramped over ``edge_mm``.

    The ramp stands for the partial-volume effect and the scanner's point-spread function.
    """
    return np.clip(0.5 - distance / edge_mm, 0.0, 1.0)


def _paint(
    level: np.ndarray, distance: np.ndarray, edge_mm: float, value: float | Callable[[np.ndarray], np.ndarray]
) -> None:
    """Paint a tissue over ``level`` in place where its signed ``distance`` says it is (see
    :func:`_inside`); ``value`` is its echo level, or a function of the indices painted."""
    near = np.flatnonzero(distance < edge_mm)
    values = value(near) if callable(value) else value
    level[near] += _inside(distance[near], edge_mm) * (values - level[near])


def _specular(ellipsoid: Ellipsoid, points: np.ndarray, beams: np.ndarray) -> np.ndarray:
    """cos² of the angle between the beam and the surface normal: specular bone echoes are
    bright where the beam meets the bone at right angles and fade where it grazes it."""
    normal = ellipsoid.rotation @ (ellipsoid.local(points) / ellipsoid.semi_axes[:, None])
    length = np.maximum(np.sqrt(np.einsum("ij,ij->j", normal, normal)), 1e-12)
    return (np.einsum("ij,ij->j", normal, beams) / length) ** 2


def _bone_echo(cos2: np.ndarray, density: np.ndarray | float = 1.0) -> np.ndarray:
    """Specular bone echo from cos² of the beam's angle to the surface normal (:func:`_specular`):
    as bright as bone where the beam meets it at right angles, fading towards soft tissue where the
    beam grazes it or the bone is thin (``density`` < 1)."""
    soft = ECHO_LEVEL["soft_tissue"]
    return soft + (ECHO_LEVEL["bone"] - soft) * density * (0.15 + 0.85 * cos2)


def _bone_echo_of(bone: Ellipsoid, points: np.ndarray, beams: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The specular echo of ``bone`` as a function of the indices of the points painted (see :func:`_paint`)."""
    return lambda i: _bone_echo(_specular(bone, points[:, i], beams[:, i]))


def _inside_ellipse(ellipse: Ellipsoid, points: np.ndarray) -> np.ndarray:
    """Whether each (d, N) point lies inside or on ``ellipse`` (the HC18 filled-mask rule)."""
    u = ellipse.local(points)
    return np.einsum("ij,ij->j", u, u) <= 1.0


def _box(center: Sequence[float], semi_axes: Sequence[float], rotation: np.ndarray | None = None) -> Ellipsoid:
    """An :class:`Ellipsoid` from plain sequences, axis-aligned unless ``rotation`` is given."""
    center, semi_axes = np.asarray(center, dtype=float), np.asarray(semi_axes, dtype=float)
    return Ellipsoid(center, semi_axes, np.eye(len(center)) if rotation is None else rotation)


def _fetal_parts(
    rng: np.random.Generator, centre: np.ndarray, radius_mm: float
) -> tuple[tuple[Ellipsoid, float], ...]:
    """0-3 other fetal parts around a 2D plane's structure of ``radius_mm`` at ``centre`` (world mm):
    the trunk or a shoulder (a large soft-tissue ellipse) and limbs in section (soft tissue around a
    bright bone). Each is placed against the structure or overlapping it (the structure hides what
    lies behind it), so that a network trained on the planes meets textured tissue, not only fluid,
    at the structure's boundary, as in real frames.
    """
    parts: list[tuple[Ellipsoid, float]] = []
    for _ in range(rng.integers(0, 4)):
        trunk = rng.uniform() < 0.4
        semi_axes = radius_mm * (rng.uniform([0.6, 0.4], [1.1, 0.8]) if trunk else rng.uniform([0.2, 0.08], [0.6, 0.2]))
        towards = rng.uniform(0.0, 2.0 * math.pi)
        distance = radius_mm + semi_axes[1] * rng.uniform(-0.5, 1.0)
        part_centre = centre + distance * np.array([math.cos(towards), math.sin(towards)])
        rotation = rotation_2d(towards + math.pi / 2 + rng.uniform(-0.6, 0.6))
        parts.append((_box(part_centre, semi_axes, rotation), rng.uniform(110.0, 165.0)))
        if not trunk:
            parts.append((_box(part_centre, semi_axes * [0.8, 0.3], rotation), LIMB_BONE_LEVEL))
    return tuple(parts)


def amniotic_sac_probability(ga_weeks: float) -> float:
    """Chance that a 2D plane at ``ga_weeks`` shows the whole amniotic sac around the fetus: 0.8 at
    14 weeks, falling linearly to 0 at 24 weeks. Early in pregnancy the sac is only 2-3 times the
    head's size, so a frame zoomed on the head shows fluid closed on every side by the bright sac
    and uterine wall; later the sac outgrows the view.
    """
    low, high = _SAC_GA_WEEKS
    return _SAC_PROBABILITY_AT_14_WEEKS * float(np.clip((high - ga_weeks) / (high - low), 0.0, 1.0))


def _amniotic_sac(rng: np.random.Generator, centre: np.ndarray, radius_mm: float) -> tuple[Ellipsoid, float]:
    """The amniotic sac's inner outline around a 2D plane's structure of ``radius_mm`` at ``centre``
    (world mm), 1.5-3 times its radius on each axis and holding it whole, and its wall's thickness (mm).
    """
    semi_axes = radius_mm * rng.uniform(1.5, 3.0, size=2)
    room = float(semi_axes.min()) - radius_mm  # how far the structure may lie from the sac's centre
    towards = rng.uniform(0.0, 2.0 * math.pi)
    sac_centre = centre + room * rng.uniform(0.0, 1.0) * np.array([math.cos(towards), math.sin(towards)])
    return _box(sac_centre, semi_axes, rotation_2d(rng.uniform(0.0, math.pi))), float(rng.uniform(1.0, 3.0))


def rotation_2d(angle: float) -> np.ndarray:
    """The 2×2 rotation by ``angle`` radians (from +x towards +y)."""
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def ellipse_signed_distance(ellipse: Ellipse, shape: Sequence[int], pixel_mm: float = 1.0) -> np.ndarray:
    """The signed distance (negative inside) of each pixel centre of ``shape`` (rows, columns) to an
    ellipse given in pixels, in mm at ``pixel_mm`` (in pixels by default).

    :meth:`~fetalbiometry.data.ultrasound.Ellipsoid.signed_distance`: first order, exact on the
    outline and for a circle, so it keeps where the outline runs inside a pixel, which scipy's
    distance transforms of a pixel mask round away.
    """
    rows, columns = np.indices(tuple(shape))
    points = np.stack([columns.ravel(), rows.ravel()]).astype(float) * pixel_mm
    centre, semi_axes = np.array([ellipse.cx, ellipse.cy]) * pixel_mm, np.array([ellipse.a, ellipse.b]) * pixel_mm
    outline = Ellipsoid(centre, semi_axes, rotation_2d(ellipse.theta))
    return outline.signed_distance(points).reshape(tuple(shape))


def size_for_age(measure: str, ga_weeks: float, z_score: float = 0.0) -> float:
    """INTERGROWTH-21st size (mm) of ``measure`` at ``ga_weeks`` for a subject at ``z_score``
    (Papageorghiou et al., Lancet 2014: mean + z · SD of the standard's fractional polynomials).

    The ages are the callers' to check (:func:`check_ga`): below the standard's 14 weeks, which only
    heads reach (:data:`HEAD_GA_RANGE_WEEKS`), the polynomials are extrapolated.
    """
    mean_curve, sd_curve = INTERGROWTH_FETAL_GROWTH[measure]
    return float(mean_curve(ga_weeks) + z_score * sd_curve(ga_weeks))


def _size_z_score(rng: np.random.Generator) -> float:
    """A subject's size z-score: N(0, 1) truncated to ±2."""
    return float(np.clip(rng.standard_normal(), -_SIZE_Z_LIMIT, _SIZE_Z_LIMIT))


def acoustic_properties(echo_level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scatterer density and attenuation (:data:`SCATTERER_DENSITY`, :data:`ATTENUATION_PER_MM`) at
    points known by their echo level: each tissue's own at its :data:`ECHO_LEVEL`, interpolated
    between the tissues' levels (textured tissue, partial-volume boundaries, specular bone, the scalp).

    Returns:
        (density, attenuation per mm), float32 arrays of ``echo_level``'s shape.
    """
    tissues = sorted(SCATTERER_DENSITY, key=ECHO_LEVEL.__getitem__)
    levels = [ECHO_LEVEL[tissue] for tissue in tissues]
    return tuple(
        np.interp(echo_level, levels, [table[tissue] for tissue in tissues]).astype(np.float32)
        for table in (SCATTERER_DENSITY, ATTENUATION_PER_MM)
    )


def check_ga(ga_weeks: float, earliest_weeks: float = INTERGROWTH_GA_RANGE_WEEKS[0]) -> float:
    """``ga_weeks`` as a float; InputError outside ``earliest_weeks`` to 40 weeks (by default the
    INTERGROWTH-21st range, 14–40 weeks; heads go down to :data:`HEAD_GA_RANGE_WEEKS`)."""
    low, high = earliest_weeks, INTERGROWTH_GA_RANGE_WEEKS[1]
    if not (math.isfinite(ga_weeks) and low <= ga_weeks <= high):
        raise InputError(f"gestational age must be {low:g}-{high:g} weeks, got {ga_weeks}")
    return float(ga_weeks)


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` as an int; InputError unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


# --- scenes -----------------------------------------------------------------------------------


class Scene(Protocol):
    """Tissues in the scene's own frame (mm): echo level, fetal membership and label at points."""

    bones: tuple[Bone, ...]

    def echo(
        self, points: np.ndarray, beams: np.ndarray, edge_mm: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(echo level, membership 0–1 of the fetal tissues, label) at (d, N) points; ``beams``
        are the unit beam directions there (d, N), in the same frame."""


class PlaneScene(Scene, Protocol):
    """A 2D standard plane: a scene with its measured ellipse (None for the femur) and the length
    that a sonographer's zoom makes fill the view, both in mm."""

    ellipse: Ellipse | None
    view_mm: float


@dataclass(frozen=True)
class Posed:
    """A scene placed in the world: world = center + rotation @ scene point."""

    scene: Scene
    center: np.ndarray
    rotation: np.ndarray

    def echo(self, points: np.ndarray, beams: np.ndarray, edge_mm: float):
        """The scene's :meth:`Scene.echo` at world points and beams."""
        inverse = self.rotation.T
        return self.scene.echo(inverse @ (points - self.center[:, None]), inverse @ beams, edge_mm)

    @property
    def bones(self) -> list[Bone]:
        """The scene's bones, in the world."""
        return [bone.moved(self.center, self.rotation) for bone in self.scene.bones]


@dataclass(frozen=True)
class MaternalTissue:
    """What surrounds the fetus, in the probe's frame: the maternal abdominal and uterine wall under
    the probe (skin, fat, striated muscle, myometrium), a placenta below it, amniotic fluid, and the
    far uterine wall.

    Args:
        wall_mm: thickness of the maternal wall below the skin.
        far_wall_mm: depth below the skin where the far uterine wall begins.
        placenta: (centre angle, half width in radians, thickness mm) of the placenta, or None.
        undulation: smooth noise that makes the layer boundaries wavy.
        fetal_parts: other parts of the fetus in the amniotic fluid (trunk, limbs with their bone),
            as (outline in the world, echo level), painted in order over the fluid only.
        amniotic_sac: (inner outline in the world, wall thickness mm) of an amniotic sac seen whole
            (early pregnancy, 2D planes): the fluid outside it is uterine wall, lined by the sac's
            bright wall; None: the fluid reaches the walls above and below.
    """

    wall_mm: float
    far_wall_mm: float
    placenta: tuple[float, float, float] | None
    undulation: FourierNoise
    fetal_parts: tuple[tuple[Ellipsoid, float], ...] = ()
    amniotic_sac: tuple[Ellipsoid, float] | None = None

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        dim: int,
        fetus_depth_mm: float,
        far_wall_gap_mm: tuple[float, float] = (5.0, 30.0),
        around: tuple[np.ndarray, float] | None = None,
        ga_weeks: float | None = None,
    ) -> MaternalTissue:
        """Random layers for a fetus reaching ``fetus_depth_mm`` below the skin.

        Args:
            rng: random generator.
            dim: 2 or 3.
            fetus_depth_mm: depth of the fetus's deepest point below the skin.
            far_wall_gap_mm: range of the fluid gap between the fetus and the far uterine wall; a
                negative gap lays the fetus against the wall (the fetus hides the wall behind it).
            around: (centre in the world, radius mm) of the imaged structure, to place 0-3 other
                fetal parts against it (:func:`_fetal_parts`) and to end the wall and placenta above
                it, at most half its radius above it (a structure of a 2D plane lies in the amniotic
                fluid, not in the wall, however small it is); none when None.
            ga_weeks: with ``around``, the sac around the structure is seen whole with
                :func:`amniotic_sac_probability` (:func:`_amniotic_sac`); never when None.
        """
        placenta = None
        if rng.uniform() < 0.7:
            placenta = (rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.45), rng.uniform(12.0, 25.0))
        far_wall = fetus_depth_mm + rng.uniform(*far_wall_gap_mm)
        undulation = FourierNoise.random(rng, dim, (40.0, 150.0), n_waves=6)
        parts = () if around is None else _fetal_parts(rng, *around)
        wall = rng.uniform(9.0, 16.0)
        sac = None
        if around is not None and ga_weeks is not None and rng.uniform() < amniotic_sac_probability(ga_weeks):
            sac = _amniotic_sac(rng, *around)
        if around is not None:
            (_, centre_depth), radius = around  # a plane's world y is its depth near the probe's axis
            top = centre_depth - radius - rng.uniform(0.0, 0.5) * radius
            wall = float(np.clip(top, _THINNEST_WALL_MM, wall))
            if placenta is not None:
                thickness = min(placenta[2], top - wall)
                placenta = (placenta[0], placenta[1], thickness) if thickness > 0.0 else None
        return cls(wall, far_wall, placenta, undulation, parts, sac)

    def echo(self, points: np.ndarray, depth_mm: np.ndarray, angle: np.ndarray) -> np.ndarray:
        """Echo level at (d, N) points, given their depth below the skin and beam angle."""
        level = np.full(points.shape[1], ECHO_LEVEL["fluid"])
        near = np.flatnonzero(depth_mm < self.wall_mm + (self.placenta[2] if self.placenta else 0.0) + 8.0)
        s = depth_mm[near] + 1.5 * self.undulation(points[:, near])
        layers = np.select(
            [s < 1.5, s < 0.3 * self.wall_mm, s < 0.65 * self.wall_mm, s < self.wall_mm],
            [
                ECHO_LEVEL["skin"],
                ECHO_LEVEL["fat"],
                ECHO_LEVEL["muscle"] + 20.0 * np.cos(2.0 * math.pi * s / 2.5),
                ECHO_LEVEL["myometrium"],
            ],
            ECHO_LEVEL["fluid"],
        )
        if self.placenta is not None:
            centre, half_width, thickness = self.placenta
            across = np.clip(1.0 - ((angle[near] - centre) / half_width) ** 2, 0.0, None)
            in_placenta = (s >= self.wall_mm) & (s < self.wall_mm + thickness * np.sqrt(across))  # a lens
            layers[in_placenta] = ECHO_LEVEL["placenta"]
        level[near] = layers
        far = np.flatnonzero(depth_mm > self.far_wall_mm - 8.0)
        s = depth_mm[far] - self.far_wall_mm + 3.0 * self.undulation(points[:, far])
        level[far] = np.where(s > 0.0, ECHO_LEVEL["myometrium"], level[far])
        fluid = np.flatnonzero(level == ECHO_LEVEL["fluid"])
        texture = 10.0 * self.undulation(8.0 * points[:, fluid])  # the walls' undulation at 1/8 of its scale
        if self.amniotic_sac is not None:
            outline, wall_mm = self.amniotic_sac
            outside = outline.signed_distance(points[:, fluid]) + 2.0 * self.undulation(points[:, fluid])
            level[fluid] = np.select(
                [outside > wall_mm, outside > 0.0],
                [ECHO_LEVEL["myometrium"] + texture, ECHO_LEVEL["skin"]],
                ECHO_LEVEL["fluid"],
            )
            inside = level[fluid] == ECHO_LEVEL["fluid"]
            fluid, texture = fluid[inside], texture[inside]
        for outline, part_level in self.fetal_parts:
            inside = _inside_ellipse(outline, points[:, fluid])
            level[fluid[inside]] = part_level + texture[inside]
        return level


# --- the 3D head --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadAnatomy:
    """One fetal head, in the head frame (see the module docstring), in mm.

    Build it with :meth:`from_seed`. The skull's outer surface is an ellipsoid whose axial section
    (z = 0) has semi-axes BPD/2 (x) and OFD/2 (y), measured outer edge to outer edge (the HC18
    convention, :meth:`fetalbiometry.biometry.ellipse.Ellipse.bpd_ofd`); its perimeter is the HC.

    Args:
        ga_weeks: gestational age.
        skull: outer bone surface of the skull.
        skull_thickness_mm: bone thickness.
        scalp_mm: soft tissue over the skull.
        face: ellipsoids whose union is the face (mid-face, chin, nose), before surface noise.
        eyes: the two eyeballs.
        body: the neck and the trunk below the skull base (fetus, not head).
        spine: the cervical and thoracic spine, a bright echo along the back of the neck and trunk.
        cut_plane: (point, normal) of the plane through the lower jaw and C2; the whole-head label
            is the fetus on the normal's side (the 3D paper, Fig. 1b).
        brain_structures: (ellipsoid, tissue) pairs painted inside the brain, in order.
        surface_noise: smooth noise of the face surface (unit variance).
        texture: fine tissue texture (unit variance).
    """

    ga_weeks: float
    skull: Ellipsoid
    skull_thickness_mm: float
    scalp_mm: float
    face: tuple[Ellipsoid, ...]
    eyes: tuple[Ellipsoid, ...]
    body: tuple[Ellipsoid, ...]
    spine: Ellipsoid
    cut_plane: tuple[np.ndarray, np.ndarray]
    brain_structures: tuple[tuple[Ellipsoid, str], ...]
    surface_noise: FourierNoise = field(repr=False)
    texture: FourierNoise = field(repr=False)

    @classmethod
    def from_seed(
        cls, seed: int, ga_weeks: float | None = None, ga_range: tuple[float, float] = _GA_RANGE_3D
    ) -> HeadAnatomy:
        """A random head, deterministic by ``seed``.

        HC is the INTERGROWTH-21st mean + z·SD at the GA (Papageorghiou et al., Lancet 2014), z drawn
        from N(0, 1) truncated to ±2; the cephalic index BPD/OFD from N(0.80, 0.03) (normal range
        0.75–0.85); skull height, skull and scalp thickness, face proportions, neck flexion and
        ventricle size vary too.

        Args:
            seed: subject seed.
            ga_weeks: gestational age; drawn uniformly from ``ga_range`` when None.
            ga_range: range of the drawn GA (default 20–31 weeks, the paper's volunteers).
        """
        rng = np.random.default_rng([check_seed(seed), 0])
        drawn_ga = rng.uniform(*ga_range)
        ga = check_ga(drawn_ga if ga_weeks is None else ga_weeks, HEAD_GA_RANGE_WEEKS[0])
        hc = size_for_age("hc", ga, _size_z_score(rng))
        cephalic_index = float(np.clip(rng.normal(0.80, 0.03), 0.72, 0.88))
        half_ofd = hc / ramanujan_circumference(1.0, cephalic_index)
        a, b = cephalic_index * half_ofd, half_ofd
        c = a * rng.uniform(0.85, 0.98)
        thickness = 1.4 + 0.08 * (ga - 20.0)
        scalp = 1.5 + 0.1 * (ga - 20.0)

        f = rng.uniform(0.92, 1.08, size=3)  # face proportions
        mid_face = _box((0, 0.6 * b, -0.6 * c), (0.6 * a * f[0], 0.45 * b * f[1], 0.4 * c * f[2]))
        chin = _box((0, 0.55 * b, -0.95 * c), (0.4 * a * f[0], 0.35 * b * f[1], 0.22 * c * f[2]))
        nose = _box((0, 1.02 * b * f[1], -0.5 * c), (0.12 * a, 0.12 * b, 0.15 * c))
        eyes = tuple(_box((side * 0.33 * a, 0.82 * b, -0.5 * c), (0.16 * a,) * 3) for side in (-1, 1))

        flexion = Rotation.from_rotvec([math.radians(rng.uniform(-20.0, 20.0)), 0.0, 0.0]).as_matrix()
        pivot = np.array([0.0, -0.12 * b, -0.55 * c])  # the neck bends about the skull base

        def along_neck(offset_y: float, down: float) -> np.ndarray:
            return pivot + flexion @ np.array([0.0, offset_y, -down])

        neck = _box(along_neck(0.0, 0.9 * c), (0.55 * a, 0.5 * b, 0.9 * c), flexion)
        trunk = _box(along_neck(0.1 * b, 1.4 * c + 2.4 * c), (1.2 * a, 0.85 * a, 2.4 * c), flexion)
        spine = _box(along_neck(-0.3 * b, 0.7 * c + 2.5 * c), (0.07 * a, 0.07 * a, 2.5 * c), flexion)

        chin_bottom = chin.center - np.array([0.0, 0.0, chin.semi_axes[2]])
        c2 = np.array([0.0, -0.15 * b, -1.05 * c])
        along = chin_bottom - c2
        normal = np.array([0.0, -along[2], along[1]])
        cut_plane = (c2, normal / np.linalg.norm(normal))

        inner = np.array([a, b, c]) - thickness
        ventricle = rng.uniform(0.85, 1.2)
        layout = [  # (centre, semi-axes) as fractions of the inner skull semi-axes, tissue
            ((0.12, -0.02, -0.03), (0.11, 0.16, 0.14), "thalamus"),
            ((0.24, -0.12, 0.05), (0.07 * ventricle, 0.50, 0.10 * ventricle), "csf"),  # lateral ventricle
            ((0.25, -0.40, 0.04), (0.06, 0.15, 0.07), "choroid"),
            ((0.15, -0.62, -0.50), (0.15, 0.13, 0.16), "cerebellum"),
        ]
        structures = [
            (_box(np.multiply((side * cx, cy, cz), inner), np.multiply(axes, inner)), tissue)
            for (cx, cy, cz), axes, tissue in layout
            for side in (-1, 1)
        ]
        structures += [
            (_box(np.multiply((0, 0.30, 0.0), inner), np.multiply((0.05, 0.10, 0.07), inner)), "csf"),  # CSP
            (_box(np.multiply((0, -0.80, -0.55), inner), np.multiply((0.12, 0.10, 0.12), inner)), "csf"),  # c. magna
        ]
        return cls(
            ga_weeks=ga,
            skull=_box((0, 0, 0), (a, b, c)),
            skull_thickness_mm=thickness,
            scalp_mm=scalp,
            face=(mid_face, chin, nose),
            eyes=eyes,
            body=(neck, trunk),
            spine=spine,
            cut_plane=cut_plane,
            brain_structures=tuple(structures),
            surface_noise=FourierNoise.random(rng, 3, (12.0, 40.0), n_waves=8),
            texture=FourierNoise.random(rng, 3, (3.0, 12.0), n_waves=10),
        )

    @property
    def bpd_mm(self) -> float:
        return 2.0 * float(self.skull.semi_axes[0])

    @property
    def ofd_mm(self) -> float:
        return 2.0 * float(self.skull.semi_axes[1])

    @property
    def hc_mm(self) -> float:
        """Ramanujan perimeter of the skull's axial section (outer edge)."""
        return float(ramanujan_circumference(*self.skull.semi_axes[:2]))

    @property
    def inner_skull(self) -> Ellipsoid:
        return _box(self.skull.center, self.skull.semi_axes - self.skull_thickness_mm)

    @property
    def bones(self) -> tuple[Bone, ...]:
        """The skull shell, whose sutures and fontanelles let the beam through."""
        return (Bone(self.skull, _SKULL_ATTENUATION_PER_MM, self.inner_skull, self.bone_density),)

    @staticmethod
    def bone_density(local: np.ndarray) -> np.ndarray:
        """Relative bone density (0.1–1) of the skull at points given in its unit-sphere coordinates:
        low at the sagittal, coronal and lambdoid sutures and the anterior and posterior fontanelles."""
        x, y, z = local / np.maximum(np.sqrt(np.einsum("ij,ij->j", local, local)), 1e-12)

        def gap(distance: np.ndarray, width: float) -> np.ndarray:
            return np.clip(1.5 - distance / width, 0.0, 1.0)

        openings = (
            gap(np.abs(x), 0.03) * (z > 0.35),  # sagittal suture
            gap(np.abs(y - 0.3), 0.03) * (z > 0.25),  # coronal suture
            gap(np.abs(y + 0.45 - 0.25 * (1.0 - z)), 0.03) * (z > 0.1) * (y < 0),  # lambdoid suture
            gap(np.hypot(x, y - 0.25), 0.15) * (z > 0),  # anterior fontanelle
            gap(np.hypot(x, y + 0.55), 0.07) * (z > 0),  # posterior fontanelle
        )
        return 1.0 - 0.9 * functools.reduce(np.maximum, openings)

    def _face_distance(self, q: np.ndarray) -> np.ndarray:
        """Signed distance (mm) to the face surface: the union of the face ellipsoids, made uneven by
        smooth noise so that the face boundary is fuzzier than the skull's."""
        reach = 4.0 * _FACE_SURFACE_NOISE_MM
        distance = functools.reduce(np.minimum, [part.signed_distance(q, cull_mm=reach) for part in self.face])
        near = np.flatnonzero(distance < 4.0 * _FACE_SURFACE_NOISE_MM)
        distance[near] += _FACE_SURFACE_NOISE_MM * self.surface_noise(q[:, near])
        return distance

    def echo(self, q: np.ndarray, beams: np.ndarray, edge_mm: float, scalp_tissue: str = "soft_tissue"):
        """Echo level, fetal membership and whole-head label at (3, N) head-frame points (:meth:`Scene.echo`).

        Args:
            q: points in the head frame, mm.
            beams: unit beam directions at the points (3, N), in the head frame.
            edge_mm: width of the partial-volume ramp at tissue boundaries (about one voxel).
            scalp_tissue: the :data:`ECHO_LEVEL` of the scalp: ``"scalp"`` in 2D planes
                (:class:`HeadSlice`); dense soft tissue in 3D volumes, which the shipped 3D model
                was trained on, until it is retrained on the darker scalp.
        """
        skull = self.skull.signed_distance(q)
        face = self._face_distance(q)
        neck, trunk = (part.signed_distance(q) for part in self.body)
        point, normal = self.cut_plane
        above_cut = normal @ (q - point[:, None]) > 0.0
        label = ((skull <= self.scalp_mm) | (face <= 0.0) | (neck <= 0.0)) & above_cut

        fetus = np.minimum(np.minimum(skull - self.scalp_mm, face), np.minimum(neck, trunk))
        level, weight = np.zeros(q.shape[1]), np.zeros(q.shape[1])
        inside = np.flatnonzero(fetus < edge_mm)
        weight[inside] = _inside(fetus[inside], edge_mm)
        level[inside] = self._fetal_echo(
            q[:, inside], beams[:, inside], skull[inside], face[inside], edge_mm, scalp_tissue
        )
        return level, weight, label

    def _fetal_echo(
        self,
        q: np.ndarray,
        beams: np.ndarray,
        skull: np.ndarray,
        face: np.ndarray,
        edge_mm: float,
        scalp_tissue: str,
    ) -> np.ndarray:
        """Echo level inside the fetus: soft tissue, scalp and spine, the cranium, the face's bones and eyes.

        The face takes the antero-inferior part of the skull ellipsoid: the cranial cavity is the
        inner skull minus the face grown by the bone thickness, and bone lines the cavity, so a
        plate of bone (the anterior cranial fossa) separates brain from face.
        """
        texture = self.texture(q)
        level = ECHO_LEVEL["soft_tissue"] + 8.0 * texture
        scalp = np.maximum(np.maximum(-skull, skull - self.scalp_mm), -face)  # over the skull, not the face
        _paint(level, scalp, edge_mm, lambda i: ECHO_LEVEL[scalp_tissue] + 8.0 * texture[i])
        _paint(level, self.spine.signed_distance(q), edge_mm, _bone_echo_of(self.spine, q, beams))

        t = self.skull_thickness_mm
        cavity = np.maximum(skull + t, t - face)
        _paint(level, cavity, edge_mm, ECHO_LEVEL["csf"])
        brain = cavity + _SUBARACHNOID_MM
        _paint(level, brain, edge_mm, lambda i: ECHO_LEVEL["brain"] + 6.0 * texture[i])
        upper = -0.3 * self.skull.semi_axes[2] - q[2]  # the falx runs down to the corpus callosum
        falx = np.maximum(np.maximum(np.abs(q[0]) - _FALX_HALF_WIDTH_MM, brain), upper)
        _paint(level, falx, edge_mm, ECHO_LEVEL["falx"])
        for structure, tissue in self.brain_structures:
            _paint(level, structure.signed_distance(q, cull_mm=edge_mm), edge_mm, ECHO_LEVEL[tissue])
        bone = np.maximum(np.maximum(skull, -face), -cavity)
        _paint(level, bone, edge_mm, lambda i: self._skull_echo(q[:, i], beams[:, i]))

        for eye in self.eyes:
            _paint(level, eye.signed_distance(q, cull_mm=edge_mm), edge_mm, ECHO_LEVEL["eye"])
        mid_face, chin, _ = self.face
        for part, lowest in ((chin, 0.0), (mid_face, 0.3)):  # mandible, maxilla: the lower front of the part
            surface = part.signed_distance(q, cull_mm=edge_mm)
            below = q[2] - (part.center[2] - lowest * part.semi_axes[2])
            front = part.center[1] - 0.2 * part.semi_axes[1] - q[1]
            plate = np.maximum(np.maximum(surface, -surface - 2.0), np.maximum(below, front))
            _paint(level, plate, edge_mm, _bone_echo_of(part, q, beams))
        return level

    def _skull_echo(self, q: np.ndarray, beams: np.ndarray) -> np.ndarray:
        density = self.ossification * self.bone_density(self.skull.local(q))
        return _bone_echo(_specular(self.skull, q, beams), density)

    @property
    def ossification(self) -> float:
        """How far the skull has ossified (0.3-1): the share of mature bone's echo it gives, rising
        linearly from 10 to 16 weeks (:data:`_OSSIFICATION_WEEKS`); 1 from 16 weeks on."""
        start, end = _OSSIFICATION_WEEKS
        progress = float(np.clip((self.ga_weeks - start) / (end - start), 0.0, 1.0))
        return _OSSIFICATION_AT_10_WEEKS + (1.0 - _OSSIFICATION_AT_10_WEEKS) * progress


# --- 2D standard planes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadSlice:
    """The transthalamic plane: the axial (z = 0) section of a :class:`HeadAnatomy`, in its (x, y).

    The label is the filled outer skull ellipse, whose perimeter is the HC (the HC18 convention).
    """

    anatomy: HeadAnatomy

    @property
    def ellipse(self) -> Ellipse:
        """The outer skull ellipse in the slice's frame (mm), ``a`` along the occipito-frontal axis."""
        half_bpd, half_ofd = self.anatomy.skull.semi_axes[:2]
        return Ellipse(0.0, 0.0, float(half_ofd), float(half_bpd), math.pi / 2)

    @property
    def view_mm(self) -> float:
        """Length that a sonographer's zoom makes fill the view: the OFD."""
        return self.anatomy.ofd_mm

    def echo(self, points: np.ndarray, beams: np.ndarray, edge_mm: float):
        lift = np.zeros((1, points.shape[1]))
        level, weight, _ = self.anatomy.echo(np.vstack([points, lift]), np.vstack([beams, lift]), edge_mm, "scalp")
        return level, weight, _inside_ellipse(self.outline, points)

    @property
    def outline(self) -> Ellipsoid:
        skull = self.anatomy.skull
        return _box(skull.center[:2], skull.semi_axes[:2])

    @property
    def bones(self) -> tuple[Bone, ...]:
        inner = self.anatomy.inner_skull
        return (Bone(self.outline, _SKULL_ATTENUATION_PER_MM, _box(inner.center[:2], inner.semi_axes[:2])),)


@dataclass(frozen=True)
class AbdomenSlice:
    """The abdominal circumference plane, in a frame with x to the fetus's left and y anterior.

    Args:
        semi_axes: (transverse, antero-posterior) semi-axes of the abdomen (skin), mm.
        texture: liver and bowel texture.
    """

    semi_axes: np.ndarray
    texture: FourierNoise

    @classmethod
    def random(cls, rng: np.random.Generator, ga_weeks: float) -> AbdomenSlice:
        """An abdomen whose AC is the INTERGROWTH-21st mean + z·SD at ``ga_weeks`` (z from N(0, 1)
        truncated to ±2), with an antero-posterior / transverse diameter ratio of 0.85–0.95."""
        ac = size_for_age("ac", check_ga(ga_weeks), _size_z_score(rng))
        ratio = rng.uniform(0.85, 0.95)
        half_transverse = ac / ramanujan_circumference(1.0, ratio)
        return cls(np.array([half_transverse, ratio * half_transverse]), FourierNoise.random(rng, 2, (3.0, 12.0)))

    @property
    def ellipse(self) -> Ellipse:
        """The skin ellipse in the slice's frame (mm); its perimeter is the AC."""
        return Ellipse(0.0, 0.0, float(self.semi_axes[0]), float(self.semi_axes[1]), 0.0)

    @property
    def view_mm(self) -> float:
        """Length that a sonographer's zoom makes fill the view: the transverse diameter."""
        return 2.0 * float(self.semi_axes[0])

    @property
    def outline(self) -> Ellipsoid:
        return _box((0.0, 0.0), self.semi_axes)

    def _spine(self) -> list[Ellipsoid]:
        """Vertebral body and the two laminae, posterior."""
        a, b = self.semi_axes
        r = 0.1 * b
        laminae = [_box((side * 0.6 * r, -0.82 * b), (0.5 * r, 0.5 * r)) for side in (-1, 1)]
        return [_box((0.0, -0.62 * b), (r, 0.9 * r)), *laminae]

    def _ribs(self) -> list[Ellipsoid]:
        a, b = self.semi_axes
        return [
            _box((s * 0.9 * a, -0.35 * b), (0.02 * a, 0.08 * b), rotation_2d(s * 0.35)) for s in (-1, 1)
        ]

    @property
    def bones(self) -> tuple[Bone, ...]:
        return tuple(Bone(bone, _SOLID_BONE_ATTENUATION_PER_MM) for bone in [self._spine()[0], *self._ribs()])

    def echo(self, points: np.ndarray, beams: np.ndarray, edge_mm: float):
        a, b = self.semi_axes
        skin = self.outline.signed_distance(points)
        label = _inside_ellipse(self.outline, points)
        level = ECHO_LEVEL["soft_tissue"] - 25.0 + 12.0 * self.texture(points)  # liver and bowel
        _paint(level, np.maximum(skin, -skin - 1.5), edge_mm, ECHO_LEVEL["skin"])
        stomach = _box((0.42 * a, 0.05 * b), (0.22 * a, 0.28 * b), rotation_2d(0.4))
        _paint(level, stomach.signed_distance(points), edge_mm, ECHO_LEVEL["fluid"])
        _paint(level, self._umbilical_vein_distance(points), edge_mm, ECHO_LEVEL["fluid"])
        aorta = _box((0.08 * a, -0.42 * b), (0.04 * b, 0.04 * b))
        _paint(level, aorta.signed_distance(points), edge_mm, ECHO_LEVEL["csf"])
        for bone in self._spine() + self._ribs():
            _paint(level, bone.signed_distance(points), edge_mm, _bone_echo_of(bone, points, beams))
        return level, _inside(skin, edge_mm), label

    def _umbilical_vein_distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance to the intrahepatic umbilical vein: a tube along a quadratic Bézier curve
        from the anterior wall curving to the right towards the portal sinus."""
        a, b = self.semi_axes
        control = np.array([[0.0, 0.97 * b], [0.0, 0.35 * b], [-0.3 * a, 0.1 * b]])
        distance = np.full(points.shape[1], np.inf)
        for t in np.linspace(0.0, 1.0, 24):
            x, y = (1 - t) ** 2 * control[0] + 2 * (1 - t) * t * control[1] + t**2 * control[2]
            distance = np.minimum(distance, np.hypot(points[0] - x, points[1] - y))
        return distance - 0.06 * b


def femur_diaphysis_width_mm(length_mm: float) -> float:
    """Thickness of the femur's ossified diaphysis in the phantoms, 2 mm + 5 % of FL (mm); also the
    width of the femur masks drawn from caliper end points (:mod:`fetalbiometry.data.plane_dataset`)."""
    return 2.0 + 0.05 * length_mm


@dataclass(frozen=True)
class FemurSlice:
    """The femur plane, in a frame with x along the femur: the ossified diaphysis is the bar
    |x| ≤ FL/2, |y| ≤ width/2, capped by hypoechoic cartilage, inside the thigh."""

    length_mm: float
    width_mm: float
    texture: FourierNoise

    ellipse = None  # the femur is measured as a length, not an ellipse

    @classmethod
    def random(cls, rng: np.random.Generator, ga_weeks: float) -> FemurSlice:
        """A femur whose FL is the INTERGROWTH-21st mean + z·SD at ``ga_weeks`` (z from N(0, 1)
        truncated to ±2); the diaphysis echo is 2 mm + 5 % of FL thick."""
        length = size_for_age("fl", check_ga(ga_weeks), _size_z_score(rng))
        return cls(length, femur_diaphysis_width_mm(length), FourierNoise.random(rng, 2, (3.0, 12.0)))

    @property
    def view_mm(self) -> float:
        """Length that a sonographer's zoom makes fill the view: the thigh, 1.3 FL."""
        return 1.3 * self.length_mm

    @property
    def diaphysis(self) -> Ellipsoid:
        return _box((0.0, 0.0), (self.length_mm / 2.0, self.width_mm / 2.0))

    @property
    def bones(self) -> tuple[Bone, ...]:
        return (Bone(self.diaphysis, _SOLID_BONE_ATTENUATION_PER_MM),)

    def echo(self, points: np.ndarray, beams: np.ndarray, edge_mm: float):
        half_length, half_width = self.length_mm / 2.0, self.width_mm / 2.0
        thigh = _box((0.0, 0.1 * self.length_mm), (0.72 * self.length_mm, 0.24 * self.length_mm))
        skin = thigh.signed_distance(points)
        level = ECHO_LEVEL["soft_tissue"] + 10.0 * self.texture(points)
        _paint(level, np.maximum(skin, -skin - 1.5), edge_mm, ECHO_LEVEL["skin"])
        for side in (-1, 1):
            cap = _box((side * (half_length + 0.05 * self.length_mm), 0.0), (0.07 * self.length_mm, 1.2 * half_width))
            _paint(level, cap.signed_distance(points), edge_mm, ECHO_LEVEL["cartilage"])
        bar = np.maximum(np.abs(points[0]) - half_length, np.abs(points[1]) - half_width)
        _paint(level, bar, edge_mm, lambda i: _bone_echo(beams[1, i] ** 2))  # the bar's normal is ±y
        return level, _inside(skin, edge_mm), bar <= 0.0
